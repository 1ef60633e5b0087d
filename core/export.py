"""The export-format contract: ``musicfw export --run RUN --format NAME OUT_DIR``.

The engine opens the run folder, loads the trained model and its tokenizer (the checkpoint
the user chose), makes the empty ``OUT_DIR`` and hands an :class:`ExportSource` to the chosen
format's :meth:`ExportFormat.export`, which writes its files into ``OUT_DIR``.  If it raises,
``OUT_DIR`` is removed again (no half-written export is left).  The built-in ``safetensors``
format (a folder ``musicfw generate --model`` loads) is a default plugin registered through
``musicfw_register_exporters`` like any third party's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping


@dataclass
class ExportSource:
    """What an export format is given."""

    #: the run folder
    run_dir: Path
    #: the run's resolved, validated config (an omegaconf DictConfig: ``config.model.name``, ...)
    config: Any
    #: the trained model, its weights loaded from ``checkpoint`` (a :class:`musicfw.core.model.Model`)
    model: Any
    #: the run's tokenizer (a :class:`musicfw.core.tokenizer.Tokenizer`)
    tokenizer: Any
    #: which checkpoint was loaded: ``best``, ``last`` or a path
    checkpoint: str
    #: the run's metrics.json as a dict ({} when there is none)
    metrics: Mapping[str, Any]
    #: the license identifier the user gave (``--license``; ``other`` by default)
    license: str = "other"
    #: kind -> ``[{name, distribution, version}]`` of every plugin the run used (what a
    #: reader must install to load the export)
    plugins: Mapping[str, Any] = field(default_factory=dict)


class ExportFormat:
    """Base class of an export format plugin."""

    #: the name given to ``musicfw export --format``
    name: ClassVar[str]

    @dataclass
    class Config:
        """The format's own parameters (``musicfw export --param KEY=VALUE``)."""

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "ExportFormat":
        return cls(config)

    def export(self, source: ExportSource, out_dir: Path) -> None:  # pragma: no cover
        """Write the export into ``out_dir`` (it exists and is empty)."""
        raise TypeError(f"export format {self.name!r} does not implement export(source, out_dir)")
