"""``melody_chords``: a MusicVAE melody with the chord of every step (Magenta's
``OneHotMelodyConverter(chord_encoding=TriadChordOneHotEncoding())``).

The chord classes are Magenta's ``TriadChordOneHotEncoding`` (note_seq's
``chords_encoder_decoder``), the triad view of musicfw's one chord vocabulary
(:mod:`musicfw.music.chords`: :func:`~musicfw.music.chords.triad_class`,
:func:`~musicfw.music.chords.parse_triad`, :func:`~musicfw.music.chords.triad_name`): 49
classes::

    0         N.C. (no chord)
    1..12     major triads, C, C#, ..., B
    13..24    minor triads
    25..36    augmented triads
    37..48    diminished triads

Richer chords fold onto their triad as in note_seq (G7 -> G, Am7 -> Am, Bm7b5 -> Bdim,
Caug7 -> Caug); chords without a third (sus2, sus4, power chords) have no class, as in
Magenta, and are refused by name.

**Where the chords come from.**  The melody is the top note (skyline) of the *melody track*:
the track whose name starts with "soprano" or "melody", else the first pitched track.  The
chord of each step is recognised from the *other* pitched tracks (for the Bach chorales: alto,
tenor and bass, so the soprano's own notes never decide its chord) by the music library's
recogniser (:func:`musicfw.music.chords.recognise`) at this tokenizer's granularity and with
its scoring: every segment of ``chord_quarters`` quarters from tick 0 (a bar line in
musicfw's converted corpora), notes in ticks, ``method="triads"`` (+1 per chord tone, -1 per
other pitch class on the duration-weighted profile; seventh-chord templates that fold onto
their triad, and a small bonus when the lowest sounding note is the root, which breaks the
third-less ties of three-voice textures).  A segment with fewer than two pitch classes is
N.C.; so is every step of a one-track file.  Transposition augmentation moves melody and
accompaniment together, so the recognised chords follow.

**Ids.**  musicfw's data pipeline carries one id per step, so an id packs both:
``id = chord * n_melody + melody`` with ``melody`` the ``melody`` tokenizer's id (no-event,
note-off, note-on per pitch).  :meth:`split` and :meth:`join` convert.  ``decode`` writes the
melody (track "melody") and the chords as block triads in root position around C3 (track
"chords", velocity 60, consecutive equal chords merged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from musicfw.core.params import bounded
from musicfw.core.tokenizer import Tokenizer
from musicfw.music.chords import (
    CHORD_QUALITIES,
    NO_CHORD,
    N_TRIAD_CLASSES,
    QUALITY_NAMES,
    even_segments,
    recognise,
    triad_chord,
    triad_class,
    triad_name,
)
from musicfw.music.notes import piece_notes

from ._common import check_ids
from .melody import NUM_SPECIAL, Melody, MelodyConfig


# -- the tokenizer --------------------------------------------------------------------------------

MELODY_TRACK_PREFIXES = ("soprano", "melody")


@dataclass
class MelodyChordsConfig(MelodyConfig):
    chord_quarters: int = bounded(1, ge=1, le=256, help="length of a chord segment in quarters (1: a chord per beat)")


def melody_track_index(score: Any) -> int | None:
    """The melody track: the first named Soprano*/Melody*, else the first pitched track."""
    pitched = [i for i, t in enumerate(score.tracks) if not t.is_drum and len(t.notes)]
    for i in pitched:
        if score.tracks[i].name.strip().lower().startswith(MELODY_TRACK_PREFIXES):
            return i
    return pitched[0] if pitched else None


class MelodyChords(Tokenizer):
    """MusicVAE melody one-hot with a triad chord class per step (49 classes, Magenta's)."""

    name = "melody_chords"
    Config = MelodyChordsConfig
    #: chord classes per step (Magenta's TriadChordOneHotEncoding): read by MusicVAE
    chord_classes = N_TRIAD_CLASSES

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        self.melody = Melody(MelodyConfig(c.min_pitch, c.max_pitch, c.steps_per_quarter, c.velocity))
        self.n_melody = self.melody.vocab_size
        self.steps_per_bar = self.melody.steps_per_bar
        self.tpq = self.melody.tpq
        self._vocab = [f"{m}@{triad_name(ch)}" for ch in range(N_TRIAD_CLASSES) for m in self.melody.vocab]

    @property
    def vocab(self) -> list[str]:
        return self._vocab

    @property
    def pitch_range(self) -> tuple[int, int]:
        return self.melody.pitch_range

    def note_on_id(self, pitch: int) -> int:
        """The id of a note-on of ``pitch`` under N.C. (the lowest note-on id is ``note_on_id(min_pitch)``)."""
        return self.melody.note_on_id(pitch)

    def clock(self, batch_size: int) -> Any:
        from musicfw.core.clock import FrameClock

        return FrameClock.of(self, batch_size, self.steps_per_bar, self.config.steps_per_quarter)

    # -- ids ------------------------------------------------------------------------------
    def split(self, tokens: Any) -> tuple[np.ndarray, np.ndarray]:
        """ids -> (melody ids, chord classes)."""
        ids = check_ids(tokens, self.vocab_size, self.name)
        return ids % self.n_melody, ids // self.n_melody

    def join(self, melody: Any, chords: Any) -> np.ndarray:
        melody = check_ids(melody, self.n_melody, self.name)
        chords = check_ids(chords, N_TRIAD_CLASSES, self.name)
        if len(melody) != len(chords):
            raise ValueError(f"melody_chords.join: {len(melody)} melody steps but {len(chords)} chords")
        return chords * self.n_melody + melody

    # -- encode / decode ------------------------------------------------------------------
    def _parts(self, score: Any) -> tuple[Any, Any]:
        """(melody-only score, accompaniment-only score)."""
        idx = melody_track_index(score)
        melody, rest = score.copy(), score.copy()
        for i in reversed(range(len(score.tracks))):
            if i != idx:
                del melody.tracks[i]
            if i == idx or score.tracks[i].is_drum:
                del rest.tracks[i]
        return melody, rest

    def step_chords(self, score: Any, n_steps: int) -> np.ndarray:
        """The recognised chord class of each of the first ``n_steps`` steps of ``score``'s
        accompaniment (every track but the melody track)."""
        _, rest = self._parts(score)
        notes = piece_notes(rest, drums="exclude", sort=False, seconds=False, check=False)
        spq = self.config.steps_per_quarter
        seg_steps = self.config.chord_quarters * spq
        n_seg = -(-int(n_steps) // seg_steps)
        tpq = int(score.ticks_per_quarter)
        seg_start, seg_end = even_segments(self.config.chord_quarters * tpq, n_seg)
        end = notes.time + np.maximum(notes.duration, 1)
        per_seg = triad_class(recognise(notes.time, end, notes.pitch, seg_start, seg_end, method="triads"))
        return np.repeat(per_seg, seg_steps)[: int(n_steps)]

    def notes_and_chords(self, melody: Any, chords: Any) -> tuple[np.ndarray, ...]:
        """The arguments of :func:`musicfw.music.chords.chord_tone_ratio` for a melody
        (``melody`` ids) under its chord class per step: ``(onset steps, pitches, chord steps,
        chord indices)``, the melody cut to the chords' length (its onsets after the last
        chord are not counted)."""
        melody = np.asarray(melody, dtype=np.int64)
        chords = np.asarray(chords, dtype=np.int64)[: len(melody)]
        melody = melody[: len(chords)]
        onset = np.flatnonzero(melody >= NUM_SPECIAL)
        pitch = melody[onset] - NUM_SPECIAL + int(self.config.min_pitch)
        return onset, pitch, np.arange(len(chords), dtype=np.int64), triad_chord(chords)

    def encode(self, score: Any) -> np.ndarray:
        melody_score, _ = self._parts(score)
        melody = self.melody.encode(melody_score)
        if len(melody) == 0:
            return melody
        return self.step_chords(score, len(melody)) * self.n_melody + melody

    def decode(self, tokens: np.ndarray) -> Any:
        import symusic

        melody, chords = self.split(tokens)
        score = self.melody.decode(melody)
        if score.tracks:
            score.tracks[0].name = "melody"
        unit = self.tpq // self.config.steps_per_quarter
        if len(chords):
            change = np.flatnonzero(np.concatenate([[True], chords[1:] != chords[:-1]]))
            ends = np.concatenate([change[1:], [len(chords)]])
            times, durs, pitches = [], [], []
            for s, e in zip(change, ends):
                chord = triad_chord(int(chords[s]))
                if chord == NO_CHORD:
                    continue
                root = 48 + chord % 12
                for interval in CHORD_QUALITIES[QUALITY_NAMES[chord // 12]]:
                    times.append(s * unit)
                    durs.append((e - s) * unit)
                    pitches.append(root + interval)
            if pitches:
                track = symusic.Track("chords", 0, False)
                track.notes = symusic.Note.from_numpy(
                    np.asarray(times, dtype=np.int32), np.asarray(durs, dtype=np.int32),
                    np.asarray(pitches, dtype=np.int8), np.full(len(pitches), 60, dtype=np.int8),
                )
                score.tracks.append(track)
        return score

    def count_invalid(self, tokens: np.ndarray) -> int:
        return self.melody.count_invalid(self.split(tokens)[0])

    def count_notes(self, tokens: np.ndarray) -> int:
        """Melody notes (the chord track is a condition, not generated notes)."""
        return self.melody.count_notes(self.split(tokens)[0])

    def coverage(self, score: Any, tokens: np.ndarray | None = None) -> dict[str, Any]:
        """The melody track's coverage (see ``melody``); the other tracks' notes become chord
        classes, counted as not represented note by note."""
        melody_score, rest = self._parts(score)
        cov = self.melody.coverage(melody_score)
        accompaniment = int(rest.note_num())
        if accompaniment:
            cov = dict(cov)
            cov["notes"] = int(cov.get("notes", 0)) + accompaniment
            cov["dropped"] = int(cov.get("dropped", 0)) + accompaniment
            reasons = dict(cov.get("reasons") or {})
            reasons["accompaniment (kept as one triad class per chord segment)"] = accompaniment
            cov["reasons"] = reasons
            if "represented" in cov:
                cov["represented"] = cov["notes"] - cov["dropped"]
        return cov
