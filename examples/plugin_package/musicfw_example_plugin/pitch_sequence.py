"""A deliberately simple tokenizer: the pitches of all notes, in onset order."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from musicfw.core.tokenizer import Tokenizer


class PitchSequence(Tokenizer):
    """One token per note (its MIDI pitch), in onset order; rhythm is not kept."""

    name = "pitch_sequence"

    @dataclass
    class Config:
        note_ticks: int = field(default=240, metadata={"help": "length of each decoded note, in ticks"})
        ticks_per_quarter: int = 480

    @property
    def vocab(self) -> list[str]:
        return [f"Pitch_{p}" for p in range(128)]

    @property
    def pitch_range(self) -> tuple[int, int]:
        return (0, 127)

    def encode(self, score) -> np.ndarray:
        onsets, pitches = [], []
        for track in score.tracks:
            if track.is_drum:
                continue
            notes = track.notes.numpy()
            onsets.append(notes["time"])
            pitches.append(notes["pitch"])
        if not onsets:
            return np.zeros(0, dtype=np.int64)
        onset = np.concatenate(onsets)
        pitch = np.concatenate(pitches).astype(np.int64)
        order = np.lexsort((-pitch, onset))  # by onset, then highest pitch first
        return pitch[order]

    def decode(self, tokens) -> "symusic.Score":  # noqa: F821
        import symusic

        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        bad = tokens[(tokens < 0) | (tokens >= 128)]
        if bad.size:
            raise ValueError(f"pitch_sequence: id {int(bad[0])} is out of range 0..127")
        cfg = self.config
        score = symusic.Score(cfg.ticks_per_quarter)
        track = symusic.Track("pitch_sequence")
        n = len(tokens)
        track.notes = symusic.Note.from_numpy(
            time=np.arange(n, dtype=np.int32) * cfg.note_ticks,
            duration=np.full(n, cfg.note_ticks, dtype=np.int32),
            pitch=tokens.astype(np.int8),
            velocity=np.full(n, 80, dtype=np.int8),
        )
        score.tracks.append(track)
        return score
