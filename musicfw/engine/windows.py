"""Scoring sequences longer than a model's context: sliding windows, every token once.

A model that declares ``max_context = L`` is never shown more than L positions.  A longer
held-out piece is scored in windows of L positions that start every ``stride`` positions
(default ``L // 2``): the first window scores its L positions; every later window scores only
its last ``stride`` positions, the ones no earlier window reached, so each token is scored
exactly once and with at least ``L - stride`` tokens of context (the Hugging Face perplexity
recipe).  The first position of a later window is fed the model's start input, but it is never
one of the scored positions.

Models with ``max_context = None`` get their batches unchanged: the result equals
``model.loss(batch)``.
"""

from __future__ import annotations

from typing import Any, Iterator


def window_starts(length: int, context: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """``(start, end, first_scored)`` of each window over ``length`` positions."""
    if context < 1 or not 1 <= stride <= context:
        raise ValueError(f"need context >= 1 and 1 <= stride <= context, got {context}, {stride}")
    start, scored_to = 0, 0
    while True:
        end = min(start + context, length)
        yield start, end, scored_to
        scored_to = end
        if end >= length:
            return
        start += stride


def scored_loss(model: Any, batch: dict[str, Any], stride: int | None = None) -> dict[str, Any]:
    """``{"nll_sum", "n_targets"}`` of ``batch`` under ``model``, in sliding windows when the
    batch is longer than ``model.max_context`` (see the module docstring).  Other entries of
    ``model.loss`` are kept only when no windowing was needed."""
    context = model.max_context
    tokens, mask = batch["tokens"], batch["mask"]
    T = int(tokens.shape[1])
    if context is None or T <= context:
        return model.loss(batch)
    stride = int(stride or max(1, context // 2))
    nll_sum, n = 0.0, 0
    for start, end, first in window_starts(T, int(context), stride):
        sub_mask = mask[:, start:end].clone()
        sub_mask[:, : first - start] = False  # positions an earlier window already scored
        if not bool(sub_mask.any()):
            continue
        out = model.loss({**batch, "tokens": tokens[:, start:end], "mask": sub_mask})
        nll_sum = out["nll_sum"].double() + nll_sum
        n += int(out["n_targets"])
    import torch

    return {"nll_sum": torch.as_tensor(nll_sum, dtype=torch.float64), "n_targets": torch.tensor(n)}
