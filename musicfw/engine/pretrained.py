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
``huggingface_hub``, into its cache; only the files above).  A folder is a stranger's file, so
loading checks, in order, before anything it describes is allocated: every JSON file under its
own cap and :mod:`musicfw.engine.safejson`'s nesting bounds; the format name and version (a
newer format is a clear error) and the type of every section; the sha256 of the weights (a
modified file is a clear error); the safetensors header alone (dtypes, shapes, byte ranges
tiling the data); the tokenizer's parameters against its Config bounds and its vocabulary
against the saved one; the model's section against its Config bounds, then the model built on
torch's ``meta`` device and its tensor names and shapes compared to the header.  Only then is
the model built on the CPU and the weights read (NaN/inf refused by tensor name) and loaded
strictly.  No file reference in a folder is followed (``generate.prompt``/``soundfont``, a
Config field marked ``file: True``): it is dropped with a note.  A plugin the folder needs but this installation
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
#: per-file caps, checked before a byte is parsed; with :mod:`musicfw.engine.safejson`'s depth
#: (64) and container (1M) caps they bound what a hostile folder can make us allocate (a JSON
#: text becomes at most ~20x its size in Python objects).  Each is far above what musicfw writes:
#: ``config.json`` holds a few KB of sections (4 MiB); ``tokenizer.json`` is a few KB, or a few
#: MB for a MidiTok BPE state of a 30k vocabulary (32 MiB); ``vocab.json`` one name per id,
#: ~1 MB for 30k names (16 MiB); the safetensors header lists names, shapes and offsets plus the
#: Markov model's JSON skeleton, a few KB (16 MiB)
MAX_CONFIG_BYTES = 4 << 20
MAX_TOKENIZER_BYTES = 32 << 20
MAX_VOCAB_BYTES = 16 << 20
MAX_HEADER_BYTES = 16 << 20
#: the longest sampler chain a folder's ``sampler`` may list
MAX_SAMPLER_CHAIN = 16
#: the ``generate`` keys that name a file on the machine: never followed from a shared folder
FILE_KEYS = ("prompt", "soundfont")


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
            raise ValueError(f"malformed extra-state node {str(node)[:80]!r}")
        (tag, body), = node.items()
        if tag in ("t", "n"):
            if not isinstance(body, str) or body not in tensors:
                raise ValueError(f"extra state names a tensor {str(body)[:80]!r} the file does not hold (or names it twice)")
            t = tensors.pop(body)
            return t.numpy() if tag == "n" else t
        if tag == "d" and isinstance(body, dict):
            return {k: dec(v) for k, v in body.items()}
        if tag == "l" and isinstance(body, list):
            return [dec(v) for v in body]
        if tag == "v" and (body is None or isinstance(body, (bool, int, float, str))):
            return body
        raise ValueError(f"malformed extra-state node with tag {str(tag)[:20]!r}")

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

    from musicfw.engine import safejson

    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    skeleton = safejson.loads(metadata[EXTRA_KEY], f"{path} (metadata {EXTRA_KEY})") if EXTRA_KEY in metadata else {}
    if not isinstance(skeleton, dict):
        raise ValueError(f"metadata {EXTRA_KEY} is not an object")
    return _unflatten_state(tensors, skeleton)


