"""Pretrained models shipped in packages, loaded by name: ``--model chorales-lstm``.

A distribution ships models by declaring an entry point in the group ``musicfw.pretrained``
whose object is a function returning a folder (or the folder itself)::

    [project.entry-points."musicfw.pretrained"]
    musicfw-models = "musicfw_models:root"

That folder holds ``zoo.json`` and one exported model folder (``musicfw export``'s layout:
config.json, model.safetensors, tokenizer.json, vocab.json, README.md) per model, named by its
subfolder.  ``zoo.json``::

    {"format": "musicfw.zoo", "format_version": 1,
     "models": {NAME: {"task": "...", "license": "...", "files": {FILE: SHA256, ...},
                       "metrics": {...}, "commands": [...], ...}}}

This repository's own zoo is the distribution ``musicfw-models`` (``models/``, installed by the
README's set-up command and by scripts/test.sh).  A third party ships models the same way.

Names and paths (:func:`resolve`): **a path that exists wins** (a folder you exported yourself
is never shadowed by an installed name); otherwise a name of an installed model is its folder,
after every file of it is checked against the sha256 its ``zoo.json`` records (a damaged file is
refused, naming it and the reinstall command); otherwise a bare name (no ``/``) is an error that
lists the installed names.  Two distributions shipping one name is an error naming both.
Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musicfw.core.errors import ConfigError, PluginError

GROUP = "musicfw.pretrained"
MANIFEST = "zoo.json"
FORMAT = "musicfw.zoo"
FORMAT_VERSION = 1
#: a zoo.json larger than this is refused before parsing
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass
class Shipped:
    """One installed pretrained model."""

    name: str
    path: Path
    distribution: str
    version: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def reinstall(self) -> str:
        return f"pip install --force-reinstall --no-deps {self.distribution}" + (
            " (from a clone of musicfw: pip install --force-reinstall --no-deps ./models)"
            if self.distribution == "musicfw-models" else ""
        )

    def size_bytes(self) -> int:
        return sum((self.path / f).stat().st_size for f in self.info.get("files", {}) if (self.path / f).is_file())


_CACHE: dict[str, Shipped] | None = None
_VERIFIED: set[tuple[str, int, int]] = set()


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=GROUP), key=lambda ep: (ep.name, ep.value))


def read_manifest(root: Path, where: str) -> dict[str, Any]:
    """A zoo folder's checked ``zoo.json``."""
    path = root / MANIFEST
    if not path.is_file():
        raise PluginError(f"{where}: {root} has no {MANIFEST}.")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise PluginError(f"{where}: {path} is larger than {MAX_MANIFEST_BYTES:,} bytes.")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise PluginError(f"{where}: {path} is not valid JSON: {exc}.") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("models"), dict):
        raise PluginError(f"{where}: {path} is not a musicfw zoo manifest (format {FORMAT!r} with `models`).")
    if not isinstance(doc.get("format_version"), int) or doc["format_version"] > FORMAT_VERSION:
        raise PluginError(f"{where}: {path} has format_version {doc.get('format_version')!r}; this musicfw reads up to {FORMAT_VERSION}.")
    for name, info in doc["models"].items():
        if not isinstance(info, dict) or not isinstance(info.get("files"), dict):
            raise PluginError(f"{where}: {path}: the model {name!r} needs a `files` mapping.")
        if Path(name).name != name or name in (".", "..") or any(Path(f).name != f for f in info["files"]):
            raise PluginError(f"{where}: {path}: {name!r} and its files must be plain names inside the folder.")
    return doc


def shipped(refresh: bool = False) -> dict[str, Shipped]:
    """Every installed pretrained model by name (from the ``musicfw.pretrained`` entry points;
    cached per process).  An entry point that fails to load is skipped with a warning."""
    global _CACHE
    if _CACHE is not None and not refresh:
        return _CACHE
    import warnings

    found: dict[str, Shipped] = {}
    for ep in _entry_points():
        dist = getattr(getattr(ep, "dist", None), "name", None) or ep.name
        version = getattr(getattr(ep, "dist", None), "version", None) or "?"
        where = f"the {GROUP} entry point {ep.name!r} of {dist}"
        try:
            obj = ep.load()
            root = Path(obj() if callable(obj) else obj)
            doc = read_manifest(root, where)
        except Exception as exc:  # one broken package never hides the others
            warnings.warn(f"{where} was skipped: {exc}", stacklevel=2)
            continue
        for name, info in sorted(doc["models"].items()):
            if name in found:
                other = found[name]
                raise PluginError(
                    f"Two installed distributions ship a pretrained model named {name!r}: "
                    f"{other.distribution} ({other.path}) and {dist} ({root / name}); uninstall one."
                )
            found[name] = Shipped(name, root / name, dist, version, dict(info))
    _CACHE = found
    return found


