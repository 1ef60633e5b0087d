"""The default optimizer and learning-rate schedules (used by :meth:`Model.configure_optimizers`).

A model that wants something else (parameter groups, another optimizer) overrides
``configure_optimizers(train, total_steps)`` and may still use :func:`lr_schedule` here, so
that ``train.lr_schedule`` / ``train.warmup_steps`` keep their meaning.

torch is imported inside the functions.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from musicfw.core.errors import ConfigError


def lr_factor(train: Any, total_steps: int | float | None):
    """``step -> factor`` of the base lr: linear warm-up over ``train.warmup_steps``, then
    constant or cosine decay to 0 at ``total_steps``."""
    warm = int(train.warmup_steps)
    cosine = train.lr_schedule == "cosine"
    if cosine and (total_steps is None or not math.isfinite(total_steps)):
        raise ConfigError("train.lr_schedule: cosine needs a finite train.max_steps or train.max_epochs.")

    def factor(step: int) -> float:
        f = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
        if cosine:
            progress = min(1.0, max(0, step - warm) / max(1, total_steps - warm))  # type: ignore[operator]
            f *= 0.5 * (1.0 + math.cos(math.pi * progress))
        return f

    return factor


def lr_schedule(optimizer: Any, train: Any, total_steps: int | float | None) -> Any:
    """``optimizer`` with the ``train.lr_schedule`` in Lightning's dict form (or the bare
    optimizer when the schedule is constant with no warm-up)."""
    import torch

    if train.lr_schedule == "plateau":
        # warm-up for plateau is done per batch by the LightningModule
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=train.lr_plateau_factor, patience=train.lr_plateau_patience
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": plateau, "monitor": "val/nll", "interval": "epoch", "strict": False},
        }
    if int(train.warmup_steps) == 0 and train.lr_schedule != "cosine":
        return optimizer
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(train, total_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def default_optimizer(params: Iterable[Any], train: Any, total_steps: int | float | None) -> Any:
    """AdamW(lr, weight_decay) over ``params`` with the configured schedule."""
    import torch

    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    return lr_schedule(opt, train, total_steps)


def decay_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW parameter groups: weight decay on matrices (ndim >= 2: linear and embedding
    weights), none on biases, norms' gains and other vectors (the nanoGPT / GPT-2 recipe)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