#: safetensors dtype -> bytes per element
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def read_header(path: Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """``({name: (dtype, shape)}, metadata)`` from a safetensors file's header alone (at most
    :data:`MAX_HEADER_BYTES` read), after checking that every tensor's byte range fits its
    dtype and shape and that the ranges tile the data exactly -- so the sizes it declares are
    the sizes the file holds.  Any inconsistency is a ConfigError naming the file."""
    from musicfw.engine import safejson

    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ConfigError(f"{path} is not a safetensors file ({size} bytes, no header).")
        n = int.from_bytes(prefix, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise ConfigError(
                f"{path}: its safetensors header claims {n:,} bytes (the file has {size:,}; at most "
                f"{MAX_HEADER_BYTES:,} are read)."
            )
        raw = f.read(n)
    header = safejson.loads(raw, f"{path} (safetensors header)", max_depth=4, max_containers=3 * 1_000_000)
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: the safetensors header is not an object.")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ConfigError(f"{path}: the safetensors __metadata__ is not a map of strings.")
    data_bytes = size - 8 - n
    spans, entries = [], {}
    for name, info in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict):
            raise ConfigError(f"{where}: its header entry is not an object.")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise ConfigError(f"{where}: dtype {dtype!r} is not one of {', '.join(_DTYPE_BYTES)}.")
        if not isinstance(shape, list) or len(shape) > 16 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ConfigError(f"{where}: shape {shape!r} is not a list of at most 16 sizes >= 0.")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(
            isinstance(o, int) and not isinstance(o, bool) for o in offsets
        ) and 0 <= offsets[0] <= offsets[1] <= data_bytes):
            raise ConfigError(f"{where}: data_offsets {offsets!r} lie outside the file's {data_bytes:,} data bytes.")
        count = 1
        for d in shape:
            count *= d
        if offsets[1] - offsets[0] != count * _DTYPE_BYTES[dtype]:
            raise ConfigError(
                f"{where}: shape {shape} of {dtype} needs {count * _DTYPE_BYTES[dtype]:,} bytes, its data "
                f"range holds {offsets[1] - offsets[0]:,}."
            )
        spans.append((offsets[0], offsets[1]))
        entries[name] = (dtype, tuple(shape))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise ConfigError(f"{path}: the tensors' data ranges overlap or leave gaps (at byte {begin:,}).")
        end = stop
    if end != data_bytes:
        raise ConfigError(f"{path}: the header accounts for {end:,} data bytes, the file holds {data_bytes:,}.")
    return entries, metadata


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
    for key in ("val_nll", "val_perplexity", "test_nll", "test_perplexity", "global_step", "epochs", "train_time_s",
                # an infilling run's held-out gaps (musicfw.engine.infill.run_metrics)
                "infill_nll_both_sides", "infill_nll_left_only", "infill_nll_ratio", "infill_nll_ratio_notes"):
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


def _read_json(path: Path, what: str, limit: int = MAX_CONFIG_BYTES) -> Any:
    from musicfw.engine import safejson

    if not path.is_file():
        raise ConfigError(f"{path.parent} is not an exported musicfw model: it has no {path.name} ({what}).")
    return safejson.read(path, what, limit)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

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
    """The checked ``config.json`` of an exported folder: bounded in size and nesting, every
    section of the type it must have."""
    root = resolve(path)
    if not root.is_dir():
        raise ConfigError(f"Exported model folder not found: {root} (musicfw export --run RUN OUT_DIR makes one).")
    doc = _read_json(root / CONFIG, "the model's config", MAX_CONFIG_BYTES)
    where = root / CONFIG
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{where} is not a musicfw model config: its `format` is not {FORMAT!r}.")
    version = doc.get("format_version")
    if not _is_int(version) or version < 1:
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
    if not isinstance(doc["model"].get("name"), str):
        raise ConfigError(f"{where}: model.name must be a plugin name (a string), got {doc['model'].get('name')!r}.")
    weights = doc["weights"]
    if not isinstance(weights.get("sha256"), str) or not isinstance(weights.get("file"), str):
        raise ConfigError(f"{where}: `weights` needs `file` and `sha256` strings.")
    name = weights["file"]
    if Path(name).name != name or name in ("", ".", ".."):
        raise ConfigError(f"{where}: weights.file must be a file name inside the folder, got {name!r}.")
    if weights.get("n_parameters") is not None and (not _is_int(weights["n_parameters"]) or weights["n_parameters"] < 0):
        raise ConfigError(f"{where}: weights.n_parameters must be a whole number >= 0, got {weights['n_parameters']!r}.")
    seed = doc.get("seed", 0)
    if not _is_int(seed) or not 0 <= seed < 2**63:
        raise ConfigError(f"{where}: `seed` must be a whole number in 0..2**63-1, got {seed!r}.")
    for key in ("generate", "plugins", "files", "training"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise ConfigError(f"{where}: the `{key}` section must be an object, got {type(doc[key]).__name__}.")
    sampler = doc.get("sampler")
    if sampler is not None and not isinstance(sampler, (str, dict, list)) or isinstance(sampler, list) and not 1 <= len(sampler) <= MAX_SAMPLER_CHAIN:
        raise ConfigError(
            f"{where}: `sampler` must be a sampler section (or a list of 1..{MAX_SAMPLER_CHAIN} of them), "
            f"got {str(sampler)[:80]}."
        )
    return doc


def generation_defaults(path: str | Path, registries: Any = None) -> Any:
    """``{seed, sampler, generate}`` of an exported model as an omegaconf config, the shape
    ``musicfw generate`` reads from a run's config.  With ``registries``, the plugins the
    folder needs are checked first (:func:`check_plugins`).  Values are checked against
    :class:`~musicfw.engine.config.GenerateSection`'s bounds; file references
    (:data:`FILE_KEYS`: a prompt, a soundfont) are never followed from a shared folder: they are
    dropped with a warning (pass ``--prompt`` / ``--soundfont`` to use a file of your own)."""
    import sys

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from musicfw.core.params import Source, check_values
    from musicfw.engine.config import GenerateSection
    from musicfw.engine.generation import MAX_BATCH, MAX_SAMPLES
    from musicfw.music.limits import current

    doc = read_config(path)
    where = resolve(path) / CONFIG
    if registries is not None:
        check_plugins(doc, registries, where)
        sampler = doc.get("sampler")
        for i, item in enumerate(sampler if isinstance(sampler, list) else [sampler] if sampler is not None else []):
            key = f"sampler[{i}]" if isinstance(sampler, list) else "sampler"
            if isinstance(item, dict):
                _checked_section("samplers", item.get("name"), item, where, key, registries)
            elif not isinstance(item, str):
                raise ConfigError(f"{where}: {key} must be a sampler section or name, got {str(item)[:80]}.")
    section = dict(doc.get("generate") or {})
    dropped = [key for key in FILE_KEYS if section.get(key) is not None]
    for key in dropped:
        section[key] = None
    if dropped:
        print(
            f"note: {where}: generate.{' and generate.'.join(dropped)} ignored -- a shared model folder "
            "never names a file on this machine (give --prompt / --soundfont yourself).",
            file=sys.stderr,
        )
    try:
        gen = OmegaConf.merge(OmegaConf.structured(GenerateSection), section)
    except OmegaConfBaseException as exc:  # a hand-edited config.json
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where}: invalid `generate` section: {first}") from None
    check_values(gen, GenerateSection, Source(label=f"{where} generate section"), prefix="generate")
    ceilings = {"n": MAX_SAMPLES, "batch_size": MAX_BATCH, "max_tokens": current().max_tokens}
    for key, ceiling in ceilings.items():  # the ceilings of the --n/--batch-size/--max-tokens flags
        value = gen.get(key)
        if value is not None and value > ceiling:
            raise ConfigError(f"{where}: generate.{key}={value:,} is above its ceiling {ceiling:,}.")
    return OmegaConf.create({"seed": int(doc.get("seed", 0)), "sampler": doc.get("sampler"), "generate": gen})


