"""The decoder-only Music Transformer: pre-norm, causal, with a KV cache for generation.

Conventions (as the LSTM): every position is predicted; the input at t is token t-1, and at
t = 0 a learned start input (an extra embedding row for ids, a learned vector for frames).
Categorical tokens get a softmax head, multi-hot frames a per-key sigmoid head (Bernoulli NLL
summed over the keys of a frame).

Positions (``position``):

* ``relative`` (default): Huang et al. 2018's relative attention.  Each layer and head owns
  a table ``E_r`` of ``max_context`` embeddings of size ``D_head``, one per distance
  0 .. max_context-1.  The relative logits ``S_rel[i, j] = q_i . E_r[i - j]`` come from one
  product ``Q E_r^T`` ([B, H, L, L]) "skewed" into place (pad one column, reshape, drop one
  row), so the extra memory is the [L, D_head] table plus L x L logits -- not the naive
  [L, L, D_head] gather of one embedding per pair.  They are added (scaled like QK^T) to
  ``scaled_dot_product_attention`` as a float ``attn_mask``.
* ``rope``: rotary embeddings on queries and keys (angles computed in float64).
* ``absolute``: learned position embeddings added to the input (max_context of them).

Where no float bias is needed (rope, absolute), attention is
``scaled_dot_product_attention(..., is_causal=True)``.

The window (``max_context`` = C):

* ``relative`` and ``rope``: a rolling KV cache.  Past C inputs the oldest key/value is
  overwritten (a ring buffer), so each query attends to its own last C positions, in every
  layer.  This is sliding-window attention: the full forward pass over a sequence longer
  than C uses the same banded causal mask, so ``step`` equals ``forward`` to float
  tolerance at every position, past C included (tested).  Note that with more than one
  layer this is *not* a fresh forward pass over the last C tokens only: the keys of older
  positions were computed from their own windows, so information reaches back up to
  num_layers x (C - 1) tokens (as in Mistral's sliding-window attention).
* ``absolute``: positions are indices into the window, so a rolling cache is impossible.
  When the window is full the model keeps the last C // 2 inputs, recomputes their keys and
  values once at positions 0 .. C//2 - 1, and continues incrementally (one recomputation of
  C // 2 positions per C - C // 2 generated tokens).  ``forward`` over a longer sequence
  computes exactly the same windows (chunks), so it too equals ``step``.

Dropout is applied to the input and to each residual branch (the attention and feed-forward
outputs), not to the attention weights nor inside the feed-forward layer: on this project's
CPU the Bernoulli draws for those larger tensors took about a fifth of a training step
(torch.profiler, 4 x 128 model, batch 16 x 128 tokens) and attention dropout also keeps
``scaled_dot_product_attention`` off its fused kernels.

Training windows must fit the context: ``loss`` in training mode refuses sequences longer
than ``max_context`` with a ConfigError (train.seq_len > model.max_context); evaluation
(eval mode) scores longer pieces with the sliding window above.  ``musicfw run`` refuses,
before making a run folder, a train.seq_len or a generate.prompt longer than max_context
(musicfw/engine/runner.py); ``step`` itself cannot tell a prompt from generated tokens and simply slides.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from musicfw.core.errors import ConfigError
from musicfw.core.model import Model

from .._lm import TokenInputs, token_loss

NEG_INF = float("-inf")


# --------------------------------------------------------------------------------------
# position helpers
# --------------------------------------------------------------------------------------


def skew(qe: torch.Tensor) -> torch.Tensor:
    """Huang et al.'s skewing: ``qe[..., i, r]`` holds ``q_i . E[L-1-r]`` (embeddings ordered
    from distance L-1 down to 0); returns ``s[..., i, j] = q_i . E[i - j]`` for j <= i (the
    upper triangle is garbage and must be masked).  Memory: one padded copy of ``qe``."""
    L = qe.shape[-1]
    padded = F.pad(qe, (1, 0))  # [..., L, L+1]
    return padded.reshape(*qe.shape[:-2], L + 1, L)[..., 1:, :]


def q_times_table(q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``q [B, H, L, Dh] . table [H, N, Dh]^T -> [B, H, L, N]`` as one batched product over the
    heads.  (``torch.matmul`` would broadcast the table to [B, H, Dh, N] first: a copy of
    B x N x D floats per call, which profiling showed to be 64% of a batch-64 decoding step
    at position 1000.)"""
    B, H, L, Dh = q.shape
    out = torch.bmm(q.transpose(0, 1).reshape(H, B * L, Dh), table.transpose(1, 2).to(q.dtype))  # [H, B*L, N]
    return out.view(H, B, L, -1).transpose(0, 1)


