"""MusPy-style statistics of a piece (Dong et al., "MusPy: A Toolkit for Symbolic Music
Generation", ISMIR 2020; definitions from ``muspy/metrics/metrics.py``).

pitch-in-scale rate, polyphony, polyphony rate, empty-beat rate, groove consistency, pitch
entropy and pitch-class entropy.  MusPy loops over notes and builds a tick-level piano roll;
here the same quantities are computed from the note arrays with an event sweep (exact, and
independent of the file's ticks per quarter).  Deviations are listed in docs/metrics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicfw.core.metric import Metric
from musicfw.core.params import bounded
from musicfw.music.notes import PieceNotes, piece_notes

#: MusPy's default time resolution (muspy.DEFAULT_RESOLUTION), used for the groove grid
MUSPY_RESOLUTION = 24

_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)
#: 24 scale masks: rows 0..11 major on C..B, rows 12..23 minor on C..B
SCALES = np.stack([np.roll(_MAJOR, r) for r in range(12)] + [np.roll(_MINOR, r) for r in range(12)])
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

FEATURES: dict[str, str] = {
    "pitch_in_scale_rate": "fraction of notes in the scale (the best-fitting major/minor scale "
    "unless one is configured)",
    "polyphony": "mean number of pitches sounding when at least one sounds",
    "polyphony_rate": "fraction of the piece's time with more than `polyphony_threshold` pitches sounding",
    "empty_beat_rate": "fraction of beats (quarters) in which no note sounds",
    "groove_consistency": "1 - mean Hamming distance between the onset patterns of neighbouring bars",
    "pitch_entropy": "Shannon entropy (bits) of the pitch histogram",
    "pitch_class_entropy": "Shannon entropy (bits) of the pitch-class histogram",
}


def _entropy_bits(counts: np.ndarray) -> float:
    total = counts.sum()
    if total < 1:
        return math.nan
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def pitch_in_scale_rate(pitch: np.ndarray, root: int = -1, mode: str = "major") -> float:
    """Fraction of notes whose pitch class is in the scale; ``root=-1``: the best of the 24
    major and minor scales (MusPy's ``scale_consistency``)."""
    if len(pitch) == 0:
        return math.nan
    counts = np.bincount(pitch % 12, minlength=12)
    if root < 0:
        return float((SCALES @ counts).max() / len(pitch))
    row = root % 12 + (12 if mode == "minor" else 0)
    return float(SCALES[row] @ counts / len(pitch))


def sounding_segments(start: np.ndarray, end: np.ndarray, pitch: np.ndarray, length: int):
    """Cut [0, length) at every note start and end; return (segment lengths, number of
    distinct pitches sounding in each segment).  Equal to summing a boolean tick piano roll."""
    keep = end > start
    start, end, pitch = start[keep], end[keep], pitch[keep]
    bounds = np.unique(np.concatenate([[0, length], start, end]))
    seglen = np.diff(bounds)
    if len(start) == 0:
        return seglen, np.zeros(len(seglen), dtype=np.int64)
    s_idx = np.searchsorted(bounds, start)
    e_idx = np.searchsorted(bounds, end)
    used, p_idx = np.unique(pitch, return_inverse=True)
    delta = np.zeros((len(bounds), len(used)), dtype=np.int32)
    np.add.at(delta, (s_idx, p_idx), 1)
    np.add.at(delta, (e_idx, p_idx), -1)
    sounding = np.cumsum(delta, axis=0)[:-1] > 0  # [segments, pitches]
    return seglen, sounding.sum(axis=1)


def empty_beat_rate(start: np.ndarray, end: np.ndarray, length: int, tpq: int) -> float:
    """Fraction of beats (quarters) of [0, length) in which no note sounds."""
    if length < 1:
        return math.nan
    n_beats = -(-length // tpq)  # ceil
    first = start // tpq
    last = np.where(end > start, (end - 1) // tpq, first)
    delta = np.zeros(n_beats + 1, dtype=np.int64)
    np.add.at(delta, np.minimum(first, n_beats), 1)
    np.add.at(delta, np.minimum(last + 1, n_beats), -1)
    busy = np.cumsum(delta)[:n_beats] > 0
    return float(1.0 - busy.sum() / n_beats)


def groove_consistency(onsets: np.ndarray, length: int, measure: int) -> float:
    """MusPy's groove consistency with ``measure`` steps per bar, from onsets and the piece
    length in the same steps.  NaN for fewer than two bars."""
    if measure < 1:
        raise ValueError("measure resolution must be a positive integer")
    codes = np.unique(onsets)  # code = bar * measure + position
    # bars covering [0, length); MusPy's length // measure + 1 adds an empty bar to a piece
    # that ends on a barline (see docs/metrics.md)
    n_measures = -(-length // measure)
    if len(codes):
        n_measures = max(n_measures, int(codes[-1]) // measure + 1)
    if n_measures < 2:
        return math.nan
    bar = codes // measure
    size = np.bincount(bar, minlength=n_measures)
    # patterns G_i and G_{i+1} share a position iff code and code + measure are both present
    shared = np.isin(codes + measure, codes).sum()
    # sum_i |G_i xor G_{i+1}| = sum_i (|G_i| + |G_{i+1}|) - 2 |G_i and G_{i+1}|
    hamming = 2 * size.sum() - size[0] - size[-1] - 2 * shared
    return float(1.0 - hamming / (measure * (n_measures - 1)))


def muspy_statistics(
    notes: PieceNotes,
    scale_root: int = -1,
    scale_mode: str = "major",
    polyphony_threshold: int = 2,
    groove_resolution: int = MUSPY_RESOLUTION,
) -> dict[str, float]:
    """The seven statistics of one piece (all notes: drum notes are left out where MusPy
    leaves them out)."""
    length = notes.length  # over every track, drums included (as MusPy)
    tpq = notes.tpq
    pitched = notes.pitched()
    out: dict[str, float] = {}
    out["pitch_in_scale_rate"] = pitch_in_scale_rate(pitched.pitch, scale_root, scale_mode)
    out["pitch_entropy"] = _entropy_bits(np.bincount(pitched.pitch, minlength=128).astype(float))
    out["pitch_class_entropy"] = _entropy_bits(np.bincount(pitched.pitch % 12, minlength=12).astype(float))

    seglen, n_on = sounding_segments(pitched.time, pitched.end, pitched.pitch, length)
    active = seglen[n_on > 0].sum()
    out["polyphony"] = float((seglen * n_on).sum() / active) if active > 0 else math.nan
    out["polyphony_rate"] = float(seglen[n_on > polyphony_threshold].sum() / length) if length > 0 else math.nan

    out["empty_beat_rate"] = empty_beat_rate(notes.time, notes.end, length, tpq)

    # groove: onsets of every track on a grid of groove_resolution steps per quarter, bars
    # from the first time signature (MusPy assumes a constant time signature)
    bar_quarters = _first_bar_quarters(notes)
    measure = int(round(bar_quarters * groove_resolution))
    scale = groove_resolution / tpq
    grid_onsets = np.rint(notes.time * scale).astype(np.int64)
    grid_length = int(np.rint(length * scale))
    out["groove_consistency"] = groove_consistency(grid_onsets, grid_length, max(measure, 1))
    return out


def _first_bar_quarters(notes: PieceNotes) -> float:
    if len(notes.downbeats) >= 2:
        return float(notes.downbeats[1] - notes.downbeats[0]) / notes.tpq
    return notes.last_bar_ticks / notes.tpq


class MusPyStatistics(Metric):
    """MusPy-style statistics: scale, polyphony, empty beats, groove, pitch entropies."""

    name = "muspy"
    kind = "features"
    input = "notes"  # flat note arrays, built once per piece by core

    @dataclass
    class Config:
        scale_root: int = bounded(
            -1, ge=-1, le=11, help="pitch class of the scale for pitch_in_scale_rate (0 = C); -1: the best-fitting scale"
        )
        scale_mode: str = field(
            default="major", metadata={"choices": ("major", "minor"), "help": "mode of a fixed scale"}
        )
        polyphony_threshold: int = bounded(
            2, ge=0, help="polyphony_rate counts time with more than this many pitches (MusPy: 2)"
        )
        groove_resolution: int = bounded(
            MUSPY_RESOLUTION, ge=1, help="grid steps per quarter note for groove_consistency (MusPy's default 24)"
        )

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "MusPyStatistics":
        return cls(config)

    @property
    def feature_descriptions(self) -> dict[str, str]:
        return dict(FEATURES)

    def features(self, score: Any) -> dict[str, float]:
        notes = score if isinstance(score, PieceNotes) else piece_notes(score)
        c = self.config
        return muspy_statistics(notes, c.scale_root, c.scale_mode, c.polyphony_threshold, c.groove_resolution)

    def __repr__(self) -> str:
        return f"MusPyStatistics({self.config})"
