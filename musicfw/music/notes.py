"""Flat note arrays of a piece: musicfw's one note-array type.

A :class:`PieceNotes` holds the notes of a ``symusic.Score`` as numpy arrays, concatenated
over tracks (sorted by (onset, pitch), or in track order), in ticks and (on request) in
seconds, with each note's track, program and a flag for drum notes.  It is the input every
piece-level metric reads (built once per piece by the engine) and what every built-in
tokenizer quantizes.  Building it costs a few numpy calls per track (symusic hands out its
note arrays with ``track.notes.numpy()``); every user then works on whole arrays, never per
note.

Also here: pitch-class names and :func:`pitch_name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from musicfw.music.limits import check_piece

#: fallback bar when a piece has no time signature (4/4), in quarters
DEFAULT_BAR_QUARTERS = 4.0
#: the ``program`` of a drum note (0..127 are General MIDI programs)
DRUM_PROGRAM = 128
#: pitch-class names with sharps (REMI's Chord tokens, the piano-roll's key names)
PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
#: pitch-class names as lead sheets spell them (Magenta's chord names)
LEAD_SHEET_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def pitch_name(pitch: int) -> str:
    """``60 -> "C4"`` (scientific pitch notation, sharps)."""
    return f"{PITCH_CLASS_NAMES[pitch % 12]}{pitch // 12 - 1}"


@dataclass
class PieceNotes:
    """The notes of one piece (all of them, or the tracks :func:`piece_notes` was asked for)."""

    tpq: int
    time: np.ndarray  # int64 ticks
    duration: np.ndarray  # int64 ticks
    pitch: np.ndarray  # int64 (0..127)
    velocity: np.ndarray  # int64 (0..127)
    track: np.ndarray  # int64: index of the track in the score
    is_drum: np.ndarray  # bool
    start_s: np.ndarray | None  # float64 seconds (None when built with seconds=False)
    end_s: np.ndarray | None  # float64 seconds (None when built with seconds=False)
    downbeats: np.ndarray  # int64 ticks of the bar starts (from the time signatures)
    last_bar_ticks: float  # length of a bar under the last time signature
    program: np.ndarray  # int64: the track's General MIDI program, DRUM_PROGRAM for drum notes

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
        """The same piece with only the notes ``mask`` picks (a bool mask or indices)."""
        return PieceNotes(
            self.tpq,
            self.time[mask],
            self.duration[mask],
            self.pitch[mask],
            self.velocity[mask],
            self.track[mask],
            self.is_drum[mask],
            None if self.start_s is None else self.start_s[mask],
            None if self.end_s is None else self.end_s[mask],
            self.downbeats,
            self.last_bar_ticks,
            self.program[mask],
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


_DRUMS = ("include", "exclude", "only")


def piece_notes(
    score: Any, drums: str = "include", sort: bool = True, seconds: bool = True, check: bool = True
) -> PieceNotes:
    """Flatten a ``symusic.Score`` into :class:`PieceNotes`.

    ``drums``: keep every track (``"include"``), the pitched tracks (``"exclude"``) or the
    drum tracks (``"only"``).  ``sort``: notes sorted by (onset, pitch), ties in track order;
    otherwise in track order (a track's notes as the score holds them; tokenizers that walk
    tracks rely on it).  ``seconds``: also the onsets and ends in seconds (through the
    score's tempo map); without it ``start_s``/``end_s`` are None.

    The piece is first checked against :mod:`musicfw.music.limits` (``PieceTooLarge`` beyond
    them, ``MalformedPiece`` for 0 ticks per quarter or a zero time-signature denominator):
    the bar grid below is sized from the piece's length.  ``check=False`` skips that for a
    score its caller has just checked (a tokenizer's encode)."""
    if drums not in _DRUMS:
        raise ValueError(f"piece_notes: drums must be one of {', '.join(_DRUMS)}, got {drums!r}")
    score = _as_ticks(score)
    if check:
        score = check_piece(score)
    secs_score = score.to("second") if seconds else None
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("time", "duration", "pitch", "velocity")}
    secs: list[tuple[np.ndarray, np.ndarray]] = []
    track_ids: list[np.ndarray] = []
    drum_flags: list[np.ndarray] = []
    programs: list[np.ndarray] = []
    for i, track in enumerate(score.tracks):
        if (drums == "exclude" and track.is_drum) or (drums == "only" and not track.is_drum):
            continue
        n = len(track.notes)
        if n == 0:
            continue
        arrays = track.notes.numpy()
        cols["time"].append(arrays["time"].astype(np.int64))
        cols["duration"].append(arrays["duration"].astype(np.int64))
        # symusic hands out int8: widen before any arithmetic (and mask the sign bit)
        cols["pitch"].append(arrays["pitch"].astype(np.int64) & 0x7F)
        cols["velocity"].append(arrays["velocity"].astype(np.int64) & 0x7F)
        if secs_score is not None:
            arrays_s = secs_score.tracks[i].notes.numpy()
            secs.append((arrays_s["time"].astype(np.float64), arrays_s["duration"].astype(np.float64)))
        track_ids.append(np.full(n, i, dtype=np.int64))
        drum_flags.append(np.full(n, bool(track.is_drum)))
        programs.append(np.full(n, DRUM_PROGRAM if track.is_drum else int(track.program), dtype=np.int64))
    start_s = end_s = None
    if track_ids:
        time = np.concatenate(cols["time"])
        duration = np.concatenate(cols["duration"])
        pitch = np.concatenate(cols["pitch"])
        velocity = np.concatenate(cols["velocity"])
        track_arr = np.concatenate(track_ids)
        is_drum = np.concatenate(drum_flags)
        program = np.concatenate(programs)
        if secs_score is not None:
            start_s = np.concatenate([s for s, _ in secs])
            end_s = start_s + np.concatenate([d for _, d in secs])
        if sort:
            order = np.lexsort((pitch, time))
            time, duration, pitch, velocity = time[order], duration[order], pitch[order], velocity[order]
            track_arr, is_drum, program = track_arr[order], is_drum[order], program[order]
            if start_s is not None:
                start_s, end_s = start_s[order], end_s[order]
    else:
        time = duration = pitch = velocity = track_arr = program = np.zeros(0, dtype=np.int64)
        is_drum = np.zeros(0, dtype=bool)
        if secs_score is not None:
            start_s = end_s = np.zeros(0, dtype=np.float64)
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
        downbeats, bar_quarters * tpq, program,
    )
