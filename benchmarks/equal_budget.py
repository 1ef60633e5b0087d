"""Equal training budgets for model comparisons, counted instead of timed (issue 33).

A comparison "at equal budget" used to give each model the CPU seconds the reference model
took, with both models' seconds per step probed in the same run: the step counts, and with
them every digit, then moved with the machine and its load (the same command gave a
Transformer 0.942x and 1.002x the LSTM's NLL).  Here the budget is **floating-point
operations counted on one training step**, which depend only on the models' shapes, the batch
size and the window length:

    budget = reference steps x FLOPs of one reference training step
    steps  = round(budget / FLOPs of one training step of the other model)   (to a multiple)

Why counted FLOPs and not a committed timing ratio: a recorded seconds-per-step ratio holds for
one machine, one torch build and one thread count, and has to be re-measured (noisily) for every
new candidate model; a count is exact, the same on every machine, and costs one step.  It is
also how compute budgets are stated in the scaling-law literature (Kaplan et al. 2020: C ~ 6 N
tokens).  What it does not say is how fast a model runs here: on this CPU a FLOP of relative
attention costs more seconds than a FLOP of the fused LSTM kernel, so the benchmarks print
wall-clock fit times beside the counted budget.

The count: ``torch.utils.flop_counter.FlopCounterMode`` around one forward + backward pass of
``model.loss`` on a batch of ``batch_size`` windows of ``seq_len`` tokens (a multiply-accumulate
is 2 FLOPs; matrix products and attention are counted, element-wise work is not).  oneDNN is
switched off while counting: the CPU LSTM otherwise runs as one fused ``mkldnn_rnn_layer`` op
that the counter has no formula for (it counted only the LSTM's output layer), while without
oneDNN ``nn.LSTM`` runs as the matrix products it consists of, which are counted.  The count is
made on a copy of the model under a forked random state, so it changes neither the model nor
the random numbers training draws next.
"""

from __future__ import annotations

import copy
import math
import statistics
import warnings
from typing import Any, Sequence


def token_batch(model: Any, batch_size: int, seq_len: int) -> dict[str, Any]:
    """A training batch of the right shape for ``model`` (token values do not change the
    count): ids ``[B, T]`` for categorical models, frames ``[B, T, K]`` for multi-hot ones."""
    import torch

    if getattr(model, "token_kind", "categorical") == "multihot":
        tokens = torch.zeros(batch_size, seq_len, int(model.vocab_size))
    else:
        tokens = torch.zeros(batch_size, seq_len, dtype=torch.long)
    return {"tokens": tokens, "mask": torch.ones(batch_size, seq_len, dtype=torch.bool)}


def train_step_flops(model: Any, batch_size: int, seq_len: int, batch: dict[str, Any] | None = None) -> int:
    """FLOPs of one training step of ``model`` (forward and backward of ``model.loss``), counted
    by ``FlopCounterMode`` with oneDNN off (see the module docstring).  Deterministic."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    batch = token_batch(model, batch_size, seq_len) if batch is None else batch
    work = copy.deepcopy(model)
    work.train()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # torch warns about TF32 on Intel GPUs whenever the oneDNN flags are set
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False), FlopCounterMode(display=False) as counter:
            work.loss(batch)["loss"].backward()
    return int(counter.get_total_flops())


def steps_for_budget(budget_flops: float, step_flops: int, multiple: int = 1) -> int:
    """Training steps of ``step_flops`` each that spend ``budget_flops``: the nearest multiple of
    ``multiple`` (at least one multiple), so the budget is met within ``multiple / 2`` steps."""
    if step_flops <= 0:
        raise ValueError(f"a training step must cost some FLOPs (counted {step_flops})")
    return int(multiple * max(1, round(budget_flops / step_flops / multiple)))


def mean_spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and range (max - min) of seeds' results."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("no values")
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
        "min": min(vals),
        "max": max(vals),
        "range": max(vals) - min(vals),
        "n": len(vals),
    }


def gflops(flops: float) -> str:
    return f"{flops / 1e9:.3f} GFLOPs" if math.isfinite(flops) else "?"
