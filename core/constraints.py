"""Structural constraints: which token ids may come next, batched over sequences.

A *grammar* follows B sequences token by token (``update(ids)``) and says, before each
step, which ids may follow each of them (``mask(remaining) -> bool [B, V]``).  The generation
loop sets the logits of forbidden ids to -inf before sampling, so every constrained sequence
decodes without dropped tokens (``tokenizer.count_invalid(tokens) == 0``).

``remaining`` is the number of tokens each sequence may still emit: a REMI note is three
tokens (Pitch, Velocity, Duration) and is only started when it can be finished; a MIDI-like
NoteOn needs a later TimeShift to have a length.

A tokenizer brings its own grammar: ``Tokenizer.grammar(batch_size)`` returns a
:class:`Grammar` subclass (the built-in REMI and MIDI-like grammars live in their tokenizer
plugins); a tokenizer without one (the default) is sampled unconstrained.

Everything is numpy over ``[B]`` state arrays and ``[B, V]`` masks: one step costs a few
vectorized operations whatever B and the sequence length are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

class Grammar:
    """Base class: batched state over ``batch_size`` sequences of one tokenizer's ids."""

    #: a short name for reports
    name: str = "grammar"
    #: the tokenizer whose ids it rules, B and V
    tokenizer: Any
    batch_size: int
    vocab_size: int

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

    def start(self) -> None:
        """Called once the prompt (if any) has been fed, before the first generated token:
        a grammar whose rules count from the start of the continuation (a chord
        progression) starts counting here.  Default: nothing to do."""

    # helpers ---------------------------------------------------------------------------
    def feed(self, tokens: np.ndarray) -> None:
        """Advance every sequence by the same token sequence (a prompt)."""
        for tok in np.asarray(tokens, dtype=np.int64).reshape(-1):
            self.update(np.full(self.batch_size, tok, dtype=np.int64))

    def _remaining(self, remaining: int | np.ndarray | None) -> np.ndarray:
        if remaining is None:
            return np.full(self.batch_size, np.iinfo(np.int64).max // 2, dtype=np.int64)
        return np.broadcast_to(np.asarray(remaining, dtype=np.int64), (self.batch_size,))


def grammar_for(tokenizer: Any, batch_size: int = 1) -> Grammar | None:
    """The tokenizer's grammar (``Tokenizer.grammar``), or None when it has none (frame
    tokenizers need none)."""
    if tokenizer.kind != "categorical":
        return None
    return tokenizer.grammar(batch_size)


def violations(grammar: Grammar, tokens: np.ndarray) -> list[int]:
    """Positions where one sequence (run through a 1-row ``grammar``) breaks the rules,
    with no budget limit.  An encoded piece should have none."""
    bad = []
    for i, tok in enumerate(np.asarray(tokens, dtype=np.int64).reshape(-1)):
        if not grammar.mask(None)[0, tok]:
            bad.append(i)
        grammar.update(np.array([tok]))
    return bad
