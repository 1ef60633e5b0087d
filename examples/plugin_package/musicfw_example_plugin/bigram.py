"""A small honest model: a bigram table of logits, trained by gradient descent.

The plugin class is cheap to import; torch is imported in ``from_config``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class Bigram:
    """p(token | previous token) from a learned table of logits (one row per previous token)."""

    name = "bigram"

    @dataclass
    class Config:
        smoothing: float = field(default=0.0, metadata={"help": "label smoothing of the training loss, in [0, 1)"})

    @classmethod
    def from_config(cls, config, tokenizer=None, **context):
        if tokenizer is None:
            raise ValueError("the bigram model needs a tokenizer")
        if tokenizer.kind != "categorical":
            raise ValueError("the bigram model predicts categorical tokens, not piano-roll frames")
        if not 0.0 <= config.smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {config.smoothing}")
        from .bigram_model import BigramModel

        return BigramModel(tokenizer.vocab_size, config.smoothing)
