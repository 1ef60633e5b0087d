"""Bar infilling for token language models: fill bars 5-8 between 1-4 and 9-12.

**The layouts** (``train.infill.layout``, :func:`layout`).  An infilling example moves the k
bars of a gap so that the model reads both of its sides first::

    spm (default)  Fill x k  right bars  Sep  left bars  Sep  bar_1 ... bar_k  R
    mmm            left bars  Fill x k  right bars  Sep  bar_1 End  bar_2 End ... bar_k End

``spm`` is fill-in-the-middle's suffix-prefix-middle order (Bavarian et al. 2022): the gap
follows its left context in plain order, each bar ending where the next opener comes and the
last one with ``R``, the right context's first token (its bar opener) repeated, so every
decision in the gap is one plain continuation makes.  ``mmm`` is MMM's (Ens & Pasquier 2020;
also Donahue et al.'s ILM): the gap after the right context, each bar closed by ``End``.
Measured on held-out chorales (README.md, "Bar infilling"), mmm made the filled bars 7-13% less
likely than plain continuation does (the first bar sits away from its left context, and ``End``
is a decision plain continuation never makes); spm is at par, hence the default.

A *bar* is everything from a bar-opening token up to the next one (REMI: ``Bar`` and whatever
follows it -- TimeSig, Position, Tempo, Chord, Program, notes, and any control tokens a
tokenizer option adds after ``Bar``); the transform moves whole bars and never looks at the
other token types, so it works for every tokenizer whose clock marks bars with tokens
(``Clock.bar_tokens``, ``Clock.would_open_bar``: REMI, with or without programs, chords or
controls).  The three markers are appended to the tokenizer's vocabulary only when
``train.infill.enabled`` is set (:class:`InfillTokenizer`); every other id stays what it was and
the tokenizer's own output is unchanged.

**Why not AMT's anticipation.**  Anticipation (Thickstun et al. 2023) interleaves the
given events with the generated ones, each given event placed a fixed time delta ahead; it
conditions on events *in time*, which suits accompaniment, but filling a gap of bars needs the
model to read the whole right context before the first filled token, and anticipation only
shows it ``delta`` seconds ahead.  Both layouts put the entire right context before the filled
bars and need no change to the tokenizer (anticipation needs an arrival-time encoding of every
event: a second vocabulary of anticipated events).

**Training** (:class:`InfillWindows`): with probability ``train.infill.probability`` a training
window becomes an infilling example (between ``min_bars`` and ``max_bars`` complete bars of the
window, at a random place); the rest stay plain continuation, so one model does both.  The
draws come from a generator seeded by the window's own seed, so the windows drawn (and a run
with infilling off) are exactly those of the plain pipeline.

**Decoding** (:class:`InfillGrammar`, :func:`fill_tokens`): after the prompt (``Fill*k right
Sep left Sep`` or ``left Fill*k right Sep``), the model may only open a bar, write the
tokenizer's grammar inside it, and end it where a new bar could start (spm: with the next
opener, the one after the k-th bar dropped; mmm: with ``End``).  Tokens are reserved so that
every row can always close its bars: when the budget runs out the bar is closed with what it
has, so exactly k complete bars come back.

**Writing the song** (:func:`infill`): the notes outside the bar range are the input file's own
notes, untouched (same ticks, tracks, velocities); the notes of the filled bars come from
decoding the completed token sequence and are moved onto the input's bar grid.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from musicfw.core.errors import ConfigError, DataError, UserError
from musicfw.core.tokenizer import CATEGORICAL, Tokenizer

#: the three marker names, appended to the vocabulary in this order
MARKERS = ("Infill_Fill", "Infill_Sep", "Infill_End")


# --------------------------------------------------------------------------------------
# bars of a token sequence
# --------------------------------------------------------------------------------------


def bar_openers(tokenizer: Any) -> np.ndarray | None:
    """bool ``[V]``: the ids that open a bar (the tokenizer's clock says so:
    ``Clock.bar_tokens`` and ``Clock.would_open_bar``), or None when the tokenizer does not
    mark bars with tokens (it cannot be infilled bar by bar)."""
    if tokenizer.kind != CATEGORICAL:
        return None
    clock = tokenizer.clock(1)
    if clock is None or not clock.bar_tokens:
        return None
    ids = np.arange(int(tokenizer.vocab_size), dtype=np.int64)
    mask = np.asarray(clock.would_open_bar(ids.reshape(-1, 1)), dtype=bool).reshape(-1)
    if mask.shape != ids.shape or not mask.any():
        return None
    return mask


def bar_bounds(tokens: np.ndarray, is_bar: np.ndarray) -> np.ndarray:
    """Token index where each bar starts, plus ``len(tokens)`` at the end: bar ``i`` is
    ``tokens[b[i]:b[i+1]]``.  Tokens before the first bar opener belong to no bar."""
    tokens = np.asarray(tokens, dtype=np.int64)
    starts = np.flatnonzero(is_bar[np.minimum(tokens, len(is_bar) - 1)] & (tokens < len(is_bar)))
    return np.concatenate([starts, [len(tokens)]]).astype(np.int64)


@dataclass(frozen=True)
class MarkerIds:
    fill: int
    sep: int
    end: int

    @classmethod
    def after(cls, base_vocab_size: int) -> "MarkerIds":
        v = int(base_vocab_size)
        return cls(v, v + 1, v + 2)


#: the infilling layouts (``train.infill.layout``); the first is the default
LAYOUTS = ("spm", "mmm")


def context_window(tokens: np.ndarray, bounds: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Bars ``lo .. hi-1`` of ``tokens`` (whatever precedes the first bar kept when ``lo`` is 0)
    and their bounds within that window."""
    start = 0 if lo == 0 else int(bounds[lo])
    return tokens[start : int(bounds[hi])], bounds[lo : hi + 1] - start


def nearest_bars(bounds: np.ndarray, first: int, k: int, fits: Any, lo: int = 0, hi: int | None = None) -> tuple[int, int]:
    """The context bars ``lo .. hi-1`` (gap: ``first .. first+k-1``; default every bar) a
    bounded model reads: all of them, or, until ``fits(lo, hi)``, fewer, the bar farthest from
    the gap on the side with more tokens dropped first; at worst the gap alone."""
    hi = len(bounds) - 1 if hi is None else hi
    while not fits(lo, hi) and (lo < first or hi > first + k):
        left_len, right_len = int(bounds[first] - bounds[lo]), int(bounds[hi] - bounds[first + k])
        if lo < first and (left_len >= right_len or hi == first + k):
            lo += 1
        else:
            hi -= 1
    return lo, hi


