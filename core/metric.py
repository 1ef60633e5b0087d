"""The metric contract: what a metric plugin measures and what it is given.

Two kinds, declared by the class attribute ``kind``:

* ``"features"``: ``features(piece) -> {feature: float | fixed-shape array}`` describes one
  piece.  ``input`` says what ``piece`` is: ``"score"`` (a ``symusic.Score``, the default) or
  ``"notes"`` (a :class:`musicfw.music.notes.PieceNotes`, the piece's notes as flat numpy
  arrays, built once per piece and shared by every metric that asks for it).  Every feature of
  every such metric is compared between the generated and the reference set by core
  (:mod:`musicfw.music.setcompare`: intra-/inter-set distances, KDE, KL divergence, overlapping
  area), the same way for built-in and third-party metrics.  ``feature_descriptions``
  documents the features (shown in the report and docs).
* ``"likelihood"``: ``evaluate(model, datamodule, tokenizer) -> dict`` measures a trained model
  on a held-out split (e.g. the built-in ``nll``); None when there is nothing to measure in
  this run (``control_adherence`` for a tokenizer without controls): no entry is written.

A metric class also has ``name``, a ``Config`` dataclass and ``from_config`` (the default
below builds ``cls(config)``).
"""

from __future__ import annotations

from typing import Any, ClassVar

FEATURES = "features"
LIKELIHOOD = "likelihood"


class Metric:
    """Base class of metric plugins."""

    name: ClassVar[str]
    Config: ClassVar[type]
    #: the validated parameters (an instance of ``Config``)
    config: Any
    #: "features" (per piece, compared between sets) or "likelihood" (of a model)
    kind: ClassVar[str] = FEATURES
    #: features metrics: "score" (symusic.Score) or "notes" (musicfw.music.notes.PieceNotes)
    input: ClassVar[str] = "score"
    #: feature name -> one-line description
    feature_descriptions: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any = None):
        from musicfw.core.params import check_params

        self.config = config if config is not None else self.Config()
        check_params(self.config, getattr(self, "name", type(self).__name__))  # the Config's declared choices and bounds

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "Metric":
        return cls(config)

    def prepare(self, datamodule: Any) -> None:
        """Called once before ``features``, with the run's data module (its splits), or None
        when two MIDI folders are compared.  A metric that measures pieces against the
        training split (``originality``) reads it here; the default does nothing."""

    def features(self, piece: Any) -> dict[str, Any]:  # pragma: no cover - contract
        raise TypeError(f"metric {self.name!r} (kind {self.kind!r}) has no features()")

    def evaluate(self, model: Any, datamodule: Any, tokenizer: Any = None) -> dict[str, Any] | None:  # pragma: no cover
        raise TypeError(f"metric {self.name!r} (kind {self.kind!r}) has no evaluate()")

    def __repr__(self) -> str:
        return f"{self.name}({self.config})"
