"""musicfw's one chord vocabulary, its one chord recogniser and the one chord-tone ratio
(numpy only).

**The vocabulary.**  A chord is an index ``quality * 12 + root`` (root: pitch class 0 = C ..
11 = B; quality in :data:`CHORD_QUALITIES` order) or :data:`NO_CHORD` (``N.C.``): 61 chords.
This is the ``token_values`` numbering of REMI's Chord tokens, and every chord musicfw reads
or writes goes through it: REMI's tokens, the ``Chord_<name>`` markers REMI's decode writes,
the ``chord_tone_ratio`` metric, and the ``melody_chords`` tokenizer, whose 49 classes
(Magenta's ``TriadChordOneHotEncoding``) are a *view* of it: :func:`triad_class` folds a
chord onto its triad class (``dom7`` onto its major triad), :func:`triad_chord` goes back.

Names a person types (``--chords "C G Am F"``, ``generate.chords``, and MusicVAE's
``sample``/``interpolate --chords``) are read by one parser, :func:`parse_symbol`: a root letter
``A``-``G`` with an optional ``#`` or ``b``, a triad quality (nothing or ``maj``/``M`` major,
``m``/``min``/``-`` minor, ``dim``/``o`` diminished, ``aug``/``+`` augmented), then optional
extensions (``7``, ``maj7``, ``9``, ``13``, ``6``, ``m7b5``, ...) and a bass after ``/``
(ignored).  The vocabulary keeps five qualities:

=================  =========  ===============
symbol             quality    intervals
=================  =========  ===============
C, Cmaj7, C6, C/E  maj        0 4 7
Cm, Cm7, Cmin      min        0 3 7
Cdim, Co, Cm7b5    dim        0 3 6
Caug, C+           aug        0 4 8
C7, C9, C13, Cdom7 dom7       0 4 7 10
=================  =========  ===============

REMI's own spelling ``C:maj``, ``F#:min``, ``Bb:dom7`` is accepted too, and ``N.C.`` (or ``N``)
is "no chord".  Sus and power chords (no third) are refused.  Two spellings of a chord:
:func:`chord_name` (``"A:min"``, REMI's token names) and :func:`triad_name` (``"Am"``, lead-sheet
style, the ``melody_chords`` vocabulary's names).

A progression is a string or a list.  In a string, bars are separated by ``|`` when there is
one (``"C G | Am | F"``: C and G share the first bar); otherwise every chord is one bar
(``"C G Am F"``).  In a list, each item is a bar (``["C", "Am F"]``).  Several chords in a bar
divide it evenly (``C G`` in a 4/4 bar: C on beat 1, G on beat 3).

**The recogniser** (:func:`recognise`): the notes overlapping each segment of time give it a
duration-weighted pitch-class profile, which is scored against chord templates; a segment
with fewer than two pitch classes is N.C.  *Which segments* (the granularity) and *how the
profile is scored* (``method``) are parameters, because the two tokenizers that write chords
were built with different ones and their tokens must not change:

* REMI: segments of ``chord_quarters`` from each bar line (a bar's last segment may be
  shorter), notes on REMI's position grid, ``method="cosine"`` (or ``"count"``):
  :func:`chords_in_bars`, and :func:`recognise_score` for a whole score (what the
  ``chord_tone_ratio`` metric uses, no tokenizer needed);
* ``melody_chords``: segments of ``chord_quarters`` from tick 0 (:func:`even_segments`),
  notes in ticks, ``method="triads"``.

The methods, on a segment's profile ``x`` (duration per pitch class):

* ``cosine``: ``x . t / sqrt(|t|)`` over the five qualities' templates ``t`` (a four-note chord
  needs its fourth note to win), plus ``BASS_BONUS = 0.05`` times the segment's total weight
  for the chords whose root is the segment's lowest note (a tie breaker; 0.02-0.05 agree best
  with music21 on the chorales, benchmarks/chords.py);
* ``count``: +1 per unit of a chord tone, -1 per other (REMI's first recogniser; favours dom7
  whenever a passing seventh sounds);
* ``triads``: the share of ``x`` on chord tones minus the share off them, over the four triads
  and four seventh chords (dom7, min7, half-diminished, diminished seventh, each folding onto
  its triad), plus ``TRIADS_BASS_BONUS / 3`` when the lowest note is the root (breaks the
  third-less ties of three-voice textures).

Ties go to the first template in each method's order.

**The chord-tone ratio** (:func:`chord_tone_ratio`): the share of note onsets whose pitch
class belongs to the chord sounding at the onset; the one definition for every model that is
given chords (docs/metrics.md).
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np

from musicfw.core.errors import ConfigError
from musicfw.music.grid import bar_grid, bar_lengths, time_signature_table, to_steps
from musicfw.music.limits import check_piece
from musicfw.music.notes import LEAD_SHEET_NAMES, PITCH_CLASS_NAMES, piece_notes

#: chord qualities of the REMI paper: intervals above the root
CHORD_QUALITIES = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
    "aug": (0, 4, 8),
    "dom7": (0, 4, 7, 10),
}
QUALITY_NAMES = tuple(CHORD_QUALITIES)
NO_CHORD = len(CHORD_QUALITIES) * 12  # index of Chord_N.C.
N_CHORDS = NO_CHORD + 1
#: REMI's decode writes each Chord token as a MIDI marker with this prefix ("Chord_A:min")
CHORD_MARKER_PREFIX = "Chord_"

_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
_NAME = re.compile(r"^([A-Ga-g])([#b♯♭]?):?(.*)$")
# suffix right after the root -> triad quality; checked in order (the longest first)
_TRIAD_SUFFIXES = (
    ("m7b5", "dim"), ("min7b5", "dim"), ("ø7", "dim"), ("ø", "dim"), ("dim7", "dim"), ("dim", "dim"),
    ("o7", "dim"), ("o", "dim"), ("°7", "dim"), ("°", "dim"),
    ("aug7", "aug"), ("aug", "aug"), ("+7", "aug"), ("+", "aug"),
    ("mmaj7", "min"), ("m(maj7)", "min"), ("minmaj7", "min"), ("major", "maj"), ("maj", "maj"), ("ma", "maj"),
    ("minor", "min"), ("min", "min"), ("mi", "min"), ("-", "min"), ("m", "min"), ("M", "maj"),
    ("dom", "maj"), ("add", "maj"),
)
_THIRDLESS = re.compile(r"sus|^5$|^\(?no3")
# what may follow the triad: extensions and alterations (7, maj7, 9, 11, 13, 6, b5, #9, add9, ...)
_EXTENSIONS = re.compile(r"^(maj|M|add)?[0-9]*([#b♯♭]?[0-9]+|\([^)]*\)|add[0-9]+|maj[0-9]+)*$")

CHORD_SYNTAX = (
    "a chord is a root C, C#, Db, D, ..., B followed by a quality: nothing or maj (major), "
    "m, min or - (minor), dim or o (diminished), aug or + (augmented), optionally with "
    "extensions (7, maj7, 9, 13, 6, m7b5, ...) and a bass note after '/' (ignored); REMI's "
    "C:maj / F#:min / G:dom7 spelling also works, and N.C. means no chord; sus and power "
    "chords have no third and no class"
)
ALLOWED_HELP = (
    CHORD_SYNTAX + ' (e.g. "C G Am F", or "C G | Am F" for two chords in one bar)'
)


def parse_symbol(name: str) -> tuple[int, str, bool] | None:
    """The one chord-symbol parser of musicfw: ``"G7"`` -> ``(7, "maj", True)`` (root pitch
    class, triad quality ``maj``/``min``/``dim``/``aug``, whether a dominant seventh sits on a
    major triad); None for no chord.  :func:`parse_chord` reads it into the vocabulary
    (five qualities), :func:`parse_triad` into its triad classes.
    ``ValueError`` naming the symbol for one it cannot read."""
    text = str(name).strip()
    if text.upper() in ("N.C.", "N.C", "NC", "N"):
        return None
    m = _NAME.match(text)
    if not m:
        raise ValueError(f"unknown chord {text!r}")
    root = (_LETTER[m.group(1).upper()] + _ACCIDENTAL[m.group(2)]) % 12
    rest, _, bass = m.group(3).partition("/")
    if bass and not re.match(r"^[A-Ga-g][#b♯♭]?$", bass):
        raise ValueError(f"unknown chord {text!r}: the bass after '/' must be a note name")
    quality, used = "maj", ""
    for suffix, q in _TRIAD_SUFFIXES:
        if rest.startswith(suffix):
            quality, used, rest = q, suffix, rest[len(suffix):]
            break
    if _THIRDLESS.search(rest):
        raise ValueError(f"chord {text!r} has no third (a sus or power chord)")
    if not _EXTENSIONS.match(rest):
        raise ValueError(f"unknown chord {text!r}")
    # a dominant chord: a major triad with a minor seventh (7, 9, 11, 13, 7b9, ..., not maj7/6/add9)
    dominant = used == "dom" or (used == "" and re.match(r"^(7|9|11|13)", rest) is not None)
    return root, quality, dominant


def chord_name(index: int) -> str:
    """``12 -> "C:min"``, :data:`NO_CHORD` -> ``"N.C."`` (the REMI token name without ``Chord_``)."""
    index = int(index)
    if index == NO_CHORD:
        return "N.C."
    if not 0 <= index < NO_CHORD:
        raise ValueError(f"no chord with index {index}")
    return f"{PITCH_CLASS_NAMES[index % 12]}:{QUALITY_NAMES[index // 12]}"


def chord_pitch_classes(index: int) -> frozenset[int]:
    """The pitch classes of a chord (empty for N.C.)."""
    index = int(index)
    if index == NO_CHORD:
        return frozenset()
    root, quality = index % 12, QUALITY_NAMES[index // 12]
    return frozenset((root + i) % 12 for i in CHORD_QUALITIES[quality])


def parse_chord(name: str, where: str = "the chord progression") -> int:
    """A chord name -> its REMI index (a dominant seventh or ninth -> ``dom7``, any other
    extension -> its triad); a ConfigError naming ``where`` and the accepted syntax."""
    try:
        parsed = parse_symbol(name)
    except ValueError:
        raise ConfigError(f"Unknown chord {str(name).strip()!r} in {where}: {ALLOWED_HELP}.") from None
    if parsed is None:
        return NO_CHORD
    root, quality, dominant = parsed
    return QUALITY_NAMES.index("dom7" if dominant else quality) * 12 + root


def parse_progression(progression: Any, where: str = "the chord progression") -> list[list[int]]:
    """A progression (string or list, see the module doc) -> one list of chord indices per bar.

    An empty progression, an empty bar (``"C || G"``) or an unknown chord is a ConfigError."""
    if isinstance(progression, str):
        text = progression.strip()
        if "|" in text:
            bars = [part.split() for part in text.split("|")]
        else:
            bars = [[item] for item in text.split()]
    elif isinstance(progression, Sequence) or hasattr(progression, "__iter__"):
        bars = [str(item).split() for item in progression]
    else:
        raise ConfigError(f"{where}: expected a string like \"C G Am F\" or a list of bars, got {progression!r}.")
    if not bars or all(not bar for bar in bars):
        raise ConfigError(f"{where} is empty: {ALLOWED_HELP}.")
    for i, bar in enumerate(bars):
        if not bar:
            raise ConfigError(f"{where}: bar {i + 1} has no chord (two '|' in a row?); {ALLOWED_HELP}.")
    return [[parse_chord(item, where) for item in bar] for bar in bars]


def format_progression(bars: Sequence[Sequence[int]]) -> str:
    """``[[0], [7, 9]] -> "C:maj | G:maj A:maj"``."""
    return " | ".join(" ".join(chord_name(c) for c in bar) for bar in bars)


#: ``CHORD_TONES[chord, pitch_class]``: whether the pitch class is a tone of the chord (none for N.C.)
CHORD_TONES = np.zeros((N_CHORDS, 12), dtype=bool)
for _c in range(NO_CHORD):
    CHORD_TONES[_c, list(chord_pitch_classes(_c))] = True
CHORD_TONES.setflags(write=False)


# -- the triad view: Magenta's TriadChordOneHotEncoding ------------------------------------------

#: the triad classes' qualities, in Magenta's order (class ``1 + 12 * q + root``; 0 = N.C.)
TRIAD_QUALITIES = ("maj", "min", "aug", "dim")
#: lead-sheet suffix of each triad quality (``"Am"``, ``"Caug"``)
TRIAD_SUFFIXES = {"maj": "", "min": "m", "aug": "aug", "dim": "dim"}
#: N.C. + 12 roots x 4 triads
N_TRIAD_CLASSES = 1 + 12 * len(TRIAD_QUALITIES)
TRIAD_NO_CHORD = 0
#: triad class of each chord of the vocabulary (dom7 -> its major triad, N.C. -> 0)
TRIAD_CLASS_OF = np.zeros(N_CHORDS, dtype=np.int64)
#: the chord of the vocabulary each triad class stands for (0 -> N.C.)
TRIAD_CHORD_OF = np.full(N_TRIAD_CLASSES, NO_CHORD, dtype=np.int64)
for _qi, _q in enumerate(QUALITY_NAMES):
    _triad = "maj" if _q == "dom7" else _q
    for _root in range(12):
        TRIAD_CLASS_OF[_qi * 12 + _root] = 1 + 12 * TRIAD_QUALITIES.index(_triad) + _root
        if _q != "dom7":
            TRIAD_CHORD_OF[1 + 12 * TRIAD_QUALITIES.index(_q) + _root] = _qi * 12 + _root
TRIAD_CLASS_OF.setflags(write=False)
TRIAD_CHORD_OF.setflags(write=False)


def triad_class(chord: Any) -> Any:
    """Chord index (or an array of them) -> triad class (``0`` = N.C., ``1..48``)."""
    return TRIAD_CLASS_OF[chord] if isinstance(chord, np.ndarray) else int(TRIAD_CLASS_OF[int(chord)])


def triad_chord(klass: Any) -> Any:
    """Triad class (or an array of them) -> its chord index in the vocabulary."""
    if isinstance(klass, np.ndarray):
        return TRIAD_CHORD_OF[klass]
    klass = int(klass)
    if not 0 <= klass < N_TRIAD_CLASSES:
        raise ValueError(f"chord class {klass} is outside 0..{N_TRIAD_CLASSES - 1}")
    return int(TRIAD_CHORD_OF[klass])


def triad_name(klass: int) -> str:
    """The lead-sheet name of a triad class (``0`` -> ``N.C.``, ``1`` -> ``C``, ``22`` -> ``Am``)."""
    chord = triad_chord(klass)
    if chord == NO_CHORD:
        return "N.C."
    return LEAD_SHEET_NAMES[chord % 12] + TRIAD_SUFFIXES[QUALITY_NAMES[chord // 12]]


def parse_triad(name: str) -> int:
    """A chord name -> its triad class (0..48), like note_seq's ``TriadChordOneHotEncoding``
    (any extension reduces to its triad); ``ValueError`` (with the accepted syntax) for a name
    :func:`parse_symbol` cannot read."""
    try:
        parsed = parse_symbol(name)
    except ValueError as exc:
        raise ValueError(f"{exc}: expected {CHORD_SYNTAX}") from None
    if parsed is None:
        return TRIAD_NO_CHORD
    root, quality, _dominant = parsed
    return 1 + 12 * TRIAD_QUALITIES.index(quality) + root


def parse_triads(text: str) -> list[int]:
    """``"C G Am F"`` (one chord per bar, separated by spaces) -> triad classes."""
    names = str(text).split()
    if not names:
        raise ValueError("the chord progression is empty: give chord names separated by spaces, e.g. \"C G Am F\"")
    return [parse_triad(n) for n in names]


def progression_steps(chords: Sequence[int], steps_per_bar: int, length: int) -> np.ndarray:
    """One chord per step: bar ``i`` holds ``chords[i]``, the progression repeated when
    ``length`` needs more bars than it has."""
    per_bar = np.asarray(list(chords), dtype=np.int64)
    if len(per_bar) == 0:
        raise ValueError("no chords")
    bars = np.arange(int(length)) // int(steps_per_bar)
    return per_bar[bars % len(per_bar)]


# -- the recogniser ------------------------------------------------------------------------------

#: ``cosine``: the bonus (times the segment's total note weight) of the chords whose root is the
#: segment's lowest note; a tie-breaker (0.05 chosen on the first 40 chorales: 0.02-0.05 agree
#: best with music21, 0.1 already overrides real evidence; benchmarks/chords.py)
BASS_BONUS = 0.05
#: ``triads``: the bass bonus (divided by 3, the tones of a triad) when the lowest note is the root
TRIADS_BASS_BONUS = 0.5
#: ``triads``: its templates in scoring order, (intervals, the chord quality it is read as)
TRIAD_TEMPLATES = (
    ((0, 4, 7), "maj"), ((0, 3, 7), "min"), ((0, 4, 8), "aug"), ((0, 3, 6), "dim"),
    ((0, 4, 7, 10), "dom7"), ((0, 3, 7, 10), "min"), ((0, 3, 6, 10), "dim"), ((0, 3, 6, 9), "dim"),
)
METHODS = ("cosine", "count", "triads")


def _member() -> np.ndarray:
    """12 x NO_CHORD: 1.0 where a pitch class is a tone of a chord (the five qualities)."""
    member = np.zeros((12, NO_CHORD))
    for qi, intervals in enumerate(CHORD_QUALITIES.values()):
        for root in range(12):
            member[[(root + i) % 12 for i in intervals], qi * 12 + root] = 1.0
    return member


def _triad_templates() -> tuple[np.ndarray, np.ndarray]:
    """(12 x 12T matrix of +1 chord tone / -1 other, the chord index of each column)."""
    mat = -np.ones((12, 12 * len(TRIAD_TEMPLATES)))
    chord = np.zeros(12 * len(TRIAD_TEMPLATES), dtype=np.int64)
    for t, (intervals, quality) in enumerate(TRIAD_TEMPLATES):
        for root in range(12):
            mat[[(root + i) % 12 for i in intervals], t * 12 + root] = 1.0
            chord[t * 12 + root] = QUALITY_NAMES.index(quality) * 12 + root
    return mat, chord


_MEMBER = _member()
_TRIAD_MAT, _TRIAD_CHORD = _triad_templates()


def even_segments(segment: int, n_segments: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of ``n_segments`` segments of ``segment`` units from 0."""
    start = np.arange(int(n_segments), dtype=np.int64) * int(segment)
    return start, start + int(segment)


