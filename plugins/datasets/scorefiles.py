"""Scores that are not MIDI (MusicXML, ABC, Humdrum) read by ``midi_folder``: converted to
MIDI once and cached by content hash.

* ABC (``.abc``): symusic reads ABC itself (its bundled abc2midi, ~1000x faster than a
  music21 parse), one tune at a time: a file with several ``X:`` tunes gives one piece per tune
  (``path#X``, all in the file's split group), each tune with the file header's fields.
  abc2midi's own error message is the skip reason of a tune it cannot read.  abc2midi starts
  each note 1 tick late and ends it 1 tick early (at 480 ticks per quarter); the tokenizers
  quantize far more coarsely, so this is left as abc2midi writes it.
* MusicXML (``.musicxml``, ``.xml``, ``.mxl``) and Humdrum (``.krn``): music21, with the same
  conversion as the bundled corpora (:func:`.m21convert.convert`: one track per part, ties
  merged, pickup bars padded).  symusic reads neither.

The cache lives under ``<cache>/scores/conv<N>-music21-<v>-symusic-<v>/``: per source file,
``<sha256>.json`` (its pieces: title, reason or MIDI file name) and ``<sha256>-<i>.mid``; the key
is the sha256 of the file's suffix and bytes, so an edited file is converted again and a
renamed or moved one is not.  Conversions run in worker processes (``num_workers``) the first
time; a file that cannot be converted is cached with its reason, so it is reported, not retried.

Score files come from strangers, so each conversion is bounded: it runs in a worker process
(always, also with one worker) whose address space is capped at :data:`CONVERSION_BYTES` above
what it starts with and which is killed after :data:`CONVERSION_SECONDS`
(``MUSICFW_CONVERSION_SECONDS``); that file is then skipped with the reason (not cached: a later
run tries it again) and the others go on.  An ``.mxl`` (a zip) is refused when what it unpacks
to (the sizes its zip directory declares, which bound what :mod:`zipfile` will inflate) exceeds
:data:`MAX_FILE_BYTES`; an ABC note or rest longer than :data:`MAX_ABC_LENGTH` times the unit
length is refused (abc2midi would silently cut it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from musicfw.core.atomic import atomic_write

#: bump when the conversion's output changes: old caches are then left alone, not reused
CONVERSION_VERSION = 1
ABC_SUFFIXES = (".abc",)
MUSIC21_SUFFIXES = (".musicxml", ".xml", ".mxl", ".krn")
SCORE_SUFFIXES = ABC_SUFFIXES + MUSIC21_SUFFIXES
#: files larger than this are skipped (a score of a few hundred pages of MusicXML is ~20 MB)
MAX_FILE_BYTES = 64 * 1024 * 1024

#: what an ``.mxl`` may unpack to, and how many members it may have
MAX_MXL_MEMBERS = 1_000
#: a conversion's wall-clock time (seconds) and extra address space (bytes) in its worker
CONVERSION_SECONDS = float(os.environ.get("MUSICFW_CONVERSION_SECONDS", "") or 120.0)
CONVERSION_BYTES = 3 * 2**30
#: an ABC note or rest may last at most this many unit lengths (``L:``); abc2midi overflows
#: on longer ones and silently cuts them (``C2147483647`` became 127 ticks)
MAX_ABC_LENGTH = 4096

_TUNE_START = re.compile(r"(?m)^X:[ \t]*(\S*)")
_FIELD = re.compile(r"^[A-Za-z]:")


def split_abc(text: str) -> list[tuple[str, str]]:
    """An ABC file -> ``[(X number, tune text with the file header's fields), ...]``; a
    file without ``X:`` is one tune."""
    starts = [(m.start(), m.group(1)) for m in _TUNE_START.finditer(text)]
    if not starts:
        return [("1", "X:1\n" + text)]
    header = "".join(line + "\n" for line in text[: starts[0][0]].splitlines() if _FIELD.match(line))
    tunes = []
    for i, (pos, number) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        tunes.append((number, header + text[pos:end].rstrip() + "\n"))
    return tunes


@contextmanager
def _captured_output() -> Iterator[list[str]]:
    """Capture what C code writes to fds 1 and 2 (abc2midi's messages) into ``out[0]``."""
    out: list[str] = [""]
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield out
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            out[0] = tmp.read(4096).decode("utf-8", errors="replace")


def _abc_message(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith("error")]
    return "; ".join((errors or lines)[:2])[:240]


_ABC_SKIP = re.compile(r'"[^"]*"|![^!\n]*!|\+[^+\n]*\+|%.*$|\[[A-Za-z]:[^\]]*\]', re.M)
_ABC_NOTE_LENGTH = re.compile(r"[_^=]*[A-Ga-gzxZX][,']*(\d+)")


def abc_length_problem(tune: str) -> str | None:
    """Why abc2midi cannot be trusted with this tune (a note or rest of more than
    :data:`MAX_ABC_LENGTH` unit lengths), or None."""
    for line in tune.splitlines():
        if _FIELD.match(line) or line.lstrip().startswith("%"):
            continue
        body = _ABC_SKIP.sub(" ", line)
        for m in _ABC_NOTE_LENGTH.finditer(body):
            digits = m.group(1)
            if len(digits) > 9 or int(digits) > MAX_ABC_LENGTH:
                shown = digits if len(digits) <= 12 else digits[:12] + "..."
                return (f"a note or rest of {shown} unit lengths ({m.group(0)[:24]!r}): more than the "
                        f"{MAX_ABC_LENGTH:,} abc2midi can represent (it would cut it silently)")
    return None


def mxl_problem(path: str) -> str | None:
    """Why an ``.mxl`` must not be unpacked (too many members, or more than
    :data:`MAX_FILE_BYTES` once unpacked), or None."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"not a readable .mxl (zip) file: {exc}"
    if len(infos) > MAX_MXL_MEMBERS:
        return f"{len(infos):,} files inside: more than the {MAX_MXL_MEMBERS:,} an .mxl may hold"
    total = sum(max(int(i.file_size), 0) for i in infos)
    if total > MAX_FILE_BYTES:
        return (f"unpacks to {total:,} bytes: more than the {MAX_FILE_BYTES:,} a score file may have "
                "(checked before unpacking)")
    return None


def _convert_abc(path: str) -> list[dict[str, Any]]:
    import symusic

    text = Path(path).read_text(encoding="utf-8", errors="replace")
    pieces: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, tune in split_abc(text):
        seen[number] = seen.get(number, 0) + 1
        tag = number if seen[number] == 1 else f"{number}-{seen[number]}"
        title = next((ln[2:].strip() for ln in tune.splitlines() if ln.startswith("T:")), "")
        entry: dict[str, Any] = {"tune": tag, "title": title}
        problem = abc_length_problem(tune)
        if problem is not None:
            entry["reason"] = problem
            pieces.append(entry)
            continue
        try:
            with _captured_output() as messages:
                score = symusic.Score.from_abc(tune)
        except Exception as exc:  # abc2midi could not read the tune
            detail = _abc_message(messages[0]) or str(exc).strip()
            entry["reason"] = f"symusic/abc2midi could not read it: {detail}"[:300]
            pieces.append(entry)
            continue
        if score.note_num() == 0:
            entry["reason"] = "no notes"
        else:
            entry["midi"] = score.dumps_midi()
        pieces.append(entry)
    return pieces


def _convert_music21(path: str) -> list[dict[str, Any]]:
    from .m21convert import Unit, convert

    _id, blob, title, reason = convert(Unit(id=path, group=path, path=path))
    entry: dict[str, Any] = {"tune": "", "title": title}
    if blob is None:
        entry["reason"] = reason or "music21 could not convert it"
    else:
        entry["midi"] = blob
    return [entry]


def convert_file(job: tuple[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """``(key, pieces)`` for one file; never raises (worker processes run it)."""
    key, path = job
    try:
        if Path(path).suffix.lower() in ABC_SUFFIXES:
            return key, _convert_abc(path)
        if Path(path).suffix.lower() == ".mxl":
            problem = mxl_problem(path)
            if problem is not None:
                return key, [{"tune": "", "title": "", "reason": problem}]
        return key, _convert_music21(path)
    except MemoryError:
        return key, [{"tune": "", "title": "", "reason": _memory_reason()}]
    except Exception as exc:  # anything else: the file is skipped with the reason
        return key, [{"tune": "", "title": "", "reason": f"conversion failed: {type(exc).__name__}: {exc}"[:300]}]


def _versions() -> str:
    from importlib import metadata

    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover
            return "0"

    return f"conv{CONVERSION_VERSION}-music21-{v('music21')}-symusic-{v('symusic')}"


class ScoreCache:
    """Converted score files, keyed by content hash."""

    def __init__(self, root: Path):
        self.dir = Path(root) / "scores" / _versions()

    @staticmethod
    def key(path: Path, data: bytes) -> str:
        h = hashlib.sha256(path.suffix.lower().encode("utf-8") + b"\0")
        h.update(data)
        return h.hexdigest()

    def _meta(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def has(self, key: str) -> bool:
        return self._meta(key).is_file()

    def store(self, key: str, pieces: list[dict[str, Any]]) -> None:
        folder = self.dir / key[:2]
        folder.mkdir(parents=True, exist_ok=True)
        entries = []
        for i, piece in enumerate(pieces):
            entry = {k: v for k, v in piece.items() if k != "midi"}
            if piece.get("midi") is not None:
                name = f"{key}-{i}.mid"
                atomic_write(folder / name, piece["midi"])
                entry["midi"] = name
                entry["sha256"] = hashlib.sha256(piece["midi"]).hexdigest()
            entries.append(entry)
        atomic_write(self._meta(key), json.dumps({"pieces": entries}))  # last: a crash leaves no half entry behind

    def load(self, key: str, min_notes: int = 1) -> list[tuple[str, Any, str, str | None]] | None:
        """``[(tune, score or None, title, reason), ...]``, or None when not cached (or the
        entry is unreadable: it is converted again)."""
        from musicfw.music.midiload import parse_score

        try:
            entries = json.loads(self._meta(key).read_text())["pieces"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(entries, list):
            return None
        out = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                return None
            tune, title = str(entry.get("tune", "")), str(entry.get("title", ""))
            if "midi" not in entry:
                out.append((tune, None, title, str(entry.get("reason") or "conversion failed")))
                continue
            # only the file this entry was written as, and only with its recorded checksum: a
            # name with a path in it, an altered file or an entry of an older cache is converted again
            if entry["midi"] != f"{key}-{i}.mid" or not isinstance(entry.get("sha256"), str):
                return None
            try:
                data = (self.dir / key[:2] / entry["midi"]).read_bytes()
            except OSError:
                return None
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                return None
            score, reason = parse_score(data, min_notes=min_notes)
            out.append((tune, score, title, reason))
        return out


def read_scores(
    paths: list[Path],
    cache_dir: str | None = None,
    min_notes: int = 1,
    workers: int = 0,
    progress: bool = True,
) -> dict[Path, list[tuple[str, Any, str, str | None]]]:
    """path -> ``[(tune, score or None, title, reason), ...]`` for MusicXML/ABC/Humdrum files,
    converting the ones not in the cache (in ``workers`` processes; 0: all cores)."""
    from musicfw.core.dataset import cache_root

    cache = ScoreCache(cache_root(cache_dir))
    out: dict[Path, list[tuple[str, Any, str, str | None]]] = {}
    keys: dict[Path, str] = {}
    todo: list[tuple[str, str]] = []
    cached: dict[str, list[tuple[str, Any, str, str | None]]] = {}
    pending: set[str] = set()
    for path in paths:
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                out[path] = [("", None, "", f"{size:,} bytes: larger than the {MAX_FILE_BYTES:,} a score file may have")]
                continue
            data = path.read_bytes()
        except OSError as exc:
            out[path] = [("", None, "", f"cannot read the file: {exc.strerror or exc}")]
            continue
        if not data.strip():
            out[path] = [("", None, "", "empty file")]
            continue
        key = keys[path] = cache.key(path, data)
        if key in cached or key in pending:
            continue
        got = cache.load(key, min_notes=min_notes) if cache.has(key) else None
        if got is None:  # not converted yet, or its cache entry fails its checks: converted (again)
            todo.append((key, str(path)))
            pending.add(key)
        else:
            cached[key] = got
    transient: dict[str, list[tuple[str, Any, str, str | None]]] = {}
    if todo:
        transient = _convert_all(cache, todo, workers, progress)
    for path, key in keys.items():
        if key in transient:  # timed out or out of memory: reported, not cached
            out[path] = transient[key]
            continue
        loaded = cached[key] if key in cached else cache.load(key, min_notes=min_notes)
        out[path] = loaded if loaded is not None else [("", None, "", "conversion cache unreadable")]
    return out


def _convert_all(
    cache: ScoreCache, todo: list[tuple[str, str]], workers: int, progress: bool
) -> dict[str, list[tuple[str, Any, str, str | None]]]:
    """Convert ``todo`` in bounded worker processes, caching each result; returns the files that
    hit a bound (time, memory, a dead worker), with their reason, which are not cached."""
    from tqdm import tqdm

    workers = int(workers) if workers and workers > 0 else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(todo)))
    bar = tqdm(
        total=len(todo),
        desc="midi_folder: converting MusicXML/ABC/Humdrum (once)",
        unit="file",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    bounded: dict[str, list[tuple[str, Any, str, str | None]]] = {}
    try:
        for key, pieces, cacheable in BoundedConversions(workers).run(todo):
            if cacheable:
                cache.store(key, pieces)
            else:
                bounded[key] = [("", None, "", str(pieces[0]["reason"]))]
            bar.update(1)
    finally:
        bar.close()
    return bounded


def _vm_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    return 0


def _worker(conn: Any, extra_bytes: int) -> None:
    """A conversion worker: its address space capped at ``extra_bytes`` above its start; one
    job at a time from ``conn``; ``None`` ends it."""
    try:
        import resource

        vm = _vm_bytes()
        if vm:
            soft, hard = resource.getrlimit(resource.RLIMIT_AS)
            limit = vm + int(extra_bytes)
            if hard == resource.RLIM_INFINITY or limit < hard:
                resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):  # pragma: no cover - no rlimits here
        pass
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = convert_file(job)
        except MemoryError:
            result = (job[0], [{"tune": "", "title": "", "reason": _memory_reason()}])
        except BaseException as exc:  # noqa: BLE001 - the worker must answer for every job
            result = (job[0], [{"tune": "", "title": "", "reason": f"conversion failed: {type(exc).__name__}: {exc}"[:300]}])
        conn.send(result)


def _memory_reason() -> str:
    return (f"the conversion needed more than the {CONVERSION_BYTES / 2**30:.0f} GiB of memory allowed "
            "to one file; skipped")


class BoundedConversions:
    """``workers`` conversion processes, each job bounded in time (:data:`CONVERSION_SECONDS`:
    the process is killed and replaced) and memory (:data:`CONVERSION_BYTES`)."""

    def __init__(self, workers: int, seconds: float | None = None, extra_bytes: int | None = None):
        import multiprocessing as mp

        self.workers = max(int(workers), 1)
        self.seconds = float(seconds if seconds is not None else CONVERSION_SECONDS)
        self.extra_bytes = int(extra_bytes if extra_bytes is not None else CONVERSION_BYTES)
        methods = mp.get_all_start_methods()
        self.ctx = mp.get_context("fork" if "fork" in methods else "spawn")

    def _start(self) -> tuple[Any, Any]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.extra_bytes), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    @staticmethod
    def _stop(worker: tuple[Any, Any], kill: bool = False) -> None:
        proc, conn = worker
        if kill:
            proc.kill()
        else:
            try:
                conn.send(None)
            except OSError:
                proc.kill()
        proc.join(5)
        if proc.is_alive():  # pragma: no cover
            proc.kill()
            proc.join()
        conn.close()

    def run(self, jobs: list[tuple[str, str]]) -> Iterator[tuple[str, list[dict[str, Any]], bool]]:
        """``(key, pieces, cacheable)`` per job, in the order they finish."""
        import time
        from collections import deque
        from multiprocessing.connection import wait

        queue = deque(jobs)
        idle: list[tuple[Any, Any]] = []
        busy: dict[Any, tuple[tuple[Any, Any], tuple[str, str], float]] = {}
        try:
            while queue or busy:
                while queue and len(busy) < self.workers:
                    worker = idle.pop() if idle else self._start()
                    job = queue.popleft()
                    worker[1].send(job)
                    busy[worker[1]] = (worker, job, time.monotonic() + self.seconds)
                timeout = max(min(d for _, _, d in busy.values()) - time.monotonic(), 0.0)
                for conn in wait(list(busy), timeout=timeout):
                    worker, job, _ = busy.pop(conn)
                    try:
                        key, pieces = conn.recv()
                    except (EOFError, OSError):
                        code = worker[0].exitcode if worker[0].join(1) is None else None
                        self._stop(worker, kill=True)
                        yield job[0], [{"tune": "", "title": "", "reason": (
                            f"the conversion process died (exit code {code}), most likely out of the "
                            f"{self.extra_bytes / 2**30:.0f} GiB of memory allowed to one file; skipped")}], False
                        continue
                    idle.append(worker)
                    yield key, pieces, not _bounded(pieces)
                now = time.monotonic()
                for conn, (worker, job, deadline) in list(busy.items()):
                    if now >= deadline:
                        del busy[conn]
                        self._stop(worker, kill=True)
                        yield job[0], [{"tune": "", "title": "", "reason": (
                            f"the conversion took longer than {self.seconds:,.0f} s (the time allowed to one "
                            "file, MUSICFW_CONVERSION_SECONDS); skipped")}], False
        finally:
            for worker, _, _ in busy.values():
                self._stop(worker, kill=True)
            for worker in idle:
                self._stop(worker)


def _bounded(pieces: list[dict[str, Any]]) -> bool:
    """A result that says it hit the memory bound (not cached: a later run may allow more)."""
    return any(p.get("reason") == _memory_reason() or "MemoryError" in str(p.get("reason", "")) for p in pieces)
