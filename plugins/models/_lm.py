"""What the token language models (``lstm``, ``transformer``) share: the start input and the
embedding of their inputs, and the masked token loss.  Both predict token t from tokens < t,
fed as ``[start, x_0, ..., x_{T-2}]``; ids (categorical) or multi-hot frames (multihot)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class TokenInputs:
    """Mixin for a model with ``vocab_size`` and ``token_kind``: :meth:`init_inputs` makes
    ``embed`` (and ``start`` for frames); :meth:`_inputs` gives the teacher-forced inputs."""

    vocab_size: int
    token_kind: str

    def init_inputs(self, dim: int) -> None:
        """``embed``: an embedding with one extra row, V, the start input (ids), or a linear
        map of frames plus a learned ``start`` vector (multi-hot)."""
        if self.token_kind == "categorical":
            self.embed = nn.Embedding(self.vocab_size + 1, dim)  # row V is the start input
        else:
            self.embed = nn.Linear(self.vocab_size, dim)
            self.start = nn.Parameter(torch.zeros(dim))

    def _start(self, batch_size: int, device: torch.device) -> torch.Tensor:
        if self.token_kind == "categorical":
            ids = torch.full((batch_size,), self.vocab_size, dtype=torch.long, device=device)
            return self.embed(ids)
        return self.start.expand(batch_size, -1)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.token_kind == "categorical":
            return self.embed(x.long().clamp(min=0))  # padding ids (if negative) are never scored
        return self.embed(x.to(self.embed.weight.dtype))

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[start, embed(x_0), ..., embed(x_{T-2})]``: ``[B, T, dim]``."""
        B, T = tokens.shape[0], tokens.shape[1]
        start = self._start(B, tokens.device).unsqueeze(1)
        return torch.cat([start, self._embed(tokens[:, : T - 1])], dim=1) if T > 1 else start


def token_loss(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, token_kind: str) -> dict[str, Any]:
    """The model protocol's loss dict for teacher-forced ``logits``: softmax cross-entropy
    over ids, or per-key Bernoulli over frames, summed over the scored (``mask``) positions;
    plus the next-token ``accuracy`` for ids."""
    if token_kind == "categorical":
        nll = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            tokens.long().masked_fill(~mask, 0).reshape(-1),
            reduction="none",
        ).view(mask.shape)
    else:
        nll = F.binary_cross_entropy_with_logits(logits.float(), tokens.float(), reduction="none").sum(-1)
    nll = nll * mask
    n = mask.sum()
    nll_sum = nll.sum()
    out = {"loss": nll_sum / n.clamp(min=1), "nll_sum": nll_sum.detach(), "n_targets": n}
    if token_kind == "categorical":
        with torch.no_grad():
            correct = (logits.argmax(-1) == tokens) & mask
            out["accuracy"] = correct.sum().float() / n.clamp(min=1)
    return out