def names() -> list[str]:
    return sorted(shipped())


def _hint() -> str:
    available = names()
    if not available:
        return ("No pretrained models are installed: pip install ./models from a clone of musicfw "
                "(the distribution musicfw-models) installs the shipped ones.")
    return f"Installed pretrained models: {', '.join(available)} (musicfw models lists them)."


def verify(entry: Shipped) -> None:
    """Every file of a shipped model exists and has the sha256 its zoo.json records."""
    from musicfw.engine.integrity import sha256_file

    for file, digest in entry.info["files"].items():
        path = entry.path / file
        if not path.is_file():
            raise ConfigError(
                f"The shipped model {entry.name!r} is damaged: {path} is missing. Reinstall it: {entry.reinstall}."
            )
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key in _VERIFIED:
            continue
        if sha256_file(path) != digest:
            raise ConfigError(
                f"The shipped model {entry.name!r} is damaged: {path} does not match the sha256 recorded in "
                f"{entry.path.parent / MANIFEST}. Reinstall it: {entry.reinstall}."
            )
        _VERIFIED.add(key)


def looks_like_name(text: str) -> bool:
    return bool(text) and "/" not in text and os.sep not in text and not text.startswith((".", "~"))


def resolve(path: str | Path) -> Path:
    """The folder ``path`` stands for: itself when it exists, else the installed model of that
    name (checked), else itself (the caller says it is missing); a bare name that is no
    installed model is a ConfigError listing the installed ones."""
    p = Path(path)
    if p.exists():
        return p
    text = str(path)
    entries = shipped()
    if text in entries:
        verify(entries[text])
        return entries[text].path
    if looks_like_name(text):
        raise ConfigError(f"Unknown model {text!r}: no such folder, and no installed pretrained model has that name. {_hint()}")
    return p


def lookup(name: str) -> Shipped | None:
    """The installed model ``name`` (None when ``name`` is an existing path or no model)."""
    if Path(name).exists():
        return None
    return shipped().get(str(name))


def describe() -> list[dict[str, Any]]:
    """One row per installed model, for ``musicfw models``."""
    rows = []
    for name, entry in sorted(shipped().items()):
        info = entry.info
        rows.append({
            "name": name,
            "task": info.get("task", ""),
            "size_bytes": entry.size_bytes(),
            "metrics": info.get("metrics", {}),
            "license": info.get("license", ""),
            "distribution": f"{entry.distribution} {entry.version}",
            "path": str(entry.path),
        })
    return rows


def init_from(model: Any, tokenizer: Any, source: str | Path) -> Path:
    """``init_from:`` (fine-tuning): start ``model`` from a trained run folder (its preferred
    checkpoint: :func:`musicfw.engine.training.init_from_run`), an installed pretrained model's
    name or an exported folder.  The tokenizer must equal ``tokenizer`` and the weights must fit
    ``model``; else a ConfigError (raised while the experiment is assembled, before any run
    folder exists) giving the sections to copy.  Returns the file the weights came from."""
    p = Path(source)
    if p.is_dir() and (p / "config.yaml").is_file():  # a run folder
        from musicfw.engine.training import init_from_run

        return init_from_run(model, tokenizer, p)
    from musicfw.engine.pretrained import CONFIG, TOKENIZER, _read_json, read_config, read_weights, resolve as resolve_any

    root = resolve_any(source)
    if not root.is_dir():
        raise ConfigError(
            f"init_from: {source} is neither a run folder, an exported model folder nor an installed "
            f"pretrained model. {_hint()}"
        )
    doc = read_config(root)
    label = f"the pretrained model {str(source)!r}" if lookup(str(source)) is not None else f"the exported model {root}"
    theirs = _read_json(root / TOKENIZER, "the tokenizer")
    ours = json.loads(json.dumps(tokenizer.to_dict()))
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
