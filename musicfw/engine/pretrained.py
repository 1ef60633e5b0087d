"""Trained models as self-describing folders: ``musicfw export`` and :func:`load_pretrained`.

An exported folder needs no run folder and loads no pickle (safetensors weights, JSON
everything else); its layout follows the Hugging Face Hub's conventions, so it can be pushed
as it is (``musicfw export --push REPO_ID``)::

    OUT_DIR/
      config.json        format + format_version, the model section, the tokenizer config,
                         the sampler/generate/seed defaults, the weights' file name and sha256,
                         and ``plugins``: for every plugin the run used (dataset, tokenizer,
                         model, samplers, metrics) its name and the distribution + version of
                         the package that provides it
      model.safetensors  the model's state dict (non-tensor extra state, e.g. the Markov
                         model's counts, is split into tensors + a JSON skeleton in the
                         safetensors metadata)
      tokenizer.json     the tokenizer's own ``save`` format (config + vocabulary)
      vocab.json         the vocabulary, one name per id (or per key for piano-roll frames)
      README.md          model card with Hub front matter (license, tags, library_name)

A path ``hf:OWNER/NAME[@REVISION]`` is downloaded from the Hugging Face Hub first (with
``huggingface_hub``, into its cache; only the files above).  Loading checks, in order: the format name and version (a newer format is a clear error),
the sha256 of the weights (a modified file is a clear error), the rebuilt tokenizer's
vocabulary against the saved one, then builds the model from its section through the
registries and loads the weights strictly.  A plugin the folder needs but this installation
lacks is an error naming the distribution (and version) to install.  Every user-facing failure is a
:class:`~musicfw.core.errors.ConfigError` (one paragraph, exit 2 on the command line).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from musicfw.core.atomic import atomic_path
from musicfw.core.errors import ConfigError, PluginError
from musicfw.core.version import musicfw_version

FORMAT = "musicfw.pretrained"
#: the version this musicfw writes; it reads every version <= this one
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
VOCAB = "vocab.json"
CARD = "README.md"
#: safetensors metadata key holding the JSON skeleton of non-tensor state entries
EXTRA_KEY = "musicfw.extra_state"
#: JSON files larger than this are refused before parsing (a hostile folder cannot make us
#: allocate without bound); a BPE tokenizer.json of a 30k vocabulary is a few MB
MAX_JSON_BYTES = 256 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# state dict <-> safetensors, without pickle
# --------------------------------------------------------------------------------------------


def _flatten_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tensors, skeleton)``: top-level tensors keep their names; any other entry (a
    module's ``get_extra_state`` dict) is encoded as JSON whose tensor leaves point at
    tensors named ``<key>/<path>``."""
    import numpy as np
    import torch

    tensors: dict[str, torch.Tensor] = {}
    skeleton: dict[str, Any] = {}

    def put(name: str, t: torch.Tensor) -> str:
        if name in tensors:
            raise ValueError(f"state entry name clash at {name!r}")
        tensors[name] = t.detach().cpu().contiguous().clone()  # clone: no shared storage
        return name

    def enc(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            return {"t": put(path, value)}
        if isinstance(value, np.ndarray):
            return {"n": put(path, torch.from_numpy(np.ascontiguousarray(value)))}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise ValueError(f"state entry {path!r} has a non-string key")
            return {"d": {k: enc(v, f"{path}/{k}") for k, v in value.items()}}
        if isinstance(value, (list, tuple)):
            return {"l": [enc(v, f"{path}/{i}") for i, v in enumerate(value)]}
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"v": value}
        raise ValueError(f"state entry {path!r} is a {type(value).__name__}, which has no pickle-free form")

    for key, value in state.items():  # plain tensors first: they keep their own names
        if isinstance(value, torch.Tensor):
            put(key, value)
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            skeleton[key] = enc(value, key)
    return tensors, skeleton


