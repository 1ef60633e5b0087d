"""``originality``: how much of its training data a model's samples copy (a memorisation audit).

One implementation with the tune-grouped split and its leakage report: the melody line, its
steps and their hashes are :mod:`musicfw.music.tunes` (the highest sounding note at each onset on
the 16th-note grid; a *step* is one melody note to the next: the pitch interval and the onset
gap, so runs are transposition-invariant and keep the rhythm).  The training split's melodies
are indexed once (:class:`musicfw.music.tunes.MelodyIndex`: sorted 64-bit hashes, no pairwise
comparison); then for each piece

* ``originality_longest_run``: the longest run of consecutive melody steps the piece shares with
  any one training piece (:meth:`MelodyIndex.longest_shared_runs`);
* ``originality_shared_8`` / ``originality_shared_16``: the share of the piece's 8-step and
  16-step runs (occurrences) found anywhere in the training split (NaN when the melody is shorter).

As a features metric every number is computed for the generated samples *and* for the held-out
real pieces of ``evaluate.reference_split`` against the same training split: the held-out pieces
are the honest baseline (real music of the same style shares stock figures with the training set
too; a model copies when its samples share much more than they do).  metrics.json holds both
under ``statistics``; the report section below puts them side by side.

Usable in any run (``evaluate.metrics: [nll, originality]``, or afterwards
``musicfw evaluate --run RUN 'evaluate.metrics=[originality]'``); comparing two bare MIDI
folders has no training split, and is refused.  Speed: ``python benchmarks/originality.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from musicfw.core.errors import UserError
from musicfw.core.metric import Metric
from musicfw.core.params import choice
from musicfw.music import tunes

#: n-gram sizes (melody steps) whose share is reported
SIZES = (8, 16)

FEATURES: dict[str, str] = {
    "originality_longest_run": "longest run of consecutive melody steps (interval + onset gap) shared "
    "with any one training piece",
    "originality_shared_8": "share of the piece's 8-step melody runs found in the training split",
    "originality_shared_16": "share of the piece's 16-step melody runs found in the training split",
}


@dataclass
class OriginalityConfig:
    against: str = choice(
        "train",
        ("train", "valid"),
        "the split the pieces are compared with (the training split: what the model saw)",
    )


def piece_originality(index: tunes.MelodyIndex, melodies: Sequence[np.ndarray]) -> list[dict[str, float]]:
    """The three features of each melody (steps) against ``index`` (all melodies at once)."""
    longest = index.longest_shared_runs(melodies)
    out = [{"originality_longest_run": float(x)} for x in longest]
    for n in SIZES:
        hashes, owner = tunes.window_hashes(list(melodies), n)
        found = index._contains(hashes, n) if len(hashes) else np.zeros(0, dtype=bool)
        total = np.bincount(owner, minlength=len(melodies))
        hits = np.bincount(owner[found], minlength=len(melodies))
        for i, row in enumerate(out):
            row[f"originality_shared_{n}"] = float(hits[i] / total[i]) if total[i] else math.nan
    return out


def audit(
    training: Sequence[np.ndarray], generated: Sequence[np.ndarray], heldout: Sequence[np.ndarray]
) -> dict[str, dict[str, Any]]:
    """The originality of ``generated`` and of ``heldout`` melodies (steps) against
    ``training``: ``{"generated"|"heldout": summary(...)}`` (see :func:`summary`)."""
    index = tunes.MelodyIndex(training)
    return {
        "generated": summary(piece_originality(index, generated)),
        "heldout": summary(piece_originality(index, heldout)),
    }


def summary(rows: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Per set: ``pieces``, the longest shared run's median and maximum, and each n-gram share's
    mean over the pieces that have such runs."""
    out: dict[str, Any] = {"pieces": len(rows)}
    runs = np.array([r["originality_longest_run"] for r in rows], dtype=float)
    out["longest_run_median"] = float(np.median(runs)) if len(runs) else None
    out["longest_run_max"] = float(runs.max()) if len(runs) else None
    for n in SIZES:
        vals = np.array([r[f"originality_shared_{n}"] for r in rows], dtype=float)
        vals = vals[np.isfinite(vals)]
        out[f"shared_{n}_mean"] = float(vals.mean()) if len(vals) else None
    return out


