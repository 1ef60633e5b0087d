"""Exact resume: the training loader's place in its epoch and the random state at that place,
saved in every checkpoint, so a run killed anywhere (mid-epoch included) and resumed draws the
same batches and the same random numbers as the run that was never stopped.

What a run's randomness is made of, and where each part is kept:

* **the data order and every sample's randomness** (which piece, which window, which
  transposition / tempo / velocity augmentation): :class:`~musicfw.engine.data.WindowSampler`
  draws them in the main process from ``(seed, epoch, n-th iteration of the epoch)`` alone; a
  sample's augmentation and window start come from a per-sample seed in that draw.  So the order
  of an epoch is known from two integers; the place in it is the number of batches handed out.
* **everything else** (dropout, MusicVAE's reparameterisation noise and scheduled sampling, a
  data loader's worker base seed, a model's own draws): the global generators of torch (CPU and
  CUDA), numpy and Python's ``random``.  Their states are saved as they are at the checkpoint.

:class:`ResumableLoader` is a ``DataLoader`` with ``state_dict()`` / ``load_state_dict()``
(Lightning 2.6's ``_Stateful`` interface): Lightning stores its state in every checkpoint
(``loops.fit_loop.state_dict.combined_loader``), and no longer warns that the loader "is not
resumable".  Lightning would hand the state back only if it restored its loops before making the
loader's first iterator; musicfw's ``configure_optimizers`` asks for
``estimated_stepping_batches``, which makes that iterator earlier.  So
:class:`~musicfw.engine.lightning.MusicLightningModule` reads the states from the checkpoint
(``on_load_checkpoint``) and gives them to the loaders itself when training starts
(:func:`resume_loaders`), before the first batch.

On resume the loader waits for the first batch to be asked for (an iterator made before, not yet
used, is made again then); by then Lightning has told the sampler which epoch it wants
(``set_epoch``).  The same epoch as the checkpoint's: the epoch is replayed from the batch after
the last one trained, its skipped samples never loaded; the next epoch: it starts afresh.  The
random state is put back at the point where the uninterrupted run was when the checkpoint was
written: after this iterator's creation when resuming mid-epoch (the uninterrupted run made its
iterator long before), before it at an epoch boundary (the uninterrupted run made a new iterator
there too, drawing its worker base seed from torch; a persistent worker pool only resets its
iterator, drawing nothing).

Nothing of this changes an uninterrupted run: the same draws, in the same order.
"""

from __future__ import annotations

import random
import warnings
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

#: the version of :meth:`ResumableLoader.state_dict`'s layout
STATE_VERSION = 1


# ------------------------------------------------------------------------------------------
# the global random generators
# ------------------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The states of torch's (CPU and, where in use, CUDA), numpy's and Python's global
    generators, in types a ``weights_only`` load accepts (tensors, ints, tuples, strings)."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(np_state["bit_generator"]),
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": saved["bit_generator"],
            "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": int(saved["pos"])},
            "has_gauss": int(saved["has_gauss"]),
            "gauss": float(saved["gauss"]),
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            warnings.warn(
                f"resume: the checkpoint holds the random state of {len(cuda)} GPU(s), this machine has "
                f"{torch.cuda.device_count()}; GPU random numbers (dropout on the GPU) will differ from "
                "the uninterrupted run.",
                stacklevel=2,
            )


# ------------------------------------------------------------------------------------------
# samplers whose order is known from two integers
# ------------------------------------------------------------------------------------------


