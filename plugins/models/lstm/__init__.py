"""``lstm``: Performance RNN's language model, a stacked LSTM over tokens or piano-roll frames.

Embedding (categorical ids) or a linear input layer (multi-hot frames) -> stacked LSTM ->
softmax head (ids) or, for frames, a per-key sigmoid head (``head: bernoulli``, independent
keys) or a joint frame head that models the keys of a frame together (``head: nade``, RNN-NADE;
``head: autoregressive``, a MADE over the keys); see :mod:`.heads`.  Trained
with teacher forcing; ``step`` keeps the (h, c) state so that generation costs O(1) per token.
The torch implementation is in :mod:`.model`, imported only when the model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from musicfw.core.errors import ConfigError
from musicfw.core.params import bounded


@dataclass
class LSTMConfig:
    hidden_size: int = bounded(512, ge=1, le=16384, help="LSTM units per layer (Performance RNN: 512)")
    num_layers: int = bounded(3, ge=1, le=256, help="stacked LSTM layers (Performance RNN: 3)")
    embed_dim: int = bounded(256, ge=1, le=16384, help="size of the input embedding / projection")
    dropout: float = bounded(0.0, ge=0, lt=1, help="dropout between LSTM layers and before the head")
    input_dropout: float = bounded(0.0, ge=0, lt=1, help="dropout on the input embedding")
    head: str = field(
        default="bernoulli",
        metadata={
            "choices": ("bernoulli", "nade", "autoregressive"),
            "help": "output distribution of a piano-roll frame: bernoulli (independent keys), nade "
            "(RNN-NADE, keys jointly) or autoregressive (MADE over the keys); joint heads need a "
            "multi-hot tokenizer and sample key by key through the sampler",
        },
    )
    nade_hidden: int = bounded(150, ge=1, le=16384, help="NADE hidden units (head: nade)")
    ar_hidden: int = bounded(256, ge=1, le=16384, help="MADE hidden units per layer (head: autoregressive)")
    ar_layers: int = bounded(1, ge=1, le=64, help="MADE hidden layers (head: autoregressive)")


class LSTM:
    """Stacked LSTM language model (Performance RNN): softmax or per-key sigmoid head."""

    name = "lstm"
    Config = LSTMConfig

    @classmethod
    def from_config(cls, config: LSTMConfig, tokenizer: Any = None, **context: Any) -> Any:
        if tokenizer is None:
            raise ConfigError("the lstm model needs a tokenizer (its vocabulary).")
        if config.head != "bernoulli" and tokenizer.kind != "multihot":
            raise ConfigError(
                f"model.head: {config.head} predicts the keys of a piano-roll frame jointly; it needs a "
                f"multi-hot tokenizer (e.g. pianoroll), not {getattr(tokenizer, 'name', tokenizer.kind)!r} "
                f"({tokenizer.kind} tokens). Use head: bernoulli for token sequences."
            )
        from .model import LSTMModel

        return LSTMModel(
            vocab_size=tokenizer.vocab_size,
            token_kind=tokenizer.kind,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            embed_dim=config.embed_dim,
            dropout=config.dropout,
            input_dropout=config.input_dropout,
            head=config.head,
            nade_hidden=config.nade_hidden,
            ar_hidden=config.ar_hidden,
            ar_layers=config.ar_layers,
        )
