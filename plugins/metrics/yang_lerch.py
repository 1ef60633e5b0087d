"""Yang & Lerch (2020) features and their generated-vs-reference set comparison.

Li-Chia Yang and Alexander Lerch, "On the evaluation of generative models in music", Neural
Computing and Applications 32, 2020; reference code: github.com/RichardYang40148/mgeval
(``mgeval/core.py`` for the features, ``mgeval/utils.py`` and ``demo.ipynb`` for the
comparison).  The definitions follow mgeval; every deliberate deviation (mostly fixes of
flaws in its code) is listed in docs/metrics.md.

Everything is vectorized numpy over a piece's note arrays (:mod:`musicfw.music.notes`): no
per-note Python loop.  The comparison (pairwise distances, Gaussian KDEs, KL divergence and
overlap area) is generic: it compares any per-piece features, the MusPy-style statistics
included; it lives in :mod:`musicfw.music.setcompare`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from musicfw.core.metric import Metric
from musicfw.core.params import bounded
from musicfw.music.notes import PieceNotes, piece_notes

#: note-length classes of mgeval in 1/96 of a whole note: full, half, quarter, 8th, 16th,
#: dotted half, dotted quarter, dotted 8th, dotted 16th, half-, quarter- and 8th-note triplet
NOTE_LENGTH_CLASSES = np.array([96, 48, 24, 12, 6, 72, 36, 18, 9, 32, 16, 8], dtype=np.float64)
NOTE_LENGTH_NAMES = (
    "1", "1/2", "1/4", "1/8", "1/16", "1/2.", "1/4.", "1/8.", "1/16.", "1/2t", "1/4t", "1/8t",
)

#: feature name -> description (the per-bar ones get their shape from ``num_bars``)
FEATURES: dict[str, str] = {
    "pitch_count": "number of distinct pitches (PC)",
    "pitch_count_per_bar": "distinct pitches with an onset in each of the first num_bars bars (PC/bar)",
    "pitch_class_histogram": "duration-weighted pitch-class histogram, sums to 1 (PCH)",
    "pitch_class_histogram_per_bar": "duration-weighted pitch-class histogram of each bar (PCH/bar)",
    "pitch_class_transition_matrix": "12x12 counts of pitch-class transitions between a note "
    "and a note starting within the threshold of its end (PCTM)",
    "pitch_range": "highest minus lowest pitch, semitones (PR)",
    "avg_pitch_interval": "mean absolute interval between consecutive notes, semitones (PI)",
    "note_count": "number of notes (NC)",
    "note_count_per_bar": "notes with an onset in each of the first num_bars bars (NC/bar)",
    "avg_ioi": "mean time between consecutive distinct onsets, seconds (IOI)",
    "note_length_histogram": "12-class note-length histogram, sums to 1 (NLH)",
    "note_length_transition_matrix": "12x12 transitions between the length classes of "
    "consecutive notes (NLTM)",
}


def _normalize_matrix(m: np.ndarray, how: str) -> np.ndarray:
    if how == "none":
        return m
    if how == "row":
        sums = m.sum(axis=1, keepdims=True)
        sums[sums == 0] = 1.0
        return m / sums
    total = m.sum()
    return m / total if total > 0 else m


def pitch_class_transitions(notes: PieceNotes, threshold_s: float) -> np.ndarray:
    """pretty_midi's ``get_pitch_class_transition_matrix``: pairs (i, j), i != j, where note j
    starts less than ``threshold_s`` seconds from note i's end; counts by pitch class.

    Counted without listing the pairs: with the onsets sorted, note i's window is a range
    [lo_i, hi_i) of that order, and a prefix sum of the pitch classes along it ([n + 1, 12])
    gives how many notes of each class start in the window.  Memory is O(12 n) whatever the
    polyphony (listing the pairs, as an earlier version did, took 8 bytes per pair: 18.6 GiB
    for 50,000 simultaneous notes).  Speed on ordinary files: benchmarks/hardening.py.
    """
    n = len(notes)
    if n < 2:
        return np.zeros((12, 12))
    pc = notes.pitch % 12
    order = np.argsort(notes.start_s, kind="stable")
    starts = notes.start_s[order]
    lo_t = notes.end_s - threshold_s  # a note j is in i's window when lo_t < start_j < hi_t
    hi_t = notes.end_s + threshold_s
    lo = np.searchsorted(starts, lo_t, side="right")
    hi = np.maximum(np.searchsorted(starts, hi_t, side="left"), lo)
    prefix = np.zeros((n + 1, 12), dtype=np.int32 if n < 2**31 else np.int64)
    prefix[np.arange(1, n + 1), pc[order]] = 1
    np.cumsum(prefix, axis=0, out=prefix)
    counts = prefix[hi] - prefix[lo]  # [n, 12]: notes of each class starting in i's window
    del prefix
    # a note is in its own window when it starts inside it (pairs need i != j)
    self_in = (notes.start_s > lo_t) & (notes.start_s < hi_t)
    counts[np.flatnonzero(self_in), pc[self_in]] -= 1
    # row a of the matrix: the counts of the notes of pitch class a, summed
    return np.stack([np.bincount(pc, weights=counts[:, b], minlength=12) for b in range(12)], axis=1)


def note_length_classes(duration_ticks: np.ndarray, tpq: int) -> np.ndarray:
    """Index (0..11) of the nearest mgeval note-length class; a whole note is 4 quarters."""
    unit = 4.0 * tpq / 96.0
    dist = np.abs(duration_ticks[:, None].astype(np.float64) - NOTE_LENGTH_CLASSES[None, :] * unit)
    return dist.argmin(axis=1)


def yang_lerch_features(
    notes: PieceNotes,
    num_bars: int = 8,
    transition_normalize: str = "all",
    transition_threshold_s: float = 0.05,
) -> dict[str, np.ndarray]:
    """The twelve features of one piece (``notes`` already restricted to the measured
    notes).  Undefined values (e.g. the histogram of an empty piece) are NaN."""
    n = len(notes)
    nan = math.nan
    pitch, time, dur = notes.pitch, notes.time, notes.duration
    pc = pitch % 12
    out: dict[str, np.ndarray] = {}

    out["pitch_count"] = np.float64(len(np.unique(pitch)))
    out["note_count"] = np.float64(n)
    out["pitch_range"] = np.float64(pitch.max() - pitch.min()) if n else np.float64(nan)
    out["avg_pitch_interval"] = (
        np.float64(np.abs(np.diff(pitch)).mean()) if n >= 2 else np.float64(nan)
    )
    onsets = np.unique(notes.start_s)
    out["avg_ioi"] = np.float64(np.diff(onsets).mean()) if len(onsets) >= 2 else np.float64(nan)

    # pitch-class histogram, weighted by duration (ticks)
    if n:
        hist = np.bincount(pc, weights=dur.astype(np.float64), minlength=12)
        if hist.sum() <= 0:  # only zero-length notes: count them instead
            hist = np.bincount(pc, minlength=12).astype(np.float64)
        out["pitch_class_histogram"] = hist / hist.sum()
    else:
        out["pitch_class_histogram"] = np.full(12, nan)

    out["pitch_class_transition_matrix"] = _normalize_matrix(
        pitch_class_transitions(notes, transition_threshold_s), transition_normalize
    )

    # note lengths
    if n:
        cls = note_length_classes(dur, notes.tpq)
        nlh = np.bincount(cls, minlength=12).astype(np.float64)
        out["note_length_histogram"] = nlh / nlh.sum()
        trans = np.bincount(cls[:-1] * 12 + cls[1:], minlength=144).reshape(12, 12).astype(np.float64)
    else:
        out["note_length_histogram"] = np.full(12, nan)
        trans = np.zeros((12, 12))
    out["note_length_transition_matrix"] = _normalize_matrix(trans, transition_normalize)

    # per-bar features over the first num_bars bars (bars from the time signatures)
    bounds = notes.bar_starts(num_bars)
    bar = np.searchsorted(bounds, time, side="right") - 1
    inside = (bar >= 0) & (bar < num_bars)
    out["note_count_per_bar"] = np.bincount(bar[inside], minlength=num_bars)[:num_bars].astype(np.float64)
    codes = np.unique(bar[inside] * 128 + pitch[inside])
    out["pitch_count_per_bar"] = np.bincount(codes // 128, minlength=num_bars)[:num_bars].astype(np.float64)
    if n:
        end = (time + dur).astype(np.float64)
        start = time.astype(np.float64)
        overlap = np.minimum(end[:, None], bounds[None, 1:]) - np.maximum(start[:, None], bounds[None, :-1])
        overlap = np.clip(overlap, 0.0, None)  # [n, num_bars] ticks of each note in each bar
        onehot = np.zeros((n, 12))
        onehot[np.arange(n), pc] = 1.0
        bar_hist = overlap.T @ onehot
        sums = bar_hist.sum(axis=1, keepdims=True)
        bar_hist = np.divide(bar_hist, sums, out=np.zeros_like(bar_hist), where=sums > 0)
    else:
        bar_hist = np.zeros((num_bars, 12))
    out["pitch_class_histogram_per_bar"] = bar_hist
    return out


class YangLerch(Metric):
    """Yang & Lerch (2020) features per piece (mgeval definitions) for the set comparison."""

    name = "yang_lerch"
    kind = "features"
    input = "notes"  # flat note arrays, built once per piece by core

    @dataclass
    class Config:
        num_bars: int = bounded(8, ge=1, help="bars measured by the per-bar features (shorter pieces count empty bars)")
        track: int = bounded(
            -1, ge=-1, help="-1: all non-drum tracks together; i >= 0: only track i (mgeval reads one track)"
        )
        transition_normalize: str = field(
            default="all",
            metadata={
                "choices": ("none", "row", "all"),
                "help": "transition matrices: raw counts, rows summing to 1, or the whole matrix summing to 1",
            },
        )
        transition_threshold: float = bounded(
            0.05, gt=0, help="seconds between a note's end and the next note's start (pretty_midi's time_thresh)"
        )

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "YangLerch":
        return cls(config)

    @property
    def feature_descriptions(self) -> dict[str, str]:
        return dict(FEATURES)

    def features(self, score: Any) -> dict[str, np.ndarray]:
        """Feature name -> value (a float or a fixed-shape array) of one ``symusic.Score``."""
        notes = score if isinstance(score, PieceNotes) else piece_notes(score)
        return yang_lerch_features(
            notes.pitched(self.config.track),
            num_bars=self.config.num_bars,
            transition_normalize=self.config.transition_normalize,
            transition_threshold_s=self.config.transition_threshold,
        )

    def __repr__(self) -> str:
        return f"YangLerch({self.config})"
