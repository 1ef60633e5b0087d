"""The logger contract: where training curves (and the generated samples' media) go.

The ``logger:`` section of an experiment names one logger plugin (``{name: csv}``); its other
keys are that plugin's ``Config`` (plus the engine's own ``log_every_n_steps`` and
``log_samples``).  Whatever logger is chosen, the engine also appends every logged value to
``<run_dir>/history.jsonl`` (the report's curves).

A logger either hands the Lightning ``Trainer`` a Lightning logger of its own (``start``
returns it: W&B, csv and tensorboard wrap Lightning's) or returns ``None`` and receives every
logged value through :meth:`Logger.log_metrics` (a plain-Python logger needs no Lightning)::

    class PrintLogger(Logger):
        name = "print"

        @dataclass
        class Config:
            prefix: str = "step"

        def log_metrics(self, metrics, step):
            print(self.config.prefix, step, metrics)

    @hookimpl
    def musicfw_register_loggers(registry):
        registry.add(PrintLogger)

Import Lightning, wandb or tensorboard inside the methods (plugin modules must be cheap).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence


class Logger:
    """Base class of a logger plugin.  Every method has a working default."""

    #: the name used in YAML (``logger: {name: ...}``)
    name: ClassVar[str]

    @dataclass
    class Config:
        """The logger's own parameters (none by default)."""

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "Logger":
        return cls(config)

    def start(self, run_dir: Path, hyperparams: Mapping[str, Any], resume: bool) -> Any | None:
        """Called once before training (or counting) writes its first value.  ``run_dir``: the
        run folder (write files only inside it); ``hyperparams``: the resolved experiment as
        a plain dict; ``resume``: the run continues an interrupted one.  Return a Lightning
        logger (``pytorch_lightning.loggers.Logger``) for the ``Trainer``, or ``None`` to get
        the values through :meth:`log_metrics`."""
        return None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None) -> None:
        """One logged row (``{"train/loss": 2.1, "epoch": 0, ...}`` at optimizer step ``step``);
        called on the first process only, and only when :meth:`start` returned ``None``."""

    def finish(self, status: str) -> None:
        """Training is over (``status``: ``"success"`` or ``"failed"``): flush and close."""

    def log_media(
        self, run_dir: Path, images: Sequence[Path], audio: Sequence[Path], step: int, hyperparams: Mapping[str, Any]
    ) -> int:
        """After generation (a fresh instance, in any process): log the samples' piano-roll PNGs
        and audio files at ``step`` (the last training step).  Returns how many items were
        logged; the default keeps no media (the files stay in ``samples/``)."""
        return 0
