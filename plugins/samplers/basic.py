"""The standard samplers. torch is imported inside the methods: this module stays cheap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from musicfw.core.params import bounded
from musicfw.core.sampler import Sampler


class Greedy(Sampler):
    """Always the most likely token (argmax); for frames, every key with p > 0.5."""

    name = "greedy"
    token_kinds = ("categorical", "multihot")

    @dataclass
    class Config:
        pass

    def draw(self, logits: Any, generator: Any = None, kind: str | None = None) -> Any:
        # a greedy frame is every key whose Bernoulli probability exceeds 1/2 (logit > 0)
        if kind == "multihot":
            return (logits > 0).float()
        return logits.argmax(dim=-1)


class Temperature(Sampler):
    """Softmax with temperature τ: τ > 1 flattens the distribution, τ < 1 sharpens it."""

    name = "temperature"

    @dataclass
    class Config:
        temperature: float = bounded(1.0, gt=0, help="τ; 1 is the model's own distribution")

    def process(self, logits: Any) -> Any:
        return logits / self.config.temperature


class TopK(Sampler):
    """Sample among the k most likely tokens only (ties at the k-th logit are kept)."""

    name = "top_k"

    @dataclass
    class Config:
        k: int = bounded(40, ge=1, help="number of candidates kept")

    def process(self, logits: Any) -> Any:
        import torch

        k = min(self.config.k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, float("-inf"))


class TopP(Sampler):
    """Nucleus sampling: the smallest set of tokens whose probability reaches p."""

    name = "top_p"

    @dataclass
    class Config:
        p: float = bounded(0.95, gt=0, le=1, help="cumulative probability kept")

    def process(self, logits: Any) -> Any:
        import torch

        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits.float(), dim=-1)
        # mass strictly before each token; a token is kept while that mass is below p,
        # so the most likely token is always kept
        before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = before >= self.config.p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))


class Bernoulli(Sampler):
    """Multi-hot frames: each key on with probability sigmoid(logit / τ), independently."""

    name = "bernoulli"
    token_kinds = ("multihot",)

    @dataclass
    class Config:
        temperature: float = bounded(1.0, gt=0, help="τ applied to each key's logit")

    def process(self, logits: Any) -> Any:
        return logits / self.config.temperature

    def draw(self, logits: Any, generator: Any = None, kind: str | None = None) -> Any:
        import torch

        self.check_kind(kind)
        probs = torch.sigmoid(logits.float())
        return torch.bernoulli(probs, generator=generator)
