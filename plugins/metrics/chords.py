"""``chord_tone_ratio``: how often the notes of a piece belong to the chord of their time.

Definition (one place, for every model that is given chords: REMI language models, the
chord-conditioned MusicVAE, ...): :func:`musicfw.music.chords.chord_tone_ratio`.

* a piece has a chord track: chord *changes* ``(tick, chord)``, each chord lasting until the
  next one (chord indices and names of :mod:`musicfw.music.chords`);
* every pitched (non-drum) note whose onset falls under a chord other than N.C. (and not
  before the first chord) is counted;
* ``chord_tone_ratio`` = share of the counted notes whose pitch class is one of the chord's
  pitch classes (by note onset); ``chord_tone_ratio_duration`` = the same share weighted by
  the notes' durations (a note counts for the chord of its onset);
* NaN when no note is counted.

:func:`musicfw.music.chords.chord_track_of_progression` lays a given progression over a
piece's bars (one bar of the progression per bar of the piece, bars from its time
signatures, the progression repeated), which is how an unconditioned sample or a random
baseline is scored against the progression a conditioned model was given.

The metric plugin (``evaluate.metrics: [chord_tone_ratio]``) reads the chord track of each
piece from its ``Chord_<name>`` MIDI markers (REMI's decode writes one per Chord token, so a
chord-conditioned sample carries the progression it was given) and, for a piece without such
markers (a reference chorale), from the music library's chord recogniser as REMI runs it
(:func:`musicfw.music.chords.recognise_score`: the chords a default REMI tokenizer with this
``chord_quarters`` writes; no tokenizer is built) (``source: auto``; ``markers`` or
``recognise`` to choose one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from musicfw.core.params import bounded, choice
from musicfw.core.metric import Metric
from musicfw.music.chords import chord_tone_ratio, marker_chords, recognise_score
from musicfw.music.notes import piece_notes

FEATURES: dict[str, str] = {
    "chord_tone_ratio": "share of note onsets whose pitch class belongs to the chord sounding at "
    "the onset (the piece's Chord_ markers, else REMI's recognised chords)",
    "chord_tone_ratio_duration": "the same share weighted by note duration",
}


def score_ratio(score: Any, chord_ticks: np.ndarray, chords: np.ndarray) -> dict[str, float]:
    """:func:`musicfw.music.chords.chord_tone_ratio` of a Score's pitched notes (all tracks)
    under a chord track."""
    notes = piece_notes(score)
    pitched = ~notes.is_drum
    return chord_tone_ratio(notes.time[pitched], notes.pitch[pitched], chord_ticks, chords, notes.duration[pitched])


@dataclass
class ChordToneRatioConfig:
    source: str = choice(
        "auto",
        ("auto", "markers", "recognise"),
        "where a piece's chords come from: its Chord_ markers (written by REMI's decode, so a "
        "chord-conditioned sample carries its given chords), the chord recogniser as REMI runs it, or auto "
        "(markers when the piece has them, else the recogniser)",
    )
    chord_quarters: int = bounded(2, ge=1, help="recogniser: chord segment length in quarters (as REMI's chord_quarters)")


class ChordToneRatio(Metric):
    """Chord-tone ratio of a piece against its chord track (markers or recognised)."""

    name = "chord_tone_ratio"
    Config = ChordToneRatioConfig
    input = "score"
    feature_descriptions = FEATURES

    def chord_track(self, score: Any) -> tuple[np.ndarray, np.ndarray]:
        src = self.config.source
        if src != "recognise":
            ticks, chords = marker_chords(score)
            if len(ticks) or src == "markers":
                return ticks, chords
        return recognise_score(score, chord_quarters=int(self.config.chord_quarters))

    def features(self, piece: Any) -> dict[str, Any]:
        ticks, chords = self.chord_track(piece)
        out = score_ratio(piece, ticks, chords)
        return {k: out[k] for k in FEATURES}


def ratios_of(scores: Sequence[Any], tracks: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Pooled over pieces (every counted note weighs the same): ``{"chord_tone_ratio",
    "chord_tone_ratio_duration", "notes"}`` of ``scores[i]`` under ``tracks[i]``."""
    totals = {"counted": 0, "hits": 0, "duration_counted": 0.0, "duration_hits": 0.0}
    for score, (ticks, chords) in zip(scores, tracks):
        r = score_ratio(score, ticks, chords)
        for k in totals:
            totals[k] += r[k]
    return {
        "chord_tone_ratio": totals["hits"] / totals["counted"] if totals["counted"] else math.nan,
        "chord_tone_ratio_duration": (
            totals["duration_hits"] / totals["duration_counted"] if totals["duration_counted"] else math.nan
        ),
        "notes": int(totals["counted"]),
    }
