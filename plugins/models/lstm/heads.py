"""Joint frame output heads for the piano-roll LSTM: the keys of a frame modelled together.

A per-key sigmoid head scores the K keys of a frame independently given the recurrent state,
so it cannot learn which notes sound together.  The heads here factor the frame's probability
exactly by the chain rule over the keys, in pitch order (lowest key first)::

    log p(v | s) = sum_k log p(v_k | v_<k, s)

where ``s`` is the LSTM output at that time step.  Both heads compute all K conditionals of
every frame in one pass for training (teacher forcing inside the frame), and one key at a time
for sampling.

* :class:`NADEHead` (``head: nade``): the RNN-NADE output of Boulanger-Lewandowski, Bengio &
  Vincent (ICML 2012).  The state sets the NADE biases, ``b_v(s) = A_v s + a_v`` and
  ``b_h(s) = A_h s + a_h``; the weights ``W`` [H, K] and ``V`` [K, H] are shared over time.
  ``a_k = b_h + W[:, :k] v[:k]`` (a cumulative sum over the keys), ``h_k = sigmoid(a_k)``,
  ``logit_k = b_v[k] + V[k] . h_k``.
* :class:`MADEHead` (``head: autoregressive``): a MADE network (Germain et al. 2015) over the
  keys, with masked hidden layers of ReLU units and masked direct input-to-output connections;
  the state adds to every hidden layer's bias and to the output bias.  Hidden unit degrees
  cycle through 1..K-1 (fixed, no random masks), so the model is deterministic given its seed.

Sampling (see :meth:`sample`): for each key k the head computes the conditional logit
``[B, 1]`` from the keys already drawn and hands it to ``draw_key`` (the model wraps the
sampler chain there: ``process`` then ``draw(..., kind="multihot")``), then feeds the drawn
value to the next conditional.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("bernoulli", "nade", "autoregressive")


@dataclass
class JointFrameOutput:
    """What ``LSTMModel.step`` returns with a joint head: the LSTM output ``hidden`` [B, H]
    from which :meth:`LSTMModel.draw` samples the frame key by key.  Not logits: code that
    expects a logits tensor fails loudly on it instead of sampling the wrong distribution."""

    hidden: torch.Tensor


def _keys_log_prob(logits: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sum_k log Bernoulli(v_k; sigmoid(logit_k)) over the last axis."""
    return -F.binary_cross_entropy_with_logits(logits.float(), v.float(), reduction="none").sum(-1)


