"""Chord names and chord progressions: REMI's chord vocabulary, shared by the tokenizer, its
chord-constrained grammar, the ``chord_tone_ratio`` metric and the benchmarks.

A chord is an index ``quality * 12 + root`` (root: pitch class 0 = C .. 11 = B; quality in
:data:`CHORD_QUALITIES` order) or :data:`NO_CHORD` (``N.C.``).  This is the ``token_values``
numbering of REMI's Chord tokens.

Names a person types (``--chords "C G Am F"``, ``generate.chords``): a root letter ``A``-``G``
with an optional ``#`` or ``b``, then a quality suffix:

=================  =========  ===============
suffix             quality    intervals
=================  =========  ===============
(none), maj, M     maj        0 4 7
m, min             min        0 3 7
dim, o             dim        0 3 6
aug, +             aug        0 4 8
7, dom7            dom7       0 4 7 10
=================  =========  ===============

REMI's own spelling ``C:maj``, ``F#:min``, ``Bb:dom7`` is accepted too, and ``N.C.`` (or ``N``)
is "no chord".

A progression is a string or a list.  In a string, bars are separated by ``|`` when there is
one (``"C G | Am | F"``: C and G share the first bar); otherwise every chord is one bar
(``"C G Am F"``).  In a list, each item is a bar (``["C", "Am F"]``).  Several chords in a bar
divide it evenly (``C G`` in a 4/4 bar: C on beat 1, G on beat 3).

numpy-free and cheap to import.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from musicfw.core.errors import ConfigError

PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
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
#: REMI's decode writes each Chord token as a MIDI marker with this prefix ("Chord_A:min")
CHORD_MARKER_PREFIX = "Chord_"

_SUFFIX = {
    "": "maj", "maj": "maj", "M": "maj", "major": "maj",
    "m": "min", "min": "min", "minor": "min",
    "dim": "dim", "o": "dim", "°": "dim",
    "aug": "aug", "+": "aug",
    "7": "dom7", "dom7": "dom7",
}
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NAME = re.compile(r"^([A-Ga-g])([#b♯♭]?)(?::?)(.*)$")

ALLOWED_HELP = (
    "a chord is a root C, C#, Db, D, ..., B followed by a quality: nothing or maj (major), "
    "m or min (minor), dim or o (diminished), aug or + (augmented), 7 or dom7 (dominant "
    "seventh); REMI's C:maj / F#:min spelling also works, and N.C. means no chord "
    '(e.g. "C G Am F", or "C G | Am F" for two chords in one bar)'
)


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
    """A chord name -> its index; a ConfigError naming ``where`` and the allowed names."""
    text = str(name).strip()
    if text.upper() in ("N.C.", "N.C", "NC", "N"):
        return NO_CHORD
    m = _NAME.match(text)
    quality = _SUFFIX.get(m.group(3)) if m else None
    if m is None or quality is None:
        raise ConfigError(f"Unknown chord {text!r} in {where}: {ALLOWED_HELP}.")
    root = _LETTER[m.group(1).upper()] + {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}[m.group(2)]
    return QUALITY_NAMES.index(quality) * 12 + root % 12


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
