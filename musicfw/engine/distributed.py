"""Multi-process training: which process this is, the run folder every rank shares, and the
samplers that give each process its share of the data.

``train.devices``, ``train.strategy`` (``ddp``, ``ddp_spawn``, ``fsdp``, ...) and
``train.num_nodes`` go to Lightning's ``Trainer`` as they are; ``train.batch_size`` is per
process (the global batch is ``batch_size x devices x num_nodes``).  How the processes start:

* ``musicfw run exp.yaml train.devices=N train.strategy=ddp``: Lightning's launcher starts the
  other N-1 processes at ``trainer.fit`` by running the same command line again (with
  ``LOCAL_RANK`` set).  Rank 0 made the run folder and exported its path as
  ``$MUSICFW_RUN_DIR``, which the others inherit.
* ``torchrun`` or SLURM ``srun`` start every process at once.  Rank 0 then names the run folder
  ``<name>-<job id>`` (``$SLURM_JOB_ID`` or torchrun's ``--rdzv-id``); the other ranks wait for
  its ``config.yaml``.  ``$MUSICFW_RUN_DIR`` set by hand (same path on every rank) works too.

Every rank prepares the data (cached: the conversion and token caches are safe to build
concurrently) and trains; only rank 0 writes the config, tokenizer, metrics, checkpoints, logs
(Lightning's loggers are rank-zero), samples and the report.  After ``trainer.fit`` every rank
leaves the process group; the other ranks stop there and rank 0 alone evaluates.

Data shares: the training sampler draws one global, seeded sequence of windows per epoch
(:class:`musicfw.engine.data.WindowSampler`) and rank ``r`` of ``W`` takes positions
``r, r + W, ...`` (:class:`ShardedSampler`), so with ``batch_size = B / W`` the union of the
ranks' k-th batches is exactly the k-th batch of a one-process run with ``batch_size = B``.
Validation batches are split without repeats (:func:`eval_share`; a rank short of a batch
gets an empty, fully masked one); the sums of NLL and targets are added over the ranks, so
``val/nll`` stays exact.

Only the standard library is imported at module level.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

RUN_DIR_ENV = "MUSICFW_RUN_DIR"
#: environment variables that carry a process's rank, one launcher or another
_RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")
WAIT_FOR_RANK0_S = 600.0


def is_rank_zero() -> bool:
    """True in a single-process run and in the global rank 0 of a multi-process one (decided
    from the launchers' environment variables, before any process group exists)."""
    for var in _RANK_VARS:
        value = os.environ.get(var, "").strip()
        if value and value.isdigit() and int(value) != 0:
            return False
    return True


def _external_job_id() -> str | None:
    """The job id shared by every process when torchrun or srun started several at once."""
    world = os.environ.get("WORLD_SIZE", "").strip()
    if os.environ.get("TORCHELASTIC_RUN_ID") and world.isdigit() and int(world) > 1:
        run_id = os.environ["TORCHELASTIC_RUN_ID"].strip()
        if run_id and run_id != "none":
            return run_id
    ntasks = os.environ.get("SLURM_NTASKS", "").strip()
    if os.environ.get("SLURM_JOB_ID") and ntasks.isdigit() and int(ntasks) > 1:
        step = os.environ.get("SLURM_STEP_ID", "").strip()
        return os.environ["SLURM_JOB_ID"] + (f".{step}" if step else "")
    return None


def run_folder(config: Any, resume: str | Path | None = None) -> Any:
    """The run folder of this process: a new one (rank 0), the resumed one (every rank), or
    the one rank 0 made (other ranks of a multi-process launch)."""
    from musicfw.core.errors import ConfigError, RunFolderError
    from musicfw.engine.rundir import RunFolder, _slug

    if resume:
        run = RunFolder.open(resume)
    elif is_rank_zero():
        job = _external_job_id()
        if os.environ.get(RUN_DIR_ENV) and job is not None:
            path = Path(os.environ[RUN_DIR_ENV])  # set by hand for every rank of the launch
            path.mkdir(parents=True, exist_ok=True)
            run = RunFolder(path)
        elif job is not None:
            path = Path(config.output_dir) / f"{_slug(config.name)}-{_slug(job)}"
            try:
                path.mkdir(parents=True)
            except FileExistsError:
                raise RunFolderError(
                    f"The run folder {path} of this job exists already; continue it with --resume "
                    f"{path}, or remove it."
                ) from None
            run = RunFolder(path)
        else:
            run = RunFolder.create(config.output_dir, config.name)
    else:
        if os.environ.get(RUN_DIR_ENV):
            path = Path(os.environ[RUN_DIR_ENV])
        else:
            job = _external_job_id()
            if job is None:
                raise ConfigError(
                    "This process is not rank 0 of a multi-process launch, but it cannot tell which run "
                    f"folder rank 0 made: set ${RUN_DIR_ENV} to the same path on every rank, or launch "
                    "with torchrun --rdzv-id=ID / srun (a job id names the folder)."
                )
            path = Path(config.output_dir) / f"{_slug(config.name)}-{_slug(job)}"
        _wait_for(path / "config.yaml")
        run = RunFolder(path)
    os.environ[RUN_DIR_ENV] = str(run.path.resolve())  # processes launched later join it
    return run


def _wait_for(path: Path, timeout: float = WAIT_FOR_RANK0_S) -> None:
    from musicfw.core.errors import RunFolderError

    deadline = time.monotonic() + timeout
    while not path.is_file():
        if time.monotonic() > deadline:
            raise RunFolderError(f"Rank 0 did not write {path} within {timeout:.0f} s.")
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------
# samplers
# --------------------------------------------------------------------------------------------


def _world() -> tuple[int, int]:
    """(rank, world size) of the initialized process group, else (0, 1)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sampler_classes() -> tuple[type, type]:
    from torch.utils.data import DistributedSampler

    class ShardedSampler(DistributedSampler):
        """Rank ``r``'s positions ``r, r + W, ...`` of the wrapped sampler's sequence, the
        sequence padded by wrapping around to a multiple of ``W`` (every rank takes the same
        number of steps).  A ``DistributedSampler``, so Lightning keeps it as it is."""

        def __init__(self, sampler: Any, num_replicas: int, rank: int):
            self.sampler = sampler
            self.num_replicas, self.rank = int(num_replicas), int(rank)
            self.epoch = 0
            self.num_samples = math.ceil(len(sampler) / self.num_replicas)
            self.total_size = self.num_samples * self.num_replicas
            self.shuffle, self.drop_last = False, False
            self._skip = 0

        @property
        def order(self) -> tuple[int, int]:
            return self.sampler.order

        def replay(self, epoch: int, iteration: int, skip: int) -> None:
            """Exact resume (musicfw/engine/resume.py): the wrapped sampler's order of
            ``(epoch, iteration)``, this rank's share from its item ``skip`` on."""
            self.sampler.replay(epoch, iteration, 0)
            self._skip = max(int(skip), 0)

        def __iter__(self) -> Iterator[Any]:
            items = list(self.sampler)
            if items and len(items) < self.total_size:
                items += (items * math.ceil(self.total_size / len(items)))[: self.total_size - len(items)]
            skip, self._skip = self._skip, 0
            return iter(items[self.rank : self.total_size : self.num_replicas][skip:])

        def __len__(self) -> int:
            return self.num_samples

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)

    class UnrepeatedSampler(DistributedSampler):
        """Indices ``r, r + W, ...`` of ``range(total)`` where ``total`` is ``n`` rounded up to
        a multiple of ``W``: every rank gets the same number of items (Lightning refuses a rank
        without any); the items past ``n`` are :class:`MaskedPadding`'s empty batches."""

        def __init__(self, n: int, num_replicas: int, rank: int):
            self.n, self.num_replicas, self.rank = int(n), int(num_replicas), int(rank)
            self.epoch, self.shuffle, self.drop_last = 0, False, False
            self.num_samples = math.ceil(self.n / self.num_replicas)
            self.total_size = self.num_samples * self.num_replicas

        def __iter__(self) -> Iterator[int]:
            return iter(range(self.rank, self.total_size, self.num_replicas))

        def __len__(self) -> int:
            return self.num_samples

    return ShardedSampler, UnrepeatedSampler


