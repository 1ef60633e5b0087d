"""Training: one LightningModule for every neural model, ``fit``, ``load_model``.

* :func:`fit` trains a model on a datamodule into a run folder, given only the ``train:`` and
  ``logger:`` sections: Lightning for trainable models (the module-level
  :class:`~musicfw.engine.lightning.MusicLightningModule`), ``model.fit(datamodule)`` for
  count-based ones (``trainable = False``).  It writes
  ``checkpoints/last.ckpt`` (every ``train.checkpoint_every_n_steps`` optimizer steps, after
  every validation and at the end: the resume point) and ``checkpoints/best.ckpt`` (lowest
  ``val/nll``), logs through :mod:`musicfw.engine.loggers` (history.jsonl always, plus the
  ``logger:`` section's logger plugin: W&B offline, csv, tensorboard, none or a package's), and returns the final metrics, computed exactly with the
  weights the model prefers (``preferred_checkpoint``: best, or last for MusicVAE): ``val_nll`` and ``test_nll`` (nats per token; per frame for piano-rolls),
  ``val_perplexity``, ``test_perplexity``, ``train_time_s``, ``global_step``, ``epochs``,
  ``n_parameters``.
* ``fit(..., resume=True)`` continues from ``checkpoints/last.ckpt`` (mid-epoch included).
* A non-finite loss or gradient stops training with :class:`NonFiniteLossError` before the
  bad update is applied, so ``last.ckpt`` keeps the last good weights.
* :func:`load_model` rebuilds ``(model, tokenizer)`` from a run folder.
* :func:`evaluate_nll` computes the exact NLL of a model over a dataloader.

torch and Lightning are imported inside the functions (this module stays cheap to import).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from musicfw.core.atomic import atomic_path
from musicfw.core.errors import ConfigError, NonFiniteLossError, RunFolderError
from musicfw.engine.config import train_section
from musicfw.engine.loggers import append_history, build_loggers, finish_loggers, logger_section
from musicfw.engine.windows import scored_loss

CHECKPOINT_DIR = "checkpoints"

__all__ = ["evaluate_nll", "fit", "freeze", "init_from_run", "load_checkpoint", "load_model"]


# --------------------------------------------------------------------------------------------
# config helpers
# --------------------------------------------------------------------------------------------


def _limit(value: Any) -> int | float:
    """Lightning reads a float as a fraction and an int as a count of batches."""
    value = float(value)
    return int(value) if value > 1 or (value.is_integer() and value != 1.0) else value


# --------------------------------------------------------------------------------------------
# exact held-out NLL
# --------------------------------------------------------------------------------------------


def evaluate_nll(model: Any, batches: Iterable[dict], device: Any = None, stride: int | None = None) -> dict[str, float]:
    """Exact NLL of ``model`` over every batch: ``{"nll_per_token", "perplexity", "nll_sum",
    "n_targets"}`` (per token = per scored position; per frame for piano-rolls).  Sequences
    longer than ``model.max_context`` are scored in sliding windows of ``stride`` new positions
    (default half the context; :mod:`musicfw.engine.windows`), every token exactly once."""
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
            out = scored_loss(model, batch, stride)
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


def fit(
    model: Any,
    datamodule: Any,
    train: Any,
    run_dir: str | Path,
    *,
    logger: Any = None,
    hyperparams: dict[str, Any] | None = None,
    resume: bool = False,
    registries: Any = None,
) -> dict[str, Any]:
    """Train ``model`` on ``datamodule`` into ``run_dir`` (see the module docstring).

    ``train``: the ``train:`` section (None: the defaults); ``logger``: the ``logger:``
    section (None: W&B offline); ``hyperparams``: the resolved experiment as a plain dict,
    recorded by the logger.  ``resume`` continues from ``checkpoints/last.ckpt``.
    ``registries``: the plugins of this invocation (the logger plugin comes from them; loaded
    when None).
    """
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    train = train_section(train)
    if not model.trainable:
        if list(train.freeze):
            raise ConfigError("train.freeze: the model is fitted by counting; there are no parameters to freeze.")
        return _fit_counting(model, datamodule, logger, hyperparams, run_dir, registries)
    freeze(model, list(train.freeze))
    if int(train.max_steps) == 0:  # no training: the starting weights (init_from's) are measured
        if resume:
            raise ConfigError(
                "train.max_steps=0 trains nothing, so there is nothing to resume (it would replace the "
                f"checkpoints in {ckpt_dir} with untrained weights); give a larger train.max_steps to continue."
            )
        return _fit_none(model, datamodule, logger, hyperparams, run_dir, registries)
    context = model.max_context
    if context is not None and int(train.seq_len) > int(context):
        raise ConfigError(
            f"train.seq_len={train.seq_len} is longer than the model's context (max_context={context}); "
            "lower train.seq_len or raise the model's context."
        )
    return _fit_lightning(model, datamodule, train, logger, hyperparams, run_dir, resume, registries)


def freeze(model: Any, prefixes: list[str]) -> int:
    """Stop training the parameters whose names start with one of ``prefixes`` (a whole
    dotted component: ``encoder`` freezes ``encoder.*``, not ``encoder2.*``); returns how many
    tensors were frozen.  A prefix that matches nothing is a ConfigError listing the model's
    top-level parts."""
    if not prefixes:
        return 0
    names = [name for name, _ in model.named_parameters()]
    frozen = 0
    for prefix in prefixes:
        hits = [n for n in names if n == prefix or n.startswith(str(prefix) + ".")]
        if not hits:
            parts = sorted({n.split(".")[0] for n in names})
            raise ConfigError(
                f"train.freeze: no parameter of {type(model).__name__} starts with {prefix!r}; "
                f"its parts are: {', '.join(parts)}."
            )
    for name, p in model.named_parameters():
        if any(name == pre or name.startswith(str(pre) + ".") for pre in prefixes):
            p.requires_grad_(False)
            frozen += 1
    return frozen


def _trainer(train: Any, logger: Any, run_dir: Path, loggers: list, callbacks: list) -> Any:
    import logging
    import warnings

    import pytorch_lightning as pl

    # Lightning's INFO lines (GPU available, tips, limits) are noise next to musicfw's progress
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")
    # a resumed run writes into its own checkpoints/ folder on purpose
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    log_every = int(logger_section(logger)["log_every_n_steps"])
    with _hardware_errors(train):
        return _new_trainer(pl, train, run_dir, loggers, callbacks, log_every)


@contextlib.contextmanager
def _hardware_errors(train: Any) -> Iterator[None]:
    """Lightning's refusal of a hardware setting (strategy=fsdp on the CPU, no GPU, an unknown
    strategy) as a ConfigError naming the train.* keys."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        yield
    except (ValueError, MisconfigurationException) as exc:
        raise ConfigError(
            f"Lightning cannot train with train.accelerator={train.accelerator}, train.devices={train.devices}, "
            f"train.strategy={train.strategy}, train.num_nodes={train.num_nodes}, train.precision={train.precision}: "
            f"{exc}"
        ) from None


