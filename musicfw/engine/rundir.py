"""The run folder: one directory per run, never overwritten.

::

    <output_dir>/<name>-<YYYYmmdd-HHMMSS>/
      config.yaml      resolved config
      tokenizer.json   tokenizer config + vocabulary
      checkpoints/     Lightning checkpoints (last, best)
      samples/         generated .mid (+ .png piano rolls, + .wav when a soundfont is found)
      metrics.json     every number the run measured
      report.html      one self-contained page
      wandb/           the offline W&B run
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from musicfw.core.errors import RunFolderError


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug or "run"


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @classmethod
    def create(cls, output_dir: str | Path, name: str) -> "RunFolder":
        """A fresh folder ``<output_dir>/<name>-<timestamp>``; a suffix keeps it unique."""
        root = Path(output_dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(
                f"output_dir {root} cannot be used for run folders ({exc.strerror or exc}); "
                "give output_dir a folder you can write to."
            ) from None
        stem = f"{_slug(name)}-{time.strftime('%Y%m%d-%H%M%S')}"
        for i in range(1000):
            candidate = root / (stem if i == 0 else f"{stem}-{i}")
            try:
                candidate.mkdir()  # atomic: two runs in the same second get different folders
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunFolderError(
                    f"Cannot create a run folder in output_dir {root} ({exc.strerror or exc}); "
                    "give output_dir a folder you can write to."
                ) from None
            return cls(candidate)
        raise RunFolderError(f"Could not create a new run folder under {root}.")

    @classmethod
    def open(cls, path: str | Path) -> "RunFolder":
        p = Path(path)
        if not p.is_dir():
            raise RunFolderError(f"Run folder not found: {p}")
        if not (p / "config.yaml").is_file():
            raise RunFolderError(f"{p} is not a musicfw run folder (it has no config.yaml).")
        return cls(p)

    # the layout --------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    def save_config(self, config: DictConfig) -> None:
        from musicfw.engine.config import to_yaml

        self.config_path.write_text(to_yaml(config))


def load_run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (), registries: Any = None) -> DictConfig:
    """The validated config saved in a run folder (with optional overrides).  The run's own
    ``limits:`` then hold for this process (:func:`musicfw.music.limits.configure_run`): every
    command acting on a run enforces the limits it was made with."""
    from omegaconf import OmegaConf

    from musicfw.engine.config import load_config
    from musicfw.music.limits import configure_run

    run = RunFolder.open(run_dir)
    config = load_config(run.config_path, overrides=list(overrides), registries=registries, saved=True)
    limits = config.get("limits")
    configure_run(OmegaConf.to_container(limits) if limits is not None else None,
                  where=f"limits (in {run.config_path})")
    return config