def shard_sampler(sampler: Any) -> Any:
    """``sampler`` itself in one process; this rank's share of it (:class:`ShardedSampler`)
    when a process group is running (inside ``trainer.fit`` of a multi-process run)."""
    rank, world = _world()
    if world <= 1:
        return sampler
    return _sampler_classes()[0](sampler, world, rank)


class MaskedPadding:
    """Evaluation batches ``0..n-1`` as they are, then empty ones up to ``total``: batch
    ``i % n`` with every position masked out (no targets: it adds nothing to the sums)."""

    def __init__(self, batches: Any, total: int):
        self.batches, self.total = batches, int(total)

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i: int) -> dict:
        n = len(self.batches)
        batch = self.batches[i % n]
        if i >= n:
            import torch

            batch = dict(batch)
            batch["mask"] = torch.zeros_like(batch["mask"])
        return batch


def eval_share(batches: Any) -> tuple[Any, Any]:
    """``(dataset, sampler)`` of an evaluation loader whose items are whole batches: the
    batches and None in one process; under a process group, this rank's batches without
    repeats (:class:`MaskedPadding` evens the counts out with empty batches)."""
    rank, world = _world()
    n = len(batches)
    if world <= 1 or n == 0:
        return batches, None
    sampler = _sampler_classes()[1](n, world, rank)
    return MaskedPadding(batches, sampler.total_size), sampler


# --------------------------------------------------------------------------------------------
# after training
# --------------------------------------------------------------------------------------------


def leave_process_group(trainer: Any) -> bool:
    """Called on every rank after ``trainer.fit``: waits for the others, leaves the process
    group (later data loaders are whole again) and says whether this process goes on (rank 0)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return True
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return bool(trainer.is_global_zero)