def _file_fields(plugin_cls: Any) -> list[str]:
    """The Config fields of a plugin that name a file (metadata ``file: True``)."""
    import dataclasses

    config = getattr(plugin_cls, "Config", None)
    if config is None or not dataclasses.is_dataclass(config):
        return []
    return [f.name for f in dataclasses.fields(config) if f.metadata.get("file")]


def _checked_section(kind: str, name: Any, params: dict[str, Any], where: Any, key: str, registries: Any) -> type:
    """The plugin class of a section read from a folder, after checking that the plugin exists
    and that every parameter is one of its Config's fields (a stranger's section reaches
    ``build`` with nothing else)."""
    import dataclasses

    registry = registries[kind]
    if not isinstance(name, str) or name not in registry:
        raise ConfigError(f"{where}: {registry.unknown_message(str(name), where=f'{key}.name')}")
    plugin_cls = registry.get(name)
    config = getattr(plugin_cls, "Config", None)
    allowed = {f.name for f in dataclasses.fields(config)} if config is not None and dataclasses.is_dataclass(config) else set()
    unknown = sorted(str(k) for k in params if k != "name" and k not in allowed)
    if unknown:
        raise ConfigError(
            f"{where}: {key}.{unknown[0]} is not a parameter of the {name!r} {kind.rstrip('s')}. "
            f"Allowed keys: {', '.join(sorted(allowed)) or '(none)'}."
        )
    return plugin_cls


