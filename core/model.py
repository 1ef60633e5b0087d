"""The model contract every model plugin follows, whatever it is inside.

A model is a ``torch.nn.Module`` that also subclasses :class:`Model` (a plain mixin: this
module imports no torch)::

    class MyModel(Model, torch.nn.Module):
        token_kind = "categorical"
        def loss(self, batch): ...
        def init_state(self, batch_size, device=None): ...
        def step(self, x, state): ...

Core reads the attributes and calls the methods declared here; every optional hook has its
default below, so a model overrides only what it needs.

Batches (built by the data module) are dicts:

* ``tokens``: ``LongTensor [B, T]`` of ids (categorical) or ``FloatTensor [B, T, K]`` of 0/1
  frames (multihot);
* ``mask``: ``BoolTensor [B, T]``, True where position t is a real token whose prediction is
  scored (padding is False; a benchmark that does not score the first frame sets it False;
  evaluation in sliding windows sets it False on the context part of a window).

Every position is predicted: the input at t is token t-1, and at t = 0 a start input the
model owns.  So a whole piece's NLL is exact, first token included.

Required:

* ``loss(batch) -> dict`` with ``loss`` (the training objective, a scalar tensor),
  ``nll_sum`` (summed NLL in nats over scored positions; for frames, summed over keys) and
  ``n_targets`` (number of scored positions).  Perplexity = exp(nll_sum / n_targets).
  Other scalar entries are logged as they are (``train/accuracy``, ``val/kl``, ...).
* ``init_state(batch_size, device=None)`` -> an opaque state for incremental generation.
* ``step(x, state) -> (output, state)``: ``x`` is the previous token ``[B]`` (or frame
  ``[B, K]``), or None at the first step; ``output`` is usually the logits ``[B, V]``
  (softmax) or ``[B, K]`` (per-key sigmoid), and is handed to :meth:`Model.draw`.
* ``token_kind``: ``"categorical"`` or ``"multihot"`` (the tokenizer's kind).

Optional (defaults here):

* ``trainable`` (True): False for models fitted by counting; core then calls
  :meth:`Model.fit` instead of running the Lightning loop.
* ``preferred_checkpoint`` ("best"): the checkpoint generation and held-out metrics use
  ("last" for MusicVAE, whose KL annealing makes early checkpoints look best).
* ``max_context`` (None = unbounded): the longest sequence the model can condition on.
  Evaluation scores longer pieces in sliding windows (see
  :func:`musicfw.engine.training.evaluate_nll`), and generation relies on the model's ``step``
  to keep within it (a model with a bounded context slides its own window in ``step``).
* :meth:`Model.configure_optimizers` (AdamW with the ``train:`` schedule).
* :meth:`Model.on_train_step` (called with the optimizer step before each training batch).
* :meth:`Model.fit` (count-based models).
* :meth:`Model.draw` (how a step's output becomes the next token; a model whose output is
  not a plain logits tensor -- e.g. a head that predicts the keys of a frame jointly --
  samples here, key by key, through the sampler).
"""

from __future__ import annotations

from typing import Any, ClassVar


class Model:
    """Mixin declaring the model protocol and its optional hooks, with defaults."""

    #: "categorical" or "multihot"
    token_kind: str = "categorical"
    #: False for models fitted by counting (core calls :meth:`fit`)
    trainable: ClassVar[bool] = True
    #: which checkpoint generation and held-out metrics use: "best" or "last"
    preferred_checkpoint: ClassVar[str] = "best"
    #: longest context the model conditions on; None = unbounded
    max_context: int | None = None
    #: True when ``loss()``'s ``nll_sum`` is a bound on the NLL (a VAE's negative ELBO), not the
    #: exact NLL: likelihood metrics then report no perplexity (exp of a bound means nothing)
    loss_is_bound: ClassVar[bool] = False

    # -- required -------------------------------------------------------------------------
    def loss(self, batch: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - contract
        raise TypeError(f"{type(self).__name__} must implement loss(batch)")

    def init_state(self, batch_size: int, device: Any = None) -> Any:  # pragma: no cover
        raise TypeError(f"{type(self).__name__} must implement init_state(batch_size, device)")

    def step(self, x: Any, state: Any) -> tuple[Any, Any]:  # pragma: no cover - contract
        raise TypeError(f"{type(self).__name__} must implement step(x, state)")

    # -- optional hooks -------------------------------------------------------------------
    def configure_optimizers(self, train: Any, total_steps: int | None) -> Any:
        """The optimizer (and schedule) for training, in any form Lightning's
        ``configure_optimizers`` accepts.  ``train`` is the validated ``train:`` section
        (:class:`~musicfw.engine.config.TrainSection`); ``total_steps`` the number of optimizer
        steps Lightning expects (None when unknown).  Default: AdamW over every parameter with
        ``train.lr`` / ``train.weight_decay`` and the ``train.lr_schedule`` (see
        :func:`musicfw.core.optim.default_optimizer`)."""
        from musicfw.core.optim import default_optimizer

        return default_optimizer(self.parameters(), train, total_steps)  # type: ignore[attr-defined]

    def on_train_step(self, step: int) -> None:
        """Called before each training batch with the optimizer step (schedules that live in
        the model, e.g. a KL weight or scheduled sampling)."""

    def fit(self, datamodule: Any) -> "Model":
        """Count-based models (``trainable = False``) fit here from ``datamodule``."""
        raise TypeError(f"{type(self).__name__} is trainable; it is trained by gradient descent, not fit()")

    def prefill(self, xs: Any, state: Any) -> tuple[Any, Any]:
        """Feed ``xs`` (``[B, T]`` ids or ``[B, T, K]`` frames, T >= 1) after ``state``: the
        output after the last one, and the state.  Default: :meth:`step` per token; a model
        that can read a sequence at once (an LSTM layer) overrides it for speed."""
        out = None
        for t in range(xs.shape[1]):
            out, state = self.step(xs[:, t], state)
        return out, state

    def draw(self, output: Any, sampler: Any, generator: Any = None, history: Any = None) -> Any:
        """The next token from one step's ``output``: by default the sampler (chain) applied
        to the logits.  ``history`` is the batch's tokens so far (prompt included) when the
        sampler asked for it, else None."""
        return sampler(output, generator, self.token_kind, history=history)


def check_model(model: Any, where: str = "model") -> Model:
    """A built model must speak the contract; a clear error names the class otherwise."""
    from musicfw.core.errors import PluginError

    if not isinstance(model, Model):
        raise PluginError(
            f"{where}: {type(model).__module__}.{type(model).__qualname__} does not subclass "
            "musicfw.core.model.Model (class MyModel(Model, torch.nn.Module)); see docs/plugins.md."
        )
    if model.token_kind not in ("categorical", "multihot"):
        raise PluginError(f"{where}: token_kind must be 'categorical' or 'multihot', got {model.token_kind!r}.")
    return model
