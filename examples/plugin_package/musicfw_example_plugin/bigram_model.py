"""The torch side of the bigram model (imported only when one is built)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from musicfw.core.model import Model


class BigramModel(Model, torch.nn.Module):
    token_kind = "categorical"

    def __init__(self, vocab_size: int, smoothing: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.smoothing = smoothing
        self.table = torch.nn.Embedding(vocab_size + 1, vocab_size)  # row V: the start of a piece
        torch.nn.init.zeros_(self.table.weight)

    def forward(self, tokens):
        start = torch.full_like(tokens[:, :1], self.vocab_size)
        prev = torch.cat([start, tokens[:, :-1]], dim=1).clamp(min=0)
        return self.table(prev)

    def loss(self, batch):
        tokens, mask = batch["tokens"].long(), batch["mask"].bool()
        logits = self(tokens).float()
        targets = tokens.masked_fill(~mask, 0)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none") * mask
        train = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", label_smoothing=self.smoothing) * mask
        n = mask.sum()
        return {"loss": train.sum() / n.clamp(min=1), "nll_sum": nll.sum().detach(), "n_targets": n}

    def init_state(self, batch_size, device=None):
        return torch.full((batch_size,), self.vocab_size, dtype=torch.long, device=device or self.table.weight.device)

    def step(self, x, state):
        prev = state if x is None else x.long()
        return self.table(prev), prev

    def configure_optimizers(self, train, total_steps):
        # the optimizer hook: plain SGD with momentum suits a table of logits
        return torch.optim.SGD(self.parameters(), lr=train.lr, momentum=0.9)