def _unflatten_state(tensors: dict[str, Any], skeleton: dict[str, Any]) -> dict[str, Any]:
    def dec(node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            raise ValueError(f"malformed extra-state node {node!r}")
        (tag, body), = node.items()
        if tag in ("t", "n"):
            t = tensors.pop(body)
            return t.numpy() if tag == "n" else t
        if tag == "d":
            return {k: dec(v) for k, v in body.items()}
        if tag == "l":
            return [dec(v) for v in body]
        if tag == "v":
            return body
        raise ValueError(f"unknown extra-state tag {tag!r}")

    extra = {key: dec(node) for key, node in skeleton.items()}
    return {**tensors, **extra}


def save_weights(model: Any, path: str | Path) -> str:
    """Write ``model.state_dict()`` to a safetensors file; returns its sha256."""
    from safetensors.torch import save_file

    tensors, skeleton = _flatten_state(model.state_dict())
    metadata = {"format": "pt"}
    if skeleton:
        metadata[EXTRA_KEY] = json.dumps(skeleton)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a file to share: the usual permissions, not 0600
    return sha256_of(path)


def read_weights(path: str | Path) -> dict[str, Any]:
    """The state dict stored by :func:`save_weights` (safetensors: no code runs)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    skeleton = json.loads(metadata[EXTRA_KEY]) if EXTRA_KEY in metadata else {}
    return _unflatten_state(tensors, skeleton)


from musicfw.engine.integrity import sha256_file as sha256_of  # noqa: E402  (the one sha256 helper)


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def _container(section: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(section, (DictConfig, ListConfig)):
        return OmegaConf.to_container(section, resolve=True)
    return section


def export_run(
    run_dir: str | Path,
    out_dir: str | Path,
    which: str = "auto",
    license: str = "other",
    registries: Any = None,
    format: str = "safetensors",
    params: dict[str, Any] | None = None,
) -> Path:
    """Export the model trained in ``run_dir`` (checkpoint ``which``: auto, best, last or a
    path, as in :func:`musicfw.engine.training.load_model`) into the new folder ``out_dir`` in
    the export format ``format`` (an ``exporters`` plugin; ``params``: its parameters).  If
    the format fails, ``out_dir`` is removed again."""
    from musicfw.core.build import build
    from musicfw.core.export import ExportSource
    from musicfw.core.plugins import load_registries
    from musicfw.engine.rundir import RunFolder, load_run_config
    from musicfw.engine.training import load_model

    registries = registries if registries is not None else load_registries()
    exporter = build("exporters", format, registries=registries, key="--format", **dict(params or {}))
    run = RunFolder.open(run_dir)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"The export folder {out} already exists and is not empty; choose a new OUT_DIR.")
    if registries is None:
        from musicfw.core.plugins import load_registries

        registries = load_registries()
    config = load_run_config(run.path, registries=registries)
    model, tokenizer = load_model(run.path, which=which, registries=registries, config=config)
    checkpoint = model.preferred_checkpoint if which == "auto" else which
    source = ExportSource(run.path, config, model, tokenizer, str(checkpoint), _run_metrics(run.path), license,
                          plugins=plugins_used(config, registries))
    out.mkdir(parents=True, exist_ok=True)
    try:
        exporter.export(source, out)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return out


#: the plugin kinds an exported model records, with the config key they come from
_USED = (("dataset", "datasets", "data"), ("tokenizer", "tokenizers", "tokenizer"),
         ("model", "models", "model"), ("sampler", "samplers", "sampler"),
         ("metrics", "metrics", "evaluate.metrics"))


def _section_names(section: Any) -> list[str]:
    """The plugin names of a section, a bare name or a list of sections (a sampler chain)."""
    section = _container(section)
    if section is None:
        return []
    if isinstance(section, (list, tuple)):
        return [n for item in section for n in _section_names(item)]
    if isinstance(section, dict):
        return [str(section["name"])] if section.get("name") is not None else []
    return [str(section)]


def plugins_used(config: Any, registries: Any) -> dict[str, list[dict[str, Any]]]:
    """kind -> ``[{name, distribution, version}]`` of every plugin ``config`` uses, from the
    registries (built-ins: ``musicfw``; third-party plugins: the distribution of the entry
    point that registered them)."""
    from omegaconf import DictConfig, OmegaConf

    config = config if isinstance(config, DictConfig) else OmegaConf.create(config)
    used: dict[str, list[dict[str, Any]]] = {}
    for label, kind, key in _USED:
        entries = []
        for name in _section_names(OmegaConf.select(config, key)):
            try:
                identity = registries[kind].info(name).identity()
            except PluginError:  # not installed, or two plugins claim the name: nothing to record
                identity = {"distribution": None, "version": None}
            entries.append({"name": name, **identity})
        used[label] = entries
    return used


def check_plugins(doc: dict[str, Any], registries: Any, where: Any, kinds: tuple[str, ...] = ("tokenizer", "model", "sampler")) -> None:
    """Every plugin of ``kinds`` that the ``plugins`` record of an exported ``config.json``
    names must be installed; a missing one is a ConfigError naming the distribution (and
    version) to install.  A folder without the record (older exports) is not checked."""
    recorded = doc.get("plugins")
    if not isinstance(recorded, dict):
        return
    plural = {label: kind for label, kind, _ in _USED}
    missing = []
    for label in kinds:
        for entry in recorded.get(label) or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            if entry["name"] in registries[plural[label]]:
                continue
            dist, version = entry.get("distribution"), entry.get("version")
            if isinstance(dist, str) and dist and not dist.startswith("<"):
                package = f"{dist}=={version}" if isinstance(version, str) and version else dist
                missing.append(f"the {label} plugin {entry['name']!r} from the distribution {dist!r}"
                               f"{f' (version {version})' if version else ''}: pip install '{package}'")
            else:
                missing.append(f"the {label} plugin {entry['name']!r} (its distribution was not recorded)")
    if missing:
        raise ConfigError(
            f"{where} needs plugins that are not installed: {'; '.join(missing)}. "
            "`musicfw plugins` lists what is installed."
        )


def write_folder(source: Any, out: Path) -> None:
    """The ``safetensors`` export format (the default ``exporters`` plugin): the folder
    described in this module's docstring, which :func:`load_pretrained` reads back."""
    model, tokenizer, config, metrics = source.model, source.tokenizer, source.config, source.metrics
    digest = save_weights(model, out / WEIGHTS)
    tokenizer.save(out / TOKENIZER)
    tok = json.loads((out / TOKENIZER).read_text())
    (out / VOCAB).write_text(json.dumps(list(tokenizer.vocab), indent=0) + "\n")
    n_parameters = sum(p.numel() for p in model.parameters())
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "musicfw_version": musicfw_version(),
        "name": str(config.name),
        "plugins": dict(source.plugins),
        "model": _container(config.model),
        "tokenizer": {"name": tok["name"], "kind": tok.get("kind"), "config": tok["config"],
                      "vocab_size": int(tokenizer.vocab_size)},
        "sampler": _container(config.sampler),
        "generate": _container(config.generate),
        "seed": int(config.seed),
        "weights": {
            "file": WEIGHTS,
            "sha256": digest,
            "checkpoint": source.checkpoint,
            "n_parameters": int(n_parameters),
        },
        "files": {"tokenizer": TOKENIZER, "vocab": VOCAB, "card": CARD},
        "training": {
            "run": source.run_dir.name,
            "data": _container(config.data),
            "train": _container(config.get("train")),
            "metrics": metrics.get("training", {}),
            "likelihood": metrics.get("likelihood", {}),
        },
    }
    (out / CONFIG).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out / CARD).write_text(model_card(doc, license=source.license))


