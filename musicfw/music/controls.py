"""Attribute controls: what a bar of music is like, measured and cut into a few levels.

MMM (Ens & Pasquier 2020) and MidiTok 3.1 give a model one token per bar and attribute
(note density, polyphony, pitch range, note duration) so that a user can later ask for a
denser or a higher bar.  This module measures the attributes and quantises them; the REMI
tokenizer writes them as tokens (``tokenizer.controls``, docs/tokenizers.md) and the
benchmark ``benchmarks/controls.py`` measures generated bars with the same functions.

The attributes of a bar, from its notes in grid positions (``1/beat_resolution`` quarters):

``density``
    notes that start in the bar;
``polyphony``
    the mean number of notes sounding over the bar's positions where at least one sounds
    (0 for a silent bar): a monophonic line is 1, a four-part chorale about 4;
``pitch_range``
    highest minus lowest pitch of the notes that start in the bar, in semitones (0 for fewer
    than two notes);
``duration``
    the mean length of the notes that start in the bar, in positions (0 for no note).

A value becomes a level ``0 .. L-1`` by its boundaries (``L - 1`` increasing numbers; level =
how many boundaries are <= the value).  The defaults are fixed and documented
(:func:`default_bins`: geometric between a low and a high anchor per attribute, so they work
for any corpus without a pass over it); :func:`fit_bins` gives quantile boundaries from a
training set instead (every level then holds about as many bars), which a tokenizer stores in
its config (``control_bins``) and so in ``tokenizer.json``.

numpy only, vectorized over bars and notes.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

#: the attributes, in the order their tokens follow a Bar token
ATTRIBUTES = ("density", "polyphony", "pitch_range", "duration")
#: the token type (and name prefix) of each attribute's control tokens
TOKEN_TYPES = {"density": "Density", "polyphony": "Polyphony", "pitch_range": "PitchRange", "duration": "MeanDuration"}
#: other names a user may give an attribute (``--controls pitch=high``)
ALIASES = {"pitch": "pitch_range", "range": "pitch_range", "mean_duration": "duration", "notes": "density"}
#: per attribute, the anchors of the default boundaries: (lowest, highest boundary, unit)
DEFAULT_ANCHORS = {
    "density": (2.0, 48.0, "notes per bar"),
    "polyphony": (1.0, 6.0, "notes sounding"),
    "pitch_range": (2.0, 36.0, "semitones"),
    "duration": (1.0, 16.0, "positions"),
}
#: level names accepted besides numbers (resolved against the number of levels)
LEVEL_NAMES = ("low", "mid", "high")


def default_bins(attribute: str, levels: int) -> list[float]:
    """The fixed default boundaries of ``attribute`` for ``levels`` levels: ``levels - 1``
    numbers spaced geometrically from the attribute's low to its high anchor
    (:data:`DEFAULT_ANCHORS`; one level: no boundary; two: the geometric middle)."""
    lo, hi, _ = DEFAULT_ANCHORS[attribute]
    n = int(levels) - 1
    if n <= 0:
        return []
    if n == 1:
        return [float(np.sqrt(lo * hi))]
    return [float(v) for v in np.geomspace(lo, hi, n)]


def fit_bins(values: np.ndarray, levels: int) -> list[float]:
    """Quantile boundaries: ``levels - 1`` numbers that cut ``values`` (one per bar of the
    training data) into ``levels`` groups of about equal size.  A boundary equal to the one
    before it (many bars with the same value) is moved just above it, so boundaries always
    increase (some levels may then be rare or empty)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError("fit_bins: no values to fit boundaries to")
    q = np.quantile(values, np.arange(1, int(levels)) / int(levels))
    distinct = np.unique(values)
    # a bar with the boundary's value goes to the upper level; a boundary tied with the one
    # before it moves to the next value the data holds (the next whole number of notes for
    # density), or 1 above when there is none
    out: list[float] = []
    for b in q.tolist():
        b = float(b)
        if out and b <= out[-1]:
            above = distinct[distinct > out[-1]]
            b = float(above[0]) if len(above) else out[-1] + 1.0
        out.append(b)
    return out


def quantise(values: np.ndarray, bins: Iterable[float]) -> np.ndarray:
    """Level of each value: how many of the increasing ``bins`` are <= it."""
    return np.searchsorted(np.asarray(list(bins), dtype=np.float64), np.asarray(values, dtype=np.float64),
                           side="right").astype(np.int64)


