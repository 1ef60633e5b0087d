"""Training loggers: the ``logger:`` section's plugin (a ``loggers`` registry kind: wandb
offline by default, csv, tensorboard, none, or one a package adds) plus history.jsonl.

Whatever ``logger.name`` says, every logged value is also appended to
``<run_dir>/history.jsonl`` (one JSON object per line: ``{"step", "epoch", "<metric>": value}``),
which the report reads its curves from.  The logger plugins themselves
(:class:`musicfw.core.logger.Logger`) live in ``musicfw.plugins.loggers`` and third-party
packages; this module builds the chosen one, hands its Lightning logger (or a forwarding
one calling its ``log_metrics``) to the Trainer, and closes it.

The ``logger:`` section = ``name`` + the engine's own keys (:data:`ENGINE_KEYS`:
``log_every_n_steps``, ``log_samples``) + the plugin's ``Config``.

Public functions: :func:`build_loggers`, :func:`finish_loggers`, :func:`log_samples`,
:func:`read_history`.  Lightning is imported inside functions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

HISTORY_FILE = "history.jsonl"


# --------------------------------------------------------------------------------------------
# history.jsonl
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf; keep them readable
    return value


def append_history(run_dir: str | Path, record: Mapping[str, Any]) -> None:
    """Append one ``{"step", "epoch", metric: value, ...}`` line to run_dir/history.jsonl."""
    path = Path(run_dir) / HISTORY_FILE
    line = json.dumps({k: _plain(v) for k, v in record.items()}, default=str)
    with path.open("a") as fh:
        fh.write(line + "\n")


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of run_dir/history.jsonl, in order (an empty list if there is none).

    A line that is not a JSON object (e.g. the half-written last line of a killed run) is
    skipped, so the training curves of an interrupted run can still be read and drawn."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _forwarding_logger_class() -> type:
    from pytorch_lightning.loggers import Logger
    from pytorch_lightning.utilities import rank_zero_only

    class ForwardingLogger(Logger):
        """A Lightning logger that hands every logged row to ``sink(metrics, step)``."""

        def __init__(self, name: str, run_dir: str | Path, sink: Callable[[dict, int | None], None]):
            super().__init__()
            self._name, self._run_dir, self._sink = name, Path(run_dir), sink

        @property
        def name(self) -> str:
            return self._name

        @property
        def version(self) -> str:
            return "0"

        @property
        def root_dir(self) -> str:
            return str(self._run_dir)

        @rank_zero_only
        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass  # the resolved config is config.yaml (and Logger.start's hyperparams)

        @rank_zero_only
        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            self._sink(dict(metrics), step)

    return ForwardingLogger


def history_logger(run_dir: str | Path) -> Any:
    """The Lightning logger that appends every logged value to run_dir/history.jsonl."""

    def sink(metrics: dict, step: int | None) -> None:
        record: dict[str, Any] = {"step": step}
        record.update(metrics)
        record.setdefault("epoch", None)
        append_history(run_dir, record)

    return _forwarding_logger_class()("history", run_dir, sink)


# --------------------------------------------------------------------------------------------
# the logger plugin of the ``logger:`` section
# --------------------------------------------------------------------------------------------


def _engine_section() -> type:
    from musicfw.engine.config import LoggerSection

    return LoggerSection


def engine_keys() -> tuple[str, ...]:
    """The ``logger:`` keys the engine reads itself (every other key but ``name`` is the
    plugin's own parameter)."""
    return tuple(f.name for f in dataclasses.fields(_engine_section()) if f.name != "name")


def _plain_section(section: Any) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    if section is None:
        return {}
    if isinstance(section, DictConfig):
        out = OmegaConf.to_container(section, resolve=True)
        assert isinstance(out, dict)
        return out
    if dataclasses.is_dataclass(section):
        return dataclasses.asdict(section)
    return dict(section)


def logger_section(section: Any = None) -> dict[str, Any]:
    """The ``logger:`` section (a mapping or None) as a dict, the engine's keys and ``name``
    filled in with their defaults (the plugin's parameters as given)."""
    out = _plain_section(section)
    for f in dataclasses.fields(_engine_section()):
        out.setdefault(f.name, f.default)
    return out


def build_logger(section: Any, registries: Any = None) -> Any:
    """The :class:`~musicfw.core.logger.Logger` plugin a ``logger:`` section names, its
    parameters validated (an unknown name is an error listing the installed loggers)."""
    from musicfw.core.build import build

    params = logger_section(section)
    name = params.pop("name")
    for key in engine_keys():
        params.pop(key, None)
    return build("loggers", name, registries=registries, key="logger", **params)


class LoggerSet(list):
    """The Lightning loggers handed to the Trainer (history.jsonl's first), and the logger
    plugin they came from (``plugin``; None when the list was made by hand)."""

    plugin: Any = None


def build_loggers(
    section: Any,
    run_dir: str | Path,
    hyperparams: Mapping[str, Any] | None = None,
    resume: bool = False,
    registries: Any = None,
) -> LoggerSet:
    """The Lightning loggers of a ``logger:`` section: always the history.jsonl logger, plus
    the chosen logger plugin's (what its ``start`` returned, or a logger forwarding every row
    to its ``log_metrics``).  ``hyperparams`` (the resolved experiment, a plain dict) go to
    the plugin's ``start``."""
    run_dir = Path(run_dir)
    plugin = build_logger(section, registries)
    loggers = LoggerSet([history_logger(run_dir)])
    loggers.plugin = plugin
    made = plugin.start(run_dir, dict(hyperparams or {}), bool(resume))
    if made is None:
        loggers.append(_forwarding_logger_class()(plugin.name, run_dir, plugin.log_metrics))
    else:
        loggers.append(made)
    return loggers


def finish_loggers(loggers: Iterable[Any], run_dir: str | Path, status: str = "success") -> None:
    """Flush and close the loggers (the plugin's ``finish``: W&B finishes its run so its files
    are complete)."""
    for logger in loggers:
        try:
            logger.finalize(status)
        except Exception:  # a logger failing to flush must not lose a trained model
            pass
    plugin = loggers.plugin if isinstance(loggers, LoggerSet) else None
    if plugin is not None:
        try:
            plugin.finish(status)
        except Exception as exc:  # the model is trained and saved: say so, keep going
            warnings.warn(
                f"logger {plugin.name!r} failed to finish: {type(exc).__name__}: {exc}", stacklevel=2
            )


# --------------------------------------------------------------------------------------------
# generated samples
# --------------------------------------------------------------------------------------------


def log_samples(
    run_dir: str | Path,
    image_paths: Iterable[str | Path] = (),
    audio_paths: Iterable[str | Path] = (),
    step: int | None = None,
    registries: Any = None,
) -> int:
    """Log generated piano-roll images and audio files to the run's logger (the one named in
    run_dir/config.yaml; its ``log_media``: W&B logs into the training run, tensorboard into
    run_dir/tensorboard; csv and none keep no media, the files stay in samples/).  Returns the
    number of items logged."""
    import yaml

    run_dir = Path(run_dir)
    images = [Path(p) for p in image_paths]
    audio = [Path(p) for p in audio_paths]
    if not images and not audio:
        return 0
    config_path = run_dir / "config.yaml"
    config = (yaml.safe_load(config_path.read_text()) if config_path.is_file() else None) or {}
    plugin = build_logger(config.get("logger") or {}, registries)
    if step is None:  # after the last training step, on the same axis as the curves
        steps = [r["step"] for r in read_history(run_dir) if isinstance(r.get("step"), int)]
        step = max(steps) if steps else 0
    return int(plugin.log_media(run_dir, images, audio, step, config))