class Originality(Metric):
    """Longest melody run shared with the training split, and the share of 8- and 16-step runs
    found there (the held-out pieces are the baseline)."""

    name = "originality"
    Config = OriginalityConfig
    input = "score"
    feature_descriptions = FEATURES

    def __init__(self, config: Any = None):
        super().__init__(config)
        self.index: tunes.MelodyIndex | None = None

    def prepare(self, datamodule: Any) -> None:
        if datamodule is None:
            raise UserError(
                "The metric 'originality' compares pieces with a training split, and two MIDI folders "
                "have none: use it in a run (evaluate.metrics: [originality]) or re-evaluate a run "
                "folder: musicfw evaluate --run RUN_DIR 'evaluate.metrics=[originality]'."
            )
        from musicfw.engine.splits import Melodies

        pieces = datamodule.pieces(self.config.against)
        self.index = tunes.MelodyIndex(Melodies().of(pieces))

    def features(self, piece: Any) -> dict[str, Any]:
        if self.index is None:
            raise UserError("The metric 'originality' was not prepared with a data module (call prepare(datamodule)).")
        return piece_originality(self.index, [tunes.melody_steps(piece)])[0]


def report_sections(report: Any) -> list[Any]:
    """report.html's originality table: the generated samples next to the held-out pieces, both
    against the training split, and one "In short" line."""
    from musicfw.core.report import ReportSection
    from musicfw.engine.report import table

    metrics = report.metrics or {}
    features = metrics.get("features") or {}
    gen_rows = _rows(features.get("generated") or {})
    ref_rows = _rows(features.get("reference") or {})
    if not gen_rows and not ref_rows:
        return []
    gen, ref = summary(gen_rows), summary(ref_rows)
    split = ((metrics.get("sets") or {}).get("reference") or {}).get("source", "held-out split")
    rows = [["set", "pieces", "longest shared run: median", "max", "8-step runs found in train", "16-step runs found in train"]]
    for label, s in (("generated samples", gen), (f"held-out real pieces ({split})", ref)):
        rows.append([label, s["pieces"], _steps(s["longest_run_median"]), _steps(s["longest_run_max"]), _pct(s["shared_8_mean"]), _pct(s["shared_16_mean"])])
    html = (
        "<p>How much of the training split the generated samples repeat, next to the held-out real "
        "pieces of the same corpus (the honest baseline). A run is measured in melody steps "
        "(one melody note to the next: pitch interval and onset gap, so transposed copies count). "
        "Shares are means over the pieces with a melody of at least that many steps.</p>" + table(rows)
    )
    line = (
        f"Originality: the samples' longest melody run shared with a training piece has median "
        f"{_steps(gen['longest_run_median'])} steps (max {_steps(gen['longest_run_max'])}), held-out real pieces "
        f"{_steps(ref['longest_run_median'])} (max {_steps(ref['longest_run_max'])}); 16-step runs found in "
        f"train: {_pct(gen['shared_16_mean'])} of the samples', {_pct(ref['shared_16_mean'])} of the held-out pieces'."
    )
    return [ReportSection("originality", "Originality (memorisation audit)", html, summary=[line], order=55, nav="originality")]


def _rows(per_piece: Mapping[str, Mapping[str, Any]]) -> list[dict[str, float]]:
    rows = []
    for values in per_piece.values():
        if not isinstance(values, Mapping) or "originality_longest_run" not in values:
            continue
        rows.append({k: (math.nan if values.get(k) is None else float(values[k])) for k in FEATURES})
    return rows


def _steps(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"
