"""Flat note arrays of a piece: the one input every piece-level metric reads.

A :class:`PieceNotes` holds all notes of a ``symusic.Score`` as numpy arrays, concatenated
over tracks and sorted by (onset, pitch), in ticks and in seconds, with a flag for drum
notes.  Building it costs a few numpy calls per track (symusic hands out its note arrays
with ``track.notes.numpy()``); every metric then works on whole arrays, never per note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from musicfw.music.limits import check_piece

#: fallback bar when a piece has no time signature (4/4), in quarters
DEFAULT_BAR_QUARTERS = 4.0


@dataclass
class PieceNotes:
    """All notes of one piece, sorted by (onset, pitch)."""

    tpq: int
    time: np.ndarray  # int64 ticks
    duration: np.ndarray  # int64 ticks
    pitch: np.ndarray  # int64
    velocity: np.ndarray  # int64
    track: np.ndarray  # int64: index of the track in the score
    is_drum: np.ndarray  # bool
    start_s: np.ndarray  # float64 seconds
    end_s: np.ndarray  # float64 seconds
    downbeats: np.ndarray  # int64 ticks of the bar starts (from the time signatures)
    last_bar_ticks: float  # length of a bar under the last time signature

    @property
    def end(self) -> np.ndarray:
        return self.time + self.duration

    @property
    def length(self) -> int:
        """End of the last note in ticks (over every track, drums included), 0 if empty."""
        return int(self.end.max()) if len(self.time) else 0

    def __len__(self) -> int:
        return len(self.time)

    def select(self, mask: np.ndarray) -> "PieceNotes":
        """The same piece with only the notes where ``mask`` is True."""
        return PieceNotes(
            self.tpq,
            self.time[mask],
            self.duration[mask],
            self.pitch[mask],
            self.velocity[mask],
            self.track[mask],
            self.is_drum[mask],
            self.start_s[mask],
            self.end_s[mask],
            self.downbeats,
            self.last_bar_ticks,
        )

    def pitched(self, track: int = -1) -> "PieceNotes":
        """Non-drum notes: of every track (``track=-1``) or of the track with that index."""
        mask = ~self.is_drum
        if track >= 0:
            mask &= self.track == track
        return self.select(mask)

    def bar_starts(self, n_bars: int) -> np.ndarray:
        """The first ``n_bars + 1`` bar boundaries in ticks (extended past the piece's end
        with the last time signature's bar length)."""
        starts = self.downbeats[: n_bars + 1].astype(np.float64)
        missing = n_bars + 1 - len(starts)
        if missing > 0:
            last = starts[-1] if len(starts) else 0.0
            first_new = 1 if len(starts) else 0
            extra = last + self.last_bar_ticks * np.arange(first_new, first_new + missing)
            starts = np.concatenate([starts, extra])
        return starts


def _as_ticks(score: Any) -> Any:
    ttype = str(getattr(score, "ttype", "Tick"))
    if ttype.endswith("Tick"):
        return score
    return score.to("tick")


def piece_notes(score: Any) -> PieceNotes:
    """Flatten a ``symusic.Score`` into :class:`PieceNotes` (tick and second times).

    The piece is first checked against :mod:`musicfw.music.limits` (``PieceTooLarge`` beyond
    them, ``MalformedPiece`` for 0 ticks per quarter or a zero time-signature denominator):
    the bar grid below is sized from the piece's length."""
    score = check_piece(_as_ticks(score))
    seconds = score.to("second")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("time", "duration", "pitch", "velocity")}
    secs: list[tuple[np.ndarray, np.ndarray]] = []
    track_ids: list[np.ndarray] = []
    drums: list[np.ndarray] = []
    for i, (track, track_s) in enumerate(zip(score.tracks, seconds.tracks)):
        n = len(track.notes)
        if n == 0:
            continue
        arrays = track.notes.numpy()
        for key in cols:
            cols[key].append(arrays[key].astype(np.int64))
        arrays_s = track_s.notes.numpy()
        secs.append((arrays_s["time"].astype(np.float64), arrays_s["duration"].astype(np.float64)))
        track_ids.append(np.full(n, i, dtype=np.int64))
        drums.append(np.full(n, bool(track.is_drum)))
    if track_ids:
        time = np.concatenate(cols["time"])
        duration = np.concatenate(cols["duration"])
        pitch = np.concatenate(cols["pitch"])
        velocity = np.concatenate(cols["velocity"])
        start_s = np.concatenate([s for s, _ in secs])
        end_s = start_s + np.concatenate([d for _, d in secs])
        track_arr = np.concatenate(track_ids)
        is_drum = np.concatenate(drums)
        order = np.lexsort((pitch, time))
        time, duration, pitch, velocity = time[order], duration[order], pitch[order], velocity[order]
        start_s, end_s, track_arr, is_drum = start_s[order], end_s[order], track_arr[order], is_drum[order]
    else:
        time = duration = pitch = velocity = track_arr = np.zeros(0, dtype=np.int64)
        start_s = end_s = np.zeros(0, dtype=np.float64)
        is_drum = np.zeros(0, dtype=bool)
    tpq = int(score.tpq)
    downbeats = np.asarray(score.get_downbeats(), dtype=np.int64)
    sigs = score.time_signatures
    if len(sigs):
        last = sigs[-1]
        bar_quarters = last.numerator * 4.0 / last.denominator
    else:
        bar_quarters = DEFAULT_BAR_QUARTERS
    return PieceNotes(
        tpq, time, duration, pitch, velocity, track_arr, is_drum, start_s, end_s,
        downbeats, bar_quarters * tpq,
    )