def _run_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def model_card(doc: dict[str, Any], license: str = "other") -> str:
    """README.md: Hub front matter, then data, training, held-out metrics and how to load."""
    model_name = doc["model"].get("name", "?") if isinstance(doc["model"], dict) else str(doc["model"])
    tok_name = doc["tokenizer"]["name"]
    training = doc.get("training", {})
    data = training.get("data") or {}
    data_name = data.get("name", "?") if isinstance(data, dict) else str(data)
    tags = ["musicfw", "symbolic-music", "midi", "music-generation", f"model:{model_name}", f"tokenizer:{tok_name}"]
    lines = [
        "---",
        f"license: {license}",
        "library_name: musicfw",
        "tags:",
        *[f"- {t}" for t in tags],
        "---",
        "",
        f"# {doc['name']}",
        "",
        f"A `{model_name}` model over `{tok_name}` tokens ({doc['tokenizer']['vocab_size']} "
        f"{'keys' if doc['tokenizer'].get('kind') == 'multihot' else 'tokens'}), trained with "
        f"[musicfw](https://pypi.org/project/musicfw/) {doc['musicfw_version']} and exported with "
        "`musicfw export`. The weights are safetensors (loading runs no code); `config.json` holds "
        "everything needed to rebuild the model and its tokenizer.",
        "",
        "## Data",
        "",
        f"Dataset plugin `{data_name}` with the parameters:",
        "",
        "```json",
        json.dumps(data, indent=1, default=str),
        "```",
        "",
        "## Training",
        "",
        f"Model section: `{json.dumps(doc['model'], default=str)}`",
        "",
        f"Training section: `{json.dumps(training.get('train'), default=str)}`",
        "",
        f"Exported checkpoint: `{doc['weights']['checkpoint']}` ({doc['weights']['n_parameters']:,} "
        f"parameters), from the run `{training.get('run', '?')}`.",
        "",
        "## Held-out metrics",
        "",
    ]
    rows = []
    fit = training.get("metrics") or {}
    for key in ("val_nll", "val_perplexity", "test_nll", "test_perplexity", "global_step", "epochs", "train_time_s"):
        if key in fit and fit[key] is not None:
            rows.append((key, fit[key]))
    for name, values in (training.get("likelihood") or {}).items():
        if isinstance(values, dict):
            for key in ("nll_per_token", "perplexity", "nll_per_note", "nll_per_second"):
                if values.get(key) is not None:
                    rows.append((f"{name}.{key} ({values.get('split', 'test')})", values[key]))
    if rows:
        lines += ["| metric | value |", "| --- | --- |", *[f"| {k} | {_fmt(v)} |" for k, v in rows], ""]
        lines += ["NLL in nats per token (per frame for piano rolls), from the run's `metrics.json`.", ""]
    else:
        lines += ["The run recorded no held-out metrics.", ""]
    extra = sorted({
        f"{e['distribution']}=={e['version']}" if e.get("version") else str(e["distribution"])
        for entries in (doc.get("plugins") or {}).values() for e in entries
        if isinstance(e, dict) and e.get("distribution") not in (None, "musicfw") and not str(e["distribution"]).startswith("<")
    })
    lines += [
        "## How to load",
        "",
        "```bash",
        "pip install musicfw" + "".join(f" '{p}'" for p in extra),
        "musicfw generate --model PATH_TO_THIS_FOLDER --n 4",
        "```",
        "",
        "```python",
        "import musicfw",
        "model, tokenizer = musicfw.load_pretrained('PATH_TO_THIS_FOLDER')",
        "```",
        "",
        f"The sampler and generation defaults of the run are in `config.json` (seed {doc['seed']}).",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path.parent} is not an exported musicfw model: it has no {path.name} ({what}).")
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ConfigError(f"{path} is {size:,} bytes, more than the {MAX_JSON_BYTES:,} a {what} may have.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({what}): {exc}.") from None


