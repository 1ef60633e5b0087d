"""The LightningModule that trains every model, and musicfw's training callbacks.

Imported by :mod:`musicfw.engine.training` when training starts (Lightning takes ~2 s to import,
so nothing imports this module at start-up).  Subclass :class:`MusicLightningModule` or the
callbacks like any Lightning class.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from musicfw.core.atomic import atomic_path, atomic_write
from musicfw.core.errors import NonFiniteLossError
from musicfw.engine.windows import scored_loss


def extra_scalars(out: dict) -> list[tuple[str, Any]]:
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
        self._loader_states: list = []  # from the checkpoint resumed from (exact resume)

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
        for key, value in extra_scalars(out):
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
        out = scored_loss(self.model, batch)  # sliding windows past the model's max_context
        sums = self._sums.setdefault(split, [0.0, 0, {}])
        n = int(out["n_targets"])
        sums[0] += float(out["nll_sum"].double())
        sums[1] += n
        for key, value in extra_scalars(out):
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
        if self._loader_states:
            from musicfw.engine.resume import resume_loaders

            resume_loaders(self.trainer, self._loader_states)
            self._loader_states = []

    def _elapsed(self) -> float:
        return self.train_time_s + (time.perf_counter() - self._t0 if self._t0 is not None else 0.0)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["musicfw"] = {"train_time_s": self._elapsed()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.train_time_s = float(checkpoint.get("musicfw", {}).get("train_time_s", 0.0))
        from musicfw.engine.resume import loader_state_in

        # exact resume (musicfw/engine/resume.py): the loaders get their states when training starts
        self._loader_states = loader_state_in(checkpoint)
        if not self._loader_states:
            import warnings

            warnings.warn(
                f"resume: the checkpoint (step {checkpoint.get('global_step', '?')}) holds no data-loader "
                "place or random state (it was written by a musicfw before exact resume, or with a data "
                "loader that is not resumable): training continues from it, but with other batches and "
                "random numbers than the uninterrupted run, so the results will differ from it slightly.",
                stacklevel=2,
            )

def write_checksum(path: Path) -> Path:
    """``<checkpoint>.sha256`` next to a checkpoint: loading verifies it (a flipped bit is an
    error, not different music)."""
    from musicfw.engine.integrity import sha256_file

    return atomic_write(Path(str(path) + ".sha256"), f"{sha256_file(path)}  {Path(path).name}\n")


class BestCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's ModelCheckpoint, with the checksum written next to what it saves.

    Before the first validation there is no ``val/nll`` to rank by: a run that stops earlier
    (``train.max_steps`` shorter than an epoch) saves nothing here, silently, instead of
    Lightning's "could not find the monitored key" warning; ``fit`` then copies last.ckpt to
    best.ckpt (the last weights are the best known)."""

    def _save_topk_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict) -> None:
        if self.monitor is not None and self.monitor not in monitor_candidates:
            if not trainer.fit_loop.epoch_loop.val_loop._has_run:
                return
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        if trainer.is_global_zero and Path(filepath).is_file():
            write_checksum(Path(filepath))


class LastCheckpoint(pl.Callback):
    """Writes checkpoints/last.ckpt every N optimizer steps, after every validation and at
    the end of training — atomically (temp file + rename), so a kill never corrupts it."""

    def __init__(self, path: Path, every_n_steps: int):
        self.path = Path(path)
        self.every = int(every_n_steps)
        self._saved_at = -1

    def _save(self, trainer: pl.Trainer) -> None:
        # every rank calls save_checkpoint with the same name (a sharded strategy writes there
        # together); rank zero moves the file into place
        with atomic_path(self.path, unique=False, publish=trainer.is_global_zero) as tmp:
            trainer.save_checkpoint(str(tmp), weights_only=False)
        if trainer.is_global_zero:
            write_checksum(self.path)
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

def total_steps(trainer: pl.Trainer) -> int:
    """The optimizer steps this fit will take (0 when unknown)."""
    if trainer.max_steps and trainer.max_steps > 0:
        return int(trainer.max_steps)
    per_epoch = trainer.num_training_batches
    if isinstance(per_epoch, (int, float)) and per_epoch != float("inf") and trainer.max_epochs:
        accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1))
        return int(per_epoch // accumulate * trainer.max_epochs)
    return 0


class StepProgressBar(pl.callbacks.ProgressBar):
    """A tqdm bar over *all* optimizer steps of the run, on a terminal: steps done / total,
    rate and ETA, with the training loss and the latest validation NLL (and the step it was
    measured at).  Lightning's own TQDM bar restarts every epoch, so its ETA is the epoch's;
    a run stopped by ``train.max_steps`` needs the run's."""

    def __init__(self, stream: Any = None):
        super().__init__()
        self.stream = stream or sys.stderr
        self._enabled = True
        self._bar: Any = None
        self._val: tuple[int, float] | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.write(" ".join(str(a) for a in args), file=self.stream)
        else:
            print(*args, **kwargs)

    def on_train_start(self, trainer, pl_module) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        from musicfw.engine.progress import tqdm_bar

        total = total_steps(trainer)
        self._bar = tqdm_bar(
            self.stream, total=total or None, initial=int(trainer.global_step), desc="      train", unit="step",
            leave=True,
        )

    def _postfix(self, trainer: pl.Trainer) -> None:
        metrics = trainer.callback_metrics
        shown = {}
        if "train/loss" in metrics:
            shown["loss"] = f"{float(metrics['train/loss']):.3f}"
        if self._val is not None:
            shown["val/nll"] = f"{self._val[1]:.3f} (step {self._val[0]})"
        self._bar.set_postfix(shown, refresh=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._bar is None:
            return
        self._postfix(trainer)
        self._bar.update(int(trainer.global_step) - self._bar.n)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._bar is None or trainer.sanity_checking or "val/nll" not in trainer.callback_metrics:
            return
        self._val = (int(trainer.global_step), float(trainer.callback_metrics["val/nll"]))
        self._postfix(trainer)
        self._bar.refresh()

    def on_train_end(self, trainer, pl_module) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ProgressLines(pl.Callback):
    """One line per ~10% of training on stderr, where no progress bar can be drawn (a log
    file, CI): ``train step 300/1000  loss 1.234  val/nll 1.301  41 s``."""

    def __init__(self, stream: Any = None):
        self.stream = stream or sys.stderr
        self._next = 0

    def _total(self, trainer: pl.Trainer) -> int:
        return total_steps(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()
        total = self._total(trainer)
        self._every = max(1, total // 10) if total else 100
        self._next = trainer.global_step + self._every
        self._start_step = trainer.global_step
        self._val_fresh = False

    def on_validation_end(self, trainer, pl_module) -> None:
        self._val_fresh = True  # show val/nll on the next line only: it is stale after that

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step < self._next or not trainer.is_global_zero:  # one process prints
            return
        self._next = step + self._every
        total = self._total(trainer)
        metrics = trainer.callback_metrics
        keys = ("train/loss", "val/nll") if self._val_fresh else ("train/loss",)
        self._val_fresh = False
        shown = "  ".join(f"{key} {float(metrics[key]):.3f}" for key in keys if key in metrics)
        elapsed = time.perf_counter() - self._t0
        done = step - self._start_step
        eta = f", ETA {elapsed / done * (total - step):.0f} s" if total and done > 0 and step < total else ""
        print(
            f"      train step {step}{f'/{total}' if total else ''}  {shown}  {elapsed:.0f} s{eta}",
            file=self.stream,
            flush=True,
        )
