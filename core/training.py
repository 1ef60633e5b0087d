"""Training: one LightningModule for every neural model, ``fit``, ``load_model``.

* :func:`fit` trains a model on a datamodule into a run folder: Lightning for trainable
  models, ``model.fit(datamodule)`` for count-based ones (``trainable = False``).  It writes
  ``checkpoints/last.ckpt`` (every ``train.checkpoint_every_n_steps`` optimizer steps, after
  every validation and at the end: the resume point) and ``checkpoints/best.ckpt`` (lowest
  ``val/nll``), logs through :mod:`musicfw.core.loggers` (history.jsonl always, plus W&B
  offline / csv / tensorboard), and returns the final metrics, computed exactly with the
  weights the model prefers (``preferred_checkpoint``: best, or last for MusicVAE): ``val_nll`` and ``test_nll`` (nats per token; per frame for piano-rolls),
  ``val_perplexity``, ``test_perplexity``, ``train_time_s``, ``global_step``, ``epochs``,
  ``n_parameters``.
* ``fit(..., resume=True)`` continues from ``checkpoints/last.ckpt`` (mid-epoch included).
* A non-finite loss or gradient stops training with :class:`NonFiniteLossError` before the
  bad update is applied, so ``last.ckpt`` keeps the last good weights.
* :func:`load_model` rebuilds ``(model, tokenizer)`` from a run folder.
* :func:`evaluate_nll` computes the exact NLL of a model over a dataloader.
* :func:`log_samples` logs generated piano-roll images and audio to the run's logger.

torch and Lightning are imported inside the functions (this module stays cheap to import).
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from .errors import ConfigError, RunFolderError, UserError
from .loggers import append_history, build_loggers, finish_loggers, logger_section
from .loggers import log_samples as _log_samples

CHECKPOINT_DIR = "checkpoints"


class NonFiniteLossError(UserError):
    """Training produced a NaN/inf loss or gradient; the run stopped before applying it."""


def log_samples(run_dir: str | Path, image_paths: Iterable[str | Path] = (), audio_paths: Iterable[str | Path] = ()) -> int:
    """Log generated piano-roll PNGs and WAVs to the run's logger (see
    :func:`musicfw.core.loggers.log_samples`); returns how many items were logged."""
    return _log_samples(run_dir, image_paths, audio_paths)


# --------------------------------------------------------------------------------------------
# config helpers
# --------------------------------------------------------------------------------------------


def train_section(config: Any) -> Any:
    """The ``train:`` section with every default filled in (configs built by hand may omit keys)."""
    from omegaconf import OmegaConf

    from .config import TrainSection

    raw = config.get("train") if hasattr(config, "get") else None
    return OmegaConf.merge(OmegaConf.structured(TrainSection), raw or {})


def _limit(value: Any) -> int | float:
    """Lightning reads a float as a fraction and an int as a count of batches."""
    value = float(value)
    return int(value) if value > 1 or (value.is_integer() and value != 1.0) else value


# --------------------------------------------------------------------------------------------
# the LightningModule and callbacks (classes built on first use: Lightning is imported lazily)
# --------------------------------------------------------------------------------------------

_CLASSES: dict[str, type] = {}


def _classes() -> dict[str, type]:
    if _CLASSES:
        return _CLASSES
    import pytorch_lightning as pl
    import torch

    class MusicLightningModule(pl.LightningModule):
        """Wraps any model of the protocol: ``loss(batch)`` trains it; validation and test
        sum ``nll_sum`` and ``n_targets`` over the whole split, so val/nll is exact."""

        def __init__(self, model: torch.nn.Module, train: Any):
            super().__init__()
            self.model = model
            self.train_cfg = train
            self._sums: dict[str, list] = {}
            self.train_time_s = 0.0  # accumulated over resumed runs
            self._t0: float | None = None

        # -- training --------------------------------------------------------------------
        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            self.model.on_train_step(self.global_step)
            out = self.model.loss(batch)
            loss = out["loss"]
            if not bool(torch.isfinite(loss.detach()).all()):
                raise NonFiniteLossError(
                    f"the training loss became {float(loss.detach()):g} at step {self.global_step} "
                    "(batch {}), so training stopped before applying it.".format(batch_idx)
                )
            bs = int(batch["tokens"].shape[0])
            n = out["n_targets"]
            self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bs)
            nll = (out["nll_sum"].detach().double() / n.clamp(min=1)).float()
            self.log("train/nll", nll, batch_size=bs)
            self.log("train/ppl", torch.exp(nll.clamp(max=80.0)), batch_size=bs)
            for key, value in _extra_scalars(out):
                self.log(f"train/{key}", value, batch_size=bs)
            self.log("train/lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), batch_size=bs)
            return loss

        def on_before_optimizer_step(self, optimizer: Any) -> None:
            if str(self.trainer.precision).startswith("16"):
                return  # the grad scaler skips inf steps itself
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            if not grads:
                return
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            if not bool(torch.isfinite(norm)):
                raise NonFiniteLossError(
                    f"the gradient became {float(norm):g} at step {self.global_step}, so training "
                    "stopped before applying it."
                )
            self.log("train/grad_norm", norm, batch_size=1)

        def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
            # linear warm-up for the plateau schedule (the others do it in their LambdaLR)
            cfg = self.train_cfg
            if cfg.lr_schedule == "plateau" and cfg.warmup_steps > 0 and self.global_step <= cfg.warmup_steps:
                scale = min(1.0, (self.global_step + 1) / cfg.warmup_steps)
                for group in self.trainer.optimizers[0].param_groups:
                    group["lr"] = cfg.lr * scale

        # -- validation and test: exact sums over the split ----------------------------
        def _start(self, split: str) -> None:
            self._sums[split] = [0.0, 0, {}]

        def _accumulate(self, split: str, batch: dict) -> None:
            out = self.model.loss(batch)
            sums = self._sums.setdefault(split, [0.0, 0, {}])
            n = int(out["n_targets"])
            sums[0] += float(out["nll_sum"].double())
            sums[1] += n
            for key, value in _extra_scalars(out):
                total, weight = sums[2].get(key, (0.0, 0))
                sums[2][key] = (total + float(value) * n, weight + n)

        def _finish(self, split: str) -> None:
            nll_sum, n, extras = self._sums.get(split, [0.0, 0, {}])
            t = torch.tensor([nll_sum, float(n)], dtype=torch.float64, device=self.device)
            t = self.trainer.strategy.reduce(t, reduce_op="sum")
            if float(t[1]) == 0:
                return
            nll = float(t[0] / t[1])
            self.log(f"{split}/nll", nll, prog_bar=split == "val", sync_dist=False)
            self.log(f"{split}/ppl", math.exp(min(nll, 700.0)))
            for key, (total, weight) in extras.items():
                self.log(f"{split}/{key}", total / max(weight, 1))

        def on_validation_epoch_start(self) -> None:
            self._start("val")

        def validation_step(self, batch: dict, batch_idx: int) -> None:
            self._accumulate("val", batch)

        def on_validation_epoch_end(self) -> None:
            self._finish("val")

        def on_test_epoch_start(self) -> None:
            self._start("test")

        def test_step(self, batch: dict, batch_idx: int) -> None:
            self._accumulate("test", batch)

        def on_test_epoch_end(self) -> None:
            self._finish("test")

        # -- optimizer -----------------------------------------------------------------
        def configure_optimizers(self) -> Any:
            total = self.trainer.estimated_stepping_batches
            return self.model.configure_optimizers(self.train_cfg, total if math.isfinite(total) else None)

        # -- wall-clock training time survives resumes -----------------------------------
        def on_train_start(self) -> None:
            self._t0 = time.perf_counter()

        def _elapsed(self) -> float:
            return self.train_time_s + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

        def on_save_checkpoint(self, checkpoint: dict) -> None:
            checkpoint["musicfw"] = {"train_time_s": self._elapsed()}

        def on_load_checkpoint(self, checkpoint: dict) -> None:
            self.train_time_s = float(checkpoint.get("musicfw", {}).get("train_time_s", 0.0))

    class LastCheckpoint(pl.Callback):
        """Writes checkpoints/last.ckpt every N optimizer steps, after every validation and at
        the end of training — atomically (temp file + rename), so a kill never corrupts it."""

        def __init__(self, path: Path, every_n_steps: int):
            self.path = Path(path)
            self.every = int(every_n_steps)
            self._saved_at = -1

        def _save(self, trainer: pl.Trainer) -> None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            trainer.save_checkpoint(str(tmp), weights_only=False)
            if trainer.is_global_zero:
                os.replace(tmp, self.path)
            trainer.strategy.barrier()
            self._saved_at = trainer.global_step

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step
            if self.every > 0 and step > 0 and step % self.every == 0 and step != self._saved_at:
                self._save(trainer)

        def on_validation_end(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking and trainer.state.fn == "fit":
                self._save(trainer)

        def on_train_end(self, trainer, pl_module) -> None:
            self._save(trainer)

    class ProgressLines(pl.Callback):
        """One line per ~10% of training on stderr, where no progress bar can be drawn (a log
        file, CI): ``train step 300/1000  loss 1.234  val/nll 1.301  41 s``."""

        def __init__(self, stream: Any = None):
            import sys

            self.stream = stream or sys.stderr
            self._next = 0

        def _total(self, trainer: pl.Trainer) -> int:
            if trainer.max_steps and trainer.max_steps > 0:
                return int(trainer.max_steps)
            per_epoch = trainer.num_training_batches
            if isinstance(per_epoch, (int, float)) and per_epoch != float("inf") and trainer.max_epochs:
                return int(per_epoch * trainer.max_epochs)
            return 0

        def on_train_start(self, trainer, pl_module) -> None:
            import time

            self._t0 = time.perf_counter()
            total = self._total(trainer)
            self._every = max(1, total // 10) if total else 100
            self._next = trainer.global_step + self._every

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            import time

            step = trainer.global_step
            if step < self._next:
                return
            self._next = step + self._every
            total = self._total(trainer)
            metrics = trainer.callback_metrics
            shown = "  ".join(
                f"{key} {float(metrics[key]):.3f}" for key in ("train/loss", "val/nll") if key in metrics
            )
            print(
                f"      train step {step}{f'/{total}' if total else ''}  {shown}  "
                f"{time.perf_counter() - self._t0:.0f} s",
                file=self.stream,
                flush=True,
            )

    _CLASSES.update(
        MusicLightningModule=MusicLightningModule, LastCheckpoint=LastCheckpoint, ProgressLines=ProgressLines
    )
    return _CLASSES


def lightning_module(model: Any, config: Any) -> Any:
    """The LightningModule wrapping ``model`` with the ``train:`` options of ``config``."""
    return _classes()["MusicLightningModule"](model, train_section(config))


def _extra_scalars(out: dict) -> list[tuple[str, Any]]:
    """Scalars a model's loss returns besides loss / nll_sum / n_targets (logged as they are)."""
    extras = []
    for key, value in out.items():
        if key in ("loss", "nll_sum", "n_targets"):
            continue
        if hasattr(value, "numel") and value.numel() == 1:
            extras.append((key, value.detach().float()))
        elif isinstance(value, (int, float)):
            extras.append((key, float(value)))
    return extras