HUB_PREFIX = "hf:"


def resolve(path: str | Path, download: Any = None) -> Path:
    """A local folder for ``path``: itself, an installed pretrained model's folder for its name
    (``chorales-lstm``: :mod:`musicfw.engine.zoo`; an existing path wins), or for ``hf:OWNER/NAME[@REVISION]`` the Hub
    repository's files downloaded into huggingface_hub's cache.  ``download``: a
    ``snapshot_download``-like function (tests pass one that copies a local folder)."""
    text = str(path)
    if not text.startswith(HUB_PREFIX):
        from musicfw.engine.zoo import resolve as resolve_name

        return resolve_name(path)  # an existing path, else an installed model's name (musicfw/engine/zoo.py)
    repo_id, _, revision = text[len(HUB_PREFIX):].partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"{text}: a Hub model is written hf:OWNER/NAME (optionally @REVISION).")
    if download is None:
        try:
            from huggingface_hub import snapshot_download as download
        except ImportError:
            raise ConfigError(f"{text}: loading from the Hugging Face Hub needs huggingface_hub: pip install huggingface_hub.") from None
    try:
        local = download(
            repo_id=repo_id,
            revision=revision or None,
            repo_type="model",
            allow_patterns=[CONFIG, WEIGHTS, TOKENIZER, VOCAB, CARD],
        )
    except Exception as exc:  # the Hub's answer (no such repo, no network): the user's to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(f"{text}: could not download it from the Hugging Face Hub: {type(exc).__name__}: {first}") from None
    return Path(local)


