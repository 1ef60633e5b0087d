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
        return key, _convert_music21(path)
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
        out = []
        for entry in entries:
            tune, title = str(entry.get("tune", "")), str(entry.get("title", ""))
            if "midi" not in entry:
                out.append((tune, None, title, str(entry.get("reason") or "conversion failed")))
                continue
            try:
                data = (self.dir / key[:2] / entry["midi"]).read_bytes()
            except OSError:
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
        if not cache.has(key) and key not in {k for k, _ in todo}:
            todo.append((key, str(path)))
    if todo:
        _convert_all(cache, todo, workers, progress)
    for path, key in keys.items():
        loaded = cache.load(key, min_notes=min_notes)
        out[path] = loaded if loaded is not None else [("", None, "", "conversion cache unreadable")]
    return out


def _convert_all(cache: ScoreCache, todo: list[tuple[str, str]], workers: int, progress: bool) -> None:
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
    pool = None
    try:
        if workers == 1:
            results: Any = map(convert_file, todo)
        else:
            import multiprocessing as mp

            methods = mp.get_all_start_methods()
            pool = mp.get_context("fork" if "fork" in methods else "spawn").Pool(workers)
            results = pool.imap_unordered(convert_file, todo)
        for key, pieces in results:
            cache.store(key, pieces)
            bar.update(1)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        bar.close()
