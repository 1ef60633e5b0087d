"""Structural constraints: which token ids may come next, batched over sequences.

A *grammar* follows B sequences token by token (``update(ids)``) and says, before each
step, which ids may follow each of them (``mask(remaining) -> bool [B, V]``).  The generation
loop sets the logits of forbidden ids to -inf before sampling, so every constrained sequence
decodes without dropped tokens (``tokenizer.count_invalid(tokens) == 0``).

``remaining`` is the number of tokens each sequence may still emit: a REMI note is three
tokens (Pitch, Velocity, Duration) and is only started when it can be finished; a MIDI-like
NoteOn needs a later TimeShift to have a length.

Grammars exist for the REMI and MIDI-like vocabularies; they are found from the tokenizer's
``token_types``/``token_values`` arrays (one entry per id), so any tokenizer with the same
token families gets them.  A tokenizer can also bring its own: a method ``grammar(batch_size)``
returning an object with ``update``, ``mask`` and ``vocab_size`` is used first.

Everything is numpy over ``[B]`` state arrays and ``[B, V]`` masks: one step costs a few
vectorized operations whatever B and the sequence length are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

REMI_TYPES = frozenset({"Bar", "Position", "Pitch", "Velocity", "Duration"})
MIDI_LIKE_TYPES = frozenset({"NoteOn", "NoteOff", "TimeShift", "Velocity"})


class Grammar:
    """Base class: batched state over ``batch_size`` sequences of one tokenizer's ids."""

    #: a short name for reports
    name = "grammar"

    def __init__(self, tokenizer: Any, batch_size: int):
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.vocab_size = int(tokenizer.vocab_size)

    def update(self, ids: np.ndarray) -> None:  # pragma: no cover - abstract
        """Advance every sequence by one token (``ids``: int ``[B]``)."""
        raise TypeError(f"{type(self).__name__} does not implement update")

    def mask(self, remaining: int | np.ndarray | None = None) -> np.ndarray:  # pragma: no cover
        """Allowed next ids, bool ``[B, V]``; ``remaining``: tokens each row may still emit
        (None: unbounded)."""
        raise TypeError(f"{type(self).__name__} does not implement mask")

    # helpers ---------------------------------------------------------------------------
    def feed(self, tokens: np.ndarray) -> None:
        """Advance every sequence by the same token sequence (a prompt)."""
        for tok in np.asarray(tokens, dtype=np.int64).reshape(-1):
            self.update(np.full(self.batch_size, tok, dtype=np.int64))

    def _remaining(self, remaining: int | np.ndarray | None) -> np.ndarray:
        if remaining is None:
            return np.full(self.batch_size, np.iinfo(np.int64).max // 2, dtype=np.int64)
        return np.broadcast_to(np.asarray(remaining, dtype=np.int64), (self.batch_size,))


def _codes(token_types: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Map each id's type name to its index in ``names`` (-1 for other types)."""
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup.get(str(t), -1) for t in token_types], dtype=np.int64)


