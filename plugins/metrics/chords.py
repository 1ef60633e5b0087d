"""``chord_tone_ratio``: how often the notes of a piece belong to the chord of their time.

Definition (one place, for every model that is given chords: REMI language models, the
chord-conditioned MusicVAE, ...):

* a piece has a chord track: chord *changes* ``(tick, chord)``, each chord lasting until the
  next one (chord indices and names of :mod:`musicfw.plugins.tokenizers.chords`);
* every pitched (non-drum) note whose onset falls under a chord other than N.C. (and not
  before the first chord) is counted;
* ``chord_tone_ratio`` = share of the counted notes whose pitch class is one of the chord's
  pitch classes (by note onset); ``chord_tone_ratio_duration`` = the same share weighted by
  the notes' durations (a note counts for the chord of its onset);
* NaN when no note is counted.

:func:`chord_tone_ratio` computes it from arrays; :func:`chord_track_of_progression` lays a
given progression over a piece's bars (one bar of the progression per bar of the piece, bars
from its time signatures, the progression repeated), which is how an unconditioned sample or a
random baseline is scored against the progression a conditioned model was given.

The metric plugin (``evaluate.metrics: [chord_tone_ratio]``) reads the chord track of each
piece from its ``Chord_<name>`` MIDI markers (REMI's decode writes one per Chord token, so a
chord-conditioned sample carries the progression it was given) and, for a piece without such
markers (a reference chorale), from REMI's rule-based chord recogniser
(``source: auto``; ``markers`` or ``recognise`` to choose one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from musicfw.core.params import bounded, choice
from musicfw.core.metric import Metric

FEATURES: dict[str, str] = {
    "chord_tone_ratio": "share of note onsets whose pitch class belongs to the chord sounding at "
    "the onset (the piece's Chord_ markers, else REMI's recognised chords)",
    "chord_tone_ratio_duration": "the same share weighted by note duration",
}


def chord_tone_ratio(
    onset: np.ndarray,
    pitch: np.ndarray,
    chord_ticks: np.ndarray,
    chords: np.ndarray,
    duration: np.ndarray | None = None,
) -> dict[str, float]:
    """``{"chord_tone_ratio", "chord_tone_ratio_duration", "counted", "hits",
    "duration_counted", "duration_hits"}`` of notes
    (``onset`` ticks, ``pitch``, optional ``duration`` ticks) under a chord track
    (``chord_ticks`` sorted, ``chords`` indices; each chord lasts until the next)."""
    from musicfw.plugins.tokenizers.chords import NO_CHORD, chord_pitch_classes

    onset = np.asarray(onset, dtype=np.int64)
    pitch = np.asarray(pitch, dtype=np.int64)
    chord_ticks = np.asarray(chord_ticks, dtype=np.int64)
    chords = np.asarray(chords, dtype=np.int64)
    out = {"chord_tone_ratio": math.nan, "chord_tone_ratio_duration": math.nan,
           "counted": 0, "hits": 0, "duration_counted": 0.0, "duration_hits": 0.0}
    if len(onset) == 0 or len(chord_ticks) == 0:
        return out
    member = np.zeros((NO_CHORD + 1, 12), dtype=bool)  # chord index x pitch class
    for c in range(NO_CHORD):
        member[c, list(chord_pitch_classes(c))] = True
    which = np.searchsorted(chord_ticks, onset, side="right") - 1
    counted = which >= 0
    chord_of_note = np.where(counted, chords[np.maximum(which, 0)], NO_CHORD)
    counted &= chord_of_note != NO_CHORD
    if not counted.any():
        return out
    hit = member[chord_of_note[counted], pitch[counted] % 12]
    out.update(chord_tone_ratio=float(hit.mean()), counted=int(counted.sum()), hits=int(hit.sum()))
    if duration is not None:
        d = np.asarray(duration, dtype=np.float64)[counted]
        out.update(duration_counted=float(d.sum()), duration_hits=float(d[hit].sum()))
        if d.sum() > 0:
            out["chord_tone_ratio_duration"] = float(d[hit].sum() / d.sum())
    return out


def marker_chords(score: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ``Chord_<name>`` markers of a score as ``(ticks, chord indices)``, sorted by time."""
    from musicfw.plugins.tokenizers.chords import CHORD_MARKER_PREFIX, parse_chord

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
    """A progression (see :func:`musicfw.plugins.tokenizers.chords.parse_progression`) laid
    over the bars of ``score`` (bar lines from its time signatures, 4/4 without one), from
    its first bar to its end, repeating: ``(ticks, chord indices)``.  Several chords in a
    bar divide it evenly."""
    from musicfw.music.notes import piece_notes
    from musicfw.plugins.tokenizers.chords import parse_progression

    bars = parse_progression(progression) if not _is_parsed(progression) else progression
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


def score_ratio(score: Any, chord_ticks: np.ndarray, chords: np.ndarray) -> dict[str, float]:
    """:func:`chord_tone_ratio` of a Score's pitched notes (all tracks) under a chord track."""
    from musicfw.music.notes import piece_notes

    notes = piece_notes(score)
    pitched = ~notes.is_drum
    return chord_tone_ratio(notes.time[pitched], notes.pitch[pitched], chord_ticks, chords, notes.duration[pitched])


@dataclass
class ChordToneRatioConfig:
    source: str = choice(
        "auto",
        ("auto", "markers", "recognise"),
        "where a piece's chords come from: its Chord_ markers (written by REMI's decode, so a "
        "chord-conditioned sample carries its given chords), REMI's chord recogniser, or auto "
        "(markers when the piece has them, else the recogniser)",
    )
    chord_quarters: int = bounded(2, ge=1, help="recogniser: chord segment length in quarters (as REMI's chord_quarters)")


class ChordToneRatio(Metric):
    """Chord-tone ratio of a piece against its chord track (markers or recognised)."""

    name = "chord_tone_ratio"
    Config = ChordToneRatioConfig
    input = "score"
    feature_descriptions = FEATURES

    def __init__(self, config: Any = None):
        super().__init__(config)
        self._recogniser = None

    def chord_track(self, score: Any) -> tuple[np.ndarray, np.ndarray]:
        src = self.config.source
        if src != "recognise":
            ticks, chords = marker_chords(score)
            if len(ticks) or src == "markers":
                return ticks, chords
        if self._recogniser is None:
            from musicfw.plugins.tokenizers.remi import REMI, REMIConfig

            self._recogniser = REMI(REMIConfig(use_chords=True, chord_quarters=int(self.config.chord_quarters)))
        return self._recogniser.recognise_chords(score)

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