def fitting_bars(tokens: np.ndarray, bounds: np.ndarray, first: int, k: int, ids: MarkerIds, kind: str,
                 ctx: int | None, lo: int = 0, hi: int | None = None) -> tuple[int, int]:
    """:func:`nearest_bars` with the layout's own length as the test: the context bars
    ``lo .. hi-1`` whose infilling layout (gap ``first .. first+k-1``) fits ``ctx`` tokens."""
    hi = len(bounds) - 1 if hi is None else hi
    if ctx is None:
        return lo, hi
    return nearest_bars(bounds, first, k, lambda a, z: len(layout(
        tokens[bounds[a] : bounds[z]], bounds[a : z + 1] - bounds[a], first - a, k, ids, kind)[0]) <= int(ctx), lo, hi)


def check_layout(kind: Any, where: str = "train.infill.layout") -> str:
    """``kind`` when it names a layout, else ConfigError naming the allowed ones."""
    if kind not in LAYOUTS:
        raise ConfigError(f"Invalid config: {where} is {kind!r}; allowed: {', '.join(LAYOUTS)}.")
    return str(kind)


def layout(tokens: np.ndarray, bounds: np.ndarray, first: int, k: int, ids: MarkerIds, kind: str) -> tuple[np.ndarray, int]:
    """``tokens`` with bars ``first .. first+k-1`` (indices into ``bounds``) laid out for
    infilling: ``(sequence, index of the first scored filled token)``.

    ``mmm``: ``left Fill*k right Sep bar_1 End ... bar_k End``; scoring starts at bar_1's opener
    (after ``Sep`` it is all but certain).  ``spm``: ``Fill*k right Sep left Sep bar_1 ... bar_k
    R`` where ``R`` is the right context's first token (the opener of the bar after the gap):
    the gap in plain order after its left context (the second ``Sep`` marks where it starts),
    each bar ending where the next opener comes, the last one too, so every decision in the gap
    is one plain continuation makes; scoring starts after bar_1's opener, which closes the left
    context's last bar (not a decision about the gap, and not scored in the plain sequence
    either).  With no right context there is no ``R``."""
    tokens = np.asarray(tokens, dtype=np.int64)
    s, e = int(bounds[first]), int(bounds[first + k])
    fill, sep, end = np.full(k, ids.fill, dtype=np.int64), np.array([ids.sep], dtype=np.int64), np.array([ids.end], dtype=np.int64)
    if kind == "spm":
        head = k + (len(tokens) - e) + 1 + s + 1  # bar_1's opener
        return np.concatenate([fill, tokens[e:], sep, tokens[:s], sep, tokens[s : e + 1]]), head + 1
    parts = [tokens[:s], fill, tokens[e:], sep]
    head = sum(len(p) for p in parts)
    for i in range(first, first + k):
        parts.append(tokens[int(bounds[i]) : int(bounds[i + 1])])
        parts.append(end)
    return np.concatenate(parts), head