class NADEHead(nn.Module):
    """RNN-NADE frame distribution conditioned on a state vector (see the module docstring)."""

    def __init__(self, state_size: int, n_keys: int, hidden: int = 150):
        super().__init__()
        self.n_keys, self.hidden = int(n_keys), int(hidden)
        # the state -> (b_v, b_h); its bias is the NADE's own bias
        self.cond = nn.Linear(state_size, n_keys + hidden)
        self.W = nn.Parameter(torch.randn(hidden, n_keys) * 0.01)  # input -> hidden
        self.V = nn.Parameter(torch.randn(n_keys, hidden) * 0.01)  # hidden -> output

    def _biases(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = self.cond(s)
        return b[..., : self.n_keys], b[..., self.n_keys :]

    def conditional_logits(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``logit_k`` of p(v_k = 1 | v_<k, s) for every key at once: ``[N, K]``.

        Long batches (whole MuseData / Piano-midi.de pieces, N in the tens of thousands) go
        through in chunks of ``CHUNK`` frames with activation checkpointing, so training memory
        stays bounded by the chunk."""
        if s.shape[0] <= self.CHUNK:
            return self._conditional_logits(s, v)
        parts = []
        for i in range(0, s.shape[0], self.CHUNK):
            si, vi = s[i : i + self.CHUNK], v[i : i + self.CHUNK]
            if torch.is_grad_enabled():
                from torch.utils.checkpoint import checkpoint

                parts.append(checkpoint(self._conditional_logits, si, vi, use_reentrant=False))
            else:
                parts.append(self._conditional_logits(si, vi))
        return torch.cat(parts)

    #: frames per chunk of :meth:`conditional_logits` (bounds the [N, runs, K] tensors)
    CHUNK = 2048

    def _conditional_logits(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # a_k = b_h + W[:, :k] v[:k] only changes after a key that is on, and a frame has few
        # (JSB: 4 of 88): so the hidden activations are computed once per run of keys between
        # two sounding keys -- a_seg[n, r] = b_h + the sum of W over the first r on-keys --
        # and every key reads its run's.  Same numbers as the dense [N, K, H] cumulative sum,
        # measured 10-15x faster on JSB / Nottingham frames (the elementwise sigmoid over
        # [N, K, H] dominated training).
        b_v, b_h = self._biases(s)
        on = v > 0.5
        run = torch.cumsum(on.long(), dim=1) - on.long()  # on-keys strictly below key k: [N, K]
        n_runs = int(run.max()) + 2 if run.numel() else 1
        ranks = torch.arange(n_runs, device=v.device)
        # R[n, r, j] = 1 when key j is on and among the first r on-keys of frame n
        R = (on.unsqueeze(1) & (run.unsqueeze(1) < ranks.view(1, -1, 1))).to(self.W.dtype)  # [N, R, K]
        a = b_h.unsqueeze(1) + R @ self.W.t()  # [N, R, H]
        g = torch.sigmoid(a) @ self.V.t()  # [N, R, K]: V[k] . h for every run and key
        return b_v + g.gather(1, run.unsqueeze(1)).squeeze(1)

    def log_prob(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(v | s)`` per frame: ``s`` [N, S], ``v`` [N, K] 0/1 -> [N]."""
        return _keys_log_prob(self.conditional_logits(s, v), v)

    def sample(self, s: torch.Tensor, draw_key: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
        b_v, a = self._biases(s)
        frame = torch.zeros(s.shape[0], self.n_keys, device=s.device)
        for k in range(self.n_keys):
            logit = b_v[:, k : k + 1] + torch.sigmoid(a) @ self.V[k].unsqueeze(-1)  # [B, 1]
            x = draw_key(logit, k).to(frame.dtype).reshape(-1, 1)
            frame[:, k : k + 1] = x
            a = a + x * self.W[:, k]
        return frame


class _MaskedLinear(nn.Linear):
    def __init__(self, mask: torch.Tensor, bias: bool = True):
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADEHead(nn.Module):
    """Autoregressive frame distribution: a MADE over the keys, conditioned on a state."""

    def __init__(self, state_size: int, n_keys: int, hidden: int = 256, layers: int = 1):
        super().__init__()
        K = self.n_keys = int(n_keys)
        self.sizes = [int(hidden)] * int(layers)
        in_deg = torch.arange(1, K + 1)  # key k (0-based) has degree k + 1
        prev = in_deg
        hidden_layers = []
        for size in self.sizes:
            # degrees 1..K-1 in turn: a unit of degree m sees keys of degree <= m
            deg = torch.arange(size) % max(K - 1, 1) + 1
            hidden_layers.append(_MaskedLinear(deg.unsqueeze(1) >= prev.unsqueeze(0), bias=False))
            prev = deg
        self.hidden_layers = nn.ModuleList(hidden_layers)
        # output k (degree k + 1) sees hidden units of degree < k + 1, i.e. keys < k
        self.out = _MaskedLinear(in_deg.unsqueeze(1) > prev.unsqueeze(0), bias=False)
        self.direct = _MaskedLinear(in_deg.unsqueeze(1) > in_deg.unsqueeze(0), bias=False)
        # the state -> every hidden layer's bias and the output bias
        self.cond = nn.Linear(state_size, sum(self.sizes) + K)

    def conditional_logits(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b = self.cond(s)
        v = v.to(b.dtype)
        h, start = v, 0
        for layer, size in zip(self.hidden_layers, self.sizes):
            h = torch.relu(layer(h) + b[..., start : start + size])
            start += size
        return self.out(h) + self.direct(v) + b[..., start:]

    def log_prob(self, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _keys_log_prob(self.conditional_logits(s, v), v)

    def sample(self, s: torch.Tensor, draw_key: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
        frame = torch.zeros(s.shape[0], self.n_keys, device=s.device)
        for k in range(self.n_keys):
            # keys >= k are still 0 in ``frame``; the masks keep logit k blind to them anyway
            logit = self.conditional_logits(s, frame)[:, k : k + 1]
            frame[:, k : k + 1] = draw_key(logit, k).to(frame.dtype).reshape(-1, 1)
        return frame


def build_head(kind: str, state_size: int, n_keys: int, nade_hidden: int = 150,
               ar_hidden: int = 256, ar_layers: int = 1) -> nn.Module:
    if kind == "nade":
        return NADEHead(state_size, n_keys, nade_hidden)
    if kind == "autoregressive":
        return MADEHead(state_size, n_keys, ar_hidden, ar_layers)
    raise ValueError(f"unknown joint head {kind!r}; expected one of {HEADS[1:]}")