def check_hardware(train: Any) -> None:
    """Build (and drop) a Trainer with the run's hardware settings, so a setting Lightning
    refuses is a ConfigError before any run folder exists.  Cheap (~50 ms); no folder, logger or
    process group is made."""
    import logging
    import tempfile
    import warnings

    import pytorch_lightning as pl

    quiet = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp, _hardware_errors(train):
            warnings.simplefilter("ignore")
            pl.Trainer(
                accelerator=train.accelerator,
                devices=train.devices,
                strategy=train.strategy,
                num_nodes=int(train.num_nodes),
                precision=train.precision,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                default_root_dir=tmp,
            )
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


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


def _fit_lightning(
    model: Any, datamodule: Any, train: Any, logger: Any, hyperparams: Any, run_dir: Path, resume: bool,
    registries: Any = None,
) -> dict[str, Any]:
    import sys

    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping

    from musicfw.engine.lightning import (
        BestCheckpoint, LastCheckpoint, MusicLightningModule, ProgressLines, StepProgressBar, write_checksum,
    )

    ckpt_dir = run_dir / CHECKPOINT_DIR
    last, best = ckpt_dir / "last.ckpt", ckpt_dir / "best.ckpt"
    callbacks: list = [
        BestCheckpoint(
            dirpath=str(ckpt_dir),
            filename="best",
            monitor="val/nll",
            mode="min",
            save_top_k=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        ),
        LastCheckpoint(last, int(train.checkpoint_every_n_steps)),
    ]
    # a terminal gets one bar over all the run's steps (with ETA); elsewhere (a log file,
    # CI) no bar can be drawn: a line every ~10% of the steps instead
    callbacks.append(StepProgressBar() if sys.stderr.isatty() else ProgressLines())
    if int(train.early_stopping_patience) > 0:
        callbacks.append(EarlyStopping(monitor="val/nll", mode="min", patience=int(train.early_stopping_patience)))
    loggers = build_loggers(logger, run_dir, hyperparams, resume=resume, registries=registries)
    trainer = _trainer(train, logger, run_dir, loggers, callbacks)
    module = MusicLightningModule(model, train)

    ckpt_path = None
    if resume:
        if last.is_file():
            check_resumable(model, last)  # a clear error for a broken, foreign or unsafe file, before Lightning
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
        # weights_only=True: a checkpoint can run no code on load, whatever torch's default
        trainer.fit(module, ckpt_path=ckpt_path, weights_only=True, **data_kwargs)
    except NonFiniteLossError as exc:
        finish_loggers(loggers, run_dir, status="failed")
        append_history(run_dir, {"step": trainer.global_step, "epoch": trainer.current_epoch, "error": str(exc)})
        where = f"The last good checkpoint is {last}." if last.is_file() else "No checkpoint had been written yet."
        raise NonFiniteLossError(
            f"Training diverged: {exc} {where} Try a lower train.lr, a gradient clip "
            "(train.gradient_clip_val), or precision 32-true, then run again (resume continues from "
            "last.ckpt)."
        ) from None

    from musicfw.engine.distributed import leave_process_group

    if not leave_process_group(trainer):  # the other ranks of a multi-process run stop here
        return {"global_step": int(trainer.global_step), "rank": int(trainer.global_rank)}
    if not best.is_file() and last.is_file():  # no validation ran: the last weights are the best we know
        shutil.copyfile(last, best)
        write_checksum(best)
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
        if not model.loss_is_bound:  # exp() of a bound (negative ELBO) is no perplexity
            out[f"{split}_perplexity"] = res["perplexity"]
        out[f"{split}_n_targets"] = res["n_targets"]
    return out


