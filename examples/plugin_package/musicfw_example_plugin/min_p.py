"""min-p sampling: a cut-off relative to the most likely token."""

from __future__ import annotations

from dataclasses import dataclass

from musicfw.core.params import bounded
from musicfw.core.sampler import Sampler


class MinP(Sampler):
    """Keep tokens with probability >= min_p x the top token's probability."""

    name = "min_p"

    @dataclass
    class Config:
        # the bounds are declared on the field: musicfw checks them (YAML, overrides, Python)
        # and `musicfw plugins` shows them
        min_p: float = bounded(0.05, gt=0, le=1, help="relative cut-off")

    def process(self, logits):
        import math

        # p_i >= min_p * p_max  <=>  logit_i >= logit_max + ln(min_p)
        top = logits.max(dim=-1, keepdim=True).values
        return logits.masked_fill(logits < top + math.log(self.config.min_p), float("-inf"))