class REMIGrammar(Grammar):
    """REMI: Bar, [TimeSig], Position, [Tempo, Chord, Program], Pitch Velocity Duration ...

    Rules (each one keeps decode from dropping a token, or follows how encode writes bars):

    * the sequence starts with ``Bar``;
    * a ``TimeSig`` only right after ``Bar`` (the bar's length is then known before its
      positions; a time signature later in a bar would re-time positions already placed);
    * ``Position_k`` only inside a bar, strictly after the bar's last position, and
      ``k`` < the bar's length in positions (a position beyond the bar is dropped);
    * ``Tempo``, ``Chord``, ``Program`` and ``Pitch`` only once the bar has a position;
    * ``Pitch`` is always followed by ``Velocity`` then ``Duration``, and neither of those
      appears anywhere else (a broken triplet is dropped); a Pitch only when three tokens
      are left.
    * ``Bar`` may come whenever no note triplet is open.
    """

    name = "remi"
    TYPES = ("Bar", "Position", "Pitch", "Velocity", "Duration", "Tempo", "TimeSig", "Chord", "Program")
    BAR, POSITION, PITCH, VELOCITY, DURATION, TEMPO, TIMESIG, CHORD, PROGRAM = range(9)

    def __init__(self, tokenizer: Any, batch_size: int):
        super().__init__(tokenizer, batch_size)
        self.codes = _codes(tokenizer.token_types, self.TYPES)
        self.values = np.asarray(tokenizer.token_values, dtype=np.int64)
        # a 4/4 bar unless a TimeSig token says otherwise (REMI decodes bars without one as 4/4)
        res = int(getattr(getattr(tokenizer, "config", None), "beat_resolution", 4))
        self.default_bar_len = 4 * res
        self.pos_ids = np.flatnonzero(self.codes == self.POSITION)
        self.pos_values = self.values[self.pos_ids]
        # id -> class column used when expanding per-row class flags to [B, V]
        self.col = np.where(self.codes >= 0, self.codes, len(self.TYPES))
        self.reset()

    def reset(self) -> None:
        B = self.batch_size
        self.started = np.zeros(B, dtype=bool)  # a Bar has been seen
        self.after_bar = np.zeros(B, dtype=bool)  # the last token is a Bar
        self.bar_len = np.full(B, self.default_bar_len, dtype=np.int64)
        self.pos = np.full(B, -1, dtype=np.int64)  # last Position in the current bar
        self.open = np.zeros(B, dtype=np.int64)  # 0: no triplet; 1: after Pitch; 2: after Velocity

    def update(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        code = self.codes[ids]
        val = self.values[ids]
        is_bar = code == self.BAR
        self.started |= is_bar
        self.pos[is_bar] = -1
        is_ts = code == self.TIMESIG
        self.bar_len[is_ts] = val[is_ts]
        is_pos = code == self.POSITION
        self.pos[is_pos] = val[is_pos]
        self.after_bar = is_bar
        self.open = np.where(
            code == self.PITCH, 1, np.where((code == self.VELOCITY) & (self.open == 1), 2, 0)
        )

    def mask(self, remaining: int | np.ndarray | None = None) -> np.ndarray:
        rem = self._remaining(remaining)
        B = self.batch_size
        free = self.open == 0
        at_pos = free & self.started & (self.pos >= 0)
        flags = np.zeros((B, len(self.TYPES) + 1), dtype=bool)  # last column: unknown types
        flags[:, self.BAR] = free
        flags[:, self.TIMESIG] = free & self.after_bar
        flags[:, self.POSITION] = free & self.started
        for c in (self.TEMPO, self.CHORD, self.PROGRAM):
            flags[:, c] = at_pos
        flags[:, self.PITCH] = at_pos & (rem >= 3)
        flags[:, self.VELOCITY] = self.open == 1
        flags[:, self.DURATION] = self.open == 2
        allowed = flags[:, self.col]
        if len(self.pos_ids):
            ok = (self.pos_values[None, :] > self.pos[:, None]) & (self.pos_values[None, :] < self.bar_len[:, None])
            allowed[:, self.pos_ids] &= ok
        return allowed


class MIDILikeGrammar(Grammar):
    """Performance events: NoteOn, NoteOff, TimeShift, Velocity.

    Rules:

    * ``NoteOff_p`` only while pitch p sounds, and not at the step its note started (a
      zero-length note is dropped);
    * ``NoteOn_p`` not twice at one step (the first note would have no length), and only
      when a TimeShift can still follow (two tokens left);
    * when one token is left and a note started at the current step, only a TimeShift;
    * no two ``Velocity`` tokens in a row (the first would be overwritten unused).
    """

    name = "midi_like"
    TYPES = ("NoteOn", "NoteOff", "TimeShift", "Velocity")
    NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY = range(4)

    def __init__(self, tokenizer: Any, batch_size: int):
        super().__init__(tokenizer, batch_size)
        self.codes = _codes(tokenizer.token_types, self.TYPES)
        self.values = np.asarray(tokenizer.token_values, dtype=np.int64)
        # pitch -> column of the per-row pitch state (only pitches that have note events)
        note = (self.codes == self.NOTE_ON) | (self.codes == self.NOTE_OFF)
        self.pitches = np.unique(self.values[note])
        self.key = np.where(note, np.searchsorted(self.pitches, self.values), 0)
        self.on_ids = np.flatnonzero(self.codes == self.NOTE_ON)
        self.off_ids = np.flatnonzero(self.codes == self.NOTE_OFF)
        self.col = np.where(self.codes >= 0, self.codes, len(self.TYPES))
        self.reset()

    def reset(self) -> None:
        B, P = self.batch_size, len(self.pitches)
        self.sounding = np.zeros((B, P), dtype=bool)
        self.started_now = np.zeros((B, P), dtype=bool)  # NoteOn at the current time step
        self.any_now = np.zeros(B, dtype=bool)
        self.after_velocity = np.zeros(B, dtype=bool)

    def update(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        code = self.codes[ids]
        rows = np.arange(self.batch_size)
        key = self.key[ids]
        on = code == self.NOTE_ON
        off = code == self.NOTE_OFF
        shift = code == self.TIME_SHIFT
        self.sounding[rows[on], key[on]] = True
        self.started_now[rows[on], key[on]] = True
        self.sounding[rows[off], key[off]] = False
        self.started_now[shift] = False
        self.any_now = (self.any_now | on) & ~shift
        self.after_velocity = code == self.VELOCITY

    def mask(self, remaining: int | np.ndarray | None = None) -> np.ndarray:
        rem = self._remaining(remaining)
        B = self.batch_size
        last = rem <= 1
        flags = np.zeros((B, len(self.TYPES) + 1), dtype=bool)
        flags[:, self.TIME_SHIFT] = True
        flags[:, self.NOTE_ON] = ~last
        flags[:, self.NOTE_OFF] = ~(last & self.any_now)
        flags[:, self.VELOCITY] = ~self.after_velocity & ~(last & self.any_now)
        allowed = flags[:, self.col]
        allowed[:, self.on_ids] &= ~self.started_now[:, self.key[self.on_ids]]
        allowed[:, self.off_ids] &= (self.sounding & ~self.started_now)[:, self.key[self.off_ids]]
        return allowed


def grammar_for(tokenizer: Any, batch_size: int = 1) -> Grammar | None:
    """The grammar of a tokenizer, or None when it has none (frame tokenizers need none).

    A tokenizer's own ``grammar(batch_size)`` method wins; otherwise REMI and MIDI-like
    vocabularies are recognized from ``token_types``.
    """
    own = getattr(tokenizer, "grammar", None)
    if callable(own):
        return own(batch_size)
    if getattr(tokenizer, "kind", "categorical") != "categorical":
        return None
    types = getattr(tokenizer, "token_types", None)
    if types is None or getattr(tokenizer, "token_values", None) is None:
        return None
    present = {str(t) for t in np.unique(np.asarray(types))}
    if REMI_TYPES <= present:
        return REMIGrammar(tokenizer, batch_size)
    if MIDI_LIKE_TYPES <= present:
        return MIDILikeGrammar(tokenizer, batch_size)
    return None


def violations(grammar: Grammar, tokens: np.ndarray) -> list[int]:
    """Positions where one sequence (run through a 1-row ``grammar``) breaks the rules,
    with no budget limit.  An encoded piece should have none."""
    bad = []
    for i, tok in enumerate(np.asarray(tokens, dtype=np.int64).reshape(-1)):
        if not grammar.mask(None)[0, tok]:
            bad.append(i)
        grammar.update(np.array([tok]))
    return bad
