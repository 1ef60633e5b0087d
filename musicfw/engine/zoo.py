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
Nothing is downloaded.  Using a model (``init_from:``, the check batch on every card):
:mod:`musicfw.engine.finetune`.
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


def hint() -> str:
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
        raise ConfigError(f"Unknown model {text!r}: no such folder, and no installed pretrained model has that name. {hint()}")
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

