"""``melody_chords``: a MusicVAE melody with the chord of every step (Magenta's
``OneHotMelodyConverter(chord_encoding=TriadChordOneHotEncoding())``).

The chord vocabulary is Magenta's ``TriadChordOneHotEncoding`` (note_seq's
``chords_encoder_decoder``): 49 classes::

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
tenor and bass, so the soprano's own notes never decide its chord): every segment of
``chord_quarters`` quarters (from tick 0, which is a bar line in musicfw's converted corpora)
gets a duration-weighted pitch-class profile, scored against chord templates the way the REMI
tokenizer's recogniser does (+1 per chord tone, -1 per other pitch class; plus seventh-chord
templates that fold onto their triad, and a small bonus when the lowest sounding note is the
root, which breaks the third-less ties of three-voice textures).  A segment with fewer than two
pitch classes is N.C.; so is every step of a one-track file.  Transposition augmentation moves
melody and accompaniment together, so the recognised chords follow.

**Ids.**  musicfw's data pipeline carries one id per step, so an id packs both:
``id = chord * n_melody + melody`` with ``melody`` the ``melody`` tokenizer's id (no-event,
note-off, note-on per pitch).  :meth:`split` and :meth:`join` convert.  ``decode`` writes the
melody (track "melody") and the chords as block triads in root position around C3 (track
"chords", velocity 60, consecutive equal chords merged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from musicfw.core.params import bounded
from musicfw.core.tokenizer import Tokenizer

from ._common import check_ids, collect_notes
from .chords import CHORD_SYNTAX, parse_symbol
from .melody import NUM_SPECIAL, Melody, MelodyConfig

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
#: Magenta's TriadChordOneHotEncoding: qualities in this order, 12 roots each, after N.C.
TRIADS = {"": (0, 4, 7), "m": (0, 3, 7), "aug": (0, 4, 8), "dim": (0, 3, 6)}
QUALITIES = tuple(TRIADS)
NO_CHORD = 0
N_CHORDS = 1 + 12 * len(TRIADS)  # 49
NO_CHORD_NAMES = ("N.C.", "NC", "N")

# the accepted chord names are musicfw's one syntax (plugins/tokenizers/chords.py)
_TRIAD_CLASS = {"maj": "", "min": "m", "aug": "aug", "dim": "dim"}


def chord_name(index: int) -> str:
    """The readable name of a chord class (``0`` -> ``N.C.``, ``1`` -> ``C``, ``22`` -> ``Am``)."""
    index = int(index)
    if index == NO_CHORD:
        return "N.C."
    if not 0 < index < N_CHORDS:
        raise ValueError(f"chord class {index} is outside 0..{N_CHORDS - 1}")
    q, root = divmod(index - 1, 12)
    return PITCH_CLASSES[root] + QUALITIES[q]


def chord_pitch_classes(index: int) -> tuple[int, ...]:
    """The pitch classes of a chord class's triad (empty for N.C.)."""
    index = int(index)
    if index == NO_CHORD:
        return ()
    q, root = divmod(index - 1, 12)
    return tuple((root + i) % 12 for i in TRIADS[QUALITIES[q]])


def parse_chord(name: str) -> int:
    """A chord name -> its class (0..48), like note_seq's ``TriadChordOneHotEncoding`` (any
    extension reduces to its triad); ``ValueError`` (with the accepted syntax) for a name it
    does not know.  The names are read by :func:`.chords.parse_symbol`, the parser REMI's
    ``--chords`` uses too."""
    try:
        parsed = parse_symbol(name)
    except ValueError as exc:
        raise ValueError(f"{exc}: expected {CHORD_SYNTAX}") from None
    if parsed is None:
        return NO_CHORD
    root, quality, _dominant = parsed
    return 1 + 12 * QUALITIES.index(_TRIAD_CLASS[quality]) + root


def parse_progression(text: str) -> list[int]:
    """``"C G Am F"`` (one chord per bar, separated by spaces) -> chord classes."""
    names = str(text).split()
    if not names:
        raise ValueError("the chord progression is empty: give chord names separated by spaces, e.g. \"C G Am F\"")
    return [parse_chord(n) for n in names]


def progression_steps(chords: Sequence[int], steps_per_bar: int, length: int) -> np.ndarray:
    """One chord class per step: bar ``i`` holds ``chords[i]``, the progression repeated
    when ``length`` needs more bars than it has."""
    per_bar = np.asarray(list(chords), dtype=np.int64)
    if len(per_bar) == 0:
        raise ValueError("no chords")
    bars = np.arange(int(length)) // int(steps_per_bar)
    return per_bar[bars % len(per_bar)]


# -- the recogniser ------------------------------------------------------------------------------

#: templates scored against a segment's pitch-class profile: (intervals, triad quality)
_TEMPLATES = (
    ((0, 4, 7), ""), ((0, 3, 7), "m"), ((0, 4, 8), "aug"), ((0, 3, 6), "dim"),
    ((0, 4, 7, 10), ""), ((0, 3, 7, 10), "m"), ((0, 3, 6, 10), "dim"), ((0, 3, 6, 9), "dim"),
)
#: added to a template's score when the segment's lowest note is its root (tie breaker)
BASS_BONUS = 0.5


