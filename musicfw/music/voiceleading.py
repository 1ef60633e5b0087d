"""Parallel fifths and octaves between voices (numpy only).

The textbook rule of four-part writing, counted the way a harmonisation is checked against the
real chorales (Coconet, Huang et al. 2017, reports the same kind of count):

* the sonorities of a piece are the onsets of any voice (sorted, unique); at each, every voice
  sounds the pitch of its note that holds it (the latest-starting note whose span covers it),
  or rests;
* between two consecutive sonorities, a pair of voices moves in *parallel* when both sound at
  both, both change pitch and in the same direction (similar motion), and the interval between
  them is the same perfect interval class at both: a fifth (7 semitones, mod 12: also a twelfth)
  or an octave (0 mod 12: unisons and compound octaves);
* a voice that holds its note while the other moves makes no parallel, so neither does contrary
  motion into an octave (antiparallel octaves are not counted).

:func:`parallel_motion` counts over every pair of voices and returns the count of pair
transitions it examined (both voices sounding at both sonorities), so rates compare pieces of
different lengths.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def sounding(onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The pitch each voice sounds at ``times`` (-1: rest); notes sorted by onset."""
    onset = np.asarray(onset, dtype=np.int64)
    if not len(onset):
        return np.full(len(times), -1, dtype=np.int64)
    order = np.argsort(onset, kind="stable")
    onset, end, pitch = onset[order], (onset + np.asarray(duration, dtype=np.int64))[order], np.asarray(pitch, dtype=np.int64)[order]
    i = np.searchsorted(onset, times, side="right") - 1
    ok = (i >= 0) & (times < end[np.maximum(i, 0)])
    return np.where(ok, pitch[np.maximum(i, 0)], -1)


def parallel_motion(voices: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, int]:
    """``{"fifths", "octaves", "transitions"}`` over every pair of ``voices`` (each
    ``(onset, duration, pitch)`` arrays, any one time unit).  See the module docstring."""
    onsets = [np.asarray(v[0], dtype=np.int64) for v in voices]
    times = np.unique(np.concatenate(onsets)) if onsets and sum(len(o) for o in onsets) else np.zeros(0, np.int64)
    out = {"fifths": 0, "octaves": 0, "transitions": 0}
    if len(times) < 2:
        return out
    P = np.stack([sounding(o, d, p, times) for o, d, p in voices])  # [voices, times]
    for a in range(len(voices)):
        for b in range(a + 1, len(voices)):
            x, y = P[a], P[b]
            both = (x >= 0) & (y >= 0)
            valid = both[:-1] & both[1:]
            dx, dy = np.diff(x), np.diff(y)
            similar = valid & (dx * dy > 0)
            iv = np.abs(x - y) % 12
            same = iv[:-1] == iv[1:]
            out["fifths"] += int((similar & same & (iv[:-1] == 7)).sum())
            out["octaves"] += int((similar & same & (iv[:-1] == 0)).sum())
            out["transitions"] += int(valid.sum())
    return out


def score_parallels(score: Any) -> dict[str, int]:
    """:func:`parallel_motion` over the non-drum tracks of a ``symusic.Score`` (one voice per track)."""
    voices = []
    for t in score.tracks:
        if t.is_drum or not len(t.notes):
            continue
        a = t.notes.numpy()
        voices.append((a["time"], a["duration"], a["pitch"]))
    return parallel_motion(voices)