# --------------------------------------------------------------------------------------------
# exact held-out NLL
# --------------------------------------------------------------------------------------------


def evaluate_nll(model: Any, batches: Iterable[dict], device: Any = None) -> dict[str, float]:
    """Exact NLL of ``model`` over every batch: ``{"nll_per_token", "perplexity", "nll_sum",
    "n_targets"}`` (per token = per scored position; per frame for piano-rolls)."""
    import torch

    if device is None:
        params = list(model.parameters())
        device = params[0].device if params else torch.device("cpu")
    was_training = model.training
    model.eval()
    nll_sum, n = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
            out = model.loss(batch)
            nll_sum += float(out["nll_sum"].double())
            n += int(out["n_targets"])
    model.train(was_training)
    nll = nll_sum / n if n else float("nan")
    return {
        "nll_per_token": nll,
        "perplexity": math.exp(min(nll, 700.0)) if n else float("nan"),
        "nll_sum": nll_sum,
        "n_targets": n,
    }


def _dataloader(datamodule: Any, split: str) -> Any:
    """``datamodule.<split>_dataloader()`` if the datamodule provides one, else None."""
    method = getattr(datamodule, f"{split}_dataloader", None)
    if method is None:
        return None
    try:
        from pytorch_lightning import LightningDataModule
        from pytorch_lightning.utilities.model_helpers import is_overridden

        if isinstance(datamodule, LightningDataModule) and not is_overridden(f"{split}_dataloader", datamodule, LightningDataModule):
            return None
    except ImportError:  # pragma: no cover
        pass
    return method()


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------


