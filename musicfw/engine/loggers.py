"""Training loggers: W&B offline by default, csv, tensorboard or none — plus history.jsonl.

Whatever ``logger.name`` says, every logged value is also appended to
``<run_dir>/history.jsonl`` (one JSON object per line: ``{"step", "epoch", "<metric>": value}``),
which the report reads its curves from.

W&B runs offline in the run folder (``<run_dir>/wandb/``): no account and no network.  As
measured on wandb 0.31, offline mode must be set in the *environment* (an argument alone
still tries a connection at exit), so :func:`configure_wandb_env` sets ``WANDB_MODE=offline``
and points every ``WANDB_*`` directory into the run folder.  Set ``logger.offline: false``
(and log in) to sync to wandb.ai instead.

Public functions: :func:`build_loggers`, :func:`finish_loggers`, :func:`log_samples`,
:func:`read_history`, :func:`read_wandb_history`.  Lightning is imported inside functions.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from musicfw.core.errors import ConfigError

HISTORY_FILE = "history.jsonl"
WANDB_ID_FILE = "musicfw-run-id"


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
    """Every record of run_dir/history.jsonl, in order (an empty list if there is none)."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _history_logger_class() -> type:
    from pytorch_lightning.loggers import Logger
    from pytorch_lightning.utilities import rank_zero_only

    class HistoryLogger(Logger):
        """A Lightning logger that appends every logged value to run_dir/history.jsonl."""

        def __init__(self, run_dir: str | Path):
            super().__init__()
            self._run_dir = Path(run_dir)

        @property
        def name(self) -> str:
            return "history"

        @property
        def version(self) -> str:
            return "0"

        @property
        def root_dir(self) -> str:
            return str(self._run_dir)

        @rank_zero_only
        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            pass  # the resolved config is config.yaml

        @rank_zero_only
        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            record = {"step": step}
            record.update(metrics)
            record.setdefault("epoch", None)
            append_history(self._run_dir, record)

    return HistoryLogger


def history_logger(run_dir: str | Path) -> Any:
    return _history_logger_class()(run_dir)


# --------------------------------------------------------------------------------------------
# W&B offline
# --------------------------------------------------------------------------------------------


def configure_wandb_env(run_dir: str | Path, offline: bool = True) -> Path:
    """Point every W&B directory into run_dir/wandb and (by default) force offline mode."""
    wandb_dir = Path(run_dir).resolve() / "wandb"
    wandb_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "WANDB_DIR": str(wandb_dir.parent),  # wandb adds the "wandb/" itself
        "WANDB_CACHE_DIR": str(wandb_dir / "cache"),
        "WANDB_DATA_DIR": str(wandb_dir / "data"),
        "WANDB_CONFIG_DIR": str(wandb_dir / "config"),
        "WANDB_ARTIFACT_DIR": str(wandb_dir / "artifacts"),
        "WANDB_ERROR_REPORTING": "false",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_X_DISABLE_STATS": "true",  # no system-metrics sampler competing for the CPU
    }
    if offline:
        env["WANDB_MODE"] = "offline"
    os.environ.update(env)
    return wandb_dir


def logger_section(section: Any = None) -> dict[str, Any]:
    """The ``logger:`` section (a mapping, a LoggerSection or None) as a dict, every default
    filled in."""
    import dataclasses

    from omegaconf import OmegaConf

    from musicfw.engine.config import LoggerSection

    merged = OmegaConf.merge(OmegaConf.structured(LoggerSection), section or {})
    out = OmegaConf.to_container(merged, resolve=True)
    assert isinstance(out, dict)
    for f in dataclasses.fields(LoggerSection):
        out.setdefault(f.name, f.default)
    return out


def build_loggers(
    section: Any, run_dir: str | Path, hyperparams: Mapping[str, Any] | None = None, resume: bool = False
) -> list[Any]:
    """The Lightning loggers of a ``logger:`` section: always the history.jsonl logger, plus
    wandb (offline), csv (run_dir/csv/metrics.csv) or tensorboard (run_dir/tensorboard).
    ``hyperparams`` (the resolved experiment, a plain dict) is the W&B run's config."""
    run_dir = Path(run_dir)
    section = logger_section(section)
    name = section.get("name", "wandb")
    loggers: list[Any] = [history_logger(run_dir)]
    if name == "none":
        return loggers
    if name == "csv":
        from pytorch_lightning.loggers import CSVLogger

        # Lightning's CSV writer deletes an existing metrics.csv when it starts; on resume the
        # rows of the interrupted run are kept and the new ones appended after them
        from musicfw.engine.distributed import is_rank_zero

        old = run_dir / "csv" / "metrics.csv"
        # one process owns the file (the other ranks of a multi-process run log nothing)
        kept = old.read_bytes() if resume and old.is_file() and is_rank_zero() else None
        if kept is not None:
            import shutil

            shutil.rmtree(old.parent)  # only metrics.csv (kept above) and hparams.yaml live here
        logger = CSVLogger(save_dir=str(run_dir), name="csv", version="")
        if kept is not None:
            import csv
            import io

            writer = logger.experiment  # made now: the writer clears its folder when it is made
            old.parent.mkdir(parents=True, exist_ok=True)
            old.write_bytes(kept)
            header = next(csv.reader(io.StringIO(kept.decode("utf-8", "replace"))), [])
            writer.metrics_keys = sorted(header)  # new columns are merged in, old rows kept
        loggers.append(logger)
    elif name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            try:
                import tensorboardX  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "logger.name: tensorboard needs the `tensorboardX` (or `tensorboard`) package: "
                    "pip install 'musicfw[tensorboard]', or choose wandb, csv or none."
                ) from None
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    elif name == "wandb":
        from pytorch_lightning.loggers import WandbLogger

        offline = bool(section.get("offline", True))
        configure_wandb_env(run_dir, offline=offline)
        # offline through WANDB_MODE=offline and mode= (WandbLogger's own offline flag would
        # switch the environment to the legacy "dryrun")
        logger = WandbLogger(
            name=run_dir.name,
            save_dir=str(run_dir),
            project=section.get("project", "musicfw"),
            config=dict(hyperparams or {}),
            mode="offline" if offline else "online",
        )
        # WandbLogger always passes anonymous=None, which wandb 0.31 warns about
        logger._wandb_init.pop("anonymous", None)
        loggers.append(logger)
    else:  # the config validator only lets the choices through
        raise ConfigError(f"logger.name: unknown logger {name!r}; choose wandb, csv, tensorboard or none.")
    return loggers


