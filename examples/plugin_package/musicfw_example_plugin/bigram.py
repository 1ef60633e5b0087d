"""A small honest model: a bigram table of logits, trained by gradient descent.

The plugin class is cheap to import; torch is imported in ``from_config``.
"""

from __future__ import annotations

from dataclasses import dataclass

from musicfw.core.params import bounded


class Bigram:
    """p(token | previous token) from a learned table of logits (one row per previous token)."""

    name = "bigram"

    @dataclass
    class Config:
        smoothing: float = bounded(0.0, ge=0, lt=1, help="label smoothing of the training loss")

    @classmethod
    def from_config(cls, config, tokenizer=None, **context):
        if tokenizer is None:
            raise ValueError("the bigram model needs a tokenizer")
        if tokenizer.kind != "categorical":
            raise ValueError("the bigram model predicts categorical tokens, not piano-roll frames")
        from .bigram_model import BigramModel

        return BigramModel(tokenizer.vocab_size, config.smoothing)
