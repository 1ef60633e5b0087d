"""The model protocol every model plugin follows, whatever it is inside.

Models are ``torch.nn.Module``s (the Markov chain too: it is fitted by counting, but speaks
the same protocol).  This module imports no torch; it documents the contract.

Batches (built by the data module) are dicts:

* ``tokens``: ``LongTensor [B, T]`` of ids (categorical) or ``FloatTensor [B, T, K]`` of 0/1
  frames (multihot);
* ``mask``: ``BoolTensor [B, T]``, True where position t is a real token whose prediction is
  scored (padding is False; a benchmark that does not score the first frame sets it False).

Every position is predicted: the input at t is token t-1, and at t = 0 a start input the
model owns.  So a whole piece's NLL is exact, first token included.

* ``loss(batch) -> dict`` with ``loss`` (the training objective, a scalar tensor),
  ``nll_sum`` (summed NLL in nats over scored positions; for frames, summed over keys) and
  ``n_targets`` (number of scored positions).  Perplexity = exp(nll_sum / n_targets).
* ``init_state(batch_size, device=None)`` -> an opaque recurrent state.
* ``step(x, state) -> (logits, state)``: ``x`` is the previous token ``[B]`` (or frame
  ``[B, K]``), or None at the first step; logits are ``[B, V]`` (softmax) or ``[B, K]``
  (per-key sigmoid).  The cost of one step does not grow with the sequence length.
* ``token_kind``: ``"categorical"`` or ``"multihot"`` (from the tokenizer).
* ``trainable``: False for models fitted by counting (``fit(batches)`` instead of gradients).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class SequenceModel(Protocol):
    token_kind: str

    def loss(self, batch: dict[str, Any]) -> dict[str, Any]: ...

    def init_state(self, batch_size: int, device: Any = None) -> Any: ...

    def step(self, x: Any, state: Any) -> tuple[Any, Any]: ...