def _template_matrix() -> tuple[np.ndarray, np.ndarray]:
    mat = -np.ones((12, 12 * len(_TEMPLATES)))
    klass = np.zeros(12 * len(_TEMPLATES), dtype=np.int64)
    for t, (intervals, quality) in enumerate(_TEMPLATES):
        for root in range(12):
            mat[[(root + i) % 12 for i in intervals], t * 12 + root] = 1.0
            klass[t * 12 + root] = 1 + 12 * QUALITIES.index(quality) + root
    return mat, klass


def recognise_chords(
    time: np.ndarray, duration: np.ndarray, pitch: np.ndarray, segment: int, n_segments: int
) -> np.ndarray:
    """Chord class of each of ``n_segments`` segments of ``segment`` ticks from tick 0, from
    the notes given (start ticks, durations, pitches); see the module docstring."""
    out = np.zeros(int(n_segments), dtype=np.int64)
    if n_segments <= 0 or len(pitch) == 0:
        return out
    time = np.asarray(time, dtype=np.int64)
    end = time + np.maximum(np.asarray(duration, dtype=np.int64), 1)
    pitch = np.asarray(pitch, dtype=np.int64)
    first = np.clip(time // segment, 0, n_segments)
    last = np.clip((end - 1) // segment, 0, n_segments - 1)
    keep = first < n_segments
    time, end, pitch, first, last = time[keep], end[keep], pitch[keep], first[keep], last[keep]
    k = last - first + 1
    seg = np.repeat(first, k) + (np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k))
    seg_start = seg * segment
    overlap = np.minimum(np.repeat(end, k), seg_start + segment) - np.maximum(np.repeat(time, k), seg_start)
    pcs = np.repeat(pitch % 12, k)
    chroma = np.bincount(seg * 12 + pcs, weights=overlap, minlength=n_segments * 12).reshape(n_segments, 12)
    # lowest sounding pitch per segment
    low = np.full(n_segments, 1 << 30, dtype=np.int64)
    np.minimum.at(low, seg, np.repeat(pitch, k))
    mat, klass = _template_matrix()
    norm = chroma / np.maximum(chroma.sum(axis=1, keepdims=True), 1e-9)
    scores = norm @ mat
    roots = np.tile(np.arange(12), len(_TEMPLATES))
    has_low = low < (1 << 30)
    scores += BASS_BONUS / 3.0 * (has_low[:, None] & (roots[None, :] == (low % 12)[:, None]))
    out = klass[np.argmax(scores, axis=1)]
    out[(chroma > 0).sum(axis=1) < 2] = NO_CHORD
    return out


# -- the tokenizer --------------------------------------------------------------------------------

MELODY_TRACK_PREFIXES = ("soprano", "melody")


@dataclass
class MelodyChordsConfig(MelodyConfig):
    chord_quarters: int = bounded(1, ge=1, help="length of a chord segment in quarters (1: a chord per beat)")


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
    chord_classes = N_CHORDS

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        self.melody = Melody(MelodyConfig(c.min_pitch, c.max_pitch, c.steps_per_quarter, c.velocity))
        self.n_melody = self.melody.vocab_size
        self.steps_per_bar = self.melody.steps_per_bar
        self.tpq = self.melody.tpq
        self._vocab = [f"{m}@{chord_name(ch)}" for ch in range(N_CHORDS) for m in self.melody.vocab]

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
        chords = check_ids(chords, N_CHORDS, self.name)
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
        notes = collect_notes(rest, drums="exclude")
        spq = self.config.steps_per_quarter
        seg_steps = self.config.chord_quarters * spq
        n_seg = -(-int(n_steps) // seg_steps)
        tpq = int(score.ticks_per_quarter)
        seg = self.config.chord_quarters * tpq
        per_seg = recognise_chords(notes.time, notes.duration, notes.pitch, seg, n_seg)
        return np.repeat(per_seg, seg_steps)[: int(n_steps)]

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
                pcs = chord_pitch_classes(int(chords[s]))
                if not pcs:
                    continue
                root = 48 + pcs[0]
                for interval in TRIADS[QUALITIES[(int(chords[s]) - 1) // 12]]:
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


def chord_tone_ratio(melody_ids: np.ndarray, chords: np.ndarray, min_pitch: int) -> tuple[int, int]:
    """(onsets whose pitch class is a tone of that step's chord, onsets on steps with a chord)
    for one melody (``melody`` tokenizer ids) and its chord class per step.  Steps under N.C.
    are not counted.  A small helper of this module; the ``chords`` metric plugin may replace it."""
    melody_ids = np.asarray(melody_ids, dtype=np.int64)
    chords = np.asarray(chords, dtype=np.int64)[: len(melody_ids)]
    onset = (melody_ids[: len(chords)] >= NUM_SPECIAL) & (chords != NO_CHORD)
    if not onset.any():
        return 0, 0
    pcs = (melody_ids[: len(chords)][onset] - NUM_SPECIAL + int(min_pitch)) % 12
    table = np.zeros((N_CHORDS, 12), dtype=bool)
    for c in range(1, N_CHORDS):
        table[c, list(chord_pitch_classes(c))] = True
    hits = table[chords[onset], pcs]
    return int(hits.sum()), int(onset.sum())