def prompt_for(tokens: np.ndarray, bounds: np.ndarray, first: int, k: int, ids: MarkerIds, kind: str) -> np.ndarray:
    """What the model reads before it writes the k bars: ``left Fill*k right Sep`` (mmm) or
    ``Fill*k right Sep left Sep`` (spm)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    s, e = int(bounds[first]), int(bounds[first + k])
    fill = np.full(k, ids.fill, dtype=np.int64)
    if kind == "spm":
        return np.concatenate([fill, tokens[e:], [ids.sep], tokens[:s], [ids.sep]]).astype(np.int64)
    return np.concatenate([tokens[:s], fill, tokens[e:], [ids.sep]]).astype(np.int64)


def reassemble(prompt: np.ndarray, filled: np.ndarray, ids: MarkerIds, kind: str) -> np.ndarray:
    """Put generated bars (``bar End bar End ...`` in mmm; in spm ``bar bar ... R``, the opener
    ``R`` that ended the last bar dropped: the right context opens its own bar) back between the
    left and the right context of ``prompt``: the plain token sequence of the filled song."""
    prompt = np.asarray(prompt, dtype=np.int64)
    filled = np.asarray(filled, dtype=np.int64)
    fills = np.flatnonzero(prompt == ids.fill)
    middle = filled[filled != ids.end]
    if kind == "spm":
        middle = middle[:-1]
        sep = int(np.flatnonzero(prompt == ids.sep)[0])
        left, right = prompt[sep + 1 : -1], prompt[fills[-1] + 1 : sep]
    else:
        left, right = prompt[: fills[0]], prompt[fills[-1] + 1 : -1]
    return np.concatenate([left, middle, right])


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------


class InfillTransform:
    """Turns a training window into an infilling example with probability ``probability``
    (see the module docstring).  ``seq_len``: the window length; an infilling example keeps
    ``seq_len`` minus its markers (:meth:`markers`) so that it still fits; ``kind``: the layout."""

    def __init__(self, is_bar: np.ndarray, ids: MarkerIds, seq_len: int, probability: float, min_bars: int, max_bars: int,
                 kind: str = "spm"):
        self.is_bar, self.ids = np.asarray(is_bar, dtype=bool), ids
        self.seq_len, self.probability = int(seq_len), float(probability)
        self.min_bars, self.max_bars = int(min_bars), int(max_bars)
        self.kind = check_layout(kind)

    def markers(self, k: int) -> int:
        """How many tokens an example of ``k`` bars adds: ``2k + 1`` markers (mmm); ``k + 2``
        markers and the repeated opener after the gap (spm)."""
        return k + 3 if self.kind == "spm" else 2 * k + 1

    def __call__(self, window: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng([int(seed) & (2**63 - 1), 0x1F11])
        if rng.random() >= self.probability:
            return window
        k = int(rng.integers(self.min_bars, self.max_bars + 1))
        body = np.asarray(window, dtype=np.int64)[: max(self.seq_len - self.markers(k), 0)]
        starts = bar_bounds(body, self.is_bar)[:-1]
        complete = len(starts) - 1  # the last bar of a window may be cut off
        k = min(k, complete)
        if k < 1 or k < self.min_bars:
            return window
        first = int(rng.integers(0, complete - k + 1))
        out, _ = layout(body, starts, first, k, self.ids, self.kind)
        return out


class InfillWindows:
    """A training dataset's windows, some turned into infilling examples (a torch Dataset:
    ``len`` and ``[(piece, seed)]`` as :class:`musicfw.engine.data.TrainWindows`)."""

    def __init__(self, windows: Any, transform: InfillTransform):
        self.windows, self.transform = windows, transform

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, spec: tuple[int, int]) -> np.ndarray:
        return self.transform(self.windows[spec], spec[1])

    def __getattr__(self, name: str) -> Any:  # augment_failures and the like
        windows = self.__dict__.get("windows")
        if windows is None:  # while unpickling in a loader worker
            raise AttributeError(name)
        return getattr(windows, name)


def infill_section(train: Any) -> Any | None:
    """``train.infill`` when enabled, else None."""
    section = train.get("infill") if hasattr(train, "get") else getattr(train, "infill", None)
    if section is None or not bool(section.get("enabled", False)):
        return None
    return section


def infill_transform(train: Any, tokenizer: Any) -> tuple[Any, InfillTransform | None]:
    """``(the tokenizer whose tokens the data stage caches, the window transform or None)``:
    an :class:`InfillTokenizer` with ``train.infill`` enabled gives its base tokenizer (the
    token cache is the plain pipeline's) and an :class:`InfillTransform`."""
    section = infill_section(train)
    if section is None or not isinstance(tokenizer, InfillTokenizer):
        return tokenizer, None
    transform = InfillTransform(
        tokenizer.is_bar, tokenizer.ids, int(train.seq_len), float(section.probability),
        int(section.min_bars), int(section.max_bars), tokenizer.layout,
    )
    return tokenizer.base, transform


def check_infill_config(train: Any, tokenizer: Any, model: Any = None) -> None:
    """ConfigError for a ``train.infill`` the tokenizer or the model cannot train with."""
    section = infill_section(train)
    if section is None:
        return
    if isinstance(tokenizer, InfillTokenizer):
        tokenizer = tokenizer.base
    check_layout(section.get("layout", "spm"))
    lo, hi = int(section.min_bars), int(section.max_bars)
    if lo > hi:
        raise ConfigError(
            f"Invalid config: train.infill.min_bars ({lo}) must be <= train.infill.max_bars ({hi})."
        )
    if int(train.seq_len) < 2 * hi + 3:
        raise ConfigError(
            f"Invalid config: train.seq_len ({train.seq_len}) leaves no room for an infilling example of "
            f"train.infill.max_bars={hi} bars (2 x max_bars + 1 marker tokens, plus the bars); raise train.seq_len."
        )
    if bar_openers(tokenizer) is None:
        raise ConfigError(
            f"Invalid config: train.infill.enabled: the {tokenizer.name!r} tokenizer does not mark bars with "
            "tokens (its clock has no bar tokens), so bars cannot be moved; use a REMI-like tokenizer "
            "(tokenizer: {name: remi})."
        )
    if model is not None and not model.trainable:
        raise ConfigError(
            "Invalid config: train.infill.enabled: the model is fitted by counting whole pieces, so it never "
            "sees infilling examples; use a model trained by gradient descent (lstm, transformer)."
        )


# --------------------------------------------------------------------------------------
# the vocabulary with the markers
# --------------------------------------------------------------------------------------


class InfillTokenizer(Tokenizer):
    """A tokenizer's vocabulary plus the three infilling markers at the end.

    ``encode`` is the tokenizer's own (no marker ever appears in an encoding); ``decode``
    drops marker ids; the grammar is the tokenizer's with the markers forbidden (plain
    continuation of an infilling model); ``save`` writes the tokenizer's JSON with an
    ``infill`` entry, which :func:`load_run_tokenizer` reads back."""

    kind = CATEGORICAL

    def __init__(self, base: Tokenizer, layout: str = "spm"):  # noqa: D107 - the base's config is already checked
        if bar_openers(base) is None:
            raise ConfigError(f"the {base.name!r} tokenizer has no bar tokens; it cannot be infilled by bars.")
        #: the infilling layout the model was trained with (:func:`layout`)
        self.layout = check_layout(layout)
        self.base = base
        self.name = base.name  # type: ignore[misc]
        self.Config = type(base.config)  # type: ignore[misc]
        self.config = base.config
        self.end_id = base.end_id
        self.pitch_range = base.pitch_range
        self.ids = MarkerIds.after(base.vocab_size)
        self.is_bar = bar_openers(base)
        self._vocab = list(base.vocab) + list(MARKERS)

    @property
    def vocab(self) -> list[str]:
        return self._vocab

    @property
    def base_vocab_size(self) -> int:
        return int(self.base.vocab_size)

    def encode(self, score: Any) -> np.ndarray:
        return self.base.encode(score)

    def _plain(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens)
        return tokens[tokens < self.base_vocab_size]

    def decode(self, tokens: np.ndarray) -> Any:
        tokens = np.asarray(tokens, dtype=np.int64)
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"{self.name}+infill: ids outside 0..{self.vocab_size - 1}")
        return self.base.decode(self._plain(tokens))

    def grammar(self, batch_size: int) -> Any:
        return MarkersOff(self, self.base.grammar(batch_size), batch_size)

    def chord_grammar(self, progression: Any, batch_size: int) -> Any:
        inner = self.base.chord_grammar(progression, batch_size)
        return None if inner is None else MarkersOff(self, inner, batch_size)

    def controls_grammar(self, controls: Any, grammar: Any) -> Any:
        """The base tokenizer's attribute controls (REMI ``controls``) forced on top of
        ``grammar`` (this tokenizer's :class:`MarkersOff` grammar, or a base grammar), the
        markers still forbidden; None when the base tokenizer has no controls."""
        inner = grammar.inner if isinstance(grammar, MarkersOff) else grammar
        if inner is None:
            return None
        forced = self.base.controls_grammar(controls, inner)
        return None if forced is None else MarkersOff(self, forced, int(getattr(grammar, "batch_size", 1)))

    @property
    def controls(self) -> tuple[str, ...]:
        """The base tokenizer's attribute controls (empty when it has none)."""
        return tuple(getattr(self.base, "controls", ()) or ())

    @property
    def marker_ids(self) -> np.ndarray:
        """The three marker ids: never sampled in plain generation."""
        return np.array([self.ids.fill, self.ids.sep, self.ids.end], dtype=np.int64)

    def clock(self, batch_size: int) -> Any:
        inner = self.base.clock(batch_size)
        return None if inner is None else MarkersClock(inner, self.base_vocab_size)

    def count_invalid(self, tokens: np.ndarray) -> int | None:
        tokens = np.asarray(tokens)
        inner = self.base.count_invalid(self._plain(tokens))
        return None if inner is None else int(inner) + int((tokens >= self.base_vocab_size).sum())

    def count_notes(self, tokens: np.ndarray) -> int:
        return self.base.count_notes(self._plain(tokens))

    def coverage(self, score: Any, tokens: np.ndarray | None = None) -> dict[str, Any]:
        return self.base.coverage(score, tokens)

    def to_dict(self) -> dict[str, Any]:
        doc = self.base.to_dict()
        doc["vocab_size"] = self.vocab_size
        doc["vocab"] = self.vocab
        doc["infill"] = {"format": self.layout, "markers": list(MARKERS), "first_id": self.base_vocab_size}
        return doc

    def __repr__(self) -> str:
        return f"InfillTokenizer({self.base!r}, layout={self.layout!r})"


