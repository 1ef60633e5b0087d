"""``markov``: an order-n Markov chain fitted by counting (no gradient descent).

It speaks the same protocol as the neural models (``loss``, ``init_state``, ``step``), on
categorical tokens and on piano-roll frames (each distinct frame a state; rare and unseen
frames share one unknown-frame state whose frames are scored by a per-key Bernoulli model).
The implementation (torch) is in :mod:`.model`, imported only when the model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from musicfw.core.errors import ConfigError
from musicfw.core.params import bounded


@dataclass
class MarkovConfig:
    order: int = bounded(2, ge=1, le=64, help="context length n (tokens or frames)")
    smoothing: str = field(
        default="witten_bell",
        metadata={
            "choices": ("witten_bell", "add_k"),
            "help": "witten_bell: interpolate orders n..1 down to an add-k unigram; "
            "add_k: add k to every count of the order-n table",
        },
    )
    k: float = bounded(0.01, gt=0, help="add-k pseudo-count (> 0 so that every probability is finite)")
    min_frame_count: int = bounded(
        2, ge=1, help="piano-roll frames seen fewer times in training share the unknown-frame state"
    )


class Markov:
    """Order-n Markov chain from counts, smoothed (Witten-Bell interpolation or add-k)."""

    name = "markov"
    Config = MarkovConfig

    @classmethod
    def from_config(cls, config: MarkovConfig, tokenizer: Any = None, **context: Any) -> Any:
        if tokenizer is None:
            raise ConfigError("the markov model needs a tokenizer (its vocabulary).")
        from .model import MarkovModel

        return MarkovModel(
            vocab_size=tokenizer.vocab_size,
            token_kind=tokenizer.kind,
            order=config.order,
            smoothing=config.smoothing,
            k=config.k,
            min_frame_count=config.min_frame_count,
        )
