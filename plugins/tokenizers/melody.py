"""``melody``: MusicVAE's monophonic one-hot melody (Magenta's ``MelodyOneHotEncoding``).

One id per step of ``1/steps_per_quarter`` quarter note (16 steps per 4/4 bar by default)::

    0                 no event: the current note (or silence) continues
    1                 note-off: the current note ends at this step
    2 + (p - min_pitch)   note-on of pitch p (ends the previous note, if any)

With the full range 0..127 there are 130 classes.  Polyphony is reduced to the top note
(skyline): at every step the highest sounding pitch is the melody; a note starts when the
top pitch changes or the top pitch is struck again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from musicfw.core.params import bounded
from musicfw.music.limits import check_piece, check_tokens
from musicfw.core.tokenizer import Tokenizer

from musicfw.music.grid import to_steps
from musicfw.music.notes import piece_notes, pitch_name

from ._common import Coverage, build_score, check_ids, check_pitch_range

NO_EVENT = 0
NOTE_OFF = 1
NUM_SPECIAL = 2


@dataclass
class MelodyConfig:
    min_pitch: int = bounded(0, ge=0, le=127, help="lowest pitch (notes below are dropped)")
    max_pitch: int = bounded(127, ge=0, le=127, help="highest pitch, inclusive (notes above are dropped)")
    steps_per_quarter: int = bounded(4, ge=1, le=480, help="steps per quarter note (4 -> 16 per 4/4 bar)")
    velocity: int = bounded(80, ge=1, le=127, help="velocity of decoded notes (MusicVAE uses 80)")


class Melody(Tokenizer):
    """MusicVAE melody one-hot: no-event, note-off, note-on per pitch; top-note reduction."""

    name = "melody"
    Config = MelodyConfig

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        check_pitch_range("melody", c.min_pitch, c.max_pitch)
        self.n_pitches = c.max_pitch - c.min_pitch + 1
        #: steps in a 4/4 bar (MusicVAE's bars are 4/4)
        self.steps_per_bar = 4 * c.steps_per_quarter
        self._vocab = ["NoEvent", "NoteOff"] + [
            f"NoteOn_{p}({pitch_name(p)})" for p in range(c.min_pitch, c.max_pitch + 1)
        ]
        self.tpq = 480 if 480 % c.steps_per_quarter == 0 else c.steps_per_quarter * 120

    @property
    def vocab(self) -> list[str]:
        return self._vocab

    @property
    def pitch_range(self) -> tuple[int, int]:
        return (self.config.min_pitch, self.config.max_pitch)

    def note_on_id(self, pitch: int) -> int:
        return NUM_SPECIAL + int(pitch) - self.config.min_pitch

    def clock(self, batch_size: int) -> Any:
        """One token = one step of the grid, at the tempo decode writes."""
        from musicfw.core.clock import FrameClock

        return FrameClock.of(self, batch_size, self.steps_per_bar, self.config.steps_per_quarter)

    def encode(self, score: Any) -> np.ndarray:
        """Score -> one id per step.  The number of steps is checked against
        ``limits.max_tokens`` before anything of that size is allocated (``PieceTooLarge``)."""
        c = self.config
        score = check_piece(score)
        notes = piece_notes(score, drums="exclude", sort=False, seconds=False, check=False)
        keep = (notes.pitch >= c.min_pitch) & (notes.pitch <= c.max_pitch)
        notes = notes.select(keep)
        if len(notes) == 0:
            return np.zeros(0, dtype=np.int64)
        tpq, spq = int(score.ticks_per_quarter), c.steps_per_quarter
        start = np.maximum(to_steps(notes.time, tpq, spq), 0)
        end = np.maximum(to_steps(notes.time + notes.duration, tpq, spq), start + 1)
        key = notes.pitch - c.min_pitch
        P = self.n_pitches
        T = int(end.max())
        check_tokens(T, "steps", self.name)
        # +1 at each start, -1 at each end, summed along time (int32: 5 bytes per cell in all)
        diff = np.zeros((T + 1, P), dtype=np.int32)
        np.add.at(diff, (start, key), 1)
        np.add.at(diff, (end, key), -1)
        np.cumsum(diff, axis=0, out=diff)
        active = diff[:T] > 0
        del diff
        struck = np.zeros((T, P), dtype=bool)
        struck[start, key] = True
        sounding = active.any(axis=1)
        top = P - 1 - np.argmax(active[:, ::-1], axis=1)
        prev_sounding = np.concatenate([[False], sounding[:-1]])
        prev_top = np.concatenate([[-1], top[:-1]])
        new = sounding & (~prev_sounding | (top != prev_top) | struck[np.arange(T), top])
        out = np.full(T, NO_EVENT, dtype=np.int64)
        out[~sounding & prev_sounding] = NOTE_OFF
        out[new] = NUM_SPECIAL + top[new]
        return out

    def coverage(self, score: Any, tokens: np.ndarray | None = None) -> dict[str, Any]:
        """Notes the melody cannot represent: drums, pitches outside the range, and notes
        that are never the top note (counted as the notes left minus the melody's
        note-ons); see :meth:`musicfw.core.tokenizer.Tokenizer.coverage`."""
        c = self.config
        cov = Coverage(score)
        notes = cov.notes_in_range(c.min_pitch, c.max_pitch, drums="drum track (melody reads pitched tracks only)")
        tokens = self.encode(cov.score) if tokens is None else tokens
        onsets = self.count_notes(tokens)
        cov.lose(len(notes) - onsets, "not the top note (the melody keeps the highest sounding pitch on each step)")
        cov.alter(onsets - len(notes), "a note resumed after a higher one ended (a second note-on)")
        return cov.report()

    def _decode_arrays(self, tokens: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        ids = check_ids(tokens, self.vocab_size, self.name)
        n = len(ids)
        is_on = ids >= NUM_SPECIAL
        is_event = ids != NO_EVENT
        ev = np.flatnonzero(is_event)
        nxt_ev = np.concatenate([ev[1:], [n]])
        on_mask = is_on[ev]
        start = ev[on_mask]
        end = nxt_ev[on_mask]
        # a note-off is ignored unless the previous event is a note-on
        prev_on = np.concatenate([[False], on_mask[:-1]])
        invalid = int((~on_mask & ~prev_on).sum())
        return {"start": start, "end": end, "pitch": ids[start] - NUM_SPECIAL + self.config.min_pitch}, invalid

    def decode(self, tokens: np.ndarray) -> Any:
        q, _ = self._decode_arrays(tokens)
        unit = self.tpq // self.config.steps_per_quarter
        return build_score(
            self.tpq, q["start"] * unit, (q["end"] - q["start"]) * unit, q["pitch"], np.full(len(q["start"]), self.config.velocity)
        )

    def count_invalid(self, tokens: np.ndarray) -> int:
        """Note-offs decode ignores (no note sounding)."""
        return self._decode_arrays(tokens)[1]

    def count_notes(self, tokens: np.ndarray) -> int:
        ids = check_ids(tokens, self.vocab_size, self.name)
        return int((ids >= NUM_SPECIAL).sum())