def load_run_tokenizer(path: str | Path, registries: Any = None) -> Tokenizer:
    """:func:`musicfw.core.tokenizer.load_tokenizer`, wrapped in :class:`InfillTokenizer` when
    the JSON says the model was trained to infill (its ``infill`` entry)."""
    from musicfw.core.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(path, registries=registries)
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return tokenizer
    return with_infill_markers(tokenizer, doc, path)


def with_infill_markers(tokenizer: Tokenizer, doc: Any, path: Any) -> Tokenizer:
    """``tokenizer`` wrapped in :class:`InfillTokenizer` when ``doc`` (its ``tokenizer.json``,
    already read) says the model was trained to infill; else ``tokenizer`` itself."""
    info = doc.get("infill") if isinstance(doc, dict) else None
    if not info:
        return tokenizer
    if not isinstance(info, dict) or list(info.get("markers") or []) != list(MARKERS) or info.get("first_id") != tokenizer.vocab_size:
        raise ConfigError(
            f"{path}: the `infill` entry does not fit the {tokenizer.name!r} tokenizer rebuilt from it (markers "
            f"{list(MARKERS)} after its {tokenizer.vocab_size} tokens expected)."
        )
    kind = info.get("format", "mmm")  # written since the first infilling runs, which were all mmm
    if kind not in LAYOUTS:
        raise ConfigError(f"{path}: the `infill` entry's format is {kind!r}; this musicfw reads {', '.join(LAYOUTS)}.")
    return InfillTokenizer(tokenizer, layout=kind)


class MarkersClock:
    """The base tokenizer's clock over the extended vocabulary: a marker id advances nothing
    (no bar, no time) and opens no bar; every other id is the base clock's."""

    def __init__(self, inner: Any, base_vocab_size: int):
        self.inner, self.base_v = inner, int(base_vocab_size)

    def __getattr__(self, name: str) -> Any:  # bars, seconds, has_bars, bar_tokens, mark, new_bars, ...
        inner = self.__dict__.get("inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    def would_open_bar(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        marker = x >= self.base_v
        return np.asarray(self.inner.would_open_bar(np.where(marker, 0, x)), dtype=bool) & ~marker

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.int64)
        marker = x >= self.base_v
        if not marker.any():
            self.inner.update(x)
            return
        # the rows that read a marker keep every per-row state array they had before
        B = len(x)
        before = {k: v.copy() for k, v in vars(self.inner).items()
                  if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == B}
        self.inner.update(np.where(marker, 0, x))
        for k, v in before.items():
            now = np.array(getattr(self.inner, k), copy=True)
            now[marker] = v[marker]
            setattr(self.inner, k, now)


class MarkersOff:
    """A grammar over the extended vocabulary: the inner grammar's rules (or none), the
    three markers never allowed (plain continuation with an infilling model)."""

    name = "markers-off"

    def __init__(self, tokenizer: InfillTokenizer, inner: Any, batch_size: int):
        self.tokenizer, self.inner = tokenizer, inner
        self.batch_size, self.vocab_size = int(batch_size), int(tokenizer.vocab_size)
        self.base_v = tokenizer.base_vocab_size

    def update(self, ids: np.ndarray) -> None:
        if self.inner is not None:
            self.inner.update(np.minimum(np.asarray(ids, dtype=np.int64), self.base_v - 1))

    def mask(self, remaining: Any = None) -> np.ndarray:
        out = np.zeros((self.batch_size, self.vocab_size), dtype=bool)
        out[:, : self.base_v] = True if self.inner is None else self.inner.mask(remaining)
        return out

    def start(self) -> None:
        if self.inner is not None:
            self.inner.start()

    def feed(self, tokens: np.ndarray) -> None:
        for tok in np.asarray(tokens, dtype=np.int64).reshape(-1):
            self.update(np.full(self.batch_size, tok, dtype=np.int64))


# --------------------------------------------------------------------------------------
# constrained decoding of the filled bars
# --------------------------------------------------------------------------------------


