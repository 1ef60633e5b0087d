"""The studio's model list: the run or exported folder given at start, run folders found under
``--runs DIR``, and whatever a *model source* adds.

A model source is a callable ``source() -> list[ModelEntry]``, registered through the entry
point group ``musicfw.studio_models`` (so a package of shipped models, for example the model zoo,
makes its named models appear in the studio's list without the studio knowing it), or passed to
:func:`musicfw.plugins.studio.server.create_app` as ``sources=``.  An entry loads lazily: the
studio builds a model only when it is picked, and keeps the last :data:`KEEP_LOADED` in memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from musicfw.core.errors import ConfigError

ENTRY_POINT_GROUP = "musicfw.studio_models"
#: models kept built at once (each holds its weights in memory)
KEEP_LOADED = 2
#: run folders listed from --runs at most
MAX_LISTED_RUNS = 200


@dataclass
class Loaded:
    """A model ready to generate: the model (eval mode, CPU), its tokenizer, and the generation
    defaults of its run or folder (``sampler`` section and ``generate`` section); ``supports``:
    what it can do (:func:`musicfw.engine.loading.capabilities`: generate, infill, harmonize,
    controls, chords, latent)."""

    model: Any
    tokenizer: Any
    sampler: Any = None
    generate: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation at a time per model
    supports: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.supports:
            from musicfw.engine.loading import capabilities

            self.supports = capabilities(self.model, self.tokenizer)

    @classmethod
    def of(cls, loaded: Any) -> "Loaded":
        """From the engine's :class:`~musicfw.engine.loading.LoadedModel`."""
        return cls(loaded.model, loaded.tokenizer, sampler=loaded.sampler, generate=loaded.generate,
                   supports=loaded.supports)


@dataclass
class ModelEntry:
    """One model of the list: ``id`` (what the API's ``model`` field names), a label for people,
    its kind ("run", "folder" or a source's own word) and ``load(registries) -> Loaded``."""

    id: str
    label: str
    kind: str
    load: Callable[[Any], Loaded]
    where: str = ""

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "kind": self.kind, "where": self.where}


def run_entry(path: str | Path, id: str | None = None) -> ModelEntry:
    """A run folder (``musicfw run``): its best checkpoint (the model's preference)."""
    path = Path(path)

    def load(registries: Any) -> Loaded:
        from musicfw.engine.loading import open_model

        return Loaded.of(open_model(run=path, registries=registries).load(registries))

    return ModelEntry(id or f"run:{path.name}", f"{path.name} (run)", "run", load, str(path))


def folder_entry(path: str | Path, id: str | None = None) -> ModelEntry:
    """A folder written by ``musicfw export``, ``hf:OWNER/NAME``, or a shipped model's name."""

    def load(registries: Any) -> Loaded:
        from musicfw.engine.loading import open_model

        return Loaded.of(open_model(model=path, registries=registries).load(registries))

    name = Path(str(path)).name or str(path)
    return ModelEntry(id or f"folder:{name}", f"{name} (exported model)", "folder", load, str(path))


def shipped_entry(name: str) -> ModelEntry:
    """An installed pretrained model (``musicfw models``), by its name."""
    entry = folder_entry(name, id=f"shipped:{name}")
    entry.label, entry.kind = f"{name} (shipped)", "shipped"
    return entry


def shipped_entries() -> list[ModelEntry]:
    """Every installed pretrained model (:mod:`musicfw.engine.zoo`)."""
    from musicfw.engine import zoo

    return [shipped_entry(name) for name in zoo.names()]


def runs_under(root: str | Path) -> list[ModelEntry]:
    """Every run folder directly under ``root`` that has a config.yaml, a tokenizer.json and a
    checkpoint (newest first, at most :data:`MAX_LISTED_RUNS`)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--runs {root}: no such folder (it should hold run folders made by musicfw run).")
    found = []
    for p in root.iterdir():
        if (p / "config.yaml").is_file() and (p / "tokenizer.json").is_file() and any((p / "checkpoints").glob("*.ckpt")):
            found.append(p)
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [run_entry(p) for p in found[:MAX_LISTED_RUNS]]


def entry_point_sources() -> list[Callable[[], list[ModelEntry]]]:
    """The model sources installed packages register (entry point group ``musicfw.studio_models``)."""
    from importlib.metadata import entry_points

    out = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            out.append(ep.load())
        except Exception as exc:  # one broken package never stops the studio
            import sys

            print(f"warning: the studio model source {ep.name!r} ({ep.value}) failed to load: {exc}", file=sys.stderr)
    return out


def entry_for(model: str) -> ModelEntry:
    """``--model VALUE``: an exported folder, ``hf:OWNER/NAME`` or an installed pretrained
    model's name (:func:`musicfw.engine.loading.open_model`); a bare name that is neither is
    looked up in the installed model sources (entry point group ``musicfw.studio_models``)."""
    from musicfw.engine import zoo
    from musicfw.engine.loading import open_model

    text = str(model)
    if text.startswith("hf:") or Path(text).exists():
        return folder_entry(text)
    if zoo.lookup(text) is not None:
        open_model(model=text)  # the shipped files checked now: a damaged one is told at start
        return shipped_entry(text)
    if zoo.looks_like_name(text):
        for source in entry_point_sources():
            for entry in source():
                if text in (entry.id, entry.label):
                    return entry
    open_model(model=text)  # the loader's error: no such folder / unknown name, with the installed names
    return folder_entry(text)


class Catalog:
    """The models the studio offers, and the ones it has built."""

    def __init__(self, registries: Any, entries: list[ModelEntry], sources: list[Callable[[], list[ModelEntry]]] = ()):
        self.registries = registries
        self.entries: dict[str, ModelEntry] = {}
        for entry in list(entries) + [e for s in sources for e in _safe(s)]:
            self.entries.setdefault(entry.id, entry)
        self._loaded: OrderedDict[str, Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, entries: list[ModelEntry]) -> None:
        """More models for the list (an id already listed keeps its first entry)."""
        for entry in entries:
            self.entries.setdefault(entry.id, entry)

    def describe(self) -> list[dict[str, Any]]:
        return [e.describe() for e in self.entries.values()]

    def get(self, model_id: str) -> Loaded:
        """The built model of ``model_id`` (built on first use); KeyError for an unknown id."""
        entry = self.entries[model_id]
        with self._lock:
            if model_id in self._loaded:
                self._loaded.move_to_end(model_id)
                return self._loaded[model_id]
            loaded = entry.load(self.registries)
            self._loaded[model_id] = loaded
            while len(self._loaded) > KEEP_LOADED:
                self._loaded.popitem(last=False)
            return loaded


def _safe(source: Callable[[], list[ModelEntry]]) -> list[ModelEntry]:
    try:
        return [e for e in source() if isinstance(e, ModelEntry)]
    except Exception as exc:
        import sys

        print(f"warning: a studio model source failed: {exc}", file=sys.stderr)
        return []
