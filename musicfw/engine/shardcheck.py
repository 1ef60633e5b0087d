"""The checks of a token shard folder, before anything in it is used or touched.

A shard folder may come from a stranger (a shared cache, a copied corpus), so nothing read from
it is trusted until it is checked against the data it describes:

* **paths**: a shard file is named ``shard-<20 hex>.arrow`` (its JSON beside it); any other name
  in the manifest (absolute, ``../``, a link) is refused, so no command reads, writes or deletes
  outside the folder;
* **the manifest** has every key it needs, of the right type and within bounds, and its list of
  shards is the one its list of files makes (a dropped or added entry is noticed);
* **each shard's JSON** agrees with the manifest (id, file, bytes, sha256) and with the files of
  its shard; its records are well formed;
* **the Arrow file** agrees with the JSON: the id and length columns row by row, the offsets, the
  number of values and the token ids' range.

Every problem is a :class:`DataError` (or a ``(file, reason)`` pair) naming the file and what is
wrong; ``musicfw data repair FOLDER`` rebuilds what these checks refuse.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from musicfw.core.errors import DataError

SHARD_NAME = re.compile(r"shard-([0-9a-f]{20})\.arrow")
SHA256 = re.compile(r"[0-9a-f]{64}")
KINDS = ("categorical", "multihot")
#: a manifest lists every input file (~200 bytes each): 256 MiB is over a million files
MAX_MANIFEST_BYTES = 256 * 2**20
#: a shard's JSON lists its pieces (a shard holds at most 2 x shard_files files)
MAX_SHARD_JSON_BYTES = 64 * 2**20
MAX_VOCAB = 2**31 - 1
MAX_SHARD_FILES = 1_000_000
MAX_INT = 2**62


class ShardProblem(Exception):
    """One thing wrong with one shard (caught and collected; never reaches a user)."""


def read_json(path: Path, limit: int, what: str) -> Any:
    """The JSON at ``path`` (a plain file inside its folder, at most ``limit`` bytes)."""
    if path.is_symlink():
        raise ValueError(f"{what} is a link; refused")
    size = path.stat().st_size
    if size > limit:
        raise ValueError(f"{what} is {size:,} bytes, more than the {limit:,} allowed")
    try:
        return json.loads(path.read_bytes())
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None


def _int(value: Any, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def shard_file(folder: Path, name: Any) -> Path:
    """``folder / name`` for a well-formed shard name, else :class:`ShardProblem` (never a path
    outside ``folder``)."""
    if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
        raise ShardProblem(f"{name!r} is not a shard file name (shard-<20 hex digits>.arrow); refused")
    return folder / name


def manifest_basis(folder: Path, manifest: Any) -> None:
    """What rebuilding needs of a manifest (dataset, tokenizer, limits, files, shard_files);
    a :class:`DataError` naming the key otherwise."""
    where = folder / "manifest.json"
    if not isinstance(manifest, dict):
        raise DataError(f"{where}: not a JSON object but {type(manifest).__name__}.")
    for key in ("dataset", "tokenizer"):
        spec = manifest.get(key)
        if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("config"), dict)):
            raise DataError(f"{where}: {key!r} must be an object with a 'name' string and a 'config' object.")
    if manifest.get("limits") is not None and not isinstance(manifest["limits"], dict):
        raise DataError(f"{where}: 'limits' must be an object.")
    if not _int(manifest.get("shard_files"), 1, MAX_SHARD_FILES):
        raise DataError(f"{where}: 'shard_files' must be an integer from 1 to {MAX_SHARD_FILES:,}, "
                        f"not {manifest.get('shard_files')!r}.")
    files = manifest.get("files")
    if not isinstance(files, list):
        raise DataError(f"{where}: 'files' must be a list, not {type(files).__name__}.")
    for i, f in enumerate(files):
        if not (isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("path"), str)
                and _int(f.get("size"), -1, MAX_INT) and _int(f.get("mtime_ns"), -1, MAX_INT)):
            raise DataError(f"{where}: files[{i}] must have a 'name' and 'path' string and integer "
                            "'size' and 'mtime_ns'.")


def check_manifest(folder: Path, manifest: Any, fmt: str, plan: Callable[[list, int], list[tuple[str, list]]]) -> None:
    """The whole manifest (format ``fmt``), its list of shards cross-checked with the shards its
    files make (``plan(files, shard_files)``: ``[(shard id, its files)]``)."""
    manifest_basis(folder, manifest)
    where = folder / "manifest.json"
    if manifest.get("format") != fmt:
        raise DataError(f"{where}: 'format' is {manifest.get('format')!r}, not {fmt!r}.")
    if manifest.get("kind") not in KINDS:
        raise DataError(f"{where}: 'kind' is {manifest.get('kind')!r}; allowed: {', '.join(KINDS)}.")
    if not _int(manifest.get("vocab_size"), 1, MAX_VOCAB):
        raise DataError(f"{where}: 'vocab_size' must be an integer from 1 to {MAX_VOCAB:,}, "
                        f"not {manifest.get('vocab_size')!r}.")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise DataError(f"{where}: 'shards' must be a list, not {type(shards).__name__} ({shards!r:.40}).")
    for i, s in enumerate(shards):
        ok = (isinstance(s, dict) and isinstance(s.get("id"), str) and s.get("file") == f"shard-{s.get('id')}.arrow"
              and SHARD_NAME.fullmatch(str(s.get("file"))) is not None and _int(s.get("bytes"), 0, MAX_INT)
              and isinstance(s.get("sha256"), str) and SHA256.fullmatch(s["sha256"]) is not None
              and _int(s.get("rows"), 0, MAX_INT) and _int(s.get("files"), 1, 2 * MAX_SHARD_FILES))
        if not ok:
            raise DataError(f"{where}: shards[{i}] must have an 'id' (20 hex digits), 'file' "
                            "shard-<id>.arrow (no other path is allowed), integer 'bytes', 'rows' and "
                            f"'files' and a 'sha256'; it is {s!r:.200}.")
    planned = plan(manifest["files"], manifest["shard_files"])
    want = [sid for sid, _ in planned]
    have = [s["id"] for s in shards]
    if want != have:
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        raise DataError(
            f"{where}: its list of shards does not match its list of files ({len(manifest['files']):,} "
            f"files make {len(want)} shards; {len(have)} are listed"
            + (f"; not listed: {', '.join(f'shard-{m}.arrow' for m in missing[:3])}" if missing else "")
            + (f"; listed but not made by its files: {', '.join(f'shard-{m}.arrow' for m in extra[:3])}" if extra else "")
            + (f"; in another order" if not (missing or extra) else "") + ")."
        )
    for (_, chunk), s in zip(planned, shards):
        if s["files"] != len(chunk):
            raise DataError(f"{where}: {s['file']} records {s['files']} files; its files make {len(chunk)}.")


def _records(meta: dict[str, Any], names: set[str]) -> list[dict[str, Any]]:
    pieces = meta.get("pieces")
    if not isinstance(pieces, list):
        raise ShardProblem("its JSON's 'pieces' is not a list")
    for j, rec in enumerate(pieces):
        ok = (isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in ("id", "group", "source", "file"))
              and _int(rec.get("notes"), 0, MAX_INT) and isinstance(rec.get("seconds"), (int, float))
              and not isinstance(rec.get("seconds"), bool) and math.isfinite(rec["seconds"]) and rec["seconds"] >= 0
              and (rec.get("title") is None or isinstance(rec.get("title"), str)))
        if ok and "failed" in rec:
            ok = isinstance(rec["failed"], str)
        elif ok:
            ok = _int(rec.get("row"), 0, MAX_INT) and _int(rec.get("length"), 0, MAX_INT)
        if not ok:
            raise ShardProblem(f"its JSON's pieces[{j}] is malformed ({rec!r:.120})")
        if rec["file"] not in names:
            raise ShardProblem(f"its JSON's piece {rec['id']!r} comes from {rec['file']!r}, not one of the shard's files")
    skipped = meta.get("skipped")
    if not (isinstance(skipped, list) and all(isinstance(x, list) and len(x) == 2 for x in skipped)):
        raise ShardProblem("its JSON's 'skipped' is not a list of [file, reason] pairs")
    cov = meta.get("coverage")
    if not (isinstance(cov, dict) and _int(cov.get("notes", 0), 0, MAX_INT) and _int(cov.get("dropped", 0), 0, MAX_INT)
            and isinstance(cov.get("reasons", {}), dict)
            and all(_int(v, 0, MAX_INT) for v in cov.get("reasons", {}).values())):
        raise ShardProblem("its JSON's 'coverage' is malformed")
    return pieces


def _check_arrow(path: Path, kept: list[dict[str, Any]], kind: str, vocab_size: int) -> None:
    import pyarrow as pa

    try:
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_file(source).read_all()
            if table.schema.names != ["id", "length", "tokens"]:
                raise ShardProblem(f"its columns are {table.schema.names}, not id, length, tokens")
            if table.num_rows != len(kept):
                raise ShardProblem(f"it holds {table.num_rows:,} rows; its JSON records {len(kept):,}")
            ids = table.column("id").to_pylist()
            lengths = table.column("length").to_numpy()
            column = table.column("tokens").combine_chunks()
            offsets = column.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
            values = column.values.to_numpy(zero_copy_only=False)
            by_row = sorted(kept, key=lambda r: r["row"])
            if [r["row"] for r in by_row] != list(range(len(kept))):
                raise ShardProblem("its JSON's rows are not 0..n-1, each once")
            for r in by_row:
                if ids[r["row"]] != r["id"]:
                    raise ShardProblem(f"row {r['row']} holds piece {ids[r['row']]!r}; its JSON says {r['id']!r}")
                if int(lengths[r["row"]]) != r["length"]:
                    raise ShardProblem(f"piece {r['id']!r} has {int(lengths[r['row']]):,} tokens; its JSON "
                                       f"records {r['length']:,}")
            width = vocab_size if kind == "multihot" else 1
            if len(offsets) != len(kept) + 1 or offsets[0] != 0 or np.any(np.diff(offsets) != lengths * width) \
                    or len(values) != offsets[-1]:
                raise ShardProblem("its token offsets do not match its lengths")
            if len(values):
                lo, hi = int(values.min()), int(values.max())
                top = 1 if kind == "multihot" else vocab_size - 1
                if lo < 0 or hi > top:
                    raise ShardProblem(f"its token values run from {lo} to {hi}; allowed 0..{top}")
    except ShardProblem:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, pa.ArrowException) as exc:
        raise ShardProblem(f"not a readable Arrow shard ({type(exc).__name__}: {exc})") from None


def check_shard(folder: Path, entry: dict[str, Any], names: Sequence[str], kind: str, vocab_size: int,
                hashed: bool = False) -> dict[str, Any]:
    """A shard's JSON, after checking it against its manifest ``entry`` (id, file, bytes,
    sha256, rows), its files' ``names`` and its Arrow file; :class:`ShardProblem` otherwise.
    ``hashed``: the Arrow file's sha256 was already compared with ``entry``."""
    from musicfw.engine.integrity import sha256_file

    arrow = shard_file(folder, entry["file"])
    if arrow.is_symlink():
        raise ShardProblem("it is a link; refused")
    try:
        size = arrow.stat().st_size
    except OSError:
        raise ShardProblem("missing") from None
    if size != entry["bytes"]:
        raise ShardProblem(f"truncated or altered: {size:,} bytes, {entry['bytes']:,} recorded")
    if not hashed and sha256_file(arrow) != entry["sha256"]:
        raise ShardProblem("altered: its sha256 does not match the manifest")
    json_path = arrow.with_suffix(".json")
    try:
        meta = read_json(json_path, MAX_SHARD_JSON_BYTES, json_path.name)
    except FileNotFoundError:
        raise ShardProblem(f"its JSON {json_path.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise ShardProblem(f"its JSON {json_path.name} is unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise ShardProblem(f"its JSON {json_path.name} is not an object")
    for key in ("id", "file", "bytes", "sha256", "rows", "files"):
        if meta.get(key) != entry[key]:
            raise ShardProblem(f"its JSON's {key!r} is {meta.get(key)!r:.80}; the manifest records {entry[key]!r}")
    pieces = _records(meta, set(names))
    kept = [r for r in pieces if "failed" not in r]
    if len(kept) != entry["rows"]:
        raise ShardProblem(f"its JSON lists {len(kept):,} tokenized pieces; the manifest records {entry['rows']:,} rows")
    _check_arrow(arrow, kept, kind, vocab_size)
    return meta