def bar_segments(bar_starts: np.ndarray, bar_lengths: np.ndarray, segment: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of segments of ``segment`` units from each bar line; a bar's last segment
    ends with the bar."""
    bar_starts = np.asarray(bar_starts, dtype=np.int64)
    bar_lengths = np.asarray(bar_lengths, dtype=np.int64)
    n_seg = -(-bar_lengths // segment)
    start = np.repeat(bar_starts, n_seg) + (np.arange(int(n_seg.sum())) - np.repeat(np.cumsum(n_seg) - n_seg, n_seg)) * segment
    end = np.minimum(start + segment, np.repeat(bar_starts + bar_lengths, n_seg))
    return start, end


def recognise(
    start: np.ndarray, end: np.ndarray, pitch: np.ndarray,
    seg_start: np.ndarray, seg_end: np.ndarray, method: str = "cosine",
) -> np.ndarray:
    """The chord index of each segment (contiguous: ``seg_end[i] == seg_start[i + 1]``) from
    the notes given (``start`` and ``end`` in the segments' unit, ``end > start``; ``pitch``).

    A note counts in every segment it overlaps, weighted by the overlap; notes starting at or
    after the last segment's end are left out, notes starting before the first count from it.
    ``method``: ``cosine``, ``count`` or ``triads`` (the module docstring); the chords are the
    vocabulary's indices (``triads`` answers with triads and dom7 only).

    The granularity (the segments: :func:`bar_segments` for REMI, :func:`even_segments` for
    ``melody_chords``) and the scoring are parameters, not choices made here, because the two
    tokenizers were built with different ones and they genuinely answer differently on the
    same notes; each tokenizer passes its own, so its tokens are what they always were."""
    if method not in METHODS:
        raise ValueError(f"chord recogniser method must be one of {', '.join(METHODS)}, got {method!r}")
    seg_start = np.asarray(seg_start, dtype=np.int64)
    seg_end = np.asarray(seg_end, dtype=np.int64)
    n = len(seg_start)
    out = np.full(n, NO_CHORD, dtype=np.int64)
    if n == 0:
        return out
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    pitch = np.asarray(pitch, dtype=np.int64)
    keep = start < seg_end[-1]
    start, end, pitch = start[keep], end[keep], pitch[keep]
    first = np.maximum(np.searchsorted(seg_start, start, side="right") - 1, 0)
    last = np.maximum(np.searchsorted(seg_start, end - 1, side="right") - 1, first)
    k = last - first + 1
    seg = np.repeat(first, k) + (np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k))
    overlap = np.minimum(np.repeat(end, k), seg_end[seg]) - np.maximum(np.repeat(start, k), seg_start[seg])
    chroma = np.bincount(seg * 12 + np.repeat(pitch % 12, k), weights=overlap, minlength=n * 12).reshape(n, 12)
    # the lowest sounding pitch class of each segment (-1: none)
    big = 1 << 20
    lowest = np.full(n, big, dtype=np.int64)
    np.minimum.at(lowest, seg, np.repeat(pitch, k))
    bass = np.where(lowest < big, lowest % 12, -1)
    if method == "triads":
        norm = chroma / np.maximum(chroma.sum(axis=1, keepdims=True), 1e-9)
        scores = norm @ _TRIAD_MAT
        roots = np.tile(np.arange(12), len(TRIAD_TEMPLATES))
        scores += TRIADS_BASS_BONUS / 3.0 * (roots[None, :] == bass[:, None])
        chord = _TRIAD_CHORD[np.argmax(scores, axis=1)]
    else:
        if method == "count":
            scores = chroma @ (2 * _MEMBER - 1)
        else:
            scores = (chroma @ _MEMBER) / np.sqrt(_MEMBER.sum(axis=0))[None, :]
            roots = np.arange(NO_CHORD) % 12
            scores = scores + BASS_BONUS * chroma.sum(axis=1, keepdims=True) * (roots[None, :] == bass[:, None])
        chord = np.argmax(scores, axis=1)
    # fewer than two sounding pitch classes: no chord
    chord[(chroma > 0).sum(axis=1) < 2] = NO_CHORD
    return chord.astype(np.int64)


def chords_in_bars(
    start: np.ndarray, end: np.ndarray, pitch: np.ndarray, bar_starts: np.ndarray, bar_lengths: np.ndarray,
    segment: int, last: int, method: str = "cosine", changes_only: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """REMI's granularity: ``(times, chords)`` of the segments of ``segment`` units from each bar
    line (:func:`bar_segments`) that start at or before ``last``: where the chord changes (the
    first segment compared with N.C.), or every segment when not ``changes_only``."""
    seg_start, seg_end = bar_segments(bar_starts, bar_lengths, segment)
    chord = recognise(start, end, pitch, seg_start, seg_end, method)
    prev = np.concatenate([[NO_CHORD], chord[:-1]])
    change = ((chord != prev) | (not changes_only)) & (seg_start <= last)
    return seg_start[change], chord[change]


def recognise_score(
    score: Any,
    chord_quarters: int = 2,
    method: str = "cosine",
    every_segment: bool = False,
    steps_per_quarter: int = 4,
    min_pitch: int = 21,
    max_pitch: int = 108,
    max_duration_quarters: int = 8,
    max_bar_quarters: int = 8,
    time_signatures: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The chords REMI writes for ``score`` (the defaults are REMI's): ``(ticks, chords)`` where
    each recognised chord starts, in the score's ticks, and its index; only the changes, or
    one entry per segment (``every_segment``).

    The pitched notes between ``min_pitch`` and ``max_pitch`` are put on the grid of
    ``steps_per_quarter`` steps per quarter (durations 1 step .. ``max_duration_quarters``),
    bars come from the time signatures (:func:`musicfw.music.grid.bar_grid`; 4/4 for all with
    ``time_signatures=False``) and every ``chord_quarters`` segment from each bar line gets a
    chord (:func:`chords_in_bars`)."""
    if chord_quarters < 1 or steps_per_quarter < 1:
        raise ValueError("recognise_score: chord_quarters and steps_per_quarter must be >= 1")
    score = check_piece(score)
    notes = piece_notes(score, drums="exclude", sort=False, seconds=False, check=False)
    notes = notes.select((notes.pitch >= min_pitch) & (notes.pitch <= max_pitch))
    if len(notes) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    tpq = int(score.ticks_per_quarter)
    onset = np.maximum(to_steps(notes.time, tpq, steps_per_quarter), 0)
    duration = np.clip(to_steps(notes.duration, tpq, steps_per_quarter), 1, max_duration_quarters * steps_per_quarter)
    last = int(onset.max())
    table = time_signature_table(steps_per_quarter, max_bar_quarters) if time_signatures else []
    bars, slots = bar_grid(score, steps_per_quarter, table, last)
    pos, chord = chords_in_bars(
        onset, onset + duration, notes.pitch, bars, bar_lengths(table, steps_per_quarter)[slots],
        chord_quarters * steps_per_quarter, last, method, changes_only=not every_segment,
    )
    return ((pos * tpq) // steps_per_quarter).astype(np.int64), chord.astype(np.int64)


# -- chord tracks and the chord-tone ratio --------------------------------------------------------

def chord_tone_ratio(
    onset: np.ndarray,
    pitch: np.ndarray,
    chord_ticks: np.ndarray,
    chords: np.ndarray,
    duration: np.ndarray | None = None,
) -> dict[str, float]:
    """The chord-tone ratio of notes (``onset`` times, ``pitch``, optional ``duration``) under
    a chord track (``chord_ticks`` sorted, in the onsets' unit; ``chords`` indices; each chord
    lasts until the next).

    Every note whose onset falls under a chord other than N.C. (and not before the first
    chord) is counted; ``chord_tone_ratio`` = the share of counted notes whose pitch class is
    a tone of that chord, ``chord_tone_ratio_duration`` = the same share weighted by duration;
    NaN when no note is counted.  Returns those two and ``counted``, ``hits``,
    ``duration_counted``, ``duration_hits`` (to pool over pieces)."""
    onset = np.asarray(onset, dtype=np.int64)
    pitch = np.asarray(pitch, dtype=np.int64)
    chord_ticks = np.asarray(chord_ticks, dtype=np.int64)
    chords = np.asarray(chords, dtype=np.int64)
    out = {"chord_tone_ratio": math.nan, "chord_tone_ratio_duration": math.nan,
           "counted": 0, "hits": 0, "duration_counted": 0.0, "duration_hits": 0.0}
    if len(onset) == 0 or len(chord_ticks) == 0:
        return out
    which = np.searchsorted(chord_ticks, onset, side="right") - 1
    counted = which >= 0
    chord_of_note = np.where(counted, chords[np.maximum(which, 0)], NO_CHORD)
    counted &= chord_of_note != NO_CHORD
    if not counted.any():
        return out
    hit = CHORD_TONES[chord_of_note[counted], pitch[counted] % 12]
    out.update(chord_tone_ratio=float(hit.mean()), counted=int(counted.sum()), hits=int(hit.sum()))
    if duration is not None:
        d = np.asarray(duration, dtype=np.float64)[counted]
        out.update(duration_counted=float(d.sum()), duration_hits=float(d[hit].sum()))
        if d.sum() > 0:
            out["chord_tone_ratio_duration"] = float(d[hit].sum() / d.sum())
    return out


def marker_chords(score: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ``Chord_<name>`` markers of a score as ``(ticks, chord indices)``, sorted by time."""
    ticks, chords = [], []
    for m in score.markers:
        text = str(m.text)
        if text.startswith(CHORD_MARKER_PREFIX):
            try:
                chords.append(parse_chord(text[len(CHORD_MARKER_PREFIX):]))
            except Exception:  # a marker that only looks like ours: not a chord
                continue
            ticks.append(int(m.time))
    order = np.argsort(np.asarray(ticks, dtype=np.int64), kind="stable")
    return np.asarray(ticks, dtype=np.int64)[order], np.asarray(chords, dtype=np.int64)[order]


def chord_track_of_progression(score: Any, progression: Any) -> tuple[np.ndarray, np.ndarray]:
    """A progression (see :func:`parse_progression`, or its parsed bars) laid over the bars
    of ``score`` (bar lines from its time signatures, 4/4 without one), from its first bar to
    its end, repeating: ``(ticks, chord indices)``.  Several chords in a bar divide it evenly."""
    bars = progression if _is_parsed(progression) else parse_progression(progression)
    notes = piece_notes(score)
    downbeats = np.asarray(notes.downbeats, dtype=np.int64)
    end = max(int(score.end()), 1)
    if len(downbeats) == 0:
        downbeats = np.array([0], dtype=np.int64)
    # extend the bar lines to the end with the last bar's length
    last_len = int(round(notes.last_bar_ticks)) or 4 * int(score.ticks_per_quarter)
    if downbeats[-1] < end:
        extra = np.arange(downbeats[-1] + last_len, end, last_len, dtype=np.int64)
        downbeats = np.concatenate([downbeats, extra])
    downbeats = downbeats[downbeats < end]
    bounds = np.concatenate([downbeats, [max(end, downbeats[-1] + last_len)]])
    ticks, chords = [], []
    for b in range(len(downbeats)):
        bar = bars[b % len(bars)]
        length = int(bounds[b + 1] - bounds[b])
        for i, c in enumerate(bar):
            ticks.append(int(bounds[b]) + i * length // len(bar))
            chords.append(int(c))
    return np.asarray(ticks, dtype=np.int64), np.asarray(chords, dtype=np.int64)


def _is_parsed(progression: Any) -> bool:
    return isinstance(progression, (list, tuple)) and all(
        isinstance(bar, (list, tuple)) and all(isinstance(c, (int, np.integer)) for c in bar) for bar in progression
    )
