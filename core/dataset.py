"""The dataset contract: pieces, deterministic splits, robust MIDI loading, caches.

A dataset plugin subclasses :class:`MusicDataset`, gives it a ``name`` and a ``Config``
dataclass, and implements :meth:`MusicDataset.collect`, which returns the pieces it found
(each a :class:`Piece` holding a ``symusic.Score``) and the files it had to skip, each with a
reason.  :meth:`MusicDataset.load` then assigns the train/valid/test split:

* **Deterministic**: groups (a stable, machine-independent identity such as a path relative
  to the dataset root, or the corpus file a tune comes from) are put in the order of a
  SHA-256 hash of the group and the seed (never Python's salted ``hash``), and that order is
  cut by the fractions, counted in pieces.  The same files, seed and fractions give the same
  split on every machine.
* **Grouped**: all pieces of one group land in the same split (tunes of one ABC file), and the
  fractions still hold in pieces to within one group's size (a hash threshold per group would
  let one big file swing a split: the Essen collection has 32 files for 8,514 tunes).
* **By tune** (``split_by: tune``): the split unit is a *tune*, the pieces that share a long
  melody run (the same chorale melody harmonised twice, variants of one folk tune), so a test
  piece is not a near-copy of a training piece.  The kernel only declares the option; the
  grouping is the music library's (:mod:`musicfw.music.tunes`) and the engine passes it to
  :meth:`MusicDataset.load` as ``tunes`` (:func:`musicfw.engine.splits.load_data`).
* **Fixed**: datasets with published splits (``fixed_splits = True``) keep them.

This module is imported when plugins register: it must stay cheap (numpy and the standard
library only; symusic is imported where a file is read).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Optional, Sequence

from musicfw.core.errors import ConfigError, DataError, UserError
from musicfw.core.params import choice

log = logging.getLogger("musicfw.data")

SPLITS = ("train", "valid", "test")
#: the values of ``split_by``: the dataset's own groups, or tunes (docs/data.md)
SPLIT_UNITS = ("piece", "tune")
CACHE_ENV = "MUSICFW_CACHE_DIR"


# --------------------------------------------------------------------------------------
# cache folder
# --------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where converted corpora and token caches live.

    In order: the ``cache_dir`` config field, the ``MUSICFW_CACHE_DIR`` environment variable,
    the user's cache folder (``platformdirs.user_cache_dir("musicfw")``, e.g.
    ``~/.cache/musicfw`` on Linux).
    """
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".cache" / "musicfw"
    return Path(platformdirs.user_cache_dir("musicfw", appauthor=False))


# --------------------------------------------------------------------------------------
# pieces and splits
# --------------------------------------------------------------------------------------


@dataclass
class Piece:
    """One piece of music and where it came from."""

    id: str  #: stable identity, the same on every machine (relative path, corpus path#tune)
    score: Any  #: symusic.Score
    group: str = ""  #: split unit: pieces of one group always share a split (default: id)
    split: Optional[str] = None  #: "train" | "valid" | "test" once assigned
    source: str = ""  #: the file the piece was read from
    title: str = ""

    def __post_init__(self) -> None:
        if not self.group:
            self.group = self.id

    @property
    def n_notes(self) -> int:
        return int(self.score.note_num())

    @property
    def seconds(self) -> float:
        """Length in seconds (a piece stored in token shards answers from its manifest)."""
        return score_seconds(self.score)