class InfillGrammar:
    """Which ids may come next while k bars are filled (rows independent, B small).

    Per row: a bar must be opened (a bar-opening id the tokenizer's grammar allows); inside
    it, the tokenizer's grammar; the bar ends where the tokenizer's grammar would allow a new
    bar (nothing left open): with ``End`` in the mmm layout (no second opener inside a bar), in
    the spm layout by the next opener as in plain continuation (the k-th bar's too: that opener
    ends the fill and is not kept, :func:`reassemble`).  Tokens for closing the current bar and
    opening (and, mmm, closing) the bars still to come are kept in reserve: with too few left,
    only what ends the bar (or the tokens that finish what is open).  ``done``: k bars closed."""

    def __init__(self, tokenizer: InfillTokenizer, batch_size: int, k: int, left: np.ndarray, controls: Any = None):
        self.tok, self.B, self.k = tokenizer, int(batch_size), int(k)
        self.V, self.base_v = int(tokenizer.vocab_size), tokenizer.base_vocab_size
        self.is_bar = tokenizer.is_bar
        self.ids = tokenizer.ids
        self.spm = tokenizer.layout == "spm"
        #: the fewest tokens one bar takes: its opener, its control tokens (a tokenizer with
        #: controls writes one per attribute after every bar opener) and (mmm) its End; spm ends
        #: the fill with one more opener
        self.bar_min = (1 if self.spm else 2) + len(tokenizer.controls)
        base = tokenizer.base.grammar(1)
        if base is not None:
            base.feed(np.asarray(left, dtype=np.int64))  # the state at the left edge (time signature, ...)
            if controls is not None:
                # the requested controls forced after each filled bar's opener (REMI: ControlGrammar,
                # as force_controls builds it), counted from the first filled bar
                base = tokenizer.base.controls_grammar(controls, base)
                base.start()
        # one grammar per row (rows finish at different times); the tokenizer is shared, not copied
        memo = lambda: {id(tokenizer.base): tokenizer.base}  # noqa: E731
        self.rows = [copy.deepcopy(base, memo()) for _ in range(self.B)] if base is not None else None
        self.done_bars = np.zeros(self.B, dtype=np.int64)
        self.opened = np.zeros(self.B, dtype=np.int64)
        self.in_bar = np.zeros(self.B, dtype=bool)

    @property
    def done(self) -> np.ndarray:
        return self.done_bars >= self.k

    def min_tokens(self) -> int:
        """The fewest tokens k bars can take (a bar opener and its controls each, and End after
        every bar in mmm, the opener after the last in spm)."""
        return self.bar_min * self.k + (1 if self.spm else 0)

    def mask(self, remaining: int) -> np.ndarray:
        out = np.zeros((self.B, self.V), dtype=bool)
        for b in range(self.B):
            if self.done_bars[b] >= self.k:
                out[b, self.ids.end] = True
                continue
            g = self.rows[b] if self.rows is not None else None
            free = g.mask(None)[0] if g is not None else np.ones(self.base_v, dtype=bool)
            closable = bool(free[self.is_bar].any())
            if not self.in_bar[b]:
                out[b, : self.base_v] = free & self.is_bar
                if not out[b].any():
                    out[b, : self.base_v] = self.is_bar
                continue
            # tokens kept for what comes after this bar's content
            if self.spm:
                after = self.bar_min * (self.k - int(self.opened[b])) + 1
            else:
                after = 1 + self.bar_min * (self.k - int(self.done_bars[b]) - 1)
            rem_eff = int(remaining) - after  # tokens this bar may still use
            if rem_eff >= 1:
                inner = g.mask(rem_eff)[0] if g is not None else np.ones(self.base_v, dtype=bool)
                out[b, : self.base_v] = inner & ~self.is_bar
            if closable:
                if self.spm:
                    out[b, : self.base_v] |= free & self.is_bar  # the next opener closes this bar
                else:
                    out[b, self.ids.end] = True
            if not out[b].any():  # something is open and no budget: finish it anyway
                out[b, : self.base_v] = free & ~self.is_bar
        return out

    def update(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        for b in range(self.B):
            if self.done_bars[b] >= self.k:
                continue
            t = int(ids[b])
            if t == self.ids.end:
                self.done_bars[b] += 1
                self.in_bar[b] = False
                continue
            if t < self.base_v and self.is_bar[t]:
                if self.in_bar[b]:  # spm: an opener closes the bar before it
                    self.done_bars[b] += 1
                self.in_bar[b] = True
                self.opened[b] += 1
            if self.rows is not None and t < self.base_v:
                self.rows[b].update(np.array([t], dtype=np.int64))


def min_fill_tokens(tokenizer: InfillTokenizer, k: int) -> int:
    """The fewest tokens ``k`` filled bars take: each bar's opener and control tokens, and
    ``End`` after each bar (mmm) or the opener that ends the last (spm)."""
    per_bar = 1 + len(tokenizer.controls)
    return (per_bar * k + 1) if tokenizer.layout == "spm" else (per_bar + 1) * k


@dataclass
class FillResult:
    """What :func:`fill_tokens` returns: per sample the plain token sequence of the filled
    song and the generated ``bar End ...`` tokens."""

    sequences: list[np.ndarray]
    filled: list[np.ndarray]
    forced_ends: list[int] = field(default_factory=list)


def fill_tokens(
    model: Any,
    tokenizer: InfillTokenizer,
    sampler: Any,
    tokens: np.ndarray,
    first: int,
    k: int,
    *,
    n: int = 1,
    max_tokens: int | None = None,
    seed: int = 0,
    device: Any = None,
    controls: Any = None,
    prefill: bool = False,
    on_filled: Any = None,
) -> FillResult:
    """Fill bars ``first .. first+k-1`` (0-based) of the plain sequence ``tokens`` ``n`` times
    (one batch).  ``max_tokens``: tokens the k bars may take in all (default: three times the
    bars' own length plus 64, within the model's context).  A model with a bounded context
    reads the bars nearest the gap (the farthest dropped first, alternately left and right)
    so that twice the gap's length fits after them; UserError when even the gap alone cannot
    fit the fewest tokens k bars need.  ``controls``: attribute controls forced in every
    filled bar (see :func:`check_fill_controls`; a per-bar list counts from the first filled
    bar and repeats).  ``prefill``: read the prompt with one ``Model.prefill`` call instead of a
    step per token (the studio's first note comes sooner; equal to the step loop up to float
    rounding, so off by default: ``musicfw infill`` draws what it always drew).  ``on_filled``:
    called after every drawn token with the first row's filled tokens so far (the studio
    streams them)."""
    import torch

    if controls is not None:
        controls = check_fill_controls(tokenizer, controls)
    kind = tokenizer.layout
    need = min_fill_tokens(tokenizer, k)  # the fewest tokens k bars take

    tokens = np.asarray(tokens, dtype=np.int64)
    bounds = bar_bounds(tokens, tokenizer.is_bar)
    original = int(bounds[first + k] - bounds[first])
    budget = int(max_tokens) if max_tokens is not None else 3 * original + 64
    ctx = model.max_context
    prompt = prompt_for(tokens, bounds, first, k, tokenizer.ids, kind)
    if ctx is not None:
        # a bounded context: drop the bars farthest from the gap until the prompt leaves room for
        # the gap's own length and markers (as training windows cut pieces at bar lines)
        room = min(budget, 2 * original + need)

        def prompt_of(lo: int, hi: int) -> np.ndarray:
            window, wb = context_window(tokens, bounds, lo, hi)
            return prompt_for(window, wb, first - lo, k, tokenizer.ids, kind)

        lo, hi = nearest_bars(bounds, first, k, lambda lo, hi: len(prompt_of(lo, hi)) + room <= int(ctx))
        prompt = prompt_of(lo, hi)
        budget = min(budget, int(ctx) - len(prompt))
    if budget < need:
        raise UserError(
            f"infill: the song around the bars is {len(prompt)} tokens and {k} bars need at least {need} more, "
            + (f"beyond the model's context of {ctx} tokens" if ctx is not None else f"but max_tokens is {max_tokens}")
            + "; fill fewer bars, use a shorter song, or raise max_tokens."
        )
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    grammar = InfillGrammar(tokenizer, n, k, tokens[: int(bounds[first])], controls=controls)
    with torch.no_grad():
        state = model.init_state(n, device=device)
        logits, state = model.step(None, state)
        if prefill and len(prompt):
            xs = torch.as_tensor(np.broadcast_to(prompt, (n, len(prompt))).copy(), dtype=torch.long, device=device)
            logits, state = model.prefill(xs, state)
        else:
            for tok in prompt:
                x = torch.full((n,), int(tok), dtype=torch.long, device=device)
                logits, state = model.step(x, state)
        out = np.zeros((n, budget), dtype=np.int64)
        length = np.zeros(n, dtype=np.int64)
        history = None  # the tokens so far, for samplers that read them (needs_history)
        if sampler.needs_history:
            history = torch.zeros((n, len(prompt) + budget), dtype=torch.long, device=device)
            history[:, : len(prompt)] = torch.as_tensor(prompt, dtype=torch.long, device=device)
        for t in range(budget):
            allowed = grammar.mask(budget - t)
            logits = logits.masked_fill(~torch.from_numpy(allowed).to(logits.device), float("-inf"))
            x = model.draw(logits, sampler, generator, None if history is None else history[:, : len(prompt) + t])
            if history is not None:
                history[:, len(prompt) + t] = x.long()
            x_np = x.detach().cpu().numpy().astype(np.int64)
            live = ~grammar.done
            out[live, t] = x_np[live]
            length[live] += 1
            grammar.update(x_np)
            if on_filled is not None and live[0]:
                on_filled(out[0, : length[0]])
            if grammar.done.all():
                break
            logits, state = model.step(x.long(), state)
    if not grammar.done.all():  # the masks make this impossible; a bug if it happens
        raise RuntimeError(f"infill: {int((~grammar.done).sum())} rows did not close their {k} bars")
    filled = [out[b, : length[b]].copy() for b in range(n)]
    whole = prompt_for(tokens, bounds, first, k, tokenizer.ids, kind)  # the song's own context on both sides
    seqs = [reassemble(whole, f, tokenizer.ids, kind) for f in filled]
    return FillResult(sequences=seqs, filled=filled)


# --------------------------------------------------------------------------------------
# songs: bars in ticks, notes in and out of the range
# --------------------------------------------------------------------------------------


def check_fill_controls(tokenizer: Any, controls: Any, where: str = "infill controls") -> Any:
    """``controls`` (``"density=4,pitch=high"``, ``"density=1 | density=6"`` bar by bar, a
    mapping or a list of them) as plain Python, checked against the model's tokenizer:
    ConfigError when it has no control tokens, or for an attribute or a level it was not
    trained with (naming the allowed ones)."""
    from musicfw.engine.generation import controls_setting

    controls = controls_setting(controls, where)
    if controls is None:
        return None
    base = tokenizer.base if isinstance(tokenizer, InfillTokenizer) else tokenizer
    if not tuple(getattr(base, "controls", ()) or ()) or not hasattr(base, "control_plan"):
        raise ConfigError(
            f"{where}: this model's {base.name!r} tokenizer has no control tokens (it was trained without "
            "tokenizer.controls), so its filled bars cannot be given controls; train with e.g. "
            "tokenizer: {name: remi, controls: [density, pitch_range]} and train.infill.enabled: true."
        )
    base.control_plan(controls, where)  # ConfigError: unknown attribute, level out of range
    return controls


def parse_bars(text: Any) -> tuple[int, int]:
    """``"5-8"`` -> (5, 8), ``"5"`` -> (5, 5) (1-based, inclusive); UserError otherwise."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        lo, hi = int(text[0]), int(text[1])
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
        if not m:
            raise UserError(f"--bars {text!r}: give a bar or a range of bars, such as 5 or 5-8 (1-based, inclusive).")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
    if lo < 1 or hi < lo:
        raise UserError(
            f"--bars {text!r} is an empty range: the first bar must be >= 1 and not after the last (e.g. 5-8)."
        )
    return lo, hi


def bar_ticks(score: Any, n_bars: int) -> np.ndarray:
    """Start tick of bars 0..n_bars (n_bars + 1 values) from the score's time signatures
    (4/4 before the first, a change taking effect at its tick, as a decoded REMI score writes
    them at bar lines)."""
    tpq = int(score.ticks_per_quarter)
    sigs = sorted((int(ts.time), int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures)
    starts = np.zeros(n_bars + 1, dtype=np.int64)
    t, num, den, i = 0, 4, 4, 0
    for b in range(n_bars + 1):
        while i < len(sigs) and sigs[i][0] <= t:
            num, den = sigs[i][1], sigs[i][2]
            i += 1
        starts[b] = t
        t += max(1, (tpq * 4 * num) // max(den, 1))
    return starts


def _notes(track: Any) -> dict[str, np.ndarray]:
    return track.notes.numpy()


def splice(original: Any, decoded: Any, first: int, k: int, n_bars: int, grid: Any) -> Any:
    """The original score with the notes starting in bars ``first .. first+k-1`` replaced by
    the notes ``decoded`` has there.  ``grid``: the decoded encoding of the original
    (bar lines as the tokenizer counts them).  Notes outside the range are the original's."""
    from symusic import Note, Track

    o_tpq, d_tpq = int(original.ticks_per_quarter), int(decoded.ticks_per_quarter)
    g_bars = bar_ticks(grid, n_bars)
    d_bars = bar_ticks(decoded, n_bars)
    scale = o_tpq / int(grid.ticks_per_quarter)
    o_lo, o_hi = int(round(g_bars[first] * scale)), int(round(g_bars[first + k] * scale))
    d_lo, d_hi = int(d_bars[first]), int(d_bars[first + k])
    out = original.copy()
    for track in out.tracks:
        a = _notes(track)
        keep = (a["time"] < o_lo) | (a["time"] >= o_hi)
        if not keep.all():
            track.notes = track.notes.__class__.from_numpy(*(a[key][keep] for key in ("time", "duration", "pitch", "velocity")))
    for dtrack in decoded.tracks:
        a = _notes(dtrack)
        inside = (a["time"] >= d_lo) & (a["time"] < d_hi)
        if not inside.any():
            continue
        # bar by bar: a note keeps its bar and its offset in it (a filled bar that wrote its own
        # time signature cannot push notes past the range); one beyond the input's bar is dropped
        t_dec = a["time"][inside].astype(np.int64)
        bar = np.searchsorted(d_bars, t_dec, side="right") - 1
        offset = np.round((t_dec - d_bars[bar]) * (o_tpq / d_tpq)).astype(np.int64)
        o_start = np.round(g_bars[bar] * scale).astype(np.int64)
        o_len = np.round(g_bars[bar + 1] * scale).astype(np.int64) - o_start
        fits = offset < o_len
        time = (o_start + offset)[fits]
        dur = np.maximum(np.round(a["duration"][inside][fits] * (o_tpq / d_tpq)).astype(np.int64), 1)
        pitch, vel = a["pitch"][inside][fits], a["velocity"][inside][fits]
        same = [t for t in out.tracks if t.program == dtrack.program and t.is_drum == dtrack.is_drum]
        target = same[0] if len(same) == 1 else None
        if target is None:
            target = Track(f"infill {dtrack.name}".strip(), int(dtrack.program), bool(dtrack.is_drum))
            out.tracks.append(target)
        time, dur, pitch, vel = _clear_of(target, time, dur, pitch, vel)
        for ti, di, pi, vi in zip(time.tolist(), dur.tolist(), pitch.tolist(), vel.tolist()):
            target.notes.append(Note(ti, di, pi, vi))
        target.notes.sort()
    return out


def _clear_of(track: Any, time: np.ndarray, dur: np.ndarray, pitch: np.ndarray, vel: np.ndarray) -> tuple[np.ndarray, ...]:
    """The new notes cut so that none sounds over a note of the same pitch already in
    ``track``: a MIDI file pairs note-on and note-off by pitch and channel, so an overlap would
    change the kept notes' lengths when the file is read back.  A new note that starts while a
    kept note of its pitch sounds is dropped; one that reaches the next kept onset of its pitch
    ends there."""
    a = _notes(track)
    keep = np.ones(len(time), dtype=bool)
    dur = dur.copy()
    for p in np.unique(pitch).tolist():
        mine = np.flatnonzero(pitch == p)
        theirs = a["pitch"] == p
        on = a["time"][theirs].astype(np.int64)
        off = on + a["duration"][theirs].astype(np.int64)
        for i in mine.tolist():
            t = int(time[i])
            if ((on <= t) & (off > t)).any():
                keep[i] = False
                continue
            later = on[on > t]
            if len(later):
                dur[i] = min(int(dur[i]), int(later.min()) - t)
    keep &= dur >= 1
    return time[keep], dur[keep], pitch[keep], vel[keep]


@dataclass
class InfillOutput:
    """What :func:`infill` wrote: the files, the scores, the bars and the settings."""

    paths: list[Path]
    scores: list[Any]
    bars: tuple[int, int]
    n_bars: int
    seed: int


def _loaded(song: Any) -> tuple[Any, str]:
    from musicfw.music.midiload import load_score

    if isinstance(song, (str, Path)):
        path = Path(song)
        if not path.is_file():
            raise DataError(f"infill: no such MIDI file {path}.")
        score, reason = load_score(path, min_notes=0, check_limits=True)
        if reason is not None:
            raise DataError(f"infill: cannot read {path}: {reason}")
        return score, str(path)
    return song, "the song"


def prepare_song(tokenizer: Any, song: Any, bars: Any) -> tuple[Any, str, np.ndarray, int, int, int]:
    """Check everything about a song and a bar range before any generation:
    ``(score, where, tokens, first (0-based), k, n_bars)``.  UserError / DataError for a model
    not trained to infill, a song the tokenizer cannot represent (with the reason), or a bar
    range outside the song or empty."""
    from musicfw.music.limits import PieceRejected

    if not isinstance(tokenizer, InfillTokenizer):
        raise UserError(
            f"infill: this model was not trained to infill (its {tokenizer.name!r} vocabulary has no "
            f"{', '.join(MARKERS)} tokens); train one with train.infill.enabled: true "
            "(examples/infill_chorales.yaml)."
        )
    lo, hi = parse_bars(bars)
    score, where = _loaded(song)
    try:
        tokens = np.asarray(tokenizer.encode(score), dtype=np.int64)
    except PieceRejected as exc:
        raise DataError(f"infill: the {tokenizer.name!r} tokenizer cannot represent {where}: {exc}") from None
    cov = tokenizer.coverage(score, tokens)
    if int(cov.get("dropped", 0)):
        reasons = "; ".join(f"{why}: {count}" for why, count in (cov.get("reasons") or {}).items())
        raise DataError(
            f"infill: the {tokenizer.name!r} tokenizer cannot represent {cov['dropped']} of the {cov['notes']} notes "
            f"of {where} ({reasons}); the model would fill bars without hearing them."
        )
    if len(tokens) == 0:
        raise DataError(f"infill: {where} encodes to no {tokenizer.name!r} tokens (it has no notes).")
    n_bars = len(bar_bounds(tokens, tokenizer.is_bar)) - 1
    if hi > n_bars:
        raise UserError(f"infill: --bars {lo}-{hi} is outside {where}, which has {n_bars} bars (1-{n_bars}).")
    return score, where, tokens, lo - 1, hi - lo + 1, n_bars


def infill(
    model: Any,
    tokenizer: Any,
    song: Any,
    bars: Any,
    *,
    sampler: Any = None,
    n: int = 1,
    seed: int = 0,
    max_tokens: int | None = None,
    out_dir: str | Path | None = None,
    stem: str | None = None,
    device: Any = None,
    controls: Any = None,
) -> InfillOutput:
    """Fill ``bars`` ("5-8", 1-based inclusive) of ``song`` (a MIDI path or a Score) ``n``
    times with an infilling model; write ``<stem>_infill_<lo>-<hi>_<i>.mid`` into ``out_dir``
    when given.  ``controls``: attribute controls forced in every filled bar (a model whose
    tokenizer has ``controls``; see :func:`check_fill_controls`).  Every check happens before
    anything is generated or written."""
    if n < 1:
        raise UserError(f"infill: n must be >= 1, got {n}.")
    score, where, tokens, first, k, n_bars = prepare_song(tokenizer, song, bars)
    if controls is not None:
        controls = check_fill_controls(tokenizer, controls)
    if sampler is None:
        from musicfw.engine.generation import build_sampler_chain

        sampler = build_sampler_chain(None)
    result = fill_tokens(model, tokenizer, sampler, tokens, first, k, n=n, max_tokens=max_tokens, seed=seed,
                         device=device, controls=controls)
    grid = tokenizer.decode(tokens)
    scores = [splice(score, tokenizer.decode(seq), first, k, n_bars, grid) for seq in result.sequences]
    paths: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        name = stem or (Path(song).stem if isinstance(song, (str, Path)) else "song")
        src = Path(song).resolve() if isinstance(song, (str, Path)) else None
        i = 0
        for s in scores:
            while True:
                path = out / f"{name}_infill_{first + 1}-{first + k}_{i:03d}.mid"
                i += 1
                if not path.exists() and (src is None or path.resolve() != src):
                    break
            s.dump_midi(str(path))
            paths.append(path)
    return InfillOutput(paths=paths, scores=scores, bars=(first + 1, first + k), n_bars=n_bars, seed=int(seed))


# --------------------------------------------------------------------------------------
# scoring: the filled bars given both sides vs given the left side only
# --------------------------------------------------------------------------------------


def span_nll(model: Any, tokenizer: InfillTokenizer, tokens: np.ndarray, first: int, k: int) -> dict[str, float]:
    """The NLL (nats, summed) of bars ``first .. first+k-1`` under ``model``, given both sides
    (the tokenizer's infilling layout) and given the left side only (the plain sequence):
    ``{"both", "left", "n", "both_notes", "left_notes", "n_notes"}``.

    Both layouts score the same information: each filled bar's tokens and the decision where
    it ends.  In the MMM layout a bar ends with ``End`` (scored) and the next filled bar's
    opener follows it (scored too, though the layout all but fixes it); in the SPM layout the
    filled bars are in plain order after the left context, each ending where the next opener
    comes (the last one with the right context's opener repeated), and the first bar's opener
    (the left context's last bar ending) is not scored, as in the plain sequence: the very
    decisions of the plain sequence; in the plain sequence
    a bar ends where the next bar's opener comes, so the scored tokens are the gap's tokens
    after its first opener (which closes the bar *before* the gap, part of the left context)
    and the opener right after the gap (at the end of ``tokens``, where there is none, the
    last End is not scored either).  Per-token numbers divide both sums by the gap's own token
    count ``n``.  (Scoring the gap's own tokens in both layouts instead, End not counted, would leave out
    every bar-ending decision of the MMM layout but count k of them in the plain one.)
    ``*_notes``: the gap's tokens other than bar openers and End markers only (``n_notes``
    of them), the same tokens in both layouts."""
    import torch

    from musicfw.engine.windows import scored_loss

    tokens = np.asarray(tokens, dtype=np.int64)
    bounds = bar_bounds(tokens, tokenizer.is_bar)
    s, e = int(bounds[first]), int(bounds[first + k])
    seq, head = layout(tokens, bounds, first, k, tokenizer.ids, tokenizer.layout)
    is_bar = tokenizer.is_bar
    seq_bar = np.zeros(len(seq), dtype=bool)
    plain = seq < len(is_bar)
    seq_bar[plain] = is_bar[seq[plain]]
    both_mask = np.zeros(len(seq), dtype=bool)
    both_mask[head:] = True  # the filled bars, their openers and End markers
    if e >= len(tokens) and tokenizer.layout == "mmm":  # nothing after the gap: its last bar's ending is
        both_mask[-1] = False  # not scored in the plain sequence (spm has no ending token there)
    both_notes = both_mask & ~seq_bar & (seq != tokenizer.ids.end)
    close = min(e + 1, len(tokens))  # the opener after the gap, when the sequence has one
    left_seq = tokens[:close]
    left_mask = np.zeros(len(left_seq), dtype=bool)
    left_mask[s + 1 : close] = True
    left_notes = np.zeros(len(left_seq), dtype=bool)
    left_notes[s:e] = ~is_bar[np.minimum(left_seq[s:e], len(is_bar) - 1)]
    out: dict[str, float] = {}
    with torch.no_grad():
        for key, x, m in (("both", seq, both_mask), ("left", left_seq, left_mask),
                          ("both_notes", seq, both_notes), ("left_notes", left_seq, left_notes)):
            batch = {"tokens": torch.from_numpy(x).long()[None], "mask": torch.from_numpy(m)[None]}
            r = scored_loss(model, batch)
            out[key] = float(r["nll_sum"])
    out["n"] = e - s
    out["n_notes"] = int(left_notes.sum())
    return out


def gap_nll(
    model: Any, tokenizer: InfillTokenizer, pieces: Sequence[np.ndarray], k: int = 2, left_bars: int = 3,
    right_bars: int = 2,
) -> dict[str, Any]:
    """The held-out measure of infilling (issue 26): for each piece with at least ``k + 2``
    bars, the ``k`` bars in its middle are the gap, read with ``left_bars`` bars before and
    ``right_bars`` after it; :func:`span_nll` scores the gap given both sides and given the
    left side only (the same decisions: each gap bar's tokens and where it ends).  Returns
    per-token NLLs, their ratio (both / left), the same on the note tokens only (``*_notes*``:
    no bar openers or End markers), the pieces and tokens counted, and the per-piece sums
    (``per_piece``).  A model with a bounded context reads the layout within it, as
    :func:`fill_tokens` reads a song: the context bars farthest from the gap dropped first
    (``context_trimmed`` pieces), the left-only sequence from the same bars."""
    both = left = both_notes = left_notes = 0.0
    n_tokens = n_notes = used = trimmed = 0
    per_piece = []
    ctx = getattr(model, "max_context", None)
    for i, tokens in enumerate(pieces):
        bounds = bar_bounds(tokens, tokenizer.is_bar)
        n_bars = len(bounds) - 1
        if n_bars < k + 2:
            continue
        first = max(1, n_bars // 2 - k // 2)
        lo, hi = max(0, first - left_bars), min(n_bars, first + k + right_bars)
        tokens = np.asarray(tokens, dtype=np.int64)
        if ctx is not None:  # the layout within the model's context, as fill_tokens reads a song:
            # the bars farthest from the gap dropped first (a sliding window would drop the front of
            # the layout, in spm the markers and the right context)
            a, z = fitting_bars(tokens, bounds, first, k, tokenizer.ids, tokenizer.layout, ctx, lo, hi)
            trimmed += (a, z) != (lo, hi)
            lo, hi = a, z
        window = tokens[int(bounds[lo]) : int(bounds[hi])]
        r = span_nll(model, tokenizer, window, first - lo, k)
        both, left, n_tokens, used = both + r["both"], left + r["left"], n_tokens + r["n"], used + 1
        both_notes, left_notes, n_notes = both_notes + r["both_notes"], left_notes + r["left_notes"], n_notes + r["n_notes"]
        per_piece.append({"piece": i, "bars": n_bars, "gap": [first + 1, first + k], "window": [lo, hi], **r})
    return {
        "pieces": used,
        "gap_bars": k,
        "left_bars": left_bars,
        "right_bars": right_bars,
        "context_trimmed": trimmed,
        "gap_tokens": n_tokens,
        "nll_both_per_token": both / max(n_tokens, 1),
        "nll_left_per_token": left / max(n_tokens, 1),
        "ratio_both_over_left": both / left if left else float("nan"),
        "note_tokens": n_notes,
        "nll_both_notes_per_token": both_notes / max(n_notes, 1),
        "nll_left_notes_per_token": left_notes / max(n_notes, 1),
        "ratio_notes_both_over_left": both_notes / left_notes if left_notes else float("nan"),
        "per_piece": per_piece,
    }


def run_metrics(model: Any, tokenizer: Any, datamodule: Any, train: Any, split: str = "test") -> dict[str, float]:
    """What a run trained with ``train.infill`` adds to its training metrics (metrics.json ->
    training): :func:`gap_nll` on ``split`` with gaps of ``clip(2, min_bars, max_bars)`` bars,
    as flat ``infill_*`` numbers.  Empty for any other run."""
    section = infill_section(train)
    if section is None or not isinstance(tokenizer, InfillTokenizer):
        return {}
    k = int(min(max(2, int(section.min_bars)), int(section.max_bars)))
    r = gap_nll(model, tokenizer, datamodule.tokens(split), k=k)
    if not r["pieces"]:
        return {}
    return {
        "infill_split": split,
        "infill_gap_bars": k,
        "infill_pieces": r["pieces"],
        "infill_gap_tokens": r["gap_tokens"],
        "infill_nll_both_sides": r["nll_both_per_token"],
        "infill_nll_left_only": r["nll_left_per_token"],
        "infill_nll_ratio": r["ratio_both_over_left"],
        "infill_nll_ratio_notes": r["ratio_notes_both_over_left"],
    }
