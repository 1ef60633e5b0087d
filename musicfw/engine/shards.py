"""Token shards: a tokenized corpus as Arrow files, prepared in parallel, resumable, checked.

``data.format: shards`` (or ``auto`` on a large folder) replaces the one-array token cache of
:mod:`musicfw.engine.data` for datasets that can be read one file at a time
(:meth:`MusicDataset.sources` / :meth:`MusicDataset.read_source`, e.g. ``midi_folder``):

* **Preparation in worker processes** (``data.num_workers``, 0: all cores): the sorted file
  list is cut into shards of about ``data.shard_files`` files; each worker reads its shard's
  files, tokenizes them and writes one Arrow IPC file plus a small JSON (its pieces, lengths,
  notes, seconds, failures and the shard's sha256).  The parent only collects those
  summaries, so memory stays flat in the number of files (a shard's tokens live in one worker
  at a time).  A progress bar with ETA on a terminal, a line every ~10% otherwise.
* **Resumable**: a shard's name is a hash of its input files (names, sizes, mtimes); a shard
  whose Arrow file and JSON are there and whose sha256 matches is kept, not redone — after a
  kill, and also when files were added to the folder (cut points depend on the names only, so
  one new file changes only its own shard).
* **Checked**: ``manifest.json`` records every input file (name, size, mtime) and every shard
  (bytes, sha256).  Opening the shards compares the folder with the manifest (a change is said,
  and the changed shards are prepared again) and verifies every shard: a truncated or altered
  one is a :class:`DataError` naming it and the command that rebuilds it
  (``musicfw data repair FOLDER``).
* **Training reads, never loads**: shards are memory-mapped (zero copy); a training window
  touches only its own pages.  :class:`ShardStore` has the interface of the token cache
  (``get``, ``length``, ``lengths``, ``ids``, ...), pieces are ordered by id as there and the
  splits are computed the same way, so the same :class:`~musicfw.engine.data.WindowSampler`
  gives the same windows: the batches of both formats are identical for a seed, per epoch
  (resumed runs redraw the same epoch), and under DDP each rank reads only the windows of its
  share (:func:`musicfw.engine.distributed.shard_sampler`).

Why Arrow IPC via pyarrow, and not LitData or WebDataset (measured here, 2026-11-29, with
``pip install --dry-run``): ``litdata`` 0.2.76 needs ``torchvision``, whose current release
pins torch 2.14.1 and so pulls the CUDA build (nvidia-* wheels, several GB) over the CPU torch
2.13.0 musicfw installs, plus boto3 and obstore; its ``StreamingDataset`` also chooses its own
chunk order, so it could not give the token cache's batches.  WebDataset (tar shards) reads
sequentially only, with the same problem.  ``pyarrow`` 26.0.1 is one wheel without
dependencies, its IPC files are memory-mapped with zero copies, read by row, and readable by
any Arrow tool (pandas, polars, DuckDB).  The shard cutting, checksums and manifest are ours
(a few dozen lines), because none of those libraries records the input files.

Only the standard library and numpy are imported at module level.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from musicfw.core.atomic import atomic_path, atomic_write
from musicfw.core.errors import ConfigError, DataError
from musicfw.engine.integrity import sha256_file
from musicfw.music.midiload import read_midi_source

log = logging.getLogger("musicfw.data")

SHARD_FORMAT_VERSION = 2  # 2: each piece's melody steps (tune splits, leakage) in its record
MANIFEST = "manifest.json"
FORMATS = ("auto", "cache", "shards")
#: ``format: auto`` picks shards from this many source files on (the cache is as fast below;
#: benchmarks/data.py)
AUTO_MIN_FILES = 2000
MULTIHOT = "multihot"


# --------------------------------------------------------------------------------------------
# which format
# --------------------------------------------------------------------------------------------


def resolve_format(fmt: str | None, dataset: Any) -> tuple[str, list[tuple[str, str]] | None]:
    """``("cache" | "shards", sources)`` for ``data.format`` and the dataset."""
    fmt = str(fmt or "cache")
    if fmt not in FORMATS:
        raise ConfigError(f"data.format={fmt!r} is not one of: {', '.join(FORMATS)}.")
    if fmt == "cache":
        return "cache", None
    sources = dataset.sources()
    if sources is None:
        if fmt == "shards":
            raise ConfigError(
                f"data.format=shards: the dataset {dataset.name!r} cannot be read one file at a time "
                "(it has no sources()); use data.format=cache."
            )
        return "cache", None
    if fmt == "auto" and len(sources) < AUTO_MIN_FILES:
        return "cache", None
    return "shards", sources


def _cpu_count() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(os.cpu_count() or 1, 1)


# --------------------------------------------------------------------------------------------
# the input files and their cutting into shards
# --------------------------------------------------------------------------------------------


def stat_sources(sources: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """``[{name, path, size, mtime_ns}]`` of the dataset's files (what the manifest records)."""
    out = []
    for path, name in sources:
        try:
            st = os.stat(path)
            size, mtime = int(st.st_size), int(st.st_mtime_ns)
        except OSError:  # unreadable: the worker reports why, the manifest keeps -1
            size, mtime = -1, -1
        out.append({"name": name, "path": os.path.abspath(path), "size": size, "mtime_ns": mtime})
    return out