def read_config(path: str | Path) -> dict[str, Any]:
    """The checked ``config.json`` of an exported folder."""
    root = resolve(path)
    if not root.is_dir():
        raise ConfigError(f"Exported model folder not found: {root} (musicfw export --run RUN OUT_DIR makes one).")
    doc = _read_json(root / CONFIG, "the model's config")
    where = root / CONFIG
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{where} is not a musicfw model config: its `format` is not {FORMAT!r}.")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{where}: `format_version` must be a positive integer, got {version!r}.")
    if version > FORMAT_VERSION:
        raise ConfigError(
            f"{where} has format_version {version}, written by a newer musicfw "
            f"({doc.get('musicfw_version', '?')}); this musicfw ({musicfw_version()}) reads format "
            f"versions up to {FORMAT_VERSION}. Upgrade musicfw (pip install -U musicfw)."
        )
    for key in ("model", "tokenizer", "weights"):
        if not isinstance(doc.get(key), dict):
            raise ConfigError(f"{where}: the `{key}` section is missing or not an object.")
    weights = doc["weights"]
    if not isinstance(weights.get("sha256"), str) or not isinstance(weights.get("file"), str):
        raise ConfigError(f"{where}: `weights` needs `file` and `sha256` strings.")
    name = weights["file"]
    if Path(name).name != name or name in ("", ".", ".."):
        raise ConfigError(f"{where}: weights.file must be a file name inside the folder, got {name!r}.")
    return doc


def generation_defaults(path: str | Path, registries: Any = None) -> Any:
    """``{seed, sampler, generate}`` of an exported model as an omegaconf config, the shape
    ``musicfw generate`` reads from a run's config.  With ``registries``, the plugins the
    folder needs are checked first (:func:`check_plugins`)."""
    from omegaconf import OmegaConf

    from musicfw.engine.config import GenerateSection

    doc = read_config(path)
    if registries is not None:
        check_plugins(doc, registries, resolve(path) / CONFIG)
    try:
        gen = OmegaConf.merge(OmegaConf.structured(GenerateSection), doc.get("generate") or {})
    except Exception as exc:  # omegaconf validation errors: a hand-edited config.json
        raise ConfigError(f"{path} ({CONFIG}): invalid `generate` section: {exc}") from None
    return OmegaConf.create({"seed": int(doc.get("seed", 0)), "sampler": doc.get("sampler"), "generate": gen})


