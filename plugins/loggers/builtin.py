"""The built-in loggers (see the package docstring)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from musicfw.core.errors import ConfigError
from musicfw.core.logger import Logger

#: the W&B run id of the training run, so the samples are logged into the same run
WANDB_ID_FILE = "musicfw-run-id"


class NoLogger(Logger):
    """No logger: the curves are only in history.jsonl (and the report)."""

    name = "none"


class CSV(Logger):
    """Lightning's CSV logger: run_dir/csv/metrics.csv (rows kept on resume)."""

    name = "csv"

    def start(self, run_dir: Path, hyperparams: Mapping[str, Any], resume: bool) -> Any:
        from pytorch_lightning.loggers import CSVLogger

        from musicfw.engine.distributed import is_rank_zero

        # Lightning's CSV writer deletes an existing metrics.csv when it starts; on resume the
        # rows of the interrupted run are kept and the new ones appended after them
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
        return logger


def _tensorboard_available() -> None:
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


class TensorBoard(Logger):
    """TensorBoard event files in run_dir/tensorboard (curves, and the samples' images and audio)."""

    name = "tensorboard"

    def start(self, run_dir: Path, hyperparams: Mapping[str, Any], resume: bool) -> Any:
        _tensorboard_available()
        from pytorch_lightning.loggers import TensorBoardLogger

        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")

    def log_media(
        self, run_dir: Path, images: Sequence[Path], audio: Sequence[Path], step: int, hyperparams: Mapping[str, Any]
    ) -> int:
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


def configure_wandb_env(run_dir: str | Path, offline: bool = True) -> Path:
    """Point every W&B directory into run_dir/wandb and (by default) force offline mode.

    As measured on wandb 0.31, offline mode must be set in the *environment* (an argument
    alone still tries a connection at exit)."""
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


class WandB(Logger):
    """Weights & Biases, offline in run_dir/wandb by default (no account, no network)."""

    name = "wandb"

    @dataclass
    class Config:
        project: str = field(default="musicfw", metadata={"help": "the W&B project name"})
        offline: bool = field(
            default=True, metadata={"help": "keep the run offline in the run folder (false: sync to wandb.ai; log in first)"}
        )

    def __init__(self, config: Any = None):
        super().__init__(config)
        self._logger: Any = None
        self._run_dir: Path | None = None

    def start(self, run_dir: Path, hyperparams: Mapping[str, Any], resume: bool) -> Any:
        from pytorch_lightning.loggers import WandbLogger

        offline = bool(self.config.offline)
        configure_wandb_env(run_dir, offline=offline)
        # offline through WANDB_MODE=offline and mode= (WandbLogger's own offline flag would
        # switch the environment to the legacy "dryrun")
        logger = WandbLogger(
            name=run_dir.name,
            save_dir=str(run_dir),
            project=self.config.project,
            config=dict(hyperparams or {}),
            mode="offline" if offline else "online",
        )
        # WandbLogger always passes anonymous=None, which wandb 0.31 warns about
        logger._wandb_init.pop("anonymous", None)
        self._logger, self._run_dir = logger, run_dir
        return logger

    def finish(self, status: str) -> None:
        run = getattr(self._logger, "_experiment", None)  # None: no value was ever logged
        if run is not None and self._run_dir is not None:
            (self._run_dir / "wandb" / WANDB_ID_FILE).write_text(run.id)
            run.finish(exit_code=0 if status == "success" else 1)

    def log_media(
        self, run_dir: Path, images: Sequence[Path], audio: Sequence[Path], step: int, hyperparams: Mapping[str, Any]
    ) -> int:
        """A new offline run with the training run's id, in the same run_dir/wandb."""
        offline = bool(self.config.offline)
        configure_wandb_env(run_dir, offline=offline)
        import wandb

        id_file = run_dir / "wandb" / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        run = wandb.init(
            dir=str(run_dir),
            project=self.config.project,
            name=run_dir.name,
            id=run_id,
            resume="allow" if run_id else None,
            mode="offline" if offline else "online",
            config=dict(hyperparams),
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
