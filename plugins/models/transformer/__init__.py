"""``transformer``: a decoder-only Music Transformer (Huang et al. 2018), pre-norm and causal.

Position information is selectable: ``relative`` (the default; Music Transformer's relative
attention with the memory-efficient "skewing"), ``rope`` (rotary embeddings) or ``absolute``
(learned position embeddings).  It reads categorical tokens (embedding + softmax head) and
piano-roll frames (linear projection of the K-hot frame + per-key sigmoid head), like the LSTM.
``step`` keeps a KV cache, so generating token t computes one new position.  The torch
implementation, and how the window slides past ``max_context``, are in :mod:`.model`
(imported only when the model is built).

Sizes: the defaults are a small CPU model; Music Transformer's size for a GPU is
``d_model: 512, num_layers: 6, num_heads: 8, d_ff: 2048`` (see examples/transformer_*.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musicfw.core.errors import ConfigError
from musicfw.core.params import bounded, choice

POSITIONS = ("relative", "rope", "absolute")


@dataclass
class TransformerConfig:
    d_model: int = bounded(256, ge=1, le=16384, help="width of the residual stream (Music Transformer: 512)")
    num_layers: int = bounded(4, ge=1, le=256, help="decoder layers (Music Transformer: 6)")
    num_heads: int = bounded(4, ge=1, le=1024, help="attention heads; must divide d_model (Music Transformer: 8)")
    d_ff: int = bounded(1024, ge=1, le=65536, help="hidden units of each feed-forward layer (usually 4 x d_model)")
    dropout: float = bounded(0.1, ge=0, lt=1, help="dropout on the input and on each residual branch (attention and feed-forward outputs)")
    max_context: int = bounded(
        1024, ge=1, le=1_048_576,
        help="tokens the model conditions on; >= train.seq_len, best equal to it (longer distances are never trained); evaluation and generation slide past it",
    )
    position: str = choice("relative", POSITIONS, "relative (Music Transformer), rope or absolute")


class Transformer:
    """Decoder-only Music Transformer: relative / rotary / absolute positions, KV-cached steps."""

    name = "transformer"
    Config = TransformerConfig

    @classmethod
    def from_config(cls, config: TransformerConfig, tokenizer: Any = None, **context: Any) -> Any:
        if tokenizer is None:
            raise ConfigError("the transformer model needs a tokenizer (its vocabulary).")
        # what one field's bounds cannot say: fields that must fit together
        if config.d_model % config.num_heads:
            raise ConfigError(
                f"model.num_heads ({config.num_heads}) must divide model.d_model ({config.d_model}); "
                f"e.g. num_heads: {_divisor_hint(config.d_model, config.num_heads)}."
            )
        if config.position == "rope" and (config.d_model // config.num_heads) % 2:
            raise ConfigError(
                f"model.position: rope needs an even head size, but d_model / num_heads = "
                f"{config.d_model // config.num_heads}."
            )
        from .model import TransformerModel

        return TransformerModel(
            vocab_size=tokenizer.vocab_size,
            token_kind=tokenizer.kind,
            d_model=config.d_model,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            d_ff=config.d_ff,
            dropout=config.dropout,
            max_context=config.max_context,
            position=config.position,
        )


def _divisor_hint(width: int, heads: int) -> int:
    """The divisor of ``width`` closest to ``heads`` (for the error message)."""
    divisors = [d for d in range(1, width + 1) if width % d == 0]
    return min(divisors, key=lambda d: (abs(d - heads), d))
