"""``piano_roll_benchmark``: JSB Chorales, Nottingham, MuseData and Piano-midi.de, with the
fixed train/valid/test splits of Boulanger-Lewandowski, Bengio & Vincent (ICML 2012).

The sequences ship inside the package (``data/<name>.json.gz``: ``{"train": [...], ...}``, each
sequence a list of frames, each frame the list of sounding MIDI pitches 21..108).  Each
sequence becomes a ``symusic.Score`` where every frame lasts one quarter note, a key held over
consecutive frames being one note, so the ``pianoroll`` tokenizer with ``steps_per_quarter=1``
recovers the frames exactly.  A marker at the end keeps trailing silent frames in the
score's length.  :meth:`PianoRollBenchmark.frames` gives the raw ``[T, 88]`` 0/1 arrays.

The benchmark's metric leaves the first frame of each sequence unscored: that is what
``score_first_frame: false`` (the default) does to validation and test masks.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

from musicfw.core.dataset import SPLITS, MusicDataset, Piece
from musicfw.core.params import choice

BENCHMARKS = ("jsb_chorales", "nottingham", "musedata", "piano_midi_de")
LOWEST_PITCH = 21
N_KEYS = 88
TPQ = 480


@lru_cache(maxsize=4)
def _raw(name: str) -> dict:
    data = resources.files(__package__).joinpath("data", f"{name}.json.gz").read_bytes()
    return json.loads(gzip.decompress(data))


def to_frames(sequence: list[list[int]]) -> np.ndarray:
    """One sequence of pitch lists -> uint8 frames ``[T, 88]`` (key k = pitch 21 + k)."""
    out = np.zeros((len(sequence), N_KEYS), dtype=np.uint8)
    lengths = np.fromiter((len(f) for f in sequence), dtype=np.int64, count=len(sequence))
    if lengths.sum():
        rows = np.repeat(np.arange(len(sequence)), lengths)
        cols = np.fromiter((p for f in sequence for p in f), dtype=np.int64) - LOWEST_PITCH
        ok = (cols >= 0) & (cols < N_KEYS)
        out[rows[ok], cols[ok]] = 1
    return out


def frames_to_score(frames: np.ndarray, tpq: int = TPQ, qpm: float = 120.0, velocity: int = 80):
    """``[T, 88]`` frames -> a one-track Score; one frame = one quarter note."""
    import symusic

    frames = np.asarray(frames, dtype=np.int8) > 0
    n_frames = frames.shape[0]
    padded = np.zeros((n_frames + 2, N_KEYS), dtype=np.int8)
    padded[1:-1] = frames
    change = np.diff(padded, axis=0).T  # [K, T+1], key-major so on/off pairs line up
    key_on, t_on = np.nonzero(change == 1)
    _, t_off = np.nonzero(change == -1)
    order = np.lexsort((key_on, t_on))
    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, qpm))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track("piano", 0, False)
    track.notes = type(track.notes).from_numpy(
        (t_on[order] * tpq).astype(np.int32),
        ((t_off - t_on)[order] * tpq).astype(np.int32),
        (key_on[order] + LOWEST_PITCH).astype(np.int8),
        np.full(len(order), velocity, dtype=np.int8),
    )
    score.tracks.append(track)
    score.markers.append(symusic.TextMeta(n_frames * tpq, "end"))
    return score


@dataclass
class PianoRollBenchmarkConfig:
    dataset: str = choice("jsb_chorales", BENCHMARKS, "which of the four benchmarks")
    score_first_frame: bool = field(
        default=False,
        metadata={"help": "score the first frame of each valid/test sequence (the published "
                  "numbers do not)"},
    )


class PianoRollBenchmark(MusicDataset):
    """The four classic polyphonic piano-roll benchmarks with their published splits."""

    name = "piano_roll_benchmark"
    Config = PianoRollBenchmarkConfig
    fixed_splits = True

    def __init__(self, config: PianoRollBenchmarkConfig | None = None):
        super().__init__(config)
        self.score_first_position = bool(self.config.score_first_frame)

    def frames(self, split: str) -> list[np.ndarray]:
        """The raw sequences of one split as uint8 arrays ``[T, 88]`` (pitch = 21 + column)."""
        if split not in SPLITS:
            from musicfw.core.errors import ConfigError

            raise ConfigError(f"Unknown split {split!r}. Splits: {', '.join(SPLITS)}.")
        return [to_frames(seq) for seq in _raw(self.config.dataset)[split]]

    def collect(self, progress: bool = True) -> tuple[list[Piece], list[tuple[str, str]]]:
        name = self.config.dataset
        pieces = []
        for split in SPLITS:
            for i, frames in enumerate(self.frames(split)):
                piece_id = f"{name}/{split}/{i:04d}"
                pieces.append(
                    Piece(id=piece_id, score=frames_to_score(frames), split=split, title=piece_id)
                )
        return pieces, []