def relative_logits_naive(q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The naive formulation (for the memory benchmark and tests): gather one embedding per
    (i, j) pair, ``R[h, i, j] = E[h, clamp(i - j)]`` ([H, L, L, D_head]), then ``q_i . R``."""
    L = q.shape[-2]
    idx = torch.arange(L)
    dist = (idx[:, None] - idx[None, :]).clamp(0, table.shape[1] - 1)
    R = table[:, dist]  # [H, L, L, Dh]
    return torch.einsum("bhid,hijd->bhij", q, R)


class Rotary:
    """cos/sin tables of rotary embeddings (rotate-half form) for given absolute positions."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        self.inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))

    def tables(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        ang = positions.to(torch.float64)[:, None] * self.inv_freq.to(positions.device)[None, :]
        ang = torch.cat([ang, ang], dim=-1)  # [L, Dh]
        return ang.cos().to(dtype), ang.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rot * sin


# --------------------------------------------------------------------------------------
# the KV cache
# --------------------------------------------------------------------------------------


class KVCache:
    """Per layer the keys, transposed, ``k [B, H, Dh, capacity]``, the values
    ``v [B, H, capacity, Dh]``, and the position counter.

    The keys are kept transposed so that a step's ``q K^T`` reads each head's keys as Dh
    contiguous rows of slots: one thread read them at 2.3x the speed of the [capacity, Dh]
    layout (batch 64 at position 1000, benchmarks/generation.py --floor-only), the largest
    part of a step that must read the whole cache.

    ``pos`` counts the inputs fed so far (the next input's absolute index).  Capacity grows by
    doubling up to ``max_context`` (amortised O(1) per token); relative/rope then write as a
    ring (slot = position mod C).  Absolute keeps a linear cache from ``start`` (the window's
    first absolute index) and the window's input vectors, to recompute after a slide.
    """

    def __init__(self, n_layers: int, batch: int, heads: int, head_dim: int, d_model: int, max_context: int,
                 device: Any, dtype: torch.dtype, keep_inputs: bool):
        self.C = int(max_context)
        self.cap = min(self.C, 64)
        self.shape = (batch, heads, head_dim)
        self.k = [torch.zeros(batch, heads, head_dim, self.cap, device=device, dtype=dtype) for _ in range(n_layers)]
        self.v = [torch.zeros(batch, heads, self.cap, head_dim, device=device, dtype=dtype) for _ in range(n_layers)]
        self.inputs = torch.zeros(batch, self.cap, d_model, device=device, dtype=dtype) if keep_inputs else None
        self.pos = 0
        self.start = 0  # absolute: first absolute index of the window
        self.n = 0  # filled slots

    def grow(self) -> None:
        new = min(self.C, 2 * self.cap)
        pad = new - self.cap
        self.k = [F.pad(t, (0, pad)) for t in self.k]
        self.v = [F.pad(t, (0, 0, 0, pad)) for t in self.v]
        if self.inputs is not None:
            self.inputs = F.pad(self.inputs, (0, 0, 0, pad))
        self.cap = new


# --------------------------------------------------------------------------------------
# the decoder block
# --------------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, position: str, max_context: int):
        super().__init__()
        self.heads, self.head_dim = heads, d_model // heads
        self.position, self.max_context = position, max_context
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)
        self.drop = nn.Dropout(dropout)
        if position == "relative":
            # E_r: one embedding per distance 0 .. C-1, per head
            self.rel = nn.Parameter(torch.randn(heads, max_context, self.head_dim) * 0.02)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, L, _ = x.shape
        qkv = self.qkv(self.ln1(x)).view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]  # [B, H, L, Dh]

    def _out(self, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        B, _, L, _ = att.shape
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(B, L, -1)))
        return x + self.drop(self.ff2(F.gelu(self.ff1(self.ln2(x)))))

    def relative_bias(self, q: torch.Tensor) -> torch.Tensor:
        """Skewed relative logits ``[B, H, L, L]`` (unscaled; garbage above the diagonal and
        beyond the window, which the mask removes)."""
        L = q.shape[-2]
        table = self.rel[:, : min(L, self.max_context)]
        if L > self.max_context:  # distances >= C are masked: any value will do
            table = F.pad(table, (0, 0, 0, L - self.max_context))
        qe = q_times_table(q, table.flip(1))  # [B, H, L, L]: column r is distance L-1-r
        return skew(qe)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None, rope: tuple | None = None,
                collect: bool = False) -> tuple[torch.Tensor, Any]:
        """Full (teacher-forced) pass over ``x`` [B, L, D].  ``allowed``: bool [L, L] mask, or
        None for plain causal attention."""
        q, k, v = self._qkv(x)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        if self.position == "relative":
            L = q.shape[-2]
            if allowed is None:
                allowed = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
            bias = (self.relative_bias(q) / math.sqrt(self.head_dim)).masked_fill(~allowed, NEG_INF)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        elif allowed is None:
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self._out(x, att), ((k, v) if collect else None)

    def step(self, x: torch.Tensor, cache: KVCache, layer: int, slot: int, rope: tuple | None) -> torch.Tensor:
        """One new position ``x`` [B, 1, D]: its K, V go to ``slot``; attends to the filled
        slots (all inside the window)."""
        q, k, v = self._qkv(x)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        # a column of the transposed keys: one scattered write per step (the price of the fast read)
        cache.k[layer][..., slot : slot + 1].copy_(k.transpose(-1, -2))
        cache.v[layer][:, :, slot] = v[:, :, 0]
        # the filled slots, views (no copy): K^T [B, H, Dh, n], V [B, H, n, Dh]
        KT, V = cache.k[layer][..., : cache.n], cache.v[layer][:, :, : cache.n]
        # attention written out: one query, so the products are matrix-vector reads of the
        # cache, which the transposed keys make fast (scaled_dot_product_attention's CPU
        # kernel read the same cache at about half the speed)
        B, H, _, Dh = q.shape
        n, scale = cache.n, 1.0 / math.sqrt(self.head_dim)
        q3, KT3 = q.reshape(B * H, 1, Dh), KT.flatten(0, 1)
        bias = self.step_bias(q, cache)
        if bias is None:
            scores = torch.bmm(q3, KT3).mul_(scale)
        else:  # one call: scale * q K^T + bias
            scores = torch.baddbmm(bias.reshape(B * H, 1, n), q3, KT3, alpha=scale)
        att = torch.bmm(torch.softmax(scores, dim=-1), V.flatten(0, 1)).view(B, H, 1, Dh)
        return self._out(x, att)

    def prefill(self, x: torch.Tensor, cache: KVCache, layer: int, first: int, rope: tuple | None) -> torch.Tensor:
        """T new positions ``x`` [B, T, D] at once: their K, V go to slots ``first`` ..
        ``first + T - 1`` (no wrap: the caller checks), each query attends causally to the
        slots up to its own (``cache.n`` already counts them)."""
        q, k, v = self._qkv(x)
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        T = x.shape[1]
        n = first + T
        cache.k[layer][..., first:n] = k.transpose(-1, -2)
        cache.v[layer][:, :, first:n] = v
        K, V = cache.k[layer][..., :n].transpose(-1, -2), cache.v[layer][:, :, :n]
        dist = torch.arange(first, n, device=x.device)[:, None] - torch.arange(n, device=x.device)[None, :]
        allowed = dist >= 0  # [T, n]; n <= C, so every distance is inside the window
        if self.position == "relative":
            qe = q_times_table(q, self.rel[:, :n])  # [B, H, T, n]: q_i . E_r[d], d = 0 .. n-1
            bias = qe.gather(-1, dist.clamp(min=0).expand(*qe.shape[:2], T, n)) / math.sqrt(self.head_dim)
            att = F.scaled_dot_product_attention(q, K, V, attn_mask=bias.masked_fill(~allowed, NEG_INF).to(q.dtype))
        else:
            att = F.scaled_dot_product_attention(q, K, V, attn_mask=allowed)
        return self._out(x, att)

    def step_bias(self, q: torch.Tensor, cache: KVCache) -> torch.Tensor | None:
        """The relative logits of one query against the cache's filled slots, in slot order,
        scaled like QK^T ([B, H, 1, n]; None for rope/absolute).

        Slot s holds distance ``(r - s) mod C`` (r: the slot just written).  Before the ring
        wraps that is ``n - 1 - s``: the products with distances 0 .. n-1, reversed (a flip,
        a plain copy); after it, the reversed row rotated by r + 1.  (A gather
        ``qe[..., dist]`` moves the same values but took 2.5x as long at batch 64, profiled.)"""
        if self.position != "relative":
            return None
        n = cache.n
        bias = q_times_table(q, self.rel[:, :n]).flip(-1)  # [B, H, 1, n], slot order before a wrap
        if cache.pos > self.max_context:  # the ring has wrapped: slot r holds distance 0
            bias = bias.roll((cache.pos - 1) % self.max_context + 1, -1)
        return bias.div_(math.sqrt(self.head_dim))


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


