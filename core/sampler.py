"""The sampler protocol: one step's logits in, the next token out.

A sampler has two parts so that samplers compose (``temperature`` then ``top_p``):

* ``process(logits)`` reshapes the distribution (returns new logits of the same shape);
* ``draw(logits, generator)`` picks the token(s).

A :class:`SamplerChain` applies every ``process`` in order and the last sampler's ``draw``.
Categorical logits have shape ``[B, V]`` and draw ids ``[B]``; multi-hot logits (per-key
Bernoulli) have shape ``[B, K]`` and draw 0/1 frames ``[B, K]``.  Samplers never see a model.

History: a sampler that needs the tokens generated so far (a repetition penalty, a
no-repeat-n-gram rule) sets ``needs_history = True`` and implements
``process(logits, history)``; ``history`` is a ``LongTensor [B, t]`` of every row's ids so far
(prompt included; ``[B, t, K]`` frames for multi-hot), on the logits' device.  The generation
loop builds it only when some sampler of the chain asks for it, and a chain passes it to every
member that asks, wherever it stands in the chain.

Joint frame heads: a model whose head predicts the keys of a frame one after another (see
:meth:`musicfw.core.model.Model.draw`) calls the sampler once per key with logits ``[B, 1]``
and ``kind="multihot"``, so ``process`` (e.g. a temperature) applies to every conditional.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence


class Sampler:
    """Base: categorical sampling from the softmax of the processed logits."""

    name: ClassVar[str]
    Config: ClassVar[type]
    #: the validated parameters (an instance of ``Config``)
    config: Any
    #: which token kinds this sampler can draw
    token_kinds: ClassVar[tuple[str, ...]] = ("categorical",)
    #: True: ``process(logits, history)`` is given the tokens generated so far
    needs_history: ClassVar[bool] = False

    def __init__(self, config: Any = None):
        from musicfw.core.params import check_params

        self.config = config if config is not None else self.Config()
        check_params(self.config, getattr(self, "name", type(self).__name__))  # the Config's declared choices and bounds

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "Sampler":
        return cls(config)

    def process(self, logits: Any, history: Any = None) -> Any:
        """New logits of the same shape (``history`` only when ``needs_history``)."""
        return logits

    def apply(self, logits: Any, history: Any = None) -> Any:
        """``process`` with the history when this sampler asked for it."""
        return self.process(logits, history) if self.needs_history else self.process(logits)

    def draw(self, logits: Any, generator: Any = None, kind: str | None = None) -> Any:
        import torch

        self.check_kind(kind)
        probs = torch.softmax(logits.float(), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def check_kind(self, kind: str | None) -> None:
        if kind is not None and kind not in self.token_kinds:
            raise ValueError(
                f"sampler {self.name!r} draws {' or '.join(self.token_kinds)} tokens, not {kind} "
                f"ones{'; use bernoulli (or greedy) for multi-hot frames' if kind == 'multihot' else ''}"
            )

    def __call__(self, logits: Any, generator: Any = None, kind: str | None = None, history: Any = None) -> Any:
        if self.needs_history and history is None:
            raise ValueError(f"sampler {self.name!r} needs the generated history; pass history=")
        return self.draw(self.apply(logits, history), generator, kind)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


class SamplerChain(Sampler):
    """Samplers applied in order: every ``process``, then the last one's ``draw``."""

    name = "chain"

    def __init__(self, samplers: Sequence[Sampler]):
        if not samplers:
            raise ValueError("a sampler chain needs at least one sampler")
        self.samplers = list(samplers)
        self.config = None
        self.token_kinds = samplers[-1].token_kinds  # type: ignore[misc]
        self.needs_history = any(s.needs_history for s in self.samplers)  # type: ignore[misc]

    def process(self, logits: Any, history: Any = None) -> Any:
        for sampler in self.samplers:
            logits = sampler.apply(logits, history)
        return logits

    def apply(self, logits: Any, history: Any = None) -> Any:
        return self.process(logits, history)

    def draw(self, logits: Any, generator: Any = None, kind: str | None = None) -> Any:
        return self.samplers[-1].draw(logits, generator, kind)

    def __repr__(self) -> str:
        return " -> ".join(map(repr, self.samplers))
