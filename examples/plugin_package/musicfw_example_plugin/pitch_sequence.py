"""A deliberately simple tokenizer: the pitches of all notes, in onset order, in bars.

It shows every optional part of the tokenizer contract: a grammar (constrained decoding: every
sampled sequence decodes without a dropped token), a clock (``generate.max_bars`` and
``max_seconds`` count its Bar tokens and notes) and ``count_invalid``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musicfw.core.clock import Clock
from musicfw.core.constraints import Grammar
from musicfw.core.params import bounded
from musicfw.core.tokenizer import Tokenizer

BAR = 128  # the id after the 128 pitches


class PitchSequence(Tokenizer):
    """One token per note (its MIDI pitch) in onset order, and a Bar token before each bar;
    decoded notes are evenly spaced, ``notes_per_bar`` at most per bar."""

    name = "pitch_sequence"

    @dataclass
    class Config:
        note_ticks: int = bounded(240, ge=1, help="length of each decoded note, in ticks")
        notes_per_bar: int = bounded(8, ge=1, help="notes a bar holds (more are dropped)")
        ticks_per_quarter: int = 480

    @property
    def vocab(self) -> list[str]:
        return [f"Pitch_{p}" for p in range(128)] + ["Bar"]

    @property
    def pitch_range(self) -> tuple[int, int]:
        return (0, 127)

    @property
    def bar_ticks(self) -> int:
        return self.config.note_ticks * self.config.notes_per_bar

    def encode(self, score) -> np.ndarray:
        onsets, pitches = [], []
        for track in score.tracks:
            if track.is_drum:
                continue
            notes = track.notes.numpy()
            onsets.append(notes["time"])
            pitches.append(notes["pitch"])
        if not onsets or not sum(len(o) for o in onsets):
            return np.zeros(0, dtype=np.int64)
        onset = np.concatenate(onsets).astype(np.int64)
        pitch = np.concatenate(pitches).astype(np.int64)
        order = np.lexsort((-pitch, onset))  # by onset, then highest pitch first
        onset, pitch = onset[order], pitch[order]
        # bars of 4 quarters of the source; at most notes_per_bar notes kept per bar
        bar = onset // (4 * int(score.ticks_per_quarter))
        bar -= bar[0]
        rank = np.arange(len(bar)) - np.searchsorted(bar, bar)  # index of each note in its bar
        keep = rank < self.config.notes_per_bar
        bar, pitch = bar[keep], pitch[keep]
        out = []
        for b in range(int(bar[-1]) + 1):
            out.append(BAR)
            out.extend(pitch[bar == b].tolist())
        return np.asarray(out, dtype=np.int64)

    def decode(self, tokens) -> "symusic.Score":  # noqa: F821
        import symusic

        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        bad = tokens[(tokens < 0) | (tokens > BAR)]
        if bad.size:
            raise ValueError(f"pitch_sequence: id {int(bad[0])} is out of range 0..{BAR}")
        times, pitches = _note_times(tokens, self.config.notes_per_bar)
        cfg = self.config
        score = symusic.Score(cfg.ticks_per_quarter)
        track = symusic.Track("pitch_sequence")
        track.notes = symusic.Note.from_numpy(
            time=(times * cfg.note_ticks).astype(np.int32),
            duration=np.full(len(times), cfg.note_ticks, dtype=np.int32),
            pitch=pitches.astype(np.int8),
            velocity=np.full(len(times), 80, dtype=np.int8),
        )
        score.tracks.append(track)
        return score

    def count_invalid(self, tokens) -> int:
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        return int(np.sum(tokens != BAR)) - len(_note_times(tokens, self.config.notes_per_bar)[0])

    def grammar(self, batch_size: int) -> "BarGrammar":
        return BarGrammar(self, batch_size)

    def clock(self, batch_size: int) -> "BarClock":
        return BarClock(self, batch_size)


def _note_times(tokens: np.ndarray, per_bar: int) -> tuple[np.ndarray, np.ndarray]:
    """(note slot, pitch) of every note decode keeps: pitches before the first Bar and beyond a
    bar's capacity are dropped."""
    is_bar = tokens == BAR
    bar = np.cumsum(is_bar) - 1  # bar index of each token (-1 before the first Bar)
    note = ~is_bar & (bar >= 0)
    # index of each note within its bar
    starts = np.flatnonzero(is_bar)
    slot = np.arange(len(tokens)) - starts[np.maximum(bar, 0)] - 1 if len(starts) else np.zeros(len(tokens), int)
    keep = note & (slot < per_bar)
    return (bar * per_bar + slot)[keep], tokens[keep]


class BarGrammar(Grammar):
    """A sequence starts with Bar; a bar holds at most ``notes_per_bar`` pitches."""

    name = "pitch_sequence"

    def __init__(self, tokenizer: PitchSequence, batch_size: int):
        super().__init__(tokenizer, batch_size)
        self.per_bar = tokenizer.config.notes_per_bar
        self.in_bar = np.full(batch_size, -1, dtype=np.int64)  # notes in the open bar; -1: none open

    def update(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        self.in_bar = np.where(ids == BAR, 0, np.where(self.in_bar >= 0, self.in_bar + 1, -1))

    def mask(self, remaining=None) -> np.ndarray:
        allowed = np.ones((self.batch_size, self.vocab_size), dtype=bool)
        full = (self.in_bar < 0) | (self.in_bar >= self.per_bar)
        allowed[full, :BAR] = False
        return allowed


class BarClock(Clock):
    """Bars are Bar tokens (stop before the one too many); notes advance a fixed grid at 120 qpm."""

    bar_tokens = True

    def __init__(self, tokenizer: PitchSequence, batch_size: int):
        super().__init__(batch_size)
        cfg = tokenizer.config
        self.note_s = cfg.note_ticks / cfg.ticks_per_quarter * 0.5  # 120 qpm: 0.5 s per quarter
        self.per_bar = cfg.notes_per_bar
        self.bars = np.zeros(batch_size)
        self.seconds = np.zeros(batch_size)
        self.in_bar = np.zeros(batch_size)
        self.mark()

    def would_open_bar(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x) == BAR

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x)
        bar = x == BAR
        self.bars = self.bars + bar
        self.in_bar = np.where(bar, 0, np.minimum(self.in_bar + 1, self.per_bar))
        self.seconds = np.maximum(self.bars - 1, 0) * self.per_bar * self.note_s + self.in_bar * self.note_s