def finish_loggers(loggers: Iterable[Any], run_dir: str | Path, status: str = "success") -> None:
    """Flush and close the loggers (W&B: finish the run so its files are complete)."""
    for logger in loggers:
        try:
            logger.finalize(status)
        except Exception:  # a logger failing to flush must not lose a trained model
            pass
        if type(logger).__name__ == "WandbLogger":
            run = getattr(logger, "_experiment", None)
            if run is not None:
                (Path(run_dir) / "wandb" / WANDB_ID_FILE).write_text(run.id)
                exit_code = 0 if status == "success" else 1
                run.finish(exit_code=exit_code)


# --------------------------------------------------------------------------------------------
# generated samples
# --------------------------------------------------------------------------------------------


def log_samples(
    run_dir: str | Path,
    image_paths: Iterable[str | Path] = (),
    audio_paths: Iterable[str | Path] = (),
    step: int | None = None,
) -> int:
    """Log generated piano-roll images and audio files to the run's logger.

    The logger is the one named in run_dir/config.yaml: W&B (a new offline run with the
    training run's id, in the same run_dir/wandb), tensorboard (images and audio in
    run_dir/tensorboard); csv and none keep no media (the files stay in samples/).  Returns
    the number of items logged.
    """
    import yaml

    run_dir = Path(run_dir)
    images = [Path(p) for p in image_paths]
    audio = [Path(p) for p in audio_paths]
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    section = (config or {}).get("logger") or {}
    name = section.get("name", "wandb")
    if not images and not audio or name in ("none", "csv"):
        return 0
    if step is None:  # after the last training step, on the same axis as the curves
        steps = [r["step"] for r in read_history(run_dir) if isinstance(r.get("step"), int)]
        step = max(steps) if steps else 0
    if name == "wandb":
        return _log_samples_wandb(run_dir, section, config, images, audio, step)
    if name == "tensorboard":
        return _log_samples_tensorboard(run_dir, images, audio, step)
    return 0


def _log_samples_wandb(run_dir, section, config, images, audio, step) -> int:
    offline = bool(section.get("offline", True))
    configure_wandb_env(run_dir, offline=offline)
    import wandb

    id_file = run_dir / "wandb" / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    run = wandb.init(
        dir=str(run_dir),
        project=section.get("project", "musicfw"),
        name=run_dir.name,
        id=run_id,
        resume="allow" if run_id else None,
        mode="offline" if offline else "online",
        config=config,
        reinit="finish_previous",
    )
    payload: dict[str, Any] = {}
    if images:
        payload["samples/piano_roll"] = [wandb.Image(str(p), caption=p.stem) for p in images]
    if audio:
        payload["samples/audio"] = [wandb.Audio(str(p), caption=p.stem) for p in audio]
    run.log(payload, step=step)
    run.finish()
    return len(images) + len(audio)


def _log_samples_tensorboard(run_dir, images, audio, step) -> int:
    import numpy as np
    from PIL import Image
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
    for path in images:
        arr = np.asarray(Image.open(path).convert("RGB"))
        writer.add_image(f"samples/{path.stem}", arr, global_step=step or 0, dataformats="HWC")
    for path in audio:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        writer.add_audio(f"samples/{path.stem}", data.mean(axis=1), global_step=step or 0, sample_rate=rate)
    writer.close()
    return len(images) + len(audio)


# --------------------------------------------------------------------------------------------
# reading an offline W&B run back
# --------------------------------------------------------------------------------------------


def _wandb_cli() -> list[str]:
    exe = shutil.which("wandb")
    if exe:
        return [exe]
    return [sys.executable, "-m", "wandb"]


def read_wandb_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The history rows of every offline W&B run in run_dir/wandb, oldest run first
    (via ``wandb leet inspect --json``, which reads the .wandb transaction log)."""
    wandb_dir = Path(run_dir) / "wandb"
    files = sorted(wandb_dir.glob("*run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    rows: list[dict[str, Any]] = []
    for path in files:
        proc = subprocess.run(
            _wandb_cli() + ["leet", "inspect", "--json", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "WANDB_MODE": "offline"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"wandb leet inspect failed on {path}: {proc.stderr.strip()}")
        for line in proc.stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            row = _history_row(record)
            if row is not None:
                rows.append(row)
    return rows


def _history_row(record: dict[str, Any]) -> dict[str, Any] | None:
    """One ``history`` record of ``wandb leet inspect --json`` as {key: value} (0.31 writes
    ``{"type": "history", "history": {"item": {key: value, ...}, "step": {"num": n}}}``)."""
    if record.get("type") != "history":
        return None
    body = record.get("history") or {}
    items = body.get("item") or {}
    if isinstance(items, list):  # older layouts: [{"key": ..., "valueJson": ...}]
        items = {
            it.get("key") or "/".join(it.get("nestedKey", [])): json.loads(it.get("valueJson", "null"))
            for it in items
        }
    return dict(items)
