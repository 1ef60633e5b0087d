"""Chord names and chord progressions: REMI's chord vocabulary, shared by the tokenizer, its
chord-constrained grammar, the ``chord_tone_ratio`` metric and the benchmarks.

A chord is an index ``quality * 12 + root`` (root: pitch class 0 = C .. 11 = B; quality in
:data:`CHORD_QUALITIES` order) or :data:`NO_CHORD` (``N.C.``).  This is the ``token_values``
numbering of REMI's Chord tokens.

Names a person types (``--chords "C G Am F"``, ``generate.chords``, and MusicVAE's
``sample``/``interpolate --chords``) are read by one parser, :func:`parse_symbol`: a root letter
``A``-``G`` with an optional ``#`` or ``b``, a triad quality (nothing or ``maj``/``M`` major,
``m``/``min``/``-`` minor, ``dim``/``o`` diminished, ``aug``/``+`` augmented), then optional
extensions (``7``, ``maj7``, ``9``, ``13``, ``6``, ``m7b5``, ...) and a bass after ``/``
(ignored).  REMI keeps five qualities:

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
is "no chord".  Sus and power chords (no third) are refused.

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
    major triad); None for no chord.  Each chord vocabulary maps this onto its own classes
    (REMI's five qualities here, MusicVAE's 48 triads + N.C. in ``melody_chords``).
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