def split_value(key: str, seed: int) -> float:
    """A uniform number in [0, 1) from a group identity and a seed, identical everywhere."""
    digest = hashlib.sha256(f"musicfw-split\0{int(seed)}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def check_fractions(train_fraction: float, valid_fraction: float, where: str = "data") -> None:
    tf, vf = float(train_fraction), float(valid_fraction)
    if not (0.0 < tf <= 1.0) or not (0.0 <= vf < 1.0) or tf + vf > 1.0 + 1e-9:
        raise ConfigError(
            f"{where}.train_fraction={tf} and {where}.valid_fraction={vf} do not make a split: "
            "need 0 < train_fraction, 0 <= valid_fraction and train_fraction + valid_fraction "
            "<= 1 (the test split gets the rest)."
        )


def assign_splits(
    groups: Iterable[str], seed: int, train_fraction: float = 0.8, valid_fraction: float = 0.1
) -> dict[str, str]:
    """group -> split.  ``groups`` has one entry per piece (a group's size is its count).

    Groups are ordered by :func:`split_value` (ties by name); a group goes to ``train`` when
    the middle of its stretch of pieces in that order lies below ``train_fraction`` of all
    pieces, to ``valid`` below ``train_fraction + valid_fraction``, else to ``test``.  Only
    for tiny corpora, where a split with a positive fraction would come out empty, the group
    whose position lies closest to that split's interval is moved there from the largest
    split (still deterministic).
    """
    check_fractions(train_fraction, valid_fraction)
    tf, vf = float(train_fraction), float(valid_fraction)
    counts: dict[str, int] = {}
    for g in groups:
        counts[g] = counts.get(g, 0) + 1
    order = sorted(counts, key=lambda g: (split_value(g, seed), g))
    total = float(sum(counts.values())) or 1.0
    position, done = {}, 0
    for g in order:
        position[g] = (done + counts[g] / 2.0) / total
        done += counts[g]
    bounds = {"train": (0.0, tf), "valid": (tf, tf + vf), "test": (tf + vf, 1.0)}
    out = {g: ("train" if u < tf else "valid" if u < tf + vf else "test") for g, u in position.items()}
    wanted = [s for s in SPLITS if bounds[s][1] - bounds[s][0] > 1e-12]
    if len(position) >= len(wanted):
        for split in wanted:
            members = {s: [g for g, v in out.items() if v == s] for s in SPLITS}
            if members[split]:
                continue
            donor = max((s for s in SPLITS if s != split), key=lambda s: (len(members[s]), s == "train"))
            if len(members[donor]) <= 1:
                continue
            lo, hi = bounds[split]
            best = min(members[donor], key=lambda g: (max(lo - position[g], position[g] - hi, 0.0), g))
            out[best] = split
    return out


@dataclass
class SplitConfig:
    """Split fields shared by the datasets without a published split."""

    train_fraction: float = field(
        default=0.8,
        metadata={"gt": 0, "le": 1, "help": "share of pieces in the train split (whole source files at a time)"},
    )
    valid_fraction: float = field(
        default=0.1,
        metadata={"ge": 0, "lt": 1, "help": "share in the valid split; the test split gets the rest "
                  "(train_fraction + valid_fraction <= 1)"},
    )
    split_seed: Optional[int] = field(
        default=None, metadata={"help": "seed of the split hash; default: the experiment's seed"}
    )
    split_by: str = choice(
        "piece",
        SPLIT_UNITS,
        "split unit: piece (a piece, or the file it came from, stays in one split) or tune (pieces "
        "sharing a long melody run stay in one split; docs/data.md)",
    )


# --------------------------------------------------------------------------------------
# loaded data: pieces with splits, skipped files, summary
# --------------------------------------------------------------------------------------


def score_seconds(score: Any) -> float:
    try:
        return float(score.to("second").end())
    except Exception:  # a score without tempo information: fall back to 120 qpm
        return float(score.end()) / max(int(score.ticks_per_quarter), 1) * 0.5


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class LoadedData:
    """A dataset's pieces with their splits, and what was skipped on the way."""

    name: str
    all_pieces: list[Piece]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fixed_splits: bool = False
    seed: int = 0
    #: how the split was made and what it leaks (split unit, tune groups, test pieces sharing a
    #: melody run with the training split, n-gram overlap), filled in by the engine
    split_report: dict[str, Any] = field(default_factory=dict)

    def pieces(self, split: str | None = None) -> list[Piece]:
        if split is None:
            return list(self.all_pieces)
        if split not in SPLITS:
            raise ConfigError(f"Unknown split {split!r}. Splits: {', '.join(SPLITS)}.")
        return [p for p in self.all_pieces if p.split == split]

    def split_sizes(self) -> dict[str, int]:
        sizes = {s: 0 for s in SPLITS}
        for p in self.all_pieces:
            sizes[p.split or "train"] += 1
        return sizes

    def summary(self) -> dict[str, Any]:
        seconds = sum(score_seconds(p.score) for p in self.all_pieces)
        return {
            "dataset": self.name,
            "pieces": len(self.all_pieces),
            "notes": int(sum(p.n_notes for p in self.all_pieces)),
            "duration_s": round(seconds, 1),
            "duration": format_duration(seconds),
            "splits": self.split_sizes(),
            "skipped": [f"{path}: {reason}" for path, reason in self.skipped],
            **({"split": dict(self.split_report)} if self.split_report else {}),
        }

    def fingerprint(self) -> str:
        """A digest of the pieces' identities and contents (independent of the split)."""
        h = hashlib.sha256(f"musicfw-data-v1\0{self.name}\0".encode())
        for piece in sorted(self.all_pieces, key=lambda p: p.id):
            h.update(piece.id.encode("utf-8") + b"\0")
            h.update(hashlib.sha1(piece.score.dumps_midi()).digest())
        return h.hexdigest()

    def write_skipped(self, path: str | os.PathLike) -> None:
        Path(path).write_text("".join(f"{p}: {reason}\n" for p, reason in self.skipped))


class MusicDataset(abc.ABC):
    """Base class of dataset plugins (subclasses set ``name`` and ``Config``)."""

    name: ClassVar[str]
    Config: ClassVar[type]
    #: the validated parameters (an instance of ``Config``)
    config: Any
    #: True for datasets with published splits: :meth:`collect` sets each piece's split
    fixed_splits: ClassVar[bool] = False
    #: False where a benchmark's convention leaves the first position of a piece unscored
    score_first_position: bool = True
    #: config fields that do not change which pieces are produced (kept out of identities)
    non_semantic_fields: ClassVar[tuple[str, ...]] = ("cache_dir", "num_workers", "progress")

    def __init__(self, config: Any = None):
        from musicfw.core.params import check_params

        self.config = config if config is not None else self.Config()
        check_params(self.config, "data")  # the Config's declared choices and bounds
        cfg = self.config
        if hasattr(cfg, "train_fraction"):
            check_fractions(cfg.train_fraction, cfg.valid_fraction)
        if getattr(cfg, "split_by", "piece") not in SPLIT_UNITS:
            raise ConfigError(f"data.split_by={cfg.split_by!r} is not one of: {', '.join(SPLIT_UNITS)}.")
        self._collected: tuple[list[Piece], list[tuple[str, str]]] | None = None

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "MusicDataset":
        return cls(config)

    @abc.abstractmethod
    def collect(self, progress: bool = True) -> tuple[list[Piece], list[tuple[str, str]]]:
        """Read the pieces: ``(pieces, [(path, reason), ...])``.  Bad input is skipped with a
        reason, never raised; a source with nothing usable raises :class:`DataError`."""

    def load(
        self,
        seed: int = 0,
        progress: bool = True,
        tunes: Callable[[Sequence[Piece]], Sequence[str]] | None = None,
    ) -> LoadedData:
        """The pieces with their splits (collected once per instance, split per seed).

        ``tunes`` gives each piece's tune, the split unit under ``split_by: tune``; the engine
        passes it (load through :func:`musicfw.engine.splits.load_data`, ``musicfw.load_data``)."""
        if self._collected is None:
            pieces, skipped = self.collect(progress=progress)
            for path, reason in skipped:
                log.warning("skipped %s: %s", path, reason)
            if not pieces:
                raise DataError(f"Dataset {self.name!r} holds no usable piece.")
            self._collected = (pieces, skipped)
        pieces, skipped = self._collected
        if not self.fixed_splits:
            units = self.split_units(pieces, tunes)
            table = self.split_table(units, seed)
            pieces = [dataclasses.replace(p, split=table[u]) for p, u in zip(pieces, units)]
        return LoadedData(self.name, pieces, list(skipped), self.fixed_splits, int(seed))

    def split_units(
        self, pieces: Sequence[Any], tunes: Callable[[Sequence[Any]], Sequence[str]] | None = None
    ) -> list[str]:
        """The split unit of each piece: its group (``split_by: piece``), or its tune
        (``split_by: tune``, found by ``tunes``: pieces sharing a long melody run)."""
        if getattr(self.config, "split_by", "piece") != "tune":
            return [p.group for p in pieces]
        if tunes is None:
            raise UserError(
                f"Dataset {self.name!r} is split by tune (data.split_by=tune): its tunes are found by "
                "musicfw's engine. Load it with musicfw.load_data(dataset, seed=...) (or `musicfw data "
                "prepare`), or set split_by='piece'."
            )
        units = [str(u) for u in tunes(pieces)]
        if len(units) != len(pieces):
            raise ValueError(f"tunes gave {len(units)} units for {len(pieces)} pieces")
        return units

    def split_table(self, groups: list[str], seed: int) -> dict[str, str]:
        """group -> split for the pieces' groups (one entry per piece), as :meth:`load` does."""
        cfg = self.config
        split_seed = getattr(cfg, "split_seed", None)
        split_seed = int(seed if split_seed is None else split_seed)
        return assign_splits(groups, split_seed, cfg.train_fraction, cfg.valid_fraction)

    # -- optional: file-by-file reading (parallel, sharded preparation: musicfw/engine/shards.py) --------
    def sources(self) -> list[tuple[str, str]] | None:
        """The input files as ``(path, name)`` pairs sorted by name (``name``: stable, relative
        to the dataset root), for datasets that :meth:`read_source` can read one file at a
        time; ``None`` (the default) when the dataset is only read whole by :meth:`collect`."""
        return None

    def read_source(self, path: str, name: str) -> tuple[list[Piece], list[tuple[str, str]]] | None:
        """The pieces of one source file and the skipped ones with reasons (called in worker
        processes; the pieces are the ones :meth:`collect` gives for that file).

        ``None`` (the default) means: the file is one MIDI piece named ``name``, and the engine
        reads it through the one loader (:func:`musicfw.music.midiload.read_midi_source`:
        limits checked, bad files skipped with their reason).  A dataset whose files hold
        several pieces, or other formats, overrides it."""
        return None

    def identity(self) -> dict[str, Any]:
        """The dataset's name and the config fields that decide its content."""
        values = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else {}
        for key in self.non_semantic_fields:
            values.pop(key, None)
        return {"name": self.name, "config": json.loads(json.dumps(values, default=str))}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"
