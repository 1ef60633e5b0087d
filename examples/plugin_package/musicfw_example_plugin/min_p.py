"""min-p sampling: a cut-off relative to the most likely token."""

from __future__ import annotations

from dataclasses import dataclass, field

from musicfw.core.sampler import Sampler


class MinP(Sampler):
    """Keep tokens with probability >= min_p x the top token's probability."""

    name = "min_p"

    @dataclass
    class Config:
        min_p: float = field(default=0.05, metadata={"help": "relative cut-off in (0, 1]"})

    def __init__(self, config=None):
        super().__init__(config)
        if not 0 < self.config.min_p <= 1:
            raise ValueError(f"min_p must be in (0, 1], got {self.config.min_p}")

    def process(self, logits):
        import math

        # p_i >= min_p * p_max  <=>  logit_i >= logit_max + ln(min_p)
        top = logits.max(dim=-1, keepdim=True).values
        return logits.masked_fill(logits < top + math.log(self.config.min_p), float("-inf"))
