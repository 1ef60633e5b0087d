"""REMI's attribute controls at generation: a grammar that puts a bar's control tokens right
after its ``Bar`` token, forcing the levels a user asked for.

:class:`ControlGrammar` wraps a REMI grammar (:class:`~.structure.REMIGrammar` or the chord
grammar) of a tokenizer with ``controls``.  On top of the wrapped grammar's rules:

* after a ``Bar`` come exactly the bar's control tokens, one per attribute in the tokenizer's
  order (``Density``, then ``Polyphony`` ... as configured), and nothing else;
* control tokens appear nowhere else;
* the bar's ``TimeSig`` may follow its controls (as encode writes it).

:meth:`ControlGrammar.force` sets the levels: per bar of the continuation (counted from the
first ``Bar`` after :meth:`start`, i.e. after a prompt; the plan repeats), each attribute's
level, or -1 to leave it to the model.  So the same object serves plain continuation and any
other loop that feeds the bars it generates through ``update`` (infilling: the bars to fill).

numpy only: cheap to import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from musicfw.core.constraints import Grammar


class ControlGrammar(Grammar):
    """A REMI grammar plus the bar-level control tokens (see the module docstring)."""

    def __init__(self, inner: Any, tokenizer: Any):
        super().__init__(tokenizer, inner.batch_size)
        self.inner = inner
        self.name = f"{inner.name}+controls"
        #: [n_controls, levels] ids
        self.ids = np.asarray(tokenizer.control_ids, dtype=np.int64)
        self.n = self.ids.shape[0]
        V = self.vocab_size
        #: id -> attribute index (-1: not a control)
        self.attr_of = np.full(V, -1, dtype=np.int64)
        self.level_of = np.zeros(V, dtype=np.int64)
        for i in range(self.n):
            self.attr_of[self.ids[i]] = i
            self.level_of[self.ids[i]] = np.arange(self.ids.shape[1])
        self.is_bar = np.asarray(tokenizer.token_types) == "Bar"
        self.plan = np.full((1, self.n), -1, dtype=np.int64)
        self.reset()

    def reset(self) -> None:
        B = self.batch_size
        if hasattr(self.inner, "reset"):
            self.inner.reset()
        self.need = np.full(B, self.n, dtype=np.int64)  # next control owed (n: none)
        self.bar_index = np.full(B, -1, dtype=np.int64)  # bar of the continuation
        self.active = False

    def force(self, plan: np.ndarray) -> None:
        """Levels to force: ``[bars, n_controls]`` (-1: the model chooses)."""
        plan = np.asarray(plan, dtype=np.int64)
        if plan.ndim != 2 or plan.shape[1] != self.n or len(plan) == 0:
            raise ValueError(f"ControlGrammar.force: a [bars, {self.n}] plan, got shape {plan.shape}")
        if np.any(plan >= self.ids.shape[1]):
            raise ValueError("ControlGrammar.force: a level beyond control_levels")
        self.plan = plan

    def start(self) -> None:
        self.inner.start()
        self.active = True

    def update(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        bar = self.is_bar[ids]
        ctrl = self.attr_of[ids] >= 0
        if self.active:
            self.bar_index = np.where(bar, self.bar_index + 1, self.bar_index)
        self.inner.update(ids)
        # a TimeSig may follow the bar's controls as it follows the Bar
        self.inner.after_bar = self.inner.after_bar | ctrl
        self.need = np.where(bar, 0, np.where(ctrl, self.attr_of[ids] + 1, self.need))

    def mask(self, remaining: int | np.ndarray | None = None) -> np.ndarray:
        allowed = self.inner.mask(remaining)
        allowed[:, self.ids.reshape(-1)] = False
        owed = self.need < self.n
        if owed.any():
            rows = np.flatnonzero(owed)
            a = self.need[rows]
            allowed[rows] = False
            row_plan = self.plan[np.maximum(self.bar_index[rows], 0) % len(self.plan)]
            level = row_plan[np.arange(len(rows)), a]
            forced = self.active & (self.bar_index[rows] >= 0) & (level >= 0)
            # forced rows: the one requested token; free rows: any level of the owed attribute
            fr = rows[forced]
            allowed[fr, self.ids[a[forced], level[forced]]] = True
            free = rows[~forced]
            if len(free):
                allowed[free[:, None], self.ids[a[~forced]]] = True
        return allowed


def force_controls(tokenizer: Any, controls: Any, batch_size: int = 1, grammar: Any = None) -> ControlGrammar:
    """A constraint that forces ``controls`` (``"density=4,pitch_range=high"``, a mapping, or
    a list of them bar by bar) after every Bar a generation loop feeds it once
    :meth:`~ControlGrammar.start` was called; ``grammar``: the grammar to extend (default:
    the tokenizer's own).  ConfigError for controls the tokenizer was not trained with."""
    if grammar is None:
        grammar = tokenizer.grammar(batch_size)
    return tokenizer.controls_grammar(controls, grammar)