class TransformerModel(TokenInputs, Model, nn.Module):

    def __init__(
        self,
        vocab_size: int,
        token_kind: str = "categorical",
        d_model: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        d_ff: int = 1024,
        dropout: float = 0.1,
        max_context: int = 1024,
        position: str = "relative",
    ):
        super().__init__()
        if token_kind not in ("categorical", "multihot"):
            raise ValueError(f"unknown token kind {token_kind!r}")
        if d_model % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide d_model ({d_model})")
        if position not in ("relative", "rope", "absolute"):
            raise ValueError(f"unknown position {position!r}")
        self.vocab_size = int(vocab_size)
        self.token_kind = token_kind
        self.d_model, self.num_layers, self.num_heads = d_model, num_layers, num_heads
        self.head_dim = d_model // num_heads
        self.max_context = int(max_context)
        self.position = position
        self.init_inputs(d_model)
        if position == "absolute":
            self.pos_embed = nn.Embedding(self.max_context, d_model)
        self.rotary = Rotary(self.head_dim) if position == "rope" else None
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, num_heads, d_ff, dropout, position, self.max_context) for _ in range(num_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, self.vocab_size)
        self.apply(self._init)
        for block in self.blocks:  # GPT-2: residual projections scaled by depth
            for lin in (block.proj, block.ff2):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * num_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    # -- full passes -----------------------------------------------------------------------
    def _run(self, h: torch.Tensor, collect: bool = False) -> tuple[torch.Tensor, list]:
        """Blocks over input vectors ``h`` [B, L, D] at positions 0 .. L-1 (L <= C for
        absolute; longer for relative/rope uses the banded window mask)."""
        L, C = h.shape[1], self.max_context
        allowed = None
        if L > C:
            i = torch.arange(L, device=h.device)
            d = i[:, None] - i[None, :]
            allowed = (d >= 0) & (d < C)
        rope = None
        if self.position == "absolute":
            h = h + self.pos_embed(torch.arange(L, device=h.device))
        elif self.rotary is not None:
            rope = self.rotary.tables(torch.arange(L, device=h.device), h.dtype)
        h = self.drop(h)
        kvs = []
        for block in self.blocks:
            h, kv = block(h, allowed, rope, collect)
            kvs.append(kv)
        return self.head(self.ln_f(h)), kvs

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, V]`` (or ``[B, T, K]``) for every position; past
        max_context with the same sliding window as :meth:`step`."""
        inputs = self._inputs(tokens)
        T, C = inputs.shape[1], self.max_context
        if self.position != "absolute" or T <= C:
            return self._run(inputs)[0]
        keep = C // 2
        stride = C - keep
        outs = [self._run(inputs[:, :C])[0]]
        s = stride
        while s + keep < T:
            outs.append(self._run(inputs[:, s : s + C])[0][:, keep:])
            s += stride
        return torch.cat(outs, dim=1)

    # -- the model protocol ----------------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        tokens, mask = batch["tokens"], batch["mask"].bool()
        if self.training and tokens.shape[1] > self.max_context:
            raise ConfigError(
                f"train.seq_len: training windows of {tokens.shape[1]} tokens are longer than "
                f"model.max_context ({self.max_context}); set train.seq_len <= model.max_context."
            )
        return token_loss(self(tokens), tokens, mask, self.token_kind)

    def configure_optimizers(self, train: Any, total_steps: int | None) -> Any:
        """AdamW with weight decay on matrices only (``decay_groups``: linear and embedding
        weights and the relative tables; no decay on biases and LayerNorm gains), and the
        ``train.lr_schedule`` (warm-up + cosine with ``lr_schedule: cosine``)."""
        from musicfw.core.optim import decay_groups, lr_schedule

        opt = torch.optim.AdamW(decay_groups(self, train.weight_decay), lr=train.lr, betas=(0.9, 0.98))
        return lr_schedule(opt, train, total_steps)

    def init_state(self, batch_size: int, device: Any = None) -> KVCache:
        if device is None:
            device = self.head.weight.device
        return KVCache(
            self.num_layers, batch_size, self.num_heads, self.head_dim, self.d_model, self.max_context,
            device, self.head.weight.dtype, keep_inputs=self.position == "absolute",
        )

    def step(self, x: torch.Tensor | None, state: KVCache) -> tuple[torch.Tensor, KVCache]:
        """One token: ``x`` ``[B]`` ids or ``[B, K]`` frames (None at the first step); computes
        one new position against the cache."""
        if not isinstance(state, KVCache):
            raise TypeError("transformer.step: the state must come from init_state")
        B = state.shape[0]
        device = state.k[0].device
        e = self._start(B, device) if x is None else self._embed(x.to(device))
        C = self.max_context
        if self.position == "absolute":
            if state.pos - state.start == C:  # window full: keep the last C // 2, re-index
                self._slide_absolute(state)
            if state.n == state.cap:
                state.grow()
            slot = state.n
            state.inputs[:, slot] = e
            h = e + self.pos_embed.weight[slot]
            rope = None
        else:
            if state.n == state.cap and state.cap < C:
                state.grow()
            slot = state.pos % C
            rope = None
            if self.rotary is not None:
                rope = self.rotary.tables(torch.tensor([state.pos], device=device), e.dtype)
        state.n = min(state.n + 1, C)
        state.pos += 1
        h = self.drop(h if self.position == "absolute" else e).unsqueeze(1)
        for i, block in enumerate(self.blocks):
            h = block.step(h, state, i, slot, rope)
        return self.head(self.ln_f(h[:, 0])), state

    def prefill(self, xs: torch.Tensor, state: KVCache) -> tuple[torch.Tensor, KVCache]:
        """A prompt ``xs`` [B, T] (or [B, T, K]) in one pass through the layers, its keys and
        values written into the cache: the same logits and cache as :meth:`step` per token up
        to float rounding (a batched product sums in another order; tested to 1e-5).  The
        part that fits before the window fills (the ring would wrap, or an absolute window
        slide) goes in one pass; the rest, if any, a step per token."""
        if not isinstance(state, KVCache):
            raise TypeError("transformer.prefill: the state must come from init_state")
        C = self.max_context
        used = state.pos - state.start if self.position == "absolute" else state.pos
        T = min(int(xs.shape[1]), C - used)
        out = None
        if T > 0:
            device = state.k[0].device
            e = self._embed(xs[:, :T].to(device))  # [B, T, D]
            first = state.n
            while state.cap < first + T:
                state.grow()
            rope = None
            if self.position == "absolute":
                state.inputs[:, first : first + T] = e
                h = e + self.pos_embed.weight[first : first + T]
            else:
                h = e
                if self.rotary is not None:
                    rope = self.rotary.tables(torch.arange(state.pos, state.pos + T, device=device), e.dtype)
            state.n = first + T
            state.pos += T
            h = self.drop(h)
            for i, block in enumerate(self.blocks):
                h = block.prefill(h, state, i, first, rope)
            out = self.head(self.ln_f(h[:, -1]))
        if T < xs.shape[1]:
            out, state = super().prefill(xs[:, max(T, 0):], state)
        return out, state

    def _slide_absolute(self, state: KVCache) -> None:
        keep = self.max_context // 2
        kept = state.inputs[:, state.n - keep : state.n].clone()
        state.start = state.pos - keep
        state.n = keep
        state.inputs[:, :keep] = kept
        if keep:
            _, kvs = self._run(kept, collect=True)
            for i, (k, v) in enumerate(kvs):
                state.k[i][..., :keep] = k.transpose(-1, -2)
                state.v[i][:, :, :keep] = v
