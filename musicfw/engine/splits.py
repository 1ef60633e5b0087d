"""Splits by tune, and the leakage every split reports.

A dataset's config declares ``split_by`` (:class:`musicfw.core.dataset.SplitConfig`):
``piece`` keeps the dataset's own groups, ``tune`` makes the pieces that share a
``DEFAULT_RUN``-step melody run one split unit (:func:`musicfw.music.tunes.tune_groups`: the
melody line, hashed n-grams, union-find).  This module applies it for both ways the engine
reads data: :func:`load_data` (the token cache, ``musicfw data prepare``, ``musicfw.load_data``)
and the token shards (:func:`musicfw.engine.shards.open_shards`, from the melodies the workers
stored with each piece).

Whatever the split (by piece, by tune, or a benchmark's published one), :func:`split_report`
measures what it leaks: the test pieces that share a ``DEFAULT_RUN``-step melody run with the
training split, and the share of the test split's melody 4- and 8-grams found in the training
split.  The data stage prints it and metrics.json records it (``"split"``).

Torch-free (numpy and the music library).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from musicfw.core.dataset import LoadedData, MusicDataset
from musicfw.music import tunes


class Melodies:
    """The melody steps of pieces, computed once per piece (a piece read from token shards
    brings the steps its worker stored: its score is not read again)."""

    def __init__(self) -> None:
        self._steps: dict[str, np.ndarray] = {}
        #: the tune of each piece id, after :meth:`tune_keys`
        self.tunes: dict[str, str] = {}

    def __call__(self, piece: Any) -> np.ndarray:
        return self.of([piece])[0]

    def of(self, pieces: Sequence[Any]) -> list[np.ndarray]:
        """The melody steps of each piece (the missing ones computed in one batch)."""
        missing = [p for p in pieces if p.id not in self._steps]
        stored = [p for p in missing if getattr(p, "melody", None) is not None]  # StoredPiece
        for p in stored:
            self._steps[p.id] = p.melody
        scored = [p for p in missing if p.id not in self._steps]
        for p, steps in zip(scored, tunes.melodies([p.score for p in scored])):
            self._steps[p.id] = steps
        return [self._steps[p.id] for p in pieces]

    def tune_keys(self, pieces: Sequence[Any]) -> list[str]:
        """Each piece's tune: the pieces sharing a ``DEFAULT_RUN``-step melody run are one."""
        keys = tunes.tune_groups(self.of(pieces), [p.id for p in pieces], tunes.DEFAULT_RUN)
        self.tunes = {p.id: k for p, k in zip(pieces, keys)}
        return keys


def split_by(dataset: MusicDataset) -> str:
    """``published`` (a benchmark's fixed split), ``tune`` or ``piece``."""
    if dataset.fixed_splits:
        return "published"
    return str(getattr(dataset.config, "split_by", "piece"))


def split_report(dataset: MusicDataset, pieces: Sequence[Any], melodies: Melodies | None = None) -> dict[str, Any]:
    """How the split was made and what it leaks (see the module docstring)."""
    melodies = melodies or Melodies()
    train = melodies.of([p for p in pieces if p.split == "train"])
    test = melodies.of([p for p in pieces if p.split == "test"])
    report: dict[str, Any] = {"split_by": split_by(dataset)}
    if report["split_by"] == "tune" and melodies.tunes:
        sizes: dict[str, int] = {}
        for key in melodies.tunes.values():
            sizes[key] = sizes.get(key, 0) + 1
        shared = [n for n in sizes.values() if n > 1]
        report["tunes"] = {
            "units": len(sizes),
            "shared": len(shared),
            "pieces_in_shared": int(sum(shared)),
            "largest": max(sizes.values()) if sizes else 0,
        }
    report["leakage"] = tunes.leakage(train, test, tunes.DEFAULT_RUN)
    return report


def format_split_report(report: dict[str, Any]) -> str:
    """One line for the data stage and ``musicfw data prepare``."""
    if not report:
        return ""
    leak = report["leakage"]
    how = {
        "tune": "split by tune",
        "piece": "split by piece",
        "published": "published split",
    }.get(report["split_by"], f"split by {report['split_by']}")
    parts = [how]
    info = report.get("tunes")
    if info:
        parts[0] += (
            f" ({info['pieces_in_shared']:,} pieces in {info['shared']:,} tunes of several pieces, "
            f"the largest {info['largest']})"
        )
    n = leak["run_steps"]
    if leak["test_pieces"]:
        parts.append(
            f"leakage: {leak['test_sharing_run']:,} of {leak['test_pieces']:,} test pieces share a {n}-step "
            "melody run with the training split"
        )
        overlap = ", ".join(
            f"{size}-grams {100 * share:.1f}%" for size, share in leak["ngram_overlap"].items() if share is not None
        )
        if overlap:
            parts.append(f"test melody n-grams found in train: {overlap}")
    else:
        parts.append("leakage: no test pieces")
    return "; ".join(parts)


def load_data(dataset: MusicDataset, seed: int = 0, progress: bool = True) -> LoadedData:
    """The dataset's pieces split as its config says (``split_by``), with the split's report
    (:func:`split_report`) in ``split_report``."""
    melodies = Melodies()
    data = dataset.load(seed=seed, progress=progress, tunes=melodies.tune_keys)
    data.split_report = split_report(dataset, data.all_pieces, melodies)
    return data