def bar_attributes(
    onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray, bar_starts: np.ndarray, bar_lengths: np.ndarray,
) -> dict[str, np.ndarray]:
    """Each attribute per bar (float ``[n_bars]``) of notes given in grid positions
    (``onset``, ``duration`` >= 1, ``pitch``) over bars starting at ``bar_starts`` (increasing,
    contiguous: each bar ends where the next starts) of ``bar_lengths`` positions.  Notes
    before the first bar or after the last one are not counted; a note sounding over a bar
    line counts for the polyphony of both bars but starts in one only."""
    onset = np.asarray(onset, dtype=np.int64)
    duration = np.maximum(np.asarray(duration, dtype=np.int64), 1)
    pitch = np.asarray(pitch, dtype=np.int64)
    starts = np.asarray(bar_starts, dtype=np.int64)
    lengths = np.maximum(np.asarray(bar_lengths, dtype=np.int64), 1)
    nb = len(starts)
    out = {a: np.zeros(nb) for a in ATTRIBUTES}
    if nb == 0:
        return out
    end = int(starts[-1] + lengths[-1])
    bar = np.searchsorted(starts, onset, side="right") - 1
    inside = (bar >= 0) & (onset < end)
    b, on, du, pi = bar[inside], onset[inside], duration[inside], pitch[inside]
    count = np.bincount(b, minlength=nb).astype(np.float64)
    out["density"] = count
    out["duration"] = np.bincount(b, weights=du, minlength=nb) / np.maximum(count, 1)
    hi = np.full(nb, -1, dtype=np.int64)
    lo = np.full(nb, 1 << 30, dtype=np.int64)
    np.maximum.at(hi, b, pi)
    np.minimum.at(lo, b, pi)
    out["pitch_range"] = np.where(count >= 2, hi - lo, 0).astype(np.float64)
    # polyphony: notes sounding at each position of the piece (+1 at onset, -1 at the end)
    first = int(starts[0])
    delta = np.zeros(end - first + 1, dtype=np.int64)
    ok = (onset < end) & (onset + duration > first)
    s = np.clip(onset[ok], first, end) - first
    e = np.clip(onset[ok] + duration[ok], first, end) - first
    np.add.at(delta, s, 1)
    np.add.at(delta, e, -1)
    sounding = np.cumsum(delta[:-1])
    idx = starts - first
    total = np.add.reduceat(sounding, idx).astype(np.float64)
    busy = np.add.reduceat((sounding > 0).astype(np.int64), idx).astype(np.float64)
    out["polyphony"] = total / np.maximum(busy, 1)
    return out


def resolve_attribute(name: Any, known: tuple[str, ...], where: str) -> str:
    """A user's attribute name (or alias) as one of ``known``; ValueError naming them."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in known:
        raise ValueError(
            f"{where}: unknown control {name!r}; this model was trained with "
            + (", ".join(known) if known else "no controls")
            + f" (aliases: {', '.join(f'{a}={b}' for a, b in ALIASES.items())})"
        )
    return key


def resolve_level(value: Any, levels: int, where: str) -> int:
    """A user's level (a number 0..levels-1, or low / mid / high) as a number; ValueError
    naming the allowed values."""
    names = {"low": 0, "mid": (int(levels) - 1) // 2, "high": int(levels) - 1}
    allowed = f"0..{int(levels) - 1} or {', '.join(f'{k} (={v})' for k, v in names.items())}"
    if isinstance(value, bool):
        raise ValueError(f"{where}: level {value!r} is not allowed; use {allowed}")
    if isinstance(value, (int, np.integer)):
        level = int(value)
    else:
        text = str(value).strip().lower()
        if text in names:
            return names[text]
        try:
            level = int(text)
        except ValueError:
            raise ValueError(f"{where}: level {value!r} is not allowed; use {allowed}") from None
    if not 0 <= level < int(levels):
        raise ValueError(f"{where}: level {level} is out of range; use {allowed}")
    return level


def parse_controls(value: Any) -> Any:
    """A controls setting as plain Python: None, one ``{attribute: level}`` mapping (every
    bar), or a list of them (bar by bar, repeated when the piece is longer).  Strings read
    ``"density=4,pitch_range=high"``; ``"density=1 | density=6"`` gives two bars.  Levels stay
    as given (numbers or names); the tokenizer checks them."""
    if value is None:
        return None
    if isinstance(value, str):
        bars = [b.strip() for b in value.split("|")]
        parsed = [_parse_one(b) for b in bars]
        return parsed[0] if len(parsed) == 1 else parsed
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            one = parse_controls(item)
            if not isinstance(one, dict):
                raise ValueError(f"controls: each bar is a mapping or 'a=1,b=2', got {item!r}")
            out.append(one)
        if not out:
            raise ValueError("controls: an empty list; give at least one bar's controls")
        return out
    raise ValueError(f"controls: expected 'density=4,pitch_range=high', a mapping or a list of them, got {value!r}")


def _parse_one(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(f"controls: {part!r} is not attribute=level (e.g. density=4 or pitch_range=high)")
        k, v = (s.strip() for s in part.split("=", 1))
        if k in out:
            raise ValueError(f"controls: {k!r} given twice in {text!r}")
        out[k] = v
    if not out:
        raise ValueError(f"controls: no attribute=level in {text!r}")
    return out
