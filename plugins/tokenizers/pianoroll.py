"""``pianoroll``: multi-hot frames (token kind ``multihot``), shape ``[T, K]``.

Frame ``t`` covers ``[t, t+1)`` steps of ``1/steps_per_quarter`` quarter note.  Key ``k`` is
pitch ``min_pitch + k``; with ``onsets`` the frame has a second half of K keys marking the
steps where a note starts (so a repeated note is not merged with the one before it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicfw.core.params import bounded
from musicfw.core.tokenizer import MULTIHOT, Tokenizer
from musicfw.music.grid import to_steps
from musicfw.music.limits import check_piece, check_tokens
from musicfw.music.notes import piece_notes, pitch_name

from ._common import Coverage, build_score, check_pitch_range, merged_tracks


@dataclass
class PianoRollConfig:
    steps_per_quarter: int = bounded(4, ge=1, le=480, help="frames per quarter note")
    min_pitch: int = bounded(21, ge=0, le=127, help="lowest key (default: the piano's A0)")
    max_pitch: int = bounded(108, ge=0, le=127, help="highest key, inclusive (default: C8)")
    onsets: bool = field(default=False, metadata={"help": "add K onset keys so repeated notes survive"})
    include_drums: bool = field(default=False, metadata={"help": "also roll drum tracks"})
    velocity: int = bounded(80, ge=1, le=127, help="velocity of decoded notes")


class PianoRoll(Tokenizer):
    """Multi-hot piano-roll frames (optionally with onset keys)."""

    name = "pianoroll"
    Config = PianoRollConfig
    kind = MULTIHOT

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        check_pitch_range("pianoroll", c.min_pitch, c.max_pitch)
        self.n_pitches = c.max_pitch - c.min_pitch + 1
        names = [pitch_name(p) for p in range(c.min_pitch, c.max_pitch + 1)]
        if c.onsets:
            names += [f"onset_{n}" for n in names]
        self._vocab = names
        self.tpq = 480 if 480 % c.steps_per_quarter == 0 else c.steps_per_quarter * 120

    @property
    def vocab(self) -> list[str]:
        """One name per key (column): pitch names, then ``onset_<pitch>`` with onsets."""
        return self._vocab

    @property
    def n_keys(self) -> int:
        return len(self._vocab)

    @property
    def pitch_range(self) -> tuple[int, int]:
        return (self.config.min_pitch, self.config.max_pitch)

    def quantize(self, score: Any) -> dict[str, np.ndarray]:
        """Notes on the step grid: ``start``, ``end`` (> start) in steps and ``pitch``."""
        c = self.config
        score = check_piece(score)
        notes = piece_notes(score, drums="include" if c.include_drums else "exclude", sort=False, seconds=False, check=False)
        tpq = int(score.ticks_per_quarter)
        spq = c.steps_per_quarter
        keep = (notes.pitch >= c.min_pitch) & (notes.pitch <= c.max_pitch)
        notes = notes.select(keep)
        start = np.maximum(to_steps(notes.time, tpq, spq), 0)
        end = to_steps(notes.time + notes.duration, tpq, spq)
        end = np.maximum(end, start + 1)
        return {"start": start, "end": end, "pitch": notes.pitch}

    def clock(self, batch_size: int) -> Any:
        """One token = one step of the grid, at the tempo decode writes."""
        from musicfw.core.clock import FrameClock

        return FrameClock.of(self, batch_size, 4 * self.config.steps_per_quarter, self.config.steps_per_quarter)

    def encode(self, score: Any) -> np.ndarray:
        """Score -> uint8 frames ``[T, K]``; T = the last note's end step, or the step of a
        text marker ``"end"`` when that is later (trailing silent frames survive, as in the
        piano-roll benchmarks).

        T is checked against ``limits.max_tokens`` before the frames are allocated (a piece
        beyond the limits raises ``PieceTooLarge``); the work arrays take 5 bytes per cell."""
        score = check_piece(score)
        q = self.quantize(score)
        K = self.n_pitches
        T = int(q["end"].max()) if len(q["end"]) else 0
        T = max(T, self._end_marker_step(score))
        check_tokens(T, "frames", self.name)
        key = q["pitch"] - self.config.min_pitch
        # +1 at each start, -1 at each end, summed along time (int32: a few notes per cell)
        diff = np.zeros((T + 1, K), dtype=np.int32)
        np.add.at(diff, (q["start"], key), 1)
        np.add.at(diff, (q["end"], key), -1)
        np.cumsum(diff, axis=0, out=diff)
        active = (diff[:T] > 0).view(np.uint8)
        del diff
        if not self.config.onsets:
            return active
        onset = np.zeros((T, K), dtype=np.uint8)
        onset[q["start"], key] = 1
        return np.concatenate([active, onset], axis=1)

    def coverage(self, score: Any, tokens: np.ndarray | None = None) -> dict[str, Any]:
        """Notes the frames cannot represent (drums without ``include_drums``, pitches outside
        the range, notes merged with a same-pitch note they overlap or touch) and notes they
        change (tracks merged); see :meth:`musicfw.core.tokenizer.Tokenizer.coverage`."""
        c = self.config
        cov = Coverage(score)
        drums = None if c.include_drums else "drum track (include_drums=false)"
        notes = cov.notes_in_range(c.min_pitch, c.max_pitch, drums=drums)
        tokens = self.encode(cov.score) if tokens is None else tokens
        why = (
            "same pitch struck twice within one frame"
            if c.onsets
            else "merged with an overlapping or touching note of the same pitch (onsets=true keeps repeated notes)"
        )
        cov.lose(len(notes) - self.count_notes(tokens), why)
        cov.alter(merged_tracks(cov.score, notes, c.include_drums), "tracks merged into one, programs lost")
        return cov.report()

    def _end_marker_step(self, score: Any) -> int:
        ends = [m.time for m in score.markers if m.text == "end"]
        if not ends:
            return 0
        return int(to_steps(max(ends), int(score.ticks_per_quarter), self.config.steps_per_quarter))

    def _frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        arr = np.asarray(frames)
        if arr.ndim != 2 or arr.shape[1] != self.n_keys:
            raise ValueError(
                f"pianoroll: expected frames of shape [T, {self.n_keys}] "
                f"({'pitches then onsets' if self.config.onsets else 'one column per pitch'}), got {arr.shape}"
            )
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError("pianoroll: frames contain NaN or infinite values")
        on = arr > 0.5
        K = self.n_pitches
        if self.config.onsets:
            # an onset key without its pitch key sounding still starts (a one-step) note
            onset = on[:, K:]
            return on[:, :K] | onset, onset
        return on, None

    def _decode_arrays(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        active, onset = self._frames(frames)
        T, K = active.shape
        # work per key along time: [K, T+1] with a silent column at the end
        a = np.zeros((K, T + 1), dtype=bool)
        a[:, :T] = active.T
        prev = np.zeros((K, T + 1), dtype=bool)
        prev[:, 1:] = a[:, :-1]
        starts = a & ~prev
        if onset is not None:
            starts[:, :T] |= onset.T & a[:, :T]
        # a note runs until the key goes silent or another note starts on it
        flat_start = np.flatnonzero(starts)
        breaks = np.flatnonzero(~a | starts)  # sorted; each row ends with a silent column
        nxt = breaks[np.searchsorted(breaks, flat_start, side="right")]
        key, start = np.divmod(flat_start, T + 1)
        end = nxt - key * (T + 1)
        order = np.lexsort((key, start))
        return {"start": start[order], "end": end[order], "pitch": key[order] + self.config.min_pitch}

    def decode(self, frames: np.ndarray) -> Any:
        q = self._decode_arrays(frames)
        unit = self.tpq // self.config.steps_per_quarter
        n = len(q["start"])
        return build_score(
            self.tpq,
            q["start"] * unit,
            (q["end"] - q["start"]) * unit,
            q["pitch"],
            np.full(n, self.config.velocity),
        )

    def count_notes(self, frames: np.ndarray) -> int:
        return int(len(self._decode_arrays(frames)["start"]))

    def token_names(self, tokens: np.ndarray) -> list[str]:
        active, onset = self._frames(tokens)
        names = self._vocab
        out = []
        for t in range(len(active)):
            keys = [names[k] + ("*" if onset is not None and onset[t, k] else "") for k in np.flatnonzero(active[t])]
            out.append("[" + " ".join(keys) + "]")
        return out
