"""Using pretrained models: ``init_from:`` a run, a name or an exported folder (fine-tuning),
and the check batch every shipped model carries (its NLL is on the card; tests/test_zoo.py
recomputes it).  Names resolve through :mod:`musicfw.engine.zoo`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from musicfw.core.errors import ConfigError
from musicfw.engine.zoo import hint, lookup


def _config_defaults(tokenizer: Any) -> dict[str, Any]:
    """The default value of every field of ``tokenizer``'s Config (as JSON would hold it)."""
    import dataclasses

    config = getattr(tokenizer, "config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return {}
    try:
        return json.loads(json.dumps(dataclasses.asdict(type(config)())))
    except (TypeError, ValueError):  # a Config with required fields has no defaults to offer
        return {}


def init_from(model: Any, tokenizer: Any, source: str | Path) -> Path:
    """``init_from:`` (fine-tuning): start ``model`` from a trained run folder (its preferred
    checkpoint: :func:`musicfw.engine.training.init_from_run`), an installed pretrained model's
    name or an exported folder.  The tokenizer must equal ``tokenizer`` and the weights must fit
    ``model``; else a ConfigError (raised while the experiment is assembled, before any run
    folder exists) giving the sections to copy.  Returns the file the weights came from."""
    p = Path(source)
    if p.is_dir() and not (p / "config.json").is_file():  # a run folder (or not a model at all: its errors)
        from musicfw.engine.training import init_from_run

        return init_from_run(model, tokenizer, p)
    from musicfw.engine.pretrained import CONFIG, TOKENIZER, _read_json, read_config, read_weights, resolve as resolve_any

    root = resolve_any(source)
    if not root.is_dir():
        raise ConfigError(
            f"init_from: {source} is neither a run folder, an exported model folder nor an installed "
            f"pretrained model. {hint()}"
        )
    doc = read_config(root)
    label = f"the pretrained model {str(source)!r}" if lookup(str(source)) is not None else f"the exported model {root}"
    theirs = _read_json(root / TOKENIZER, "the tokenizer")
    ours = json.loads(json.dumps(tokenizer.to_dict()))
    if isinstance(theirs, dict) and theirs.get("name") == ours["name"] and isinstance(theirs.get("config"), dict):
        # a key the folder's tokenizer.json does not have (an option added to the plugin since
        # it was exported) means that option's default, as it does when the folder is loaded
        defaults = _config_defaults(tokenizer)
        theirs = {**theirs, "config": {**{k: v for k, v in defaults.items() if k not in theirs["config"]}, **theirs["config"]}}
    if not isinstance(theirs, dict) or (theirs.get("name"), theirs.get("config")) != (ours["name"], ours["config"]):
        theirs = theirs if isinstance(theirs, dict) else {}
        their_cfg = theirs.get("config") if isinstance(theirs.get("config"), dict) else {}
        diff = sorted(k for k in set(their_cfg) | set(ours["config"]) if their_cfg.get(k) != ours["config"].get(k))
        other = f" with other {', '.join(diff)}" if diff and theirs.get("name") == ours["name"] else ""
        section = {"name": theirs.get("name"), **{k: their_cfg[k] for k in diff if k in their_cfg}}
        raise ConfigError(
            f"init_from: {label} was trained with the tokenizer {theirs.get('name')!r}{other}; fine-tuning "
            f"needs the same tokenizer (this experiment: {ours['name']!r}). Set tokenizer: "
            f"{json.dumps(section)} (the whole section is `tokenizer` in {root / CONFIG})."
        )
    weights = root / doc["weights"]["file"]
    from musicfw.engine.integrity import sha256_file

    if not weights.is_file() or sha256_file(weights) != doc["weights"]["sha256"]:
        raise ConfigError(f"init_from: {weights} is missing or does not match the sha256 in {root / CONFIG}.")
    try:
        model.load_state_dict(read_weights(weights))
    except Exception as exc:  # other names or shapes: another model section
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"init_from: the weights of {label} do not fit this model ({first[:300]}); fine-tuning needs "
            f"the same model section: model: {json.dumps(doc['model'])}."
        ) from None
    return weights


# --------------------------------------------------------------------------------------------
# the reproducibility check every shipped model carries
# --------------------------------------------------------------------------------------------

#: a fixed small held-out batch (numpy arrays of the test loader's first batch, a few rows),
#: stored beside the weights; its NLL per token is recorded in zoo.json and on the card
CHECK_FILE = "check.npz"
#: the torch seed a check is scored under (a VAE draws its latent code)
CHECK_SEED = 0


def batch_nll(model: Any, batch: dict[str, Any]) -> float:
    """NLL (nats) per scored target of one batch under ``model`` (eval mode, sliding windows
    for a model with a shorter context: :func:`musicfw.engine.windows.scored_loss`)."""
    import torch

    from musicfw.engine.windows import scored_loss

    model.eval()
    torch.manual_seed(CHECK_SEED)
    with torch.no_grad():
        out = scored_loss(model, batch)
    return float(out["nll_sum"]) / max(int(out["n_targets"]), 1)


def save_check(batch: dict[str, Any], path: Path) -> None:
    import numpy as np
    import torch

    arrays = {k: v.cpu().numpy() for k, v in batch.items() if torch.is_tensor(v)}
    np.savez_compressed(path, **arrays)


def load_check(path: Path) -> dict[str, Any]:
    """The check batch (no pickle: ``allow_pickle=False``)."""
    import numpy as np
    import torch

    with np.load(path, allow_pickle=False) as data:
        return {k: torch.from_numpy(np.array(data[k])) for k in data.files}


def check_value(name_or_path: str | Path, registries: Any = None) -> float:
    """The NLL per token of a shipped model on its check batch (what its card records)."""
    from musicfw.engine.pretrained import load_pretrained, resolve as resolve_any

    root = resolve_any(name_or_path)
    model, _ = load_pretrained(root, registries=registries)
    return batch_nll(model, load_check(root / CHECK_FILE))