def _build_tokenizer(tok_doc: Any, tok_path: Path, registries: Any) -> Any:
    """The tokenizer of ``tokenizer.json`` (already read, bounded), its parameters checked
    against the plugin's bounds; a parameter naming a file (Config field metadata ``file:
    True``) is dropped with a note on stderr."""
    import sys

    from musicfw.core.build import build_from_section

    if not isinstance(tok_doc, dict) or not isinstance(tok_doc.get("name"), str) or not isinstance(tok_doc.get("config"), dict):
        raise ConfigError(f"{tok_path} is not a musicfw tokenizer file (it needs a `name` string and a `config` object).")
    name, params = tok_doc["name"], dict(tok_doc["config"])
    plugin_cls = _checked_section("tokenizers", name, params, tok_path, "config", registries)
    dropped = [key for key in _file_fields(plugin_cls) if params.get(key) is not None]
    for key in dropped:
        params[key] = None
    if dropped:
        print(
            f"note: {tok_path}: config.{' and config.'.join(dropped)} ignored -- a shared model folder never "
            "names a file on this machine.",
            file=sys.stderr,
        )
    try:
        return build_from_section("tokenizers", {**params, "name": name}, registries=registries, key="tokenizer")
    except (ConfigError, PluginError) as exc:
        raise ConfigError(f"{tok_path}: {exc}") from None


def _check_vocab(saved_vocab: Any, tokenizer: Any, tok_path: Path, vocab_path: Path) -> None:
    if not isinstance(saved_vocab, list) or not all(isinstance(v, str) for v in saved_vocab):
        raise ConfigError(
            f"{vocab_path if vocab_path.is_file() else tok_path}: the vocabulary must be a list of token "
            f"names (strings), got {type(saved_vocab).__name__}."
        )
    if saved_vocab != list(tokenizer.vocab):
        raise ConfigError(
            f"The {tokenizer.name!r} tokenizer rebuilt from {tok_path} has a different vocabulary "
            f"({tokenizer.vocab_size} tokens) from the one the model was trained with "
            f"({len(saved_vocab)} tokens, {vocab_path.name}); the installed tokenizer plugin differs "
            "from the one that exported the model."
        )


def _skip_meta_init() -> Any:
    """A torch function mode that leaves meta tensors' random initialisers undone.

    Building the model on the meta device only reads shapes, but ``Tensor.normal_`` on a meta
    tensor imports ``torch._dynamo`` for its meta kernel: measured 2.1-2.3 s of a cold
    ``musicfw generate --model`` (about 5.5 s CPU in all) spent on an initialisation whose values
    do not exist.  Every in-place initialiser (``normal_``, ``uniform_``, ...) on a meta tensor
    returns the tensor unchanged; everything else runs as usual."""
    import torch
    from torch.overrides import TorchFunctionMode

    class SkipMetaInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if getattr(func, "__name__", "") in _META_INITIALISERS:  # torch.nn.init passes tensor=
                target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
                if isinstance(target, torch.Tensor) and target.is_meta:
                    return target
            return func(*args, **kwargs)

    return SkipMetaInit()


_META_INITIALISERS = frozenset({
    "normal_", "uniform_", "fill_", "zero_", "copy_", "bernoulli_", "exponential_", "geometric_",
    "log_normal_", "cauchy_", "random_", "orthogonal_", "trunc_normal_", "erfinv_",
})


def _check_fits(meta_state: dict[str, Any], header: dict[str, tuple[str, tuple[int, ...]]], skeleton_keys: set[str],
                weights: Path, config_path: Path, n_parameters: Any, on_meta: bool = True) -> None:
    """The model built (on the meta device) from ``config.json`` against the weights' header:
    the same tensor names with the same shapes, extra state where the model has it, and the
    parameter count the config records -- before any real allocation."""
    expected = {k: tuple(v.shape) for k, v in meta_state.items() if hasattr(v, "shape")}
    extras = {k for k, v in meta_state.items() if not hasattr(v, "shape")}
    problems = []
    for key in sorted(expected):
        if key not in header:
            problems.append(f"{key} is missing")
        elif header[key][1] != expected[key]:
            problems.append(f"{key} has shape {list(header[key][1])}, the model's is {list(expected[key])}")
    for key in sorted(header):
        if key not in expected and not any(key.startswith(f"{e}/") for e in extras):
            problems.append(f"{key} is not a tensor of this model")
    for key in sorted(extras - skeleton_keys):
        problems.append(f"the extra state {key} is missing")
    for key in sorted(skeleton_keys - extras):
        problems.append(f"the extra state {key} is not this model's")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(
            f"The weights in {weights} do not fit the model that {config_path}'s model section describes: "
            f"{'; '.join(problems[:3])}{more}. {'Nothing was allocated; t' if on_meta else 'T'}he folder's "
            "config.json and weights come from different models."
        )
    if n_parameters is not None:
        count = 0
        for key, shape in expected.items():
            n = 1
            for d in shape:
                n *= d
            count += n
        if count < n_parameters:  # the recorded count covers parameters; buffers add to the state
            raise ConfigError(
                f"{config_path}: weights.n_parameters is {n_parameters:,}, but the model and its weights "
                f"hold {count:,} values."
            )


