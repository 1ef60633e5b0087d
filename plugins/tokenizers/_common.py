"""Vectorized helpers shared by the built-in tokenizers (numpy only; cheap to import).

Nothing here loops over notes in Python: notes travel as the music library's one note-array
type, :class:`musicfw.music.notes.PieceNotes` (structure-of-arrays taken from symusic's
``track.notes.numpy()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from musicfw.music.notes import DRUM_PROGRAM, PieceNotes, piece_notes

if TYPE_CHECKING:  # pragma: no cover
    import symusic


def check_ids(tokens: np.ndarray, vocab_size: int, name: str) -> np.ndarray:
    """Validate a categorical sequence; return it as a 1-D int64 array.

    An id outside ``[0, vocab_size)`` is a ValueError naming the id and its position.
    """
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        arr = arr.reshape(-1) if arr.ndim == 0 else arr
        if arr.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D sequence of token ids, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))[0])
            raise ValueError(f"{name}: token at position {bad} is not an integer id: {arr[bad]!r}")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: token ids must be integers, got dtype {arr.dtype}")
    ids = arr.astype(np.int64)
    bad = np.flatnonzero((ids < 0) | (ids >= vocab_size))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}: token id {int(ids[i])} at position {i} is out of range "
            f"(vocabulary has ids 0..{vocab_size - 1})" + (f"; {bad.size} ids out of range in all" if bad.size > 1 else "")
        )
    return ids


def ffill(values: np.ndarray, mask: np.ndarray, default) -> np.ndarray:
    """Forward fill: out[i] = values[j] for the last j <= i with mask[j], else ``default``."""
    n = len(mask)
    if n == 0:
        return np.zeros(0, dtype=np.asarray(values).dtype if np.ndim(values) else np.int64)
    idx = np.where(mask, np.arange(1, n + 1), 0)
    np.maximum.accumulate(idx, out=idx)
    padded = np.concatenate([[default], np.broadcast_to(values, (n,))]).astype(np.result_type(values, np.asarray(default)))
    return padded[idx]


# -- velocity bins ----------------------------------------------------------------------


def velocity_bins(n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin_of[0..127], value_of_bin[n_bins]) for ``n_bins`` equal-width bins over 1..127.

    Velocity 0 (a note-off in MIDI) shares the first bin.  Every bin's value is a velocity
    inside the bin (its rounded centre), so re-encoding a decoded note gives the same bin.
    """
    if not 1 <= n_bins <= 127:
        raise ValueError(f"velocity bins must be in 1..127, got {n_bins}")
    v = np.arange(128)
    bin_of = ((np.maximum(v, 1) - 1) * n_bins) // 127
    lo = np.array([np.flatnonzero(bin_of[1:] == b)[0] + 1 for b in range(n_bins)])
    hi = np.array([np.flatnonzero(bin_of[1:] == b)[-1] + 1 for b in range(n_bins)])
    value_of = (lo + hi + 1) // 2
    return bin_of.astype(np.int64), value_of.astype(np.int64)


def tempo_bins(n_bins: int, lo: float, hi: float) -> np.ndarray:
    """``n_bins`` tempo values (quarter notes per minute), geometric between ``lo`` and ``hi``."""
    if n_bins < 1:
        raise ValueError(f"tempo bins must be >= 1, got {n_bins}")
    if n_bins == 1:
        return np.array([round((lo * hi) ** 0.5, 2)])
    return np.round(np.geomspace(lo, hi, n_bins), 2)


