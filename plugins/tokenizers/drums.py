"""``drums``: MusicVAE's 9-class drum encoding (Magenta's ``MultiDrumOneHotEncoding`` with
the reduced ``DEFAULT_DRUM_TYPE_PITCHES`` mapping from General MIDI drum notes).

One id per step of ``1/steps_per_quarter`` quarter note: bit ``i`` of the id is set when a
drum of class ``i`` is struck at that step, so there are 2^9 = 512 ids (0 = silence).
Decoding plays each class's first (canonical) pitch for one step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicfw.core.params import bounded
from musicfw.music.limits import check_piece, check_tokens
from musicfw.core.tokenizer import Tokenizer

from musicfw.music.grid import to_steps
from musicfw.music.notes import DRUM_PROGRAM, piece_notes

from ._common import Coverage, build_score, check_ids

#: (short name, GM pitches; the first is the one decode plays), bit i = class i
DRUM_CLASSES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("kick", (36, 35)),
    ("snare", (38, 27, 28, 31, 32, 33, 34, 37, 39, 40, 56, 65, 66, 75, 85)),
    ("closed_hihat", (42, 44, 54, 68, 69, 70, 71, 73, 78, 80, 22)),
    ("open_hihat", (46, 67, 72, 74, 79, 81, 26)),
    ("low_tom", (45, 29, 41, 43, 61, 64, 84)),
    ("mid_tom", (48, 47, 60, 63, 77, 86, 87)),
    ("high_tom", (50, 30, 62, 76, 83)),
    ("crash", (49, 52, 55, 57, 58)),
    ("ride", (51, 53, 59, 82)),
)
N_CLASSES = len(DRUM_CLASSES)

#: GM pitch -> class index, -1 for pitches outside every class (ignored)
PITCH_TO_CLASS = np.full(128, -1, dtype=np.int64)
for _i, (_name, _pitches) in enumerate(DRUM_CLASSES):
    PITCH_TO_CLASS[list(_pitches)] = _i
CLASS_PITCH = np.array([p[0] for _, p in DRUM_CLASSES], dtype=np.int64)


@dataclass
class DrumsConfig:
    steps_per_quarter: int = bounded(4, ge=1, le=480, help="steps per quarter note (4 -> 16 per 4/4 bar)")
    drum_tracks_only: bool = field(default=True, metadata={"help": "read only drum tracks (else every track)"})
    velocity: int = bounded(80, ge=1, le=127, help="velocity of decoded hits")


class Drums(Tokenizer):
    """MusicVAE drums: 9 drum classes, one of 512 ids per step."""

    name = "drums"
    Config = DrumsConfig

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        self.steps_per_bar = 4 * c.steps_per_quarter
        names = []
        for i in range(2**N_CLASSES):
            hits = [DRUM_CLASSES[b][0] for b in range(N_CLASSES) if i >> b & 1]
            names.append("Drums_" + ("+".join(hits) if hits else "rest"))
        self._vocab = names
        self.tpq = 480 if 480 % c.steps_per_quarter == 0 else c.steps_per_quarter * 120

    @property
    def vocab(self) -> list[str]:
        return self._vocab

    #: drum pitches name instruments: transposition augmentation must leave them alone
    transposable = False

    @property
    def pitch_range(self) -> tuple[int, int]:
        """The GM drum pitches the class mapping reads (22..87); see ``transposable``."""
        mapped = np.flatnonzero(PITCH_TO_CLASS >= 0)
        return (int(mapped[0]), int(mapped[-1]))

    def clock(self, batch_size: int) -> Any:
        """One token = one step of the grid, at the tempo decode writes."""
        from musicfw.core.clock import FrameClock

        return FrameClock.of(self, batch_size, self.steps_per_bar, self.config.steps_per_quarter)

    def encode(self, score: Any) -> np.ndarray:
        c = self.config
        score = check_piece(score)
        notes = piece_notes(score, drums="only" if c.drum_tracks_only else "include", sort=False, seconds=False, check=False)
        cls = PITCH_TO_CLASS[notes.pitch]
        known = cls >= 0
        if not known.any():
            return np.zeros(0, dtype=np.int64)
        tpq, spq = int(score.ticks_per_quarter), c.steps_per_quarter
        step = np.maximum(to_steps(notes.time[known], tpq, spq), 0)
        pair = np.unique(step * N_CLASSES + cls[known])  # one hit per (step, class)
        T = int(step.max()) + 1
        check_tokens(T, "steps", self.name)
        return np.bincount(pair // N_CLASSES, weights=1 << (pair % N_CLASSES), minlength=T).astype(np.int64)

    def coverage(self, score: Any, tokens: np.ndarray | None = None) -> dict[str, Any]:
        """Notes the 9 drum classes cannot represent (pitched tracks with
        ``drum_tracks_only``, pitches outside every class, a class struck twice in one step)
        and notes they change (a pitch replaced by its class's canonical pitch); see
        :meth:`musicfw.core.tokenizer.Tokenizer.coverage`."""
        c = self.config
        cov = Coverage(score)
        notes = piece_notes(cov.score, drums="include", sort=False, seconds=False, check=False)
        if c.drum_tracks_only:
            notes = cov.drop(notes, notes.program != DRUM_PROGRAM, "not a drum track (drum_tracks_only=true)")
        notes = cov.drop(notes, PITCH_TO_CLASS[notes.pitch] < 0, "pitch outside the 9 drum classes")
        tokens = self.encode(cov.score) if tokens is None else tokens
        cov.lose(len(notes) - self.count_notes(tokens), "same drum class struck twice within one step")
        cov.alter(int((CLASS_PITCH[PITCH_TO_CLASS[notes.pitch]] != notes.pitch).sum()), "played as its class's canonical pitch")
        return cov.report()

    def decode(self, tokens: np.ndarray) -> Any:
        ids = check_ids(tokens, self.vocab_size, self.name)
        bits = (ids[:, None] >> np.arange(N_CLASSES)) & 1
        step, cls = np.nonzero(bits)
        unit = self.tpq // self.config.steps_per_quarter
        n = len(step)
        return build_score(
            self.tpq,
            step * unit,
            np.full(n, unit),
            CLASS_PITCH[cls],
            np.full(n, self.config.velocity),
            np.full(n, DRUM_PROGRAM),
        )

    def count_invalid(self, tokens: np.ndarray) -> int:
        """Every in-range id is a valid step: always 0."""
        check_ids(tokens, self.vocab_size, self.name)
        return 0

    def count_notes(self, tokens: np.ndarray) -> int:
        ids = check_ids(tokens, self.vocab_size, self.name)
        return int(((ids[:, None] >> np.arange(N_CLASSES)) & 1).sum())
