"""Samplers that read the tokens generated so far (``needs_history = True``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musicfw.core.params import bounded
from musicfw.core.sampler import Sampler


class RepetitionPenalty(Sampler):
    """CTRL's repetition penalty (Keskar et al. 2019), as Hugging Face ``generate`` applies it:
    the logit of every id already in the sequence (prompt included) is divided by θ when
    positive and multiplied by θ when negative, so θ > 1 makes repeats less likely."""

    name = "repetition_penalty"
    needs_history = True

    @dataclass
    class Config:
        penalty: float = bounded(1.2, gt=0, help="θ; 1 changes nothing, > 1 discourages repeats")
        window: int = bounded(0, ge=0, help="only the last N tokens count; 0 = the whole sequence")

    def process(self, logits: Any, history: Any) -> Any:
        import torch

        if history.shape[1] == 0:
            return logits
        seen_ids = history[:, -self.config.window :] if self.config.window else history
        seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
        seen.scatter_(1, seen_ids.long().clamp(0, logits.shape[-1] - 1), True)
        theta = self.config.penalty
        penalized = torch.where(logits > 0, logits / theta, logits * theta)
        return torch.where(seen, penalized, logits)