def nearest_bin(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (in log space) for each value; centres sorted ascending."""
    values = np.asarray(values, dtype=np.float64)
    if len(centres) == 1:
        return np.zeros(len(values), dtype=np.int64)
    logc = np.log(centres)
    edges = (logc[1:] + logc[:-1]) / 2
    return np.searchsorted(edges, np.log(np.maximum(values, 1e-9))).astype(np.int64)


# -- building scores ------------------------------------------------------------------------


def build_score(
    tpq: int,
    time: np.ndarray,
    duration: np.ndarray,
    pitch: np.ndarray,
    velocity: np.ndarray,
    program: np.ndarray | None = None,
    tempo_times: Sequence[int] | np.ndarray = (0,),
    tempo_qpm: Sequence[float] | np.ndarray = (120.0,),
    time_signatures: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    track_name: str = "",
) -> "symusic.Score":
    """A tick Score with one track per program (DRUM_PROGRAM -> a drum track).

    Notes are sorted by (time, pitch) inside each track; one Python iteration per track,
    none per note.
    """
    from symusic import Note, Score, Tempo, TimeSignature, Track

    score = Score(int(tpq))
    time = np.asarray(time, dtype=np.int64)
    duration = np.asarray(duration, dtype=np.int64)
    pitch = np.asarray(pitch, dtype=np.int64)
    velocity = np.asarray(velocity, dtype=np.int64)
    if program is None:
        program = np.zeros(len(pitch), dtype=np.int64)
    program = np.asarray(program, dtype=np.int64)
    order = np.lexsort((duration, pitch, time, program))
    time, duration, pitch, velocity, program = (a[order] for a in (time, duration, pitch, velocity, program))
    progs, starts = np.unique(program, return_index=True)
    bounds = list(starts) + [len(program)]
    for k, prog in enumerate(progs):
        sl = slice(bounds[k], bounds[k + 1])
        is_drum = int(prog) == DRUM_PROGRAM
        track = Track(track_name or ("Drums" if is_drum else ""), program=0 if is_drum else int(prog), is_drum=is_drum)
        track.notes = Note.from_numpy(
            time[sl].astype(np.int32),
            duration[sl].astype(np.int32),
            pitch[sl].astype(np.int8),
            velocity[sl].astype(np.int8),
        )
        score.tracks.append(track)
    tt = np.asarray(tempo_times, dtype=np.int64)
    qpm = np.asarray(tempo_qpm, dtype=np.float64)
    if len(tt):
        score.tempos = Tempo.from_numpy(tt.astype(np.int32), np.round(6e7 / qpm).astype(np.int32))
    if time_signatures is not None and len(time_signatures[0]):
        ts_t, ts_n, ts_d = time_signatures
        score.time_signatures = TimeSignature.from_numpy(
            np.asarray(ts_t, dtype=np.int32), np.asarray(ts_n, dtype=np.uint8), np.asarray(ts_d, dtype=np.uint8)
        )
    return score


def next_in_group(group: np.ndarray) -> np.ndarray:
    """For rows sorted by group: index of the next row of the same group, or -1."""
    n = len(group)
    nxt = np.arange(1, n + 1)
    same = np.zeros(n, dtype=bool)
    if n > 1:
        same[:-1] = group[1:] == group[:-1]
    return np.where(same, nxt, -1)


def check_pitch_range(name: str, min_pitch: int, max_pitch: int) -> None:
    """A tokenizer's pitch range must not be empty (each end's 0..127 is a declared bound)."""
    if min_pitch > max_pitch:
        from musicfw.core.errors import ConfigError

        raise ConfigError(f"{name}: min_pitch ({min_pitch}) must be <= max_pitch ({max_pitch}).")


# -- coverage: which notes an encoding represents -----------------------------------------


class Coverage:
    """Builds a tokenizer's :meth:`~musicfw.core.tokenizer.Tokenizer.coverage` report.

    Start from every note of the score; each :meth:`drop` removes the notes of a mask with a
    reason; :meth:`report` checks that the reasons add up.
    """

    def __init__(self, score: "symusic.Score"):
        from musicfw.music.limits import check_piece

        self.total = int(score.note_num())
        self.score = check_piece(score)  # the piece as encode sees it (cut when asked)
        self.reasons: dict[str, int] = {}
        self.altered: dict[str, int] = {}
        cut = self.total - int(self.score.note_num())
        if cut:
            self.reasons["cut off to fit the limits (limits.on_exceed=cut)"] = cut

    def notes_in_range(self, min_pitch: int, max_pitch: int, drums: str | None) -> PieceNotes:
        """The score's notes a pitched tokenizer reads: drum-track notes dropped with the
        reason ``drums`` (None: drums kept), then pitches outside ``min_pitch..max_pitch``."""
        notes = piece_notes(self.score, drums="include", sort=False, seconds=False, check=False)
        if drums is not None:
            notes = self.drop(notes, notes.program == DRUM_PROGRAM, drums)
        return self.drop(
            notes,
            (notes.pitch < min_pitch) | (notes.pitch > max_pitch),
            f"pitch outside {min_pitch}..{max_pitch} (min_pitch, max_pitch)",
        )

    def drop(self, notes: PieceNotes, mask: np.ndarray, reason: str) -> PieceNotes:
        k = int(np.count_nonzero(mask))
        if k:
            self.reasons[reason] = self.reasons.get(reason, 0) + k
        return notes.select(~mask)

    def lose(self, k: int, reason: str) -> None:
        if k > 0:
            self.reasons[reason] = self.reasons.get(reason, 0) + int(k)

    def alter(self, k: int, what: str) -> None:
        if k > 0:
            self.altered[what] = self.altered.get(what, 0) + int(k)

    def report(self) -> dict:
        dropped = int(sum(self.reasons.values()))
        return {
            "notes": self.total,
            "represented": self.total - dropped,
            "dropped": dropped,
            "reasons": dict(self.reasons),
            "altered": dict(self.altered),
        }


def merged_tracks(score: "symusic.Score", notes: PieceNotes, drums_kept: bool) -> int:
    """Kept notes whose track or program a one-track decoding loses: all of them when they
    come from two or more tracks, else those whose program is not 0 (piano)."""
    tracks = sum(1 for t in score.tracks if len(t.notes) and (drums_kept or not t.is_drum))
    if tracks >= 2:
        return len(notes)
    return int(np.count_nonzero(notes.program != 0))
