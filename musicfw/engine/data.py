"""The data stage: dataset -> split -> token cache -> Lightning DataModule.

:func:`build_datamodule` is what the experiment runner calls.  The :class:`MusicDataModule`

* loads the dataset plugin's pieces and their deterministic split (see
  :mod:`musicfw.core.dataset`; by tune where the dataset says ``split_by: tune``, with the
  split's leakage measured: :mod:`musicfw.engine.splits`), and writes ``skipped.txt`` into the
  run folder;
* tokenizes every piece once into a **token cache** on disk (numpy, memory-mapped), keyed by
  a fingerprint of the pieces' identities and contents, of the tokenizer (class, config,
  vocabulary), of the distribution and version of the packages that provide the tokenizer
  and dataset plugins, and the cache format: a change of any builds a new cache, never
  reuses one;
  or, with ``data.format: shards`` (``auto``: large folders) for a dataset read file by file,
  into **token shards** prepared in worker processes (:mod:`musicfw.engine.shards`: resumable,
  checked, the same pieces, splits and batches);
* serves batches in the model protocol of :mod:`musicfw.core.model`: ``{"tokens", "mask"}``
  with ``tokens`` a ``LongTensor [B, T]`` (categorical) or ``FloatTensor [B, T, K]``
  (multihot) and ``mask`` a ``BoolTensor [B, T]``:

  - training: random fixed-length windows (``train.seq_len``) starting at multiples of
    ``train.window_align``, pieces drawn in proportion to their number of windows; shorter
    pieces are padded (mask False).  With augmentation on (``augment:``), each sample is a
    freshly augmented copy of the piece (long pieces are first cropped at a bar line to about
    twice the window, so the cost does not grow with the piece), tokenized on the fly;
  - validation / test: whole pieces, padded and masked, grouped by length, so the summed
    NLL over a split is exact.

This module imports torch and Lightning at the top: import it inside functions from code
the CLI loads at start-up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from musicfw.core.dataset import (
    SPLITS,
    LoadedData,
    MusicDataset,
    Piece,
    cache_root,
    format_duration,
)

from musicfw.music.augment import Augmenter
from musicfw.core.errors import DataError
from musicfw.engine.integrity import sha256_file
from musicfw.engine.resume import ReplayableSampler, ResumableLoader
from musicfw.core.version import musicfw_version
from musicfw.engine.encoding import MULTIHOT, dataset_fingerprint, encode_piece, tokenizer_fingerprint
from musicfw.music.limits import current as current_limits

log = logging.getLogger("musicfw.data")

TOKEN_CACHE_VERSION = 1


# --------------------------------------------------------------------------------------
# token cache
# --------------------------------------------------------------------------------------


def token_cache_key(data: LoadedData, tokenizer: Any, dataset: Any = None) -> str:
    """The cache's identity: format, musicfw's version, the pieces, the tokenizer (class,
    config, vocabulary, and the distribution + version of the plugin package), the dataset
    plugin's package, the limits."""
    blob = json.dumps(
        {
            "format": TOKEN_CACHE_VERSION,
            "musicfw": musicfw_version(),
            "data": data.fingerprint(),
            "dataset": None if dataset is None else dataset_fingerprint(dataset),
            "tokenizer": tokenizer_fingerprint(tokenizer),
            # pieces refused under one set of limits come back when the limits are raised
            "limits": current_limits().to_dict(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class TokenStore:
    """Tokenized pieces: ``tokens.npy`` (all pieces concatenated, memory-mapped),
    ``offsets.npy`` and ``index.json`` (piece ids, tokenizer, failures) in one folder."""

    format = "cache"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        index = json.loads((self.path / "index.json").read_text())
        for name, digest in (index.get("sha256") or {}).items():
            if sha256_file(self.path / name) != digest:
                raise DataError(
                    f"The token cache {self.path} is corrupted: {name} does not match the sha256 "
                    f"recorded when it was written. Delete the folder (rm -r '{self.path}') and run "
                    "again: it is rebuilt from the pieces."
                )
        self.ids: list[str] = index["ids"]
        self.kind: str = index["kind"]
        self.failed: list[tuple[str, str]] = [tuple(x) for x in index.get("failed", [])]
        #: notes of the stored pieces the tokenizer could not represent: {notes, dropped, reasons}
        self.coverage: dict[str, Any] = index.get("coverage") or {}
        self.offsets = np.load(self.path / "offsets.npy")
        self.position = {piece_id: i for i, piece_id in enumerate(self.ids)}
        self._tokens: np.ndarray | None = None

    # memory maps are reopened in each worker process instead of being pickled
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tokens"] = None
        return state

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = np.load(self.path / "tokens.npy", mmap_mode="r")
        return self._tokens

    def __len__(self) -> int:
        return len(self.ids)

    def length(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def get(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def open_or_build(
        cls, root: Path, key: str, name: str, pieces: Sequence[Piece], tokenizer: Any, progress: bool = True
    ) -> "TokenStore":
        folder = Path(root) / "tokens" / f"{name}-{key[:24]}"
        if (folder / "index.json").exists():
            try:
                return cls(folder)
            except (OSError, ValueError, KeyError):
                log.warning("token cache %s is unreadable; rebuilding it", folder)
                shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            cls._build(tmp, key, pieces, tokenizer, progress)
            try:
                os.replace(tmp, folder)
            except OSError:  # another process finished the same cache first
                if not (folder / "index.json").exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(folder)

    @staticmethod
    def _build(folder: Path, key: str, pieces: Sequence[Piece], tokenizer: Any, progress: bool) -> None:
        from musicfw.engine.progress import Counter

        kind = tokenizer.kind
        vocab_size = int(tokenizer.vocab_size)
        arrays, ids, failed = [], [], []
        coverage: dict[str, Any] = {"notes": 0, "dropped": 0, "reasons": {}}
        # a bar on a terminal, a line at about every 10% in a log file (no carriage returns)
        counter = Counter(f"tokenizing with {tokenizer.name}", len(pieces), unit="piece", stream=sys.stderr) \
            if progress and len(pieces) >= 200 else None
        for done, piece in enumerate(sorted(pieces, key=lambda p: p.id), 1):
            arr, reason = encode_piece(tokenizer, piece, kind, vocab_size, coverage)
            if counter is not None:
                counter.update(done)
            if arr is None:
                failed.append((piece.id, reason or "tokenizer failed"))
                continue
            arrays.append(arr)
            ids.append(piece.id)
        if counter is not None:
            counter.close()
        if not arrays:
            detail = "; ".join(f"{i}: {r}" for i, r in failed[:3])
            raise DataError(f"The tokenizer could not encode any of the {len(pieces)} pieces: {detail}.")
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        if kind == MULTIHOT:
            tokens = np.concatenate(arrays).astype(np.uint8)
        else:
            dtype = np.int16 if vocab_size <= np.iinfo(np.int16).max else np.int32
            tokens = np.concatenate(arrays).astype(dtype)
        np.save(folder / "tokens.npy", tokens)
        np.save(folder / "offsets.npy", offsets)
        index = {
            "key": key,
            "kind": kind,
            "vocab_size": vocab_size,
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "ids": ids,
            "failed": failed,
            "coverage": coverage,
            # checked on every open: flipped bits are an error, not a different dataset
            "sha256": {name: sha256_file(folder / name) for name in ("tokens.npy", "offsets.npy")},
        }
        (folder / "index.json").write_text(json.dumps(index, default=str))


# --------------------------------------------------------------------------------------
# torch datasets
# --------------------------------------------------------------------------------------


def _window_start(length: int, seq_len: int, align: int, rng: np.random.Generator) -> int:
    if length <= seq_len:
        return 0
    return align * int(rng.integers((length - seq_len) // align + 1))


class WindowSampler(ReplayableSampler):
    """Yields ``(train piece index, sample seed)``: a fresh draw every epoch, made in the main
    process so that results do not depend on the number of loader workers; resumable
    (:mod:`musicfw.engine.resume`)."""

    salt = 0x6D66

    def __init__(self, weights: np.ndarray, n: int, seed: int):
        super().__init__(seed)
        self.p = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def draw(self, rng: np.random.Generator) -> Iterator[tuple[int, int]]:
        pieces = rng.choice(len(self.p), size=self.n, p=self.p)
        seeds = rng.integers(0, 2**62, size=self.n)
        return zip(pieces.tolist(), seeds.tolist())


class TrainWindows(Dataset):
    """Random fixed-length training windows, augmented afresh per sample when configured."""

    def __init__(
        self,
        store: TokenStore,
        rows: list[int],
        scores: list[Any] | None,
        tokenizer: Any,
        seq_len: int,
        align: int = 1,
        augmenter: Augmenter | None = None,
    ):
        self.store, self.rows, self.scores = store, rows, scores
        self.tokenizer, self.seq_len, self.align = tokenizer, int(seq_len), max(int(align), 1)
        self.augmenter = augmenter if augmenter is not None and augmenter.active else None
        self.multihot = store.kind == MULTIHOT
        self._downbeats: dict[int, np.ndarray] = {}
        self.augment_failures = 0

    def __len__(self) -> int:
        return len(self.rows)

    def _augmented(self, j: int, rng: np.random.Generator) -> np.ndarray | None:
        assert self.augmenter is not None and self.scores is not None
        score = self.scores[j]
        n_tokens = self.store.length(self.rows[j])
        if n_tokens > 2 * self.seq_len:
            end = int(score.end())
            span = int(math.ceil(2 * self.seq_len * end / n_tokens)) + 1
            if j not in self._downbeats:
                self._downbeats[j] = np.asarray(score.get_downbeats(), dtype=np.int64)
            bars = self._downbeats[j]
            bars = bars[bars <= max(end - span // 2, 0)]
            t0 = int(bars[rng.integers(len(bars))]) if len(bars) else 0
            score = score.clip(t0, t0 + span, clip_end=False)
            if t0:
                score = score.shift_time(-t0)
        try:
            tokens = np.asarray(self.tokenizer.encode(self.augmenter(score, rng)))
        except Exception:  # never let one augmented sample crash training
            self.augment_failures += 1
            return None
        if len(tokens) == 0:
            return None
        return (tokens > 0).astype(np.uint8) if self.multihot else tokens

    def __getitem__(self, spec: tuple[int, int]) -> np.ndarray:
        j, seed = spec
        rng = np.random.default_rng(seed)
        tokens = self._augmented(j, rng) if self.augmenter is not None else None
        if tokens is None:
            tokens = self.store.get(self.rows[j])
        start = _window_start(len(tokens), self.seq_len, self.align, rng)
        return np.array(tokens[start : start + self.seq_len])


class EvalBatches(Dataset):
    """Whole pieces grouped by length into ready-made, padded batches."""

    def __init__(self, store: TokenStore, rows: list[int], batch_size: int, max_tokens: int, score_first: bool):
        self.store, self.score_first = store, score_first
        order = sorted(rows, key=lambda r: (store.length(r), r))
        self.batches: list[list[int]] = []
        current: list[int] = []
        for r in order:
            longest = store.length(r)  # sorted: the newcomer is the longest
            if current and (len(current) >= batch_size or longest * (len(current) + 1) > max_tokens):
                self.batches.append(current)
                current = []
            current.append(r)
        if current:
            self.batches.append(current)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        batch = pad_batch([np.array(self.store.get(r)) for r in self.batches[i]], self.store.kind == MULTIHOT)
        if not self.score_first:
            batch["mask"][:, 0] = False
        return batch


def pad_batch(seqs: list[np.ndarray], multihot: bool, length: int | None = None) -> dict[str, torch.Tensor]:
    """Pad sequences into ``{"tokens", "mask"}`` (mask True on real positions)."""
    length = length or max(len(s) for s in seqs)
    mask = torch.zeros(len(seqs), length, dtype=torch.bool)
    if multihot:
        tokens = torch.zeros(len(seqs), length, seqs[0].shape[1], dtype=torch.float32)
    else:
        tokens = torch.zeros(len(seqs), length, dtype=torch.long)
    for i, s in enumerate(seqs):
        n = min(len(s), length)
        tokens[i, :n] = torch.from_numpy(np.ascontiguousarray(s[:n])).to(tokens.dtype)
        mask[i, :n] = True
    return {"tokens": tokens, "mask": mask}


class _PadCollate:
    def __init__(self, multihot: bool, length: int):
        self.multihot, self.length = multihot, length

    def __call__(self, seqs: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return pad_batch(seqs, self.multihot, self.length)


# --------------------------------------------------------------------------------------
# the data module
# --------------------------------------------------------------------------------------


class MusicDataModule(pl.LightningDataModule):
    """Batches of one dataset for one tokenizer (see the module docstring)."""

    def __init__(
        self,
        dataset: MusicDataset,
        tokenizer: Any,
        *,
        seed: int = 0,
        batch_size: int = 32,
        seq_len: int = 256,
        num_workers: int = 0,
        window_align: int = 1,
        augmenter: Augmenter | None = None,
        cache_dir: str | os.PathLike | None = None,
        run_dir: str | os.PathLike | None = None,
        eval_max_tokens: int | None = None,
        progress: bool = True,
        data_format: str = "cache",
        workers: int = 0,
        shard_files: int = 500,
        infill: Any = None,
    ):
        super().__init__()
        if seq_len < 1 or batch_size < 1 or window_align < 1:
            from musicfw.core.errors import ConfigError

            raise ConfigError(
                f"train.seq_len ({seq_len}), train.batch_size ({batch_size}) and "
                f"train.window_align ({window_align}) must be positive."
            )
        self.dataset, self.tokenizer = dataset, tokenizer
        self.seed, self.batch_size, self.seq_len = int(seed), int(batch_size), int(seq_len)
        self.num_workers, self.window_align = int(num_workers), int(window_align)
        self.augmenter = augmenter
        self.cache_dir = cache_dir
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.eval_max_tokens = int(eval_max_tokens or max(batch_size * seq_len, 4096))
        self.progress = progress
        #: token storage: "cache" (TokenStore), "shards" or "auto" (musicfw/engine/shards.py)
        self.data_format, self.workers, self.shard_files = str(data_format), int(workers), int(shard_files)
        self.data: LoadedData | None = None
        self.store: Any = None  # TokenStore or ShardStore (the same interface)
        self._rows: dict[str, list[int]] = {}
        self._pieces: dict[str, list[Piece]] = {}
        self._train_sampler: WindowSampler | None = None
        #: an :class:`musicfw.engine.infill.InfillTransform` (train.infill) applied to training windows, or None
        self.infill = infill
        #: True once ``prepare`` has fitted the tokenizer to the training split (``Tokenizer.fit``):
        #: its config changed, so the run folder's tokenizer.json must be written again
        self.tokenizer_fitted = False

    # -- preparation ---------------------------------------------------------------------
    @property
    def token_kind(self) -> str:
        return self.tokenizer.kind

    def prepare(self) -> "MusicDataModule":
        """Load the pieces, split them, open (or build) the token cache.  Idempotent."""
        if self.store is not None:
            return self
        from musicfw.engine.shards import open_shards, resolve_format

        root = cache_root(self.cache_dir)
        fmt, sources = resolve_format(self.data_format, self.dataset)
        if fmt == "shards":
            assert sources is not None
            # shards are encoded file by file in workers before the split is known: nothing to fit to
            self.tokenizer_fitted = self.tokenizer.fit(_no_training_scores(self.tokenizer))
            self.data, self.store = open_shards(
                self.dataset, self.tokenizer, sources, root, seed=self.seed, workers=self.workers,
                shard_files=self.shard_files, progress=self.progress,
            )
        else:
            from musicfw.engine.splits import load_data

            self.data = load_data(self.dataset, seed=self.seed, progress=self.progress)
            # what the tokenizer learns from data (REMI control_binning: fit), before anything is
            # encoded: the cache's key then holds the fitted config
            self.tokenizer_fitted = self.tokenizer.fit(_training_scores(self.data))
            key = token_cache_key(self.data, self.tokenizer, self.dataset)
            name = f"{self.dataset.name}-{self.tokenizer.name}"
            self.store = TokenStore.open_or_build(root, key, name, self.data.pieces(), self.tokenizer, self.progress)
        for split in SPLITS:
            kept = [p for p in self.data.pieces(split) if p.id in self.store.position]
            self._pieces[split] = kept
            self._rows[split] = [self.store.position[p.id] for p in kept]
        for piece_id, reason in self.store.failed:
            log.warning("skipped %s: %s", piece_id, reason)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "skipped.txt").write_text("".join(f"{p}: {r}\n" for p, r in self.skipped))
        if not self._rows["train"]:
            raise DataError(
                f"Dataset {self.dataset.name!r}: the train split is empty "
                f"({len(self.store)} pieces in all); check the split fractions."
            )
        return self

    def prepare_data(self) -> None:
        self.prepare()

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    # -- what the rest of musicfw reads -------------------------------------------------------
    @property
    def skipped(self) -> list[tuple[str, str]]:
        self.prepare()
        assert self.data is not None and self.store is not None
        return list(self.data.skipped) + list(self.store.failed)

    def pieces(self, split: str) -> list[Piece]:
        """The split's pieces (those the tokenizer could encode): ``.id``, ``.score``."""
        self.prepare()
        if split not in SPLITS:
            from musicfw.core.errors import ConfigError

            raise ConfigError(f"Unknown split {split!r}. Splits: {', '.join(SPLITS)}.")
        return list(self._pieces[split])

    def tokens(self, split: str) -> list[np.ndarray]:
        """The split's token sequences (read from the memory-mapped cache)."""
        self.prepare()
        assert self.store is not None
        return [np.array(self.store.get(r)) for r in self._rows[split]]

    def summary(self) -> dict[str, Any]:
        self.prepare()
        assert self.data is not None and self.store is not None
        pieces = [p for s in SPLITS for p in self._pieces[s]]
        seconds = sum(p.seconds for p in pieces)
        lengths = self.store.lengths()
        return {
            "dataset": self.dataset.name,
            "pieces": len(pieces),
            "notes": int(sum(p.n_notes for p in pieces)),
            "duration_s": round(seconds, 1),
            "duration": format_duration(seconds),
            "splits": {s: len(self._pieces[s]) for s in SPLITS},
            "tokens": {s: int(lengths[self._rows[s]].sum()) for s in SPLITS},
            "token_kind": self.token_kind,
            "token_cache": str(self.store.path),
            "token_format": self.store.format,
            "skipped": [f"{p}: {r}" for p, r in self.skipped],
            "not_represented": self.store.coverage,
            # split unit and leakage (musicfw/engine/splits.py), over every piece read
            "split": dict(self.data.split_report),
        }

    # -- loaders -----------------------------------------------------------------------------
    def _loader_kwargs(self) -> dict[str, Any]:
        return {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0}

    def train_dataset(self) -> TrainWindows:
        self.prepare()
        assert self.data is not None and self.store is not None
        rows = self._rows["train"]
        augment = self.augmenter is not None and self.augmenter.active
        scores = None
        if augment:  # scores asked for when a sample needs them (token shards read the file then)
            from musicfw.engine.shards import lazy_scores

            scores = lazy_scores(self._pieces["train"])
        windows = TrainWindows(self.store, rows, scores, self.tokenizer, self.seq_len, self.window_align, self.augmenter)
        if self.infill is not None:  # some windows become infilling examples (musicfw/engine/infill.py)
            from musicfw.engine.infill import InfillWindows

            return InfillWindows(windows, self.infill)  # type: ignore[return-value]
        return windows

    def windows_per_epoch(self) -> int:
        self.prepare()
        assert self.store is not None
        lengths = self.store.lengths()[self._rows["train"]]
        return int(np.ceil(lengths / self.seq_len).sum())

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset()
        lengths = self.store.lengths()[self._rows["train"]]  # type: ignore[union-attr]
        weights = np.ceil(lengths / self.seq_len)
        if self._train_sampler is None:
            self._train_sampler = WindowSampler(weights, int(weights.sum()), self.seed)
        from musicfw.engine.distributed import shard_sampler

        # its place in the epoch and the random state go into the checkpoints (exact resume)
        return ResumableLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=shard_sampler(self._train_sampler),  # this process's share under DDP
            collate_fn=_PadCollate(self.token_kind == MULTIHOT, self.seq_len),
            drop_last=False,
            **self._loader_kwargs(),
        )

    def eval_dataloader(self, split: str, score_first: bool | None = None) -> DataLoader:
        """Whole pieces of ``split``, padded and masked, in batches grouped by length."""
        self.prepare()
        assert self.store is not None
        if score_first is None:
            score_first = self.dataset.score_first_position
        batches = EvalBatches(self.store, self._rows[split], self.batch_size, self.eval_max_tokens, score_first)
        from musicfw.engine.distributed import eval_share

        # under DDP each process gets its own batches, none repeated (the NLL sums are exact)
        dataset, sampler = eval_share(batches)
        # A worker pool draws its base seed from torch's global generator when it starts; an
        # evaluation pool starts once per process, so a resumed run's would draw where the
        # uninterrupted run's did not (exact resume, musicfw/engine/resume.py).  Evaluation uses
        # no worker randomness: its own generator.  (Without workers nothing changes.)
        generator = torch.Generator() if self.num_workers > 0 else None
        return DataLoader(
            dataset, batch_size=None, shuffle=False, sampler=sampler, generator=generator, **self._loader_kwargs()
        )

    def train_pieces_dataloader(self) -> DataLoader:
        """The whole training pieces, unaugmented, every position scored (count-based models
        such as the Markov chain fit on these instead of random windows)."""
        return self.eval_dataloader("train", score_first=True)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("valid")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader("test")


def _training_scores(data: LoadedData) -> Iterator[Any]:
    """The training split's scores in piece-id order, for ``Tokenizer.fit``.  A generator, so
    a tokenizer with nothing to fit (the default ``fit`` does not read it) costs no sort."""
    for piece in sorted(data.pieces("train"), key=lambda p: p.id):
        yield piece.score


def _no_training_scores(tokenizer: Any) -> Iterator[Any]:
    """What ``Tokenizer.fit`` is given with token shards: a ConfigError once it reads it."""
    from musicfw.core.errors import ConfigError

    raise ConfigError(
        f"The {tokenizer.name!r} tokenizer fits itself to the training split (e.g. remi control_binning: fit), "
        "but data.format: shards encodes the files before the split is known; use data.format: cache, or give "
        "the fitted values in the tokenizer section (remi: control_bins, e.g. from a run's tokenizer.json)."
    )
    yield  # pragma: no cover - makes this a generator: nothing is raised unless fit reads it


def build_datamodule(
    data: Any,
    tokenizer: Any,
    *,
    train: Any = None,
    augment: Any = None,
    seed: int = 0,
    run_dir: str | os.PathLike | None = None,
    registries: Any = None,
    progress: bool = True,
) -> MusicDataModule:
    """The data module of the ``data:`` section (a dataset plugin section) with the batch and
    window options of the ``train:`` section and the ``augment:`` section, prepared: pieces
    loaded and split, token cache ready, ``skipped.txt`` written into ``run_dir``."""
    from musicfw.core.build import build_from_section
    from musicfw.engine.config import train_section

    from musicfw.engine.infill import infill_transform

    dataset = build_from_section("datasets", data, registries=registries, key="data")
    train = train_section(train)
    # an infilling model (train.infill): the tokenizer's own tokens are cached, the markers added per window
    tokenizer, infill = infill_transform(train, tokenizer)
    cache_dir = data.get("cache_dir") if hasattr(data, "get") else None
    # token storage of datasets that offer it (midi_folder: data.format, data.num_workers)
    get = data.get if hasattr(data, "get") else (lambda key, default=None: default)
    module = MusicDataModule(
        dataset,
        tokenizer,
        seed=int(seed),
        batch_size=int(train.batch_size),
        seq_len=int(train.seq_len),
        num_workers=int(train.num_workers),
        window_align=int(train.window_align or 1),
        augmenter=Augmenter.from_section(augment, tokenizer),
        cache_dir=cache_dir,
        run_dir=run_dir,
        progress=progress,
        data_format=str(get("format", "cache") or "cache"),
        workers=int(get("num_workers", 0) or 0),
        shard_files=int(get("shard_files", 500) or 500),
        infill=infill,
    )
    return module.prepare()