def fit(model: Any, datamodule: Any, config: Any, run_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train ``model`` on ``datamodule`` into ``run_dir`` (see the module docstring)."""
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if not model.trainable:
        return _fit_counting(model, datamodule, config, run_dir)
    return _fit_lightning(model, datamodule, config, run_dir, resume)


def _trainer(config: Any, run_dir: Path, loggers: list, callbacks: list) -> Any:
    import logging
    import sys

    import pytorch_lightning as pl

    import warnings

    # Lightning's INFO lines (GPU available, tips, limits) are noise next to musicfw's progress
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")
    train = train_section(config)
    log_every = int(logger_section(config)["log_every_n_steps"])
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        return _new_trainer(pl, train, run_dir, loggers, callbacks, log_every)
    except (ValueError, MisconfigurationException) as exc:  # e.g. strategy=fsdp on the CPU
        raise ConfigError(
            f"Lightning cannot train with train.accelerator={train.accelerator}, train.devices={train.devices}, "
            f"train.strategy={train.strategy}, train.num_nodes={train.num_nodes}, train.precision={train.precision}: "
            f"{exc}"
        ) from None


def _new_trainer(pl: Any, train: Any, run_dir: Path, loggers: list, callbacks: list, log_every: int) -> Any:
    import sys

    return pl.Trainer(
        max_epochs=int(train.max_epochs),
        max_steps=int(train.max_steps),
        accelerator=train.accelerator,
        devices=train.devices,
        strategy=train.strategy,
        num_nodes=int(train.num_nodes),
        precision=train.precision,
        gradient_clip_val=float(train.gradient_clip_val) or None,
        accumulate_grad_batches=int(train.accumulate_grad_batches),
        limit_train_batches=_limit(train.limit_train_batches),
        limit_val_batches=_limit(train.limit_val_batches),
        check_val_every_n_epoch=int(train.check_val_every_n_epoch),
        logger=loggers,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        log_every_n_steps=max(1, log_every),
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def _fit_lightning(model: Any, datamodule: Any, config: Any, run_dir: Path, resume: bool) -> dict[str, Any]:
    import sys

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    classes = _classes()
    train = train_section(config)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    last, best = ckpt_dir / "last.ckpt", ckpt_dir / "best.ckpt"
    callbacks: list = [
        ModelCheckpoint(
            dirpath=str(ckpt_dir),
            filename="best",
            monitor="val/nll",
            mode="min",
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        classes["LastCheckpoint"](last, int(train.checkpoint_every_n_steps)),
    ]
    if not sys.stderr.isatty():  # no progress bar: print a line every ~10% instead
        callbacks.append(classes["ProgressLines"]())
    if int(train.early_stopping_patience) > 0:
        callbacks.append(EarlyStopping(monitor="val/nll", mode="min", patience=int(train.early_stopping_patience)))
    loggers = build_loggers(config, run_dir)
    trainer = _trainer(config, run_dir, loggers, callbacks)
    module = classes["MusicLightningModule"](model, train)

    ckpt_path = None
    if resume:
        if last.is_file():
            ckpt_path = str(last)
        else:
            import warnings

            warnings.warn(f"resume: {last} does not exist; training starts from scratch", stacklevel=2)
    if isinstance(datamodule, pl.LightningDataModule):
        data_kwargs: dict[str, Any] = {"datamodule": datamodule}
    else:
        data_kwargs = {"train_dataloaders": datamodule.train_dataloader()}
        val = _dataloader(datamodule, "val")
        if val is not None:
            data_kwargs["val_dataloaders"] = val
    try:
        trainer.fit(module, ckpt_path=ckpt_path, **data_kwargs)
    except NonFiniteLossError as exc:
        finish_loggers(loggers, run_dir, status="failed")
        append_history(run_dir, {"step": trainer.global_step, "epoch": trainer.current_epoch, "error": str(exc)})
        where = f"The last good checkpoint is {last}." if last.is_file() else "No checkpoint had been written yet."
        raise NonFiniteLossError(
            f"Training diverged: {exc} {where} Try a lower train.lr, a gradient clip "
            "(train.gradient_clip_val), or precision 32-true, then run again (resume continues from "
            "last.ckpt)."
        ) from None

    from .distributed import leave_process_group

    if not leave_process_group(trainer):  # the other ranks of a multi-process run stop here
        return {"global_step": int(trainer.global_step), "rank": int(trainer.global_rank)}
    if not best.is_file() and last.is_file():  # no validation ran: the last weights are the best we know
        shutil.copyfile(last, best)
    # The held-out metrics below describe the weights a user gets from load_model(which="auto").
    prefers_last = model.preferred_checkpoint == "last"
    which = last if (prefers_last and last.is_file()) or not best.is_file() else best
    load_checkpoint(model, which)
    device = module.device
    model.to(device)

    metrics: dict[str, Any] = {
        "model": type(model).__name__,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "global_step": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "train_time_s": round(module._elapsed(), 3),
        "checkpoint": str(which),
    }
    final = _held_out_metrics(model, datamodule, device)
    metrics.update(final)
    record = {"step": int(trainer.global_step), "epoch": int(trainer.current_epoch)}
    record.update({f"final/{k}": v for k, v in final.items()})
    for logger in loggers[1:]:
        logger.log_metrics({f"final/{k}": v for k, v in final.items()}, step=int(trainer.global_step))
    append_history(run_dir, record)
    finish_loggers(loggers, run_dir, status="success")
    model.cpu()
    return metrics


def _held_out_metrics(model: Any, datamodule: Any, device: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for split, stage in (("val", "validate"), ("test", "test")):
        if hasattr(datamodule, "setup") and split == "test":
            datamodule.setup(stage)
        loader = _dataloader(datamodule, split)
        if loader is None:
            continue
        res = evaluate_nll(model, loader, device)
        if res["n_targets"] == 0:
            continue
        out[f"{split}_nll"] = res["nll_per_token"]
        out[f"{split}_perplexity"] = res["perplexity"]
        out[f"{split}_n_targets"] = res["n_targets"]
    return out


def _fit_counting(model: Any, datamodule: Any, config: Any, run_dir: Path) -> dict[str, Any]:
    """Count-based models: ``model.fit(datamodule)``, then the same checkpoints and logs."""
    import torch
    from omegaconf import OmegaConf

    if hasattr(datamodule, "setup"):
        datamodule.setup("fit")
    t0 = time.perf_counter()
    model.fit(datamodule)
    fit_time = time.perf_counter() - t0
    ckpt_dir = run_dir / CHECKPOINT_DIR
    payload = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "musicfw": {"train_time_s": fit_time, "counting": True},
        "global_step": 0,
        "epoch": 0,
    }
    tmp = ckpt_dir / "last.ckpt.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, ckpt_dir / "last.ckpt")
    shutil.copyfile(ckpt_dir / "last.ckpt", ckpt_dir / "best.ckpt")
    metrics: dict[str, Any] = {
        "model": type(model).__name__,
        "n_parameters": 0,
        "global_step": 0,
        "epochs": 0,
        "train_time_s": round(fit_time, 3),
        "checkpoint": str(ckpt_dir / "best.ckpt"),
    }
    final = _held_out_metrics(model, datamodule, None)
    metrics.update(final)
    loggers = build_loggers(config, run_dir)
    logged = {"train/fit_time_s": fit_time}
    for split in ("val", "test"):
        if f"{split}_nll" in final:
            logged[f"{split}/nll"] = final[f"{split}_nll"]
            logged[f"{split}/ppl"] = final[f"{split}_perplexity"]
    logged.update({f"final/{k}": v for k, v in final.items()})
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(config, resolve=True) if not isinstance(config, dict) else config)
        logger.log_metrics(dict(logged, epoch=0), step=0)
    finish_loggers(loggers, run_dir, status="success")
    return metrics


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def load_checkpoint(model: Any, path: str | Path) -> Any:
    """Load the model weights of a musicfw/Lightning checkpoint into ``model`` (in place)."""
    import torch

    state = torch.load(str(path), map_location="cpu", weights_only=True)
    prefix = "model."
    weights = {k[len(prefix) :]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    model.load_state_dict(weights)
    return model


def load_model(run_dir: str | Path, which: str = "auto", registries: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` rebuilt from run_dir/config.yaml, run_dir/tokenizer.json and
    ``checkpoints/<which>.ckpt`` (``which``: "best", "last", a checkpoint path, or "auto": the
    model's ``preferred_checkpoint``, "best" unless the model says otherwise -- MusicVAE says
    "last", since its KL annealing makes early checkpoints look best).  The model is in eval
    mode, on the CPU."""
    from .build import build_from_section
    from .rundir import load_run_config
    from .tokenizer import load_tokenizer

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    tok_path = run_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise RunFolderError(f"{run_dir} has no tokenizer.json; was the run's data stage reached?")
    tokenizer = load_tokenizer(tok_path, registries=registries)
    model = build_from_section("models", config.model, registries=registries, tokenizer=tokenizer)
    if which == "auto":
        which = model.preferred_checkpoint
    path = Path(which) if which not in ("best", "last") else run_dir / CHECKPOINT_DIR / f"{which}.ckpt"
    if not path.is_file():
        found = sorted(p.name for p in (run_dir / CHECKPOINT_DIR).glob("*.ckpt"))
        raise RunFolderError(
            f"No checkpoint {path} in {run_dir} (found: {', '.join(found) or 'none'}); "
            "train the model first (musicfw run) or pick which='last'."
        )
    load_checkpoint(model, path)
    model.eval()
    return model, tokenizer