def _check_finite(state: dict[str, Any], weights: Path) -> None:
    import numpy as np
    import torch

    for key, value in state.items():
        if isinstance(value, dict):
            _check_finite({f"{key}/{k}": v for k, v in value.items()}, weights)
        elif isinstance(value, list):
            _check_finite({f"{key}/{i}": v for i, v in enumerate(value)}, weights)
        elif isinstance(value, torch.Tensor) and value.is_floating_point():
            if not bool(torch.isfinite(value).all()):
                raise ConfigError(f"{weights}: the tensor {key!r} holds NaN or infinite values; refused.")
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            if not bool(np.isfinite(value).all()):
                raise ConfigError(f"{weights}: the array {key!r} holds NaN or infinite values; refused.")


def load_pretrained(path: str | Path, registries: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a folder written by :func:`export_run` (or ``musicfw
    export``): the model in eval mode, on the CPU.

    A stranger's folder is read in bounded memory and time: every JSON file under its cap
    and :mod:`~musicfw.engine.safejson`'s nesting bounds; the tokenizer's and the model's
    parameters within their plugins' declared bounds; the model first built on torch's
    ``meta`` device (no memory) and its tensor names and shapes compared to the safetensors
    header before anything is allocated; NaN/inf weights refused by name; no file reference
    in the folder followed.  Every failure is a ConfigError naming the file (and key)."""
    import torch

    from musicfw.core.build import build_from_section
    from musicfw.engine import safejson
    from musicfw.engine.infill import with_infill_markers

    if registries is None:
        from musicfw.core.plugins import load_registries

        registries = load_registries()
    root = resolve(path)
    doc = read_config(root)
    config_path = root / CONFIG
    check_plugins(doc, registries, config_path, kinds=("tokenizer", "model"))
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
    header, metadata = read_header(weights)
    skeleton = {}
    if EXTRA_KEY in metadata:
        skeleton = safejson.loads(metadata[EXTRA_KEY], f"{weights} (metadata {EXTRA_KEY})")
        if not isinstance(skeleton, dict):
            raise ConfigError(f"{weights}: the metadata {EXTRA_KEY} is not an object.")

    tok_path = root / TOKENIZER
    tok_doc = _read_json(tok_path, "the tokenizer", MAX_TOKENIZER_BYTES)
    tokenizer = with_infill_markers(_build_tokenizer(tok_doc, tok_path, registries), tok_doc, tok_path)  # + infill markers when trained so
    saved_vocab = tok_doc.get("vocab")
    vocab_path = root / VOCAB
    if vocab_path.is_file():
        saved_vocab = _read_json(vocab_path, "the vocabulary", MAX_VOCAB_BYTES)
    if saved_vocab is not None:
        _check_vocab(saved_vocab, tokenizer, tok_path, vocab_path)

    _checked_section("models", doc["model"]["name"], doc["model"], config_path, "model", registries)

    def build_model() -> Any:
        try:
            return build_from_section("models", doc["model"], registries=registries, key="model", tokenizer=tokenizer)
        except (ConfigError, PluginError) as exc:
            raise ConfigError(f"{config_path}: {exc}") from None

    try:
        with torch.device("meta"), _skip_meta_init():  # sizes only: a hostile config allocates nothing here
            shape_state = build_model().state_dict()
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a third-party model whose __init__ cannot run on meta
        shape_state = None  # its parameters were bounded by its Config; checked after the build
    on_meta = shape_state is not None
    if on_meta:
        _check_fits(shape_state, header, set(skeleton), weights, config_path, doc["weights"].get("n_parameters"))
        del shape_state
    model = build_model()
    if not on_meta:
        _check_fits(model.state_dict(), header, set(skeleton), weights, config_path, doc["weights"].get("n_parameters"),
                    on_meta=False)
    try:
        state = read_weights(weights)
    except ConfigError:
        raise
    except Exception as exc:  # safetensors' own parse errors (a file with a valid checksum but bad content)
        raise ConfigError(f"{weights} is not a readable safetensors file: {exc}.") from None
    _check_finite(state, weights)
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
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
