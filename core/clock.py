"""Clocks: how much music each generated sequence holds, for the bar and second limits.

A clock follows B sequences token by token (``update(ids)``) and keeps ``bars`` and
``seconds`` (float arrays ``[B]``) of the music so far; ``mark()`` sets the point the limits
count from (the end of a prompt).  A tokenizer gives its own with ``Tokenizer.clock(batch_size)``
(REMI counts its Bar tokens, MIDI-like its time shifts, frame tokenizers one grid step per
token); one that gives none gets :class:`DecodeClock`, which decodes the sequences every few
tokens (correct for any tokenizer, slower).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Clock:
    """Bars and seconds of new music per row; ``bars``/``seconds`` are float arrays [B]."""

    #: False: the tokenizer has no bars (``generate.max_bars`` is refused)
    has_bars: bool = True
    #: bars are opened by tokens (REMI's Bar): stop *before* the one too many; otherwise
    #: stop once ``max_bars`` bars are full
    bar_tokens: bool = False
    #: the number of sequences followed
    B: int
    #: bars and seconds of music so far, float arrays [B]
    bars: np.ndarray
    seconds: np.ndarray

    def __init__(self, batch_size: int):
        self.B = batch_size
        self.bars = np.zeros(batch_size)
        self.seconds = np.zeros(batch_size)
        self.mark()

    def update(self, x: np.ndarray) -> None:
        raise TypeError(f"{type(self).__name__} does not implement update")

    def would_open_bar(self, x: np.ndarray) -> np.ndarray:
        """Rows where token x starts a new bar (stop *before* it when the limit is reached)."""
        return np.zeros(self.B, dtype=bool)

    def mark(self) -> None:
        """The prompt ends here: limits count from this point."""
        self.bar0, self.sec0 = self.bars.copy(), self.seconds.copy()

    def new_bars(self) -> np.ndarray:
        return self.bars - self.bar0

    def new_seconds(self) -> np.ndarray:
        return self.seconds - self.sec0


class FrameClock(Clock):
    """One token = one step of a fixed grid (pianoroll, melody, drums)."""

    @classmethod
    def of(cls, tokenizer: Any, batch_size: int, steps_per_bar: int, steps_per_quarter: int) -> "FrameClock":
        """A grid of ``steps_per_quarter`` steps per quarter at the tempo ``tokenizer`` decodes with."""
        return cls(batch_size, int(steps_per_bar), 60.0 / (decoded_qpm(tokenizer) * steps_per_quarter))

    def __init__(self, batch_size: int, steps_per_bar: int, seconds_per_step: float):
        super().__init__(batch_size)
        self.steps_per_bar, self.sps = steps_per_bar, seconds_per_step
        self.steps = np.zeros(batch_size, dtype=np.int64)
        self.bars = np.zeros(batch_size)
        self.seconds = np.zeros(batch_size)
        self.mark()

    def update(self, x: np.ndarray) -> None:
        self.steps += 1
        self.bars = self.steps / self.steps_per_bar
        self.seconds = self.steps * self.sps


class DecodeClock(Clock):
    """Any other tokenizer: decode the sequences so far every ``every`` tokens (4/4 bars)."""

    def __init__(self, batch_size: int, tokenizer: Any, every: int = 16):
        super().__init__(batch_size)
        self.tokenizer, self.every = tokenizer, every
        self.history: list[np.ndarray] = []
        self.bars = np.zeros(batch_size)
        self.seconds = np.zeros(batch_size)
        self.mark()

    def update(self, x: np.ndarray) -> None:
        self.history.append(np.asarray(x).copy())
        if len(self.history) % self.every:
            return
        seqs = np.stack(self.history, axis=1)
        for b in range(self.B):
            score = self.tokenizer.decode(seqs[b])
            end = score.end()
            self.bars[b] = end / (4 * score.ticks_per_quarter) if end else 0.0
            self.seconds[b] = score.to("second").end() if end else 0.0


def decoded_qpm(tokenizer: Any) -> float:
    """The tempo decode writes (read from the decoding of an empty sequence), default 120."""
    empty = np.zeros((0, tokenizer.vocab_size) if tokenizer.kind == "multihot" else 0, dtype=np.int64)
    try:
        tempos = tokenizer.decode(empty).tempos
        return float(tempos[0].qpm) if len(tempos) else 120.0
    except Exception:
        return 120.0
