"""A sampler that reads the tokens generated so far: no n-gram twice in a sequence."""

from __future__ import annotations

from dataclasses import dataclass

from musicfw.core.params import bounded
from musicfw.core.sampler import Sampler


class NoRepeatNGram(Sampler):
    """Forbid any token that would complete an n-gram the sequence already holds."""

    name = "no_repeat_ngram"
    needs_history = True  # process() is given the tokens so far

    @dataclass
    class Config:
        n: int = bounded(4, ge=1, help="n-gram length")

    def process(self, logits, history):
        n = self.config.n
        out = logits.clone()
        hist = history.tolist()
        for b, seq in enumerate(hist):
            if len(seq) < n - 1:
                continue
            prefix = tuple(seq[len(seq) - (n - 1):]) if n > 1 else ()
            banned = {
                seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == prefix
            }
            if banned:
                row = out[b].clone()
                row[sorted(banned)] = float("-inf")
                if bool(row.isfinite().any()):  # never forbid every token left
                    out[b] = row
        return out