class ReplayableSampler(Sampler):
    """A sampler whose order is a function of ``(seed, epoch, n-th iteration of the epoch)``
    alone, drawn in the main process: ``order`` says which one the last iteration drew,
    ``replay`` draws it again from a given item on.  Subclasses say what to draw
    (:meth:`draw`); ``salt`` tells their streams apart."""

    salt = 0

    def __init__(self, seed: int):
        self.seed = int(seed)
        self.epoch, self._iters = 0, 0
        self.order: tuple[int, int] = (0, 0)
        self._replay: tuple[int, int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._iters = int(epoch), 0

    def replay(self, epoch: int, iteration: int, skip: int) -> None:
        """The next iteration draws the order of ``(epoch, iteration)`` and starts at item ``skip``."""
        self._replay = (int(epoch), int(iteration), max(int(skip), 0))

    def draw(self, rng: np.random.Generator) -> Iterable[Any]:
        """One order, drawn from ``rng`` alone."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        skip = 0
        if self._replay is not None:
            (self.epoch, self._iters, skip), self._replay = self._replay, None
        self.order = (self.epoch, self._iters)
        rng = np.random.default_rng([self.seed, self.epoch, self._iters, self.salt])
        self._iters += 1
        return itertools.islice(self.draw(rng), skip, None)


class ShuffledSampler(ReplayableSampler):
    """``0 .. n-1`` in a fresh order every epoch: ``shuffle=True`` for a :class:`ResumableLoader`
    over your own data (``ResumableLoader(rows, batch_size=8, sampler=ShuffledSampler(len(rows)))``)."""

    salt = 0x5348

    def __init__(self, n: int, seed: int = 0):
        super().__init__(seed)
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def draw(self, rng: np.random.Generator) -> list[int]:
        return rng.permutation(self.n).tolist()


# ------------------------------------------------------------------------------------------
# the loader
# ------------------------------------------------------------------------------------------


class _EpochIterator(Iterator):
    """A loader iterator that counts the batches it handed out.  Without a loader iterator
    inside (after a resume) it asks the loader for one on the first ``next``; the batches skipped
    then count as handed out, so a checkpoint written later holds the place in the whole epoch."""

    def __init__(self, loader: "ResumableLoader", inner: Iterator | None):
        self.loader, self.inner, self.yielded = loader, inner, 0

    def __next__(self) -> Any:
        if self.inner is None:
            self.inner, self.yielded = self.loader._start_resumed()
        batch = next(self.inner)
        self.yielded += 1
        return batch


class ResumableLoader(DataLoader):
    """A ``DataLoader`` over a resumable sampler, whose place in the epoch and the random state
    there go into Lightning's checkpoints (see the module docstring).

    The sampler (a :class:`ReplayableSampler`: ``WindowSampler``, :class:`ShuffledSampler`; or
    its DDP share ``ShardedSampler``) offers ``order``, the ``(epoch, iteration)`` its current
    order was drawn from, ``epoch`` (what Lightning's ``set_epoch`` set) and
    ``replay(epoch, iteration, skip)``: the next iteration draws that order again and starts at
    item ``skip``.  Batches are ``batch_size`` samples, the last one possibly shorter."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._current: _EpochIterator | None = None  # the iterator of this epoch
        self._pending: dict[str, Any] | None = None  # a state to resume from on the next iteration

    # -- Lightning's _Stateful interface ---------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        epoch, iteration = self.sampler.order
        current = self._current
        return {
            "version": STATE_VERSION,
            "epoch": int(epoch),
            "iteration": int(iteration),
            "batches": int(current.yielded) if current is not None else 0,
            "batch_size": int(self.batch_size or 1),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state`` at the next batch asked for: an iterator already made and not
        used yet is made again then (idempotent: the same state may come twice)."""
        if not state:
            return
        if int(state.get("version", 0)) != STATE_VERSION or int(state.get("batch_size", 0)) != int(self.batch_size or 1):
            warnings.warn(
                "resume: the checkpoint's data-loader state is of another layout or batch size "
                f"({state.get('batch_size')} vs {self.batch_size}); training continues, but not with "
                "the batches the uninterrupted run would have drawn.",
                stacklevel=2,
            )
            return
        self._pending = dict(state)
        if self._current is not None and self._current.yielded == 0:
            self._current.inner = None

    # -- iteration -------------------------------------------------------------------
    def __iter__(self) -> Iterator:
        it = _EpochIterator(self, super().__iter__() if self._pending is None else None)
        self._current = it
        return it

    def _start_resumed(self) -> tuple[Iterator, int]:
        """The loader iterator of the first batch after a resume, and the batches of the epoch
        already handed out."""
        state, self._pending = self._pending, None
        if state is None:  # another iterator of this loader resumed already
            return super().__iter__(), 0
        sampler = self.sampler
        if int(sampler.epoch) == int(state["epoch"]):  # the same epoch, from the batch after the last one trained
            done = int(state["batches"])
            sampler.replay(int(state["epoch"]), int(state["iteration"]), done * int(self.batch_size or 1))
            inner = super().__iter__()
            set_rng_state(state["rng"])
            return inner, done
        # the next epoch: the uninterrupted run made a new iterator here (a persistent worker
        # pool only resets its iterator, drawing nothing)
        reuses_workers = bool(self.persistent_workers and self.num_workers > 0)
        if not reuses_workers:
            set_rng_state(state["rng"])
        inner = super().__iter__()
        if reuses_workers:
            set_rng_state(state["rng"])
        return inner, 0


def loader_state_in(checkpoint: dict[str, Any]) -> list[Any]:
    """The data-loader states Lightning saved in ``checkpoint`` (empty for a checkpoint written
    before exact resume, or by a loader that is not resumable)."""
    loops = checkpoint.get("loops")
    if not isinstance(loops, dict):
        return []
    fit_loop = loops.get("fit_loop")
    state = fit_loop.get("state_dict") if isinstance(fit_loop, dict) else None
    found = state.get("combined_loader") if isinstance(state, dict) else None
    return list(found) if isinstance(found, list) else []


def _int_in(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _tensor(value: Any, dtype: torch.dtype, numel: int | None = None) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == dtype and (numel is None or value.numel() == numel)


def _rng_problem(rng: Any) -> str | None:
    if not isinstance(rng, dict):
        return f"rng is {type(rng).__name__}, not a mapping"
    if not _tensor(rng.get("torch"), torch.uint8, torch.get_rng_state().numel()):
        return "rng.torch is not torch's CPU generator state (a uint8 tensor of its size)"
    np_state = rng.get("numpy")
    if not isinstance(np_state, dict) or np_state.get("bit_generator") != "MT19937":
        return "rng.numpy is not numpy's MT19937 state"
    key = np_state.get("key")
    if not _tensor(key, torch.int64, 624) or int(key.min()) < 0 or int(key.max()) >= 2**32:
        return "rng.numpy.key is not 624 32-bit words"
    if not _int_in(np_state.get("pos"), 0, 624) or not _int_in(np_state.get("has_gauss"), 0, 1):
        return "rng.numpy.pos or has_gauss is out of range"
    if not isinstance(np_state.get("gauss"), float):
        return "rng.numpy.gauss is no float"
    py = rng.get("python")
    if not isinstance(py, (tuple, list)) or len(py) != 3 or not _int_in(py[0], 0, 1000):
        return "rng.python is not Python's random state (version, words, gauss)"
    words = py[1]
    if not isinstance(words, (tuple, list)) or len(words) != 625 or not all(_int_in(w, 0, 2**32 - 1) for w in words):
        return "rng.python's words are not 625 32-bit integers"
    if py[2] is not None and not isinstance(py[2], float):
        return "rng.python's gauss is no float"
    cuda = rng.get("cuda", [])
    if not isinstance(cuda, (list, tuple)) or len(cuda) > 4096 or not all(_tensor(c, torch.uint8) for c in cuda):
        return "rng.cuda is not a list of GPU generator states"
    return None


def loader_state_problem(state: Any) -> str | None:
    """What is wrong with one loader state read from a checkpoint (None: nothing)."""
    if not isinstance(state, dict):
        return f"{type(state).__name__}, not a mapping"
    for key in ("version", "epoch", "iteration", "batches", "batch_size"):
        if not _int_in(state.get(key), 0, 2**62):
            return f"{key} is {state.get(key)!r}, not an integer in 0..2**62"
    return _rng_problem(state.get("rng"))


def check_loader_states(checkpoint: dict[str, Any], path: Any) -> None:
    """Before a resume: every data-loader state in ``checkpoint`` has the layout
    :meth:`ResumableLoader.state_dict` writes (types, sizes and ranges); else a
    :class:`~musicfw.core.errors.RunFolderError` naming the file and the entry."""
    from musicfw.core.errors import RunFolderError

    for i, state in enumerate(loader_state_in(checkpoint)):
        problem = loader_state_problem(state)
        if problem is not None:
            raise RunFolderError(
                f"The checkpoint {path} has a malformed data-loader state (loops.fit_loop.state_dict."
                f"combined_loader[{i}]: {problem}): it was not written by musicfw's training, or was changed. "
                "Delete it to resume from another checkpoint, or start the run again without --resume."
            )


def resume_loaders(trainer: Any, states: list[Any]) -> None:
    """Give the training loaders of ``trainer`` the states :func:`loader_state_in` found, in
    Lightning's own order (its stateful loaders, flattened), when training starts."""
    from lightning_fabric.utilities.types import _Stateful

    combined = trainer.fit_loop._combined_loader  # what Lightning saves the states from
    loaders = [dl for dl in (combined.flattened if combined is not None else []) if isinstance(dl, _Stateful)]
    if len(loaders) != len(states):
        warnings.warn(
            f"resume: the checkpoint holds the state of {len(states)} training data loader(s), this run has "
            f"{len(loaders)}; training continues, but not with the batches the uninterrupted run would have drawn.",
            stacklevel=2,
        )
        return
    for loader, state in zip(loaders, states):
        loader.load_state_dict(state)