def _save_weights(model: Any, ckpt_dir: Path, info: dict[str, Any]) -> None:
    """``model``'s weights as checkpoints/last.ckpt and best.ckpt (+ .sha256), step 0; written
    by rank 0 only when torchrun/srun started several processes."""
    import torch

    from musicfw.engine.distributed import is_rank_zero
    from musicfw.engine.lightning import write_checksum

    if not is_rank_zero():
        return

    payload = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "musicfw": info,
        "global_step": 0,
        "epoch": 0,
    }
    with atomic_path(ckpt_dir / "last.ckpt") as tmp:
        torch.save(payload, tmp)
    shutil.copyfile(ckpt_dir / "last.ckpt", ckpt_dir / "best.ckpt")
    write_checksum(ckpt_dir / "last.ckpt")
    write_checksum(ckpt_dir / "best.ckpt")


def _rank_zero() -> bool:
    from musicfw.engine.distributed import is_rank_zero

    return is_rank_zero()


def _fit_none(model: Any, datamodule: Any, logger: Any, hyperparams: Any, run_dir: Path, registries: Any = None) -> dict[str, Any]:
    """``train.max_steps: 0``: no training.  The starting weights (a fine-tuning run's
    ``init_from``, else the initialisation) are saved as the run's checkpoints and measured on
    the held-out splits, so the rest of the run (samples, evaluation, report) describes them:
    the "before" of a fine-tuning run on the same data and split."""
    if hasattr(datamodule, "setup"):
        datamodule.setup("fit")
    ckpt_dir = run_dir / CHECKPOINT_DIR
    _save_weights(model, ckpt_dir, {"train_time_s": 0.0, "trained": False})
    metrics: dict[str, Any] = {
        "model": type(model).__name__,
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "global_step": 0,
        "epochs": 0,
        "train_time_s": 0.0,
        "checkpoint": str(ckpt_dir / f"{model.preferred_checkpoint}.ckpt"),
    }
    model.eval()
    final = _held_out_metrics(model, datamodule, None)
    metrics.update(final)
    loggers = build_loggers(logger, run_dir, hyperparams, registries=registries) if _rank_zero() else []
    for lg in loggers:
        lg.log_hyperparams(dict(hyperparams or {}))
        lg.log_metrics({f"final/{k}": v for k, v in final.items()}, step=0)
    finish_loggers(loggers, run_dir, status="success")
    return metrics