def _name_hash(name: str) -> int:
    return int.from_bytes(hashlib.sha1(name.encode("utf-8")).digest()[:8], "big")


def plan_shards(entries: Sequence[dict[str, Any]], shard_files: int) -> list[list[dict[str, Any]]]:
    """Cut the sorted files into shards of about ``shard_files``: after at least half of it, a
    shard ends at a file whose name hash hits 1 in ``shard_files / 2``, at the latest at twice
    ``shard_files``.  The cut points depend on the names only, so adding or removing a file
    changes its own shard (and rarely the next), not every later one."""
    target = max(int(shard_files), 1)
    half = max(target // 2, 1)
    shards, current = [], []
    for entry in entries:
        current.append(entry)
        if len(current) >= 2 * target or (len(current) >= half and _name_hash(entry["name"]) % half == 0):
            shards.append(current)
            current = []
    if current:
        shards.append(current)
    return shards


def shard_id(chunk: Sequence[dict[str, Any]]) -> str:
    blob = json.dumps([[e["name"], e["size"], e["mtime_ns"]] for e in chunk], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


def planned_shards(entries: Sequence[dict[str, Any]], shard_files: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """``[(shard id, its files)]`` as :func:`prepare_shards` makes them."""
    return [(shard_id(chunk), chunk) for chunk in plan_shards(entries, shard_files)]


def shard_key(dataset: Any, tokenizer: Any, root_of_sources: str) -> str:
    """The shard folder's identity: dataset (name, semantic config, resolved folder, plugin
    package and version), tokenizer (class, config, vocabulary, plugin package and version),
    limits, format.  The files themselves are checked
    against the manifest instead of hashed into the key, so a changed folder is noticed."""
    from musicfw.core.version import musicfw_version
    from musicfw.engine.encoding import dataset_fingerprint, tokenizer_fingerprint
    from musicfw.music.limits import current as current_limits

    blob = json.dumps(
        {
            "format": f"shards-{SHARD_FORMAT_VERSION}",
            "musicfw": musicfw_version(),
            "dataset": dataset.identity(),
            "dataset_plugin": dataset_fingerprint(dataset),
            "root": root_of_sources,
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "limits": current_limits().to_dict(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# worker side: read, tokenize, write one shard
# --------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(dataset: Any, tokenizer: Any, limits: dict[str, Any] | None) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if limits is not None:
        from musicfw.music.limits import configure

        configure(limits)
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    _WORKER.update(dataset=dataset, tokenizer=tokenizer)


def _token_dtype(kind: str, vocab_size: int) -> Any:
    if kind == MULTIHOT:
        return np.uint8
    return np.int16 if vocab_size <= np.iinfo(np.int16).max else np.int32


def build_shard(folder: str, sid: str, chunk: list[dict[str, Any]]) -> dict[str, Any]:
    """Read and tokenize ``chunk``'s files, write ``shard-<sid>.arrow`` and its JSON; return
    the JSON's content.  Runs in a worker process (or inline with one worker)."""
    import pyarrow as pa

    from musicfw.engine.encoding import encode_piece
    from musicfw.core.dataset import score_seconds
    from musicfw.music.tunes import encode_steps, melody_steps

    dataset, tokenizer = _WORKER["dataset"], _WORKER["tokenizer"]
    kind, vocab_size = tokenizer.kind, int(tokenizer.vocab_size)
    dtype = _token_dtype(kind, vocab_size)
    coverage: dict[str, Any] = {"notes": 0, "dropped": 0, "reasons": {}}
    pieces, skipped, arrays, ids = [], [], [], []
    for entry in chunk:
        try:
            got, lost = read_midi_source(dataset, entry["path"], entry["name"])
        except Exception as exc:  # one bad file never stops the preparation
            got, lost = [], [(entry["path"], f"cannot read: {type(exc).__name__}: {exc}")]
        skipped.extend([list(x) for x in lost])
        for piece in got:
            arr, reason = encode_piece(tokenizer, piece, kind, vocab_size, coverage)
            record = {
                "id": piece.id, "group": piece.group, "source": piece.source, "file": entry["name"],
                "title": piece.title, "notes": int(piece.n_notes),
                "seconds": round(float(score_seconds(piece.score)), 3),
                # the melody line, for splits by tune and the leakage report without reading again
                "melody": encode_steps(melody_steps(piece.score)),
            }
            if arr is None:
                record["failed"] = reason
            else:
                record["row"], record["length"] = len(arrays), int(len(arr))
                arrays.append(np.ascontiguousarray(arr, dtype=dtype))
                ids.append(piece.id)
            pieces.append(record)
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    width = vocab_size if kind == MULTIHOT else 1
    offsets = np.concatenate([[0], np.cumsum(lengths * width)]).astype(np.int64)
    values = np.concatenate(arrays).reshape(-1) if arrays else np.zeros(0, dtype=dtype)
    tokens = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(values))
    table = pa.table({"id": pa.array(ids, pa.string()), "length": pa.array(lengths, pa.int64()), "tokens": tokens})
    final = Path(folder) / f"shard-{sid}.arrow"
    with atomic_path(final) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        meta = {
            "id": sid, "file": final.name, "bytes": tmp.stat().st_size, "sha256": sha256_file(tmp),
            "rows": len(ids), "files": len(chunk), "pieces": pieces, "skipped": skipped, "coverage": coverage,
        }
    _write_json(final.with_suffix(".json"), meta)
    return meta


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, separators=(",", ":"), default=str))


# --------------------------------------------------------------------------------------------
# parent side: plan, resume, run the workers, write the manifest
# --------------------------------------------------------------------------------------------


class _Progress:
    """tqdm on a terminal; otherwise a line about every 10% (and at most every 30 s)."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.total, self.done, self.enabled, self.desc = int(total), 0, enabled, desc
        self.t0 = time.perf_counter()
        self.bar = None
        self.next_line, self.last_line = 0.1, self.t0
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=desc, unit="file", file=sys.stderr)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if not self.enabled or not self.total:
            return
        share, now = self.done / self.total, time.perf_counter()
        if share >= self.next_line or now - self.last_line > 30 or self.done == self.total:
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            print(
                f"{self.desc}: {self.done:,}/{self.total:,} files ({100 * share:.0f}%), "
                f"{rate:,.0f} files/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}",
                file=sys.stderr, flush=True,
            )
            self.next_line = (int(share * 10) + 1) / 10
            self.last_line = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _kept_shard(folder: Path, sid: str, chunk: Sequence[dict[str, Any]], kind: str, vocab_size: int) -> dict[str, Any] | None:
    """The JSON summary of a finished shard that passes every check of
    :func:`~musicfw.engine.shardcheck.check_shard` against its own JSON and ``chunk``'s files,
    else None (then it is redone)."""
    from musicfw.engine.shardcheck import MAX_SHARD_JSON_BYTES, ShardProblem, check_shard, read_json

    meta_path = folder / f"shard-{sid}.json"
    try:
        meta = read_json(meta_path, MAX_SHARD_JSON_BYTES, meta_path.name)
        entry = _summary(meta)
        if entry["id"] != sid or entry["file"] != f"shard-{sid}.arrow" or entry["files"] != len(chunk):
            return None
        return _summary(check_shard(folder, entry, [e["name"] for e in chunk], kind, vocab_size))
    except (OSError, ValueError, KeyError, TypeError, ShardProblem):
        return None


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    """What the manifest needs of a shard's JSON (the per-piece records stay on disk)."""
    return {k: meta[k] for k in ("id", "file", "bytes", "sha256", "rows", "files")}


def prepare_shards(
    folder: Path,
    dataset: Any,
    tokenizer: Any,
    entries: list[dict[str, Any]],
    *,
    workers: int = 0,
    shard_files: int = 500,
    progress: bool = True,
    build: Callable[[str, str, list[dict[str, Any]]], dict[str, Any]] = build_shard,
    rebuilt: list[str] | None = None,
) -> dict[str, Any]:
    """Make ``folder`` hold one shard per chunk of ``entries`` (keeping the finished ones that
    pass every check) and its ``manifest.json``; returns the manifest.  The names of the
    shards made anew are appended to ``rebuilt``."""
    from musicfw.music.limits import current as current_limits

    folder.mkdir(parents=True, exist_ok=True)
    plan = plan_shards(entries, shard_files)
    sids = [shard_id(chunk) for chunk in plan]
    metas: dict[str, dict[str, Any]] = {}
    todo = []
    for sid, chunk in zip(sids, plan):
        meta = _kept_shard(folder, sid, chunk, tokenizer.kind, int(tokenizer.vocab_size))
        if meta is not None:
            metas[sid] = meta
        else:
            todo.append((sid, chunk))
            if rebuilt is not None:
                rebuilt.append(f"shard-{sid}.arrow")
    workers = _cpu_count() if int(workers) <= 0 else int(workers)
    workers = max(1, min(workers, len(todo) or 1))
    if todo:
        n_files = sum(len(c) for _, c in todo)
        if metas and progress:
            print(
                f"token shards {folder.name}: {len(metas)} of {len(plan)} shards already prepared "
                f"and kept; preparing the other {len(todo)} ({n_files:,} files)",
                file=sys.stderr, flush=True,
            )
        bar = _Progress(n_files, progress, f"tokenizing with {tokenizer.name} ({workers} processes)")
        try:
            if workers == 1:
                _init_worker(dataset, tokenizer, None)
                for sid, chunk in todo:
                    metas[sid] = _summary(build(str(folder), sid, chunk))
                    bar.update(len(chunk))
            else:
                import multiprocessing as mp

                method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
                with ProcessPoolExecutor(
                    workers, mp_context=mp.get_context(method), initializer=_init_worker,
                    initargs=(dataset, tokenizer, current_limits().to_dict()),
                ) as pool:
                    pending: dict[Any, tuple[str, int]] = {}
                    queue = iter(todo)
                    while True:  # at most 2 shards per worker in flight: flat memory
                        while len(pending) < 2 * workers:
                            item = next(queue, None)
                            if item is None:
                                break
                            pending[pool.submit(build, str(folder), item[0], item[1])] = (item[0], len(item[1]))
                        if not pending:
                            break
                        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for fut in finished:
                            sid, n = pending.pop(fut)
                            metas[sid] = _summary(fut.result())
                            bar.update(n)
        finally:
            bar.close()
    manifest = {
        "format": f"shards-{SHARD_FORMAT_VERSION}",
        "kind": tokenizer.kind,
        "vocab_size": int(tokenizer.vocab_size),
        "dtype": np.dtype(_token_dtype(tokenizer.kind, int(tokenizer.vocab_size))).name,
        "dataset": dataset.identity(),
        "tokenizer": tokenizer.to_dict(),
        "limits": current_limits().to_dict(),
        "shard_files": int(shard_files),
        "files": [{k: e[k] for k in ("name", "path", "size", "mtime_ns")} for e in entries],
        "shards": [metas[sid] for sid in sids],
    }
    _write_json(folder / MANIFEST, manifest)
    wanted = {f"shard-{sid}.{ext}" for sid in sids for ext in ("arrow", "json")} | {MANIFEST}
    stale = time.time() - 3600
    for path in folder.iterdir():
        try:
            if path.name.startswith("shard-") and path.name not in wanted:
                path.unlink()  # a shard of files that are gone or changed
            elif path.name.startswith(".") and path.stat().st_mtime < stale:
                path.unlink()  # a partial file of a killed preparation (never one being written now)
        except OSError:  # another process preparing the same folder got there first
            pass
    return manifest


# --------------------------------------------------------------------------------------------
# reading: verified, memory-mapped, the token cache's interface
# --------------------------------------------------------------------------------------------


def repair_command(folder: Path) -> str:
    return f"musicfw data repair '{folder}'"


def verify_shards(folder: Path, manifest: dict[str, Any]) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """``([(shard file, what is wrong)], [each good shard's JSON])`` for a manifest that passed
    :func:`~musicfw.engine.shardcheck.check_manifest`: every shard missing, truncated, altered,
    or whose JSON or Arrow file disagrees with the manifest, its files or each other is named."""
    from musicfw.engine.shardcheck import ShardProblem, check_shard

    bad, metas = [], []
    plan = plan_shards(manifest["files"], manifest["shard_files"])
    for shard, chunk in zip(manifest["shards"], plan):
        try:
            metas.append(check_shard(folder, shard, [e["name"] for e in chunk], manifest["kind"],
                                     int(manifest["vocab_size"])))
        except ShardProblem as exc:
            bad.append((shard["file"], str(exc)))
    return bad, metas


def read_manifest(folder: Path) -> dict[str, Any]:
    """The checked manifest of a shard folder (:func:`~musicfw.engine.shardcheck.check_manifest`),
    else a :class:`DataError` naming what is wrong and the command that rebuilds it."""
    from musicfw.engine.shardcheck import MAX_MANIFEST_BYTES, check_manifest, read_json

    try:
        manifest = read_json(folder / MANIFEST, MAX_MANIFEST_BYTES, MANIFEST)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"The token shards in {folder} have no readable {MANIFEST} ({exc}); rebuild "
            f"them with: {repair_command(folder)}"
        ) from None
    try:
        check_manifest(folder, manifest, f"shards-{SHARD_FORMAT_VERSION}", planned_shards)
    except DataError as exc:
        raise DataError(f"{exc} Rebuild the shards with: {repair_command(folder)}") from None
    return manifest


def corpus_changes(manifest: dict[str, Any], entries: list[dict[str, Any]]) -> str | None:
    """A sentence on what differs between the prepared files and the folder now, or None."""
    before = {f["name"]: (f["size"], f["mtime_ns"]) for f in manifest.get("files", [])}
    now = {e["name"]: (e["size"], e["mtime_ns"]) for e in entries}
    added = sorted(set(now) - set(before))
    removed = sorted(set(before) - set(now))
    changed = sorted(n for n in set(now) & set(before) if now[n] != before[n])
    if not (added or removed or changed):
        return None
    parts = []
    for label, names in (("added", added), ("removed", removed), ("modified", changed)):
        if names:
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3:,} more" if len(names) > 3 else "")
            parts.append(f"{len(names):,} {label} ({shown})")
    return "; ".join(parts)


class ShardStore:
    """The pieces of a shard folder, in id order, with the token cache's interface
    (:class:`musicfw.engine.data.TokenStore`): ``ids``, ``kind``, ``failed``, ``coverage``,
    ``position``, ``length``, ``lengths``, ``get``.  Shards are opened lazily, memory-mapped."""

    format = "shards"

    def __init__(self, path: str | os.PathLike, verify: bool = True):
        self.path = Path(path)
        manifest = read_manifest(self.path)
        bad, metas = verify_shards(self.path, manifest) if verify else ([], None)
        if bad:
            what = "; ".join(f"{name}: {why}" for name, why in bad[:5])
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise DataError(
                f"Damaged token shard{'s' if len(bad) > 1 else ''} in {self.path}: {what}{more}. "
                f"Rebuild {'them' if len(bad) > 1 else 'it'} (only the damaged shards are redone) "
                f"with: {repair_command(self.path)}"
            )
        #: the manifest without its per-file list (only needed to notice a changed folder)
        self.manifest = {k: v for k, v in manifest.items() if k != "files"}
        self.kind: str = manifest["kind"]
        self.vocab_size = int(manifest["vocab_size"])
        self.files: list[str] = [s["file"] for s in manifest["shards"]]
        records, self.failed, self.skipped = [], [], []
        self.coverage: dict[str, Any] = {"notes": 0, "dropped": 0, "reasons": {}}
        for s, name in enumerate(self.files):
            if metas is not None:
                meta = metas[s]
            else:
                meta = json.loads((self.path / name).with_suffix(".json").read_text())
            for rec in meta["pieces"]:
                rec["shard"] = s
                records.append(rec)
            self.skipped.extend(tuple(x) for x in meta["skipped"])
            cov = meta["coverage"]
            self.coverage["notes"] += int(cov.get("notes", 0))
            self.coverage["dropped"] += int(cov.get("dropped", 0))
            for why, count in (cov.get("reasons") or {}).items():
                self.coverage["reasons"][why] = self.coverage["reasons"].get(why, 0) + int(count)
        seen: dict[str, str] = {}
        for rec in records:
            if rec["id"] in seen:
                raise DataError(
                    f"The token shards in {self.path} hold the piece {rec['id']!r} twice "
                    f"({seen[rec['id']]} and {self.files[rec['shard']]}). Rebuild them with: "
                    f"{repair_command(self.path)}"
                )
            seen[rec["id"]] = self.files[rec["shard"]]
        records.sort(key=lambda r: r["id"])
        #: every piece read (tokenized or not): what the splits are computed over
        self.records = records
        self.failed = [(r["id"], r["failed"]) for r in records if "failed" in r]
        kept = [r for r in records if "failed" not in r]
        self.ids: list[str] = [r["id"] for r in kept]
        self.position = {piece_id: i for i, piece_id in enumerate(self.ids)}
        self._shard = np.array([r["shard"] for r in kept], dtype=np.int32)
        self._row = np.array([r["row"] for r in kept], dtype=np.int64)
        self._lengths = np.array([r["length"] for r in kept], dtype=np.int64)
        self._open: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    # memory maps are reopened in each DataLoader worker instead of being pickled
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def _shard_arrays(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        if s not in self._open:
            import pyarrow as pa

            source = pa.memory_map(str(self.path / self.files[s]), "r")
            table = pa.ipc.open_file(source).read_all()  # zero copy on a memory map
            column = table.column("tokens").combine_chunks()
            offsets = column.offsets.to_numpy(zero_copy_only=False)
            values = column.values.to_numpy(zero_copy_only=True)
            self._open[s] = (offsets, values)
        return self._open[s]

    def __len__(self) -> int:
        return len(self.ids)

    def length(self, i: int) -> int:
        return int(self._lengths[i])

    def lengths(self) -> np.ndarray:
        return self._lengths

    def get(self, i: int) -> np.ndarray:
        offsets, values = self._shard_arrays(int(self._shard[i]))
        row = int(self._row[i])
        out = values[offsets[row] : offsets[row + 1]]
        return out.reshape(-1, self.vocab_size) if self.kind == MULTIHOT else out


class StoredPiece:
    """A piece of a shard folder: its identity, split and sizes from the manifest; its score
    read again from its file only when asked for (evaluation, token rates)."""

    __slots__ = ("id", "group", "split", "source", "title", "n_notes", "seconds", "_melody", "_reader", "_file")

    def __init__(self, record: dict[str, Any], reader: Callable[[str, str], Any]):
        self.id, self.group, self.source = record["id"], record["group"], record["source"]
        self.title, self.n_notes, self.seconds = record["title"], int(record["notes"]), float(record["seconds"])
        self.split: str | None = None
        self._melody: str = record["melody"]
        self._reader, self._file = reader, record["file"]

    @property
    def melody(self) -> np.ndarray:
        """The melody steps its worker stored (:func:`musicfw.music.tunes.melody_steps`)."""
        from musicfw.music.tunes import decode_steps

        return decode_steps(self._melody)

    @property
    def score(self) -> Any:
        pieces, skipped = self._reader(self.source, self._file)
        for piece in pieces:
            if piece.id == self.id:
                return piece.score
        raise DataError(
            f"{self.source} no longer holds the piece {self.id!r} that was prepared from it "
            f"({'; '.join(r for _, r in skipped) or 'changed since'}); run again to prepare it anew."
        )


class _LazyScores:
    """``scores[j]``: the score of the j-th piece, read when asked for (augmentation)."""

    def __init__(self, pieces: list[StoredPiece]):
        self.pieces = pieces

    def __len__(self) -> int:
        return len(self.pieces)

    def __getitem__(self, j: int) -> Any:
        return self.pieces[j].score


def lazy_scores(pieces: list[Any]) -> Any:
    return _LazyScores(pieces)


def open_shards(
    dataset: Any,
    tokenizer: Any,
    sources: list[tuple[str, str]],
    root: Path,
    *,
    seed: int,
    workers: int = 0,
    shard_files: int = 500,
    progress: bool = True,
) -> tuple[Any, ShardStore]:
    """Prepare (or resume, or update) and open the shards of ``dataset`` for ``tokenizer``:
    ``(LoadedData of StoredPieces with their splits, ShardStore)``."""
    from musicfw.core.dataset import LoadedData

    entries = stat_sources(sources)
    common = os.path.commonpath([e["path"] for e in entries]) if entries else ""
    key = shard_key(dataset, tokenizer, str(Path(common).resolve()) if common else "")
    folder = Path(root) / "shards" / f"{dataset.name}-{tokenizer.name}-{key[:24]}"
    manifest_path = folder / MANIFEST
    store = None
    if manifest_path.exists():
        from musicfw.engine.shardcheck import MAX_MANIFEST_BYTES, manifest_basis, read_json

        try:
            manifest = read_json(manifest_path, MAX_MANIFEST_BYTES, MANIFEST)
            manifest_basis(folder, manifest)
        except (OSError, ValueError, DataError):
            manifest = {"files": [dict(e) for e in entries]}  # ShardStore names what is wrong
        if manifest is not None:
            change = corpus_changes(manifest, entries)
            del manifest
            if change is None:
                store = ShardStore(folder)  # verifies every shard: a damaged one is an error
            else:
                message = (
                    f"The corpus folder changed since its token shards ({folder}) were prepared: "
                    f"{change}. Preparing the changed shards again."
                )
                log.warning(message)
                if progress:
                    print(message, file=sys.stderr, flush=True)
    if store is None:
        prepare_shards(folder, dataset, tokenizer, entries, workers=workers, shard_files=shard_files, progress=progress)
        del entries
        store = ShardStore(folder)
    pieces = [StoredPiece(r, functools.partial(read_midi_source, dataset)) for r in store.records]
    store.records = []  # the pieces hold what is needed of them
    if not pieces:
        raise DataError(f"Dataset {dataset.name!r} holds no usable piece.")
    from musicfw.engine.splits import Melodies, split_report

    melodies = Melodies()
    if not dataset.fixed_splits:  # by group or by tune (data.split_by), as MusicDataset.load does
        units = dataset.split_units(pieces, melodies.tune_keys)
        table = dataset.split_table(units, seed)
        for p, unit in zip(pieces, units):
            p.split = table[unit]
    if not store.ids:
        detail = "; ".join(f"{i}: {r}" for i, r in store.failed[:3])
        raise DataError(f"The tokenizer could not encode any of the {len(pieces)} pieces: {detail}.")
    data = LoadedData(dataset.name, pieces, list(store.skipped), dataset.fixed_splits, int(seed))
    data.split_report = split_report(dataset, pieces, melodies)
    return data, store


def repair(folder: str | os.PathLike, registries: Any = None, workers: int = 0, progress: bool = True) -> list[str]:
    """``musicfw data repair FOLDER``: rebuild the missing, truncated or altered shards of a
    shard folder from its manifest (dataset, tokenizer and limits recorded there); returns the
    shard files that were rebuilt."""
    from musicfw.core.build import build
    from musicfw.music.limits import using

    from musicfw.engine.shardcheck import MAX_MANIFEST_BYTES, check_manifest, manifest_basis, read_json

    folder = Path(folder)
    try:
        manifest = read_json(folder / MANIFEST, MAX_MANIFEST_BYTES, MANIFEST)
        manifest_basis(folder, manifest)
    except (OSError, ValueError, DataError) as exc:
        raise DataError(
            f"Cannot repair {folder}: its {MANIFEST} does not say how the shards were made ({exc}). "
            "Delete the folder and run the experiment (or musicfw data prepare) again: it prepares "
            "the shards anew."
        ) from None
    try:
        check_manifest(folder, manifest, f"shards-{SHARD_FORMAT_VERSION}", planned_shards)
    except DataError as exc:
        manifest_problem: str | None = str(exc)
        bad: list[tuple[str, str]] = []
    else:
        manifest_problem = None
        bad = verify_shards(folder, manifest)[0]
        if not bad:
            return []
    for name, _ in bad:  # names checked by check_manifest: shard-<hex>.arrow inside the folder
        (folder / name).unlink(missing_ok=True)
        (folder / name).with_suffix(".json").unlink(missing_ok=True)
    ident = manifest["dataset"]
    spec = manifest["tokenizer"]
    dataset = build("datasets", ident["name"], registries=registries, key="data", **ident["config"])
    tokenizer = build("tokenizer", spec["name"], registries=registries, key="tokenizer", **spec["config"])
    with using(manifest.get("limits")):
        sources = dataset.sources()  # the dataset's own files: no path of the manifest is followed
        if sources is None:
            raise DataError(f"Cannot repair {folder}: the dataset {dataset.name!r} is not read file by file.")
        entries = stat_sources(sources)
        change = corpus_changes(manifest, entries)
        if change is not None:
            raise DataError(
                f"Cannot repair {folder}: the corpus folder changed since it was prepared ({change}); "
                "run the experiment (or musicfw data prepare) again instead: it prepares the changed "
                "shards anew."
            )
        rebuilt: list[str] = []
        prepare_shards(
            folder, dataset, tokenizer, entries, workers=workers, progress=progress,
            shard_files=int(manifest["shard_files"]), rebuilt=rebuilt,
        )
    if manifest_problem is not None:
        log.warning("rewrote %s (%s)", folder / MANIFEST, manifest_problem)
        rebuilt.append(MANIFEST)
    return rebuilt