def load_pretrained(path: str | Path, registries: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a folder written by :func:`export_run` (or ``musicfw
    export``): the model in eval mode, on the CPU."""
    from musicfw.core.build import build_from_section
    from musicfw.engine.infill import load_run_tokenizer

    if registries is None:
        from musicfw.core.plugins import load_registries

        registries = load_registries()
    root = resolve(path)
    doc = read_config(root)
    check_plugins(doc, registries, root / CONFIG, kinds=("tokenizer", "model"))
    weights = root / doc["weights"]["file"]
    if not weights.is_file():
        raise ConfigError(f"{root} has no weights file {weights.name} (named in {CONFIG}).")
    digest = sha256_of(weights)
    if digest != doc["weights"]["sha256"]:
        raise ConfigError(
            f"{weights} does not match the sha256 recorded in {root / CONFIG} (expected "
            f"{doc['weights']['sha256']}, found {digest}): the file was modified or is corrupt. "
            "Export or download the model again."
        )

    tok_path = root / TOKENIZER
    tok_doc = _read_json(tok_path, "the tokenizer")
    if not isinstance(tok_doc, dict) or "name" not in tok_doc or not isinstance(tok_doc.get("config"), dict):
        raise ConfigError(f"{tok_path} is not a musicfw tokenizer file (it needs `name` and `config`).")
    tokenizer = load_run_tokenizer(tok_path, registries=registries)  # with the infill markers when trained so
    saved_vocab = tok_doc.get("vocab")
    vocab_path = root / VOCAB
    if vocab_path.is_file():
        saved_vocab = _read_json(vocab_path, "the vocabulary")
    if saved_vocab is not None and list(saved_vocab) != list(tokenizer.vocab):
        raise ConfigError(
            f"The {tokenizer.name!r} tokenizer rebuilt from {tok_path} has a different vocabulary "
            f"({tokenizer.vocab_size} tokens) from the one the model was trained with "
            f"({len(saved_vocab)} tokens, {vocab_path.name}); the installed tokenizer plugin differs "
            "from the one that exported the model."
        )

    model = build_from_section("models", doc["model"], registries=registries, key="model", tokenizer=tokenizer)
    try:
        state = read_weights(weights)
    except Exception as exc:  # safetensors' own parse errors (a file with a valid checksum but bad content)
        raise ConfigError(f"{weights} is not a readable safetensors file: {exc}.") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"The weights in {weights} do not fit the model built from {root / CONFIG}'s model "
            f"section: {first}"
        ) from None
    model.eval()
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# the Hugging Face Hub
# --------------------------------------------------------------------------------------------


def push_folder(folder: str | Path, repo_id: str, token: str | None = None, private: bool = False, api: Any = None) -> str:
    """Upload an exported folder to the Hub model repository ``repo_id`` (created when
    missing); returns the repository's URL.  ``api``: an ``HfApi``-like object (tests pass
    one that writes to a local folder)."""
    folder = Path(folder)
    read_config(folder)  # push only what loads
    if api is None:
        try:
            import huggingface_hub
        except ImportError:
            raise ConfigError(
                "--push needs the huggingface_hub package: pip install huggingface_hub "
                f"(the model was exported to {folder} and can be pushed later)."
            ) from None
        token = token or huggingface_hub.get_token()
        if not token:
            raise ConfigError(
                f"--push {repo_id}: no Hugging Face token found. Run `huggingface-cli login` or set "
                f"HF_TOKEN (the model was exported to {folder} and can be pushed later)."
            )
        api = huggingface_hub.HfApi(token=token)
        real = True
    else:
        real = False
    try:
        url = api.create_repo(repo_id=repo_id, repo_type="model", exist_ok=True, private=private)
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="model",
            commit_message="musicfw export",
        )
    except Exception as exc:
        if not real:
            raise
        # the Hub's answer (a bad token, a repo of someone else, no network): the user's to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"--push {repo_id} failed: {type(exc).__name__}: {first} (the model was exported to "
            f"{folder} and can be pushed later)."
        ) from None
    return str(url)