def _fit_counting(model: Any, datamodule: Any, logger: Any, hyperparams: Any, run_dir: Path, registries: Any = None) -> dict[str, Any]:
    """Count-based models: ``model.fit(datamodule)``, then the same checkpoints and logs."""
    if hasattr(datamodule, "setup"):
        datamodule.setup("fit")
    t0 = time.perf_counter()
    model.fit(datamodule)
    fit_time = time.perf_counter() - t0
    ckpt_dir = run_dir / CHECKPOINT_DIR
    _save_weights(model, ckpt_dir, {"train_time_s": fit_time, "counting": True})
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
    loggers = build_loggers(logger, run_dir, hyperparams, registries=registries) if _rank_zero() else []
    logged = {"train/fit_time_s": fit_time}
    for split in ("val", "test"):
        if f"{split}_nll" in final:
            logged[f"{split}/nll"] = final[f"{split}_nll"]
            if f"{split}_perplexity" in final:
                logged[f"{split}/ppl"] = final[f"{split}_perplexity"]
    logged.update({f"final/{k}": v for k, v in final.items()})
    for logger in loggers:
        logger.log_hyperparams(dict(hyperparams or {}))
        logger.log_metrics(dict(logged, epoch=0), step=0)
    finish_loggers(loggers, run_dir, status="success")
    return metrics


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def _read_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents, loaded with ``weights_only=True`` (tensors and plain data only:
    loading runs no code, whatever the installed torch's default).  A truncated, empty,
    foreign or unsafe file is a :class:`RunFolderError` that names it."""
    import torch

    side = Path(str(path) + ".sha256")
    if side.is_file() and Path(path).is_file():
        from musicfw.engine.integrity import sha256_file

        expected = side.read_text().split()[0] if side.read_text().split() else ""
        if sha256_file(path) != expected:
            raise RunFolderError(
                f"The checkpoint {path} does not match the sha256 recorded next to it ({side.name}): "
                "the file changed after training wrote it (a copy error, a flipped bit, an edit). "
                "Restore it, or delete it and its .sha256 to resume from another checkpoint or train again."
            )
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFolderError(
            f"The checkpoint {path} cannot be read safely ({type(exc).__name__}: {reason[:300]}). "
            "It is truncated, corrupted or not a musicfw checkpoint (only tensors and plain data "
            "are loaded, never code). Delete it (and resume from another checkpoint, or train again)."
        ) from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise RunFolderError(f"The checkpoint {path} holds no model weights (no state_dict); it is not a musicfw checkpoint.")
    return state


#: what Lightning reads from a checkpoint to resume training (a weights-only file lacks them)
RESUME_KEYS = ("pytorch-lightning_version", "epoch", "global_step", "optimizer_states", "loops")


def checkpoint_weights(model: Any, state: dict, path: str | Path) -> dict:
    """The ``model.`` weights of a read checkpoint, checked against ``model`` before anything is
    loaded: a state_dict that is no mapping of names to tensors, or whose names or shapes
    differ from the model's, is a :class:`RunFolderError` saying what differs (a checkpoint
    that ``weights_only`` accepts may still be another model's, or no musicfw checkpoint)."""
    import torch

    raw = state.get("state_dict")
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise RunFolderError(
            f"The checkpoint {path} has a state_dict that is no mapping of weight names to tensors "
            f"({type(raw).__name__}); it is not a musicfw checkpoint."
        )
    prefix = "model."
    weights = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(
        f"{k} {tuple(weights[k].shape) if isinstance(weights[k], torch.Tensor) else type(weights[k]).__name__}"
        f" (the model has {tuple(expected[k].shape)})"
        for k in set(expected) & set(weights)
        if isinstance(expected[k], torch.Tensor)
        and (not isinstance(weights[k], torch.Tensor) or tuple(weights[k].shape) != tuple(expected[k].shape))
    )
    if missing or unexpected or wrong:
        def some(names: list[str]) -> str:
            return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")

        parts = [f"missing {some(missing)}"] if missing else []
        parts += [f"unexpected {some(unexpected)}"] if unexpected else []
        parts += [f"other shapes: {some(wrong)}"] if wrong else []
        raise RunFolderError(
            f"The checkpoint {path} does not fit this model ({'; '.join(parts)}): it was written for "
            "another model or model section, or is not a musicfw checkpoint."
        )
    return weights


def load_checkpoint(model: Any, path: str | Path) -> Any:
    """Load the model weights of a musicfw/Lightning checkpoint into ``model`` (in place); a file
    that is unreadable or does not fit the model is a :class:`RunFolderError`."""
    state = _read_checkpoint(path)
    model.load_state_dict(checkpoint_weights(model, state, path))
    return model


def check_resumable(model: Any, path: str | Path) -> None:
    """Before Lightning resumes from ``path``: the file is readable, its weights fit ``model``
    and it holds the training state Lightning needs; else a :class:`RunFolderError`."""
    state = _read_checkpoint(path)
    checkpoint_weights(model, state, path)
    lacking = [key for key in RESUME_KEYS if key not in state]
    if lacking:
        raise RunFolderError(
            f"The checkpoint {path} holds no training state to resume from (no {', '.join(lacking)}): "
            "it is a weights-only or foreign file. Delete it to resume from another checkpoint, or "
            "start the run again without --resume."
        )
    from musicfw.engine.resume import check_loader_states

    check_loader_states(state, path)  # exact resume's loader place and random state


def init_from_run(model: Any, tokenizer: Any, run_dir: str | Path) -> Path:
    """Start ``model`` from the weights a trained run prefers (fine-tuning).  The run's
    tokenizer must equal ``tokenizer`` and its weights must fit ``model``: anything else is a
    ConfigError saying what differs.  Returns the checkpoint used."""
    import json

    run_dir = Path(run_dir)
    tok_path = run_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise ConfigError(f"init_from: {run_dir} is not a trained musicfw run folder (no tokenizer.json).")
    theirs = json.loads(tok_path.read_text())
    ours = json.loads(json.dumps(tokenizer.to_dict()))
    if (theirs.get("name"), theirs.get("config")) != (ours["name"], ours["config"]):
        diff = sorted(
            k for k in set(theirs.get("config", {})) | set(ours["config"])
            if theirs.get("config", {}).get(k) != ours["config"].get(k)
        )
        other = f" with other {', '.join(diff)}" if diff and theirs.get("name") == ours["name"] else ""
        raise ConfigError(
            f"init_from: the run {run_dir} used the tokenizer {theirs.get('name')!r}{other}; "
            f"fine-tuning needs the same tokenizer (this experiment: {ours['name']!r}). Copy the "
            f"tokenizer section of {run_dir / 'config.yaml'}."
        )
    which = model.preferred_checkpoint
    path = run_dir / CHECKPOINT_DIR / f"{which}.ckpt"
    if not path.is_file():
        path = run_dir / CHECKPOINT_DIR / "last.ckpt"
    if not path.is_file():
        raise ConfigError(f"init_from: {run_dir} has no checkpoint to start from (train it first).")
    # a plain run fine-tuned into an infilling one (train.infill.enabled) or back: the same
    # tokenizer, the vocabulary grown (or shrunk) by the three infill markers at its end
    their_v = ours_v = int(tokenizer.vocab_size)
    info = theirs.get("infill")
    if bool(info) != bool(ours.get("infill")):
        from musicfw.engine.infill import MARKERS

        base_v = int(ours["infill"]["first_id"]) if ours.get("infill") else ours_v
        their_v = base_v + (len(MARKERS) if info else 0)
    try:
        if their_v != ours_v:
            _load_resized(model, path, their_v, ours_v)
        else:
            load_checkpoint(model, path)
    except (RuntimeError, RunFolderError) as exc:  # unreadable, other names or shapes
        first = str(exc).strip().splitlines()
        raise ConfigError(
            f"init_from: the weights in {path} do not fit this model ({' '.join(first[:3])[:400]}); "
            "fine-tuning needs the same model section as the run."
        ) from None
    return path


def _load_resized(model: Any, path: Path, their_v: int, ours_v: int) -> None:
    """Load ``path`` into ``model`` whose vocabulary has ``ours_v`` ids where the checkpoint's
    has ``their_v`` (the first ``min`` ids the same): a weight whose shape differs only on one
    axis, of the vocabulary's size or one more (the output rows; the embedding, whose extra
    last row is the start input of the token models, musicfw.plugins.models._lm), gets the
    shared ids' rows copied and its extra last row moved to the new end; rows of ids the
    checkpoint lacks keep the model's own initialisation.  Every other weight must fit as is."""
    import torch

    state = _read_checkpoint(path)
    raw = state.get("state_dict")
    if not isinstance(raw, dict):
        checkpoint_weights(model, state, path)  # the RunFolderError saying what it is
    expected = model.state_dict()
    keep = min(their_v, ours_v)
    fitted = {}
    for key, value in raw.items():
        name = key[len("model."):] if isinstance(key, str) and key.startswith("model.") else None
        if name is None or name not in expected or not isinstance(value, torch.Tensor):
            fitted[key] = value
            continue
        mine = expected[name]
        if tuple(value.shape) != tuple(mine.shape) and value.dim() == mine.dim():
            axes = [a for a in range(value.dim()) if value.shape[a] != mine.shape[a]]
            if len(axes) == 1:
                a = axes[0]
                extra = int(value.shape[a]) - their_v
                if extra in (0, 1) and int(mine.shape[a]) == ours_v + extra:
                    grown = mine.detach().clone()
                    grown.narrow(a, 0, keep).copy_(value.narrow(a, 0, keep))
                    if extra:
                        grown.narrow(a, ours_v, extra).copy_(value.narrow(a, their_v, extra))
                    value = grown
        fitted[key] = value
    model.load_state_dict(checkpoint_weights(model, {**state, "state_dict": fitted}, path))


def load_model(
    run_dir: str | Path, which: str = "auto", registries: Any = None, config: Any = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` rebuilt from run_dir/config.yaml (or ``config``, when the caller
    has read it already), run_dir/tokenizer.json and a checkpoint (see :func:`load_into`).
    The model is built once, in eval mode, on the CPU."""
    from musicfw.core.build import build_from_section
    from musicfw.engine.infill import load_run_tokenizer
    from musicfw.engine.rundir import load_run_config

    run_dir = Path(run_dir)
    if config is None:
        config = load_run_config(run_dir, registries=registries)
    tok_path = run_dir / "tokenizer.json"
    if not tok_path.is_file():
        raise RunFolderError(f"{run_dir} has no tokenizer.json; was the run's data stage reached?")
    tokenizer = load_run_tokenizer(tok_path, registries=registries)  # with the infill markers when trained so
    model = build_from_section("models", config.model, registries=registries, tokenizer=tokenizer)
    load_into(model, run_dir, which)
    return model, tokenizer


def load_into(model: Any, run_dir: str | Path, which: str = "auto") -> Path:
    """Load ``checkpoints/<which>.ckpt`` of ``run_dir`` into ``model`` (in place) and put it in
    eval mode on the CPU; returns the checkpoint's path.  ``which``: "best", "last", a
    checkpoint path, or "auto": the model's ``preferred_checkpoint``, "best" unless the model
    says otherwise (MusicVAE says "last", since its KL annealing makes early checkpoints look
    best).  The runner loads the trained run's checkpoint into the model it trained."""
    run_dir = Path(run_dir)
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
    model.cpu()
    model.eval()
    return path
