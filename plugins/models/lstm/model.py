"""The LSTM language model (Performance RNN: 3 x 512 LSTM, teacher forcing).

Every position is predicted: the input at t is token t-1, and at t = 0 a learned start input
(an extra embedding row for ids, a learned vector for frames).  Categorical tokens get a
softmax head (cross-entropy); multi-hot frames a per-key sigmoid head (Bernoulli NLL summed
over the keys of a frame) by default, or a joint frame head (``head="nade"`` or
``"autoregressive"``, see :mod:`.heads`) whose NLL is the exact joint log-probability of the
frame, -sum_k log p(v_k | v_<k, state).

Sampling with a joint head (the sampler contract, :mod:`musicfw.core.sampler`): ``step``
returns a :class:`~.heads.JointFrameOutput` (the LSTM output), not logits, and :meth:`draw`
samples the frame key by key, lowest key first: for each key it computes the conditional logit
``[B, 1]``, calls the sampler (chain) on it with ``kind="multihot"`` -- so every ``process``,
e.g. the ``bernoulli`` sampler's temperature, applies to each conditional, and ``greedy``
thresholds each conditional at 1/2 in turn -- and feeds the drawn key to the next conditional.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from musicfw.core.model import Model

from .._lm import TokenInputs, token_loss


class LSTMModel(TokenInputs, Model, nn.Module):

    def __init__(
        self,
        vocab_size: int,
        token_kind: str = "categorical",
        hidden_size: int = 512,
        num_layers: int = 3,
        embed_dim: int = 256,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        head: str = "bernoulli",
        nade_hidden: int = 150,
        ar_hidden: int = 256,
        ar_layers: int = 1,
    ):
        super().__init__()
        if token_kind not in ("categorical", "multihot"):
            raise ValueError(f"unknown token kind {token_kind!r}")
        self.vocab_size = int(vocab_size)
        self.token_kind = token_kind
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.init_inputs(embed_dim)
        self.input_dropout = nn.Dropout(input_dropout)
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.output_dropout = nn.Dropout(dropout)
        if head != "bernoulli" and token_kind != "multihot":
            raise ValueError(f"head {head!r} models the keys of a frame: it needs multi-hot frames")
        self.head_kind = head
        if head == "bernoulli":  # softmax for ids, per-key sigmoid for frames
            self.head = nn.Linear(hidden_size, self.vocab_size)
        else:
            from .heads import build_head

            self.head = build_head(head, hidden_size, self.vocab_size, nade_hidden, ar_hidden, ar_layers)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced LSTM outputs ``[B, T, H]`` (after the output dropout): the state
        that predicts each position."""
        out, _ = self.lstm(self.input_dropout(self._inputs(tokens)))
        return self.output_dropout(out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, V]`` (or ``[B, T, K]``) for every position; with a
        joint head, the conditional logits ``[B, T, K]`` of every key given the keys below it."""
        feats = self.features(tokens)
        if self.head_kind == "bernoulli":
            return self.head(feats)
        B, T = tokens.shape[0], tokens.shape[1]
        return self.head.conditional_logits(feats.reshape(B * T, -1), tokens.reshape(B * T, -1)).view(B, T, -1)

    # -- the model protocol ----------------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        tokens, mask = batch["tokens"], batch["mask"].bool()
        if self.head_kind != "bernoulli":
            # exact joint NLL of every scored frame; padding never reaches the head
            feats = self.features(tokens)
            nll_sum = -self.head.log_prob(feats[mask], tokens[mask]).sum()
            n = mask.sum()
            return {"loss": nll_sum / n.clamp(min=1), "nll_sum": nll_sum.detach(), "n_targets": n}
        return token_loss(self(tokens), tokens, mask, self.token_kind)

    def init_state(self, batch_size: int, device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        if device is None:
            device = self.lstm.weight_ih_l0.device
        shape = (self.num_layers, batch_size, self.hidden_size)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def step(self, x: torch.Tensor | None, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """One token: ``x`` ``[B]`` ids or ``[B, K]`` frames (None at the first step)."""
        batch_size = state[0].shape[1]
        inp = self._start(batch_size, state[0].device) if x is None else self._embed(x.to(state[0].device))
        out, state = self.lstm(self.input_dropout(inp).unsqueeze(1), state)
        if self.head_kind != "bernoulli":
            from .heads import JointFrameOutput

            return JointFrameOutput(self.output_dropout(out[:, 0])), state
        return self.head(self.output_dropout(out[:, 0])), state

    def prefill(self, xs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[Any, Any]:
        """A prompt in one LSTM call (the input projections of all its tokens at once), not one
        step per token: the same state up to float rounding."""
        if self.head_kind != "bernoulli":
            return super().prefill(xs, state)
        out, state = self.lstm(self.input_dropout(self._embed(xs.to(state[0].device))), state)
        return self.head(self.output_dropout(out[:, -1])), state

    def draw(self, output: Any, sampler: Any, generator: Any = None, history: Any = None) -> Any:
        """The next token.  Bernoulli/softmax head: the sampler on the logits.  Joint head: the
        frame key by key, lowest first, each conditional logit ``[B, 1]`` through the sampler
        (chain) with ``kind="multihot"`` (see the module docstring)."""
        if self.head_kind == "bernoulli":
            return super().draw(output, sampler, generator, history)

        def draw_key(logit: torch.Tensor, k: int) -> torch.Tensor:
            return sampler(logit, generator, "multihot", history=history)

        return self.head.sample(output.hidden, draw_key)
