"""The corpora bundled with music21, converted to MIDI once and cached.

* ``bach_chorales``: the Bach chorale harmonizations in music21's ``corpus/bach`` folder
  (MusicXML, a few Humdrum files), 409 pieces once duplicates and the one non-chorale
  (BWV 846, a prelude) are left out.
* ``folk_melodies``: the monophonic tune collections: Essen folk songs (``essenFolksong``,
  8,514 tunes in 32 ABC files), O'Neill's Music of Ireland 1850 (``oneills1850``, 2,009 tunes
  in 39 files), Ryan's Mammoth Collection (``ryansMammoth``, 1,059 files of one tune) and
  Aird's Airs (``airdsAirs``, 1,180 tunes in 6 files).

Both are split by tune by default (``split_by: tune``): pieces that share a 16-step melody run
(one chorale melody harmonised twice, variants of one folk tune) stay in one split, so no test
piece is a near-copy of a training piece.  ``split_by: piece`` splits by source file instead
(tunes of one file in one split).

musicfw ships these corpora already converted (:mod:`.shipped`: one archive per collection in
``data/``), so a first load reads MIDI instead of running music21: a piece is taken from the
archive when the installed music21 holds the very source it was converted from (a digest of the
file or tune text), and converted locally otherwise (``shipped: false``: always locally).

Local conversion (music21 parse -> :func:`.m21convert.to_score` -> MIDI bytes) runs in parallel
worker processes with a progress bar, once per piece: results are appended to packed shards
under ``<cache>/corpora/music21-<version>-conv<N>/<collection>/`` with a JSON manifest
(failures are recorded with their reason too, so they are not retried).  Asking for more
tunes later converts only the missing ones; a later load reads the shards back with symusic.
The manifest records each shard's sha256; a shard that was changed or cut on disk is a
``DataError`` naming it and the folder to delete, never a smaller dataset blamed on the sources;
a slice of a shard with no recorded sha256 (an old cache) or whose name is not a plain
``shard-<hex>.bin`` of the folder is not read: that piece is converted again.
The cache folder is the ``cache_dir`` field, else ``$MUSICFW_CACHE_DIR``, else the user's
cache folder.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import json
import os
import re
import sys
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, List, Optional

from musicfw.core.atomic import atomic_path, atomic_write
from musicfw.core.dataset import MusicDataset, Piece, SplitConfig, cache_root
from musicfw.core.errors import DataError
from musicfw.core.params import bounded, choice

from .m21convert import Unit

from .shipped import CONVERTER_VERSION  # noqa: E402  (the archives record it)
FLUSH_EVERY = 500

FOLK_COLLECTIONS = ("essenFolksong", "oneills1850", "ryansMammoth", "airdsAirs")
#: files in music21's bach folder that are not chorale harmonizations
NOT_CHORALES = frozenset({"bwv846"})


@lru_cache(maxsize=1)
def music21_corpus_dir() -> Path:
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("music21 is not installed; it ships the bundled corpora (pip install music21).")
    return Path(list(spec.submodule_search_locations)[0]) / "corpus"


def music21_version() -> str:
    try:
        return metadata.version("music21")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _hash_order(unit_id: str) -> str:
    return hashlib.sha256(unit_id.encode("utf-8")).hexdigest()


def select(units: list[Unit], max_count: int | None) -> list[Unit]:
    """All units, or a deterministic, representative subset of ``max_count`` (by id hash;
    a larger ``max_count`` only adds units)."""
    if max_count is None or max_count >= len(units):
        return units
    chosen = set(sorted((u.id for u in units), key=_hash_order)[:max_count])
    return [u for u in units if u.id in chosen]


# --------------------------------------------------------------------------------------
# the packed, append-only store of converted pieces
# --------------------------------------------------------------------------------------


_SHARD_NAME = re.compile(r"shard-[0-9a-f]{12}\.bin")


class CorpusStore:
    """Converted pieces of one collection: ``shard-*.bin`` (MIDI bytes) + ``manifest.json``."""

    def __init__(self, root: Path, collection: str):
        self.root = Path(root)
        self.dir = Path(root) / "corpora" / f"music21-{music21_version()}-conv{CONVERTER_VERSION}" / collection
        self.manifest_path = self.dir / "manifest.json"

    def _head(self) -> dict[str, Any]:
        try:
            head = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return {}
        return head if isinstance(head, dict) and isinstance(head.get("entries"), dict) else {}

    def manifest(self) -> dict[str, dict[str, Any]]:
        """The usable entries: a failure, or a slice of a shard whose name is a plain
        ``shard-<hex>.bin`` in this folder and whose sha256 is recorded.  Any other entry (a
        shard written before checksums were recorded, a name with a path in it, a negative or
        non-integer slice) is left out, so :meth:`ensure` converts that piece again."""
        head = self._head()
        digests = head.get("shards", {})
        digests = digests if isinstance(digests, dict) else {}
        out = {}
        for unit_id, entry in head.get("entries", {}).items():
            if not isinstance(entry, dict):
                continue
            if "error" in entry:
                out[unit_id] = entry
                continue
            shard, offset, length = entry.get("shard"), entry.get("offset"), entry.get("length")
            if (isinstance(shard, str) and _SHARD_NAME.fullmatch(shard) and isinstance(digests.get(shard), str)
                    and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (offset, length))):
                out[unit_id] = entry
        return out

    def shard_digests(self) -> dict[str, str]:
        """shard file name -> the sha256 recorded when it was written."""
        digests = self._head().get("shards", {})
        return digests if isinstance(digests, dict) else {}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "lock", "a+") as fh:
            try:
                import fcntl

                fcntl.flock(fh, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - no advisory locks on this platform
                pass
            yield

    def _flush(self, done: list[tuple[Unit, bytes | None, str, str | None]]) -> None:
        if not done:
            return
        shard = f"shard-{uuid.uuid4().hex[:12]}.bin"
        entries: dict[str, dict[str, Any]] = {}
        blobs, offset = [], 0
        for unit, blob, title, error in done:
            entry: dict[str, Any] = {"group": unit.group, "title": title}
            if blob is None:
                entry["error"] = error or "conversion failed"
            else:
                entry.update(shard=shard, offset=offset, length=len(blob))
                blobs.append(blob)
                offset += len(blob)
            entries[unit.id] = entry
        data = b"".join(blobs)
        atomic_write(self.dir / shard, data)
        head = self._head()
        manifest = head.get("entries", {})
        manifest.update(entries)
        digests = dict(head.get("shards", {}) or {})
        if blobs:
            digests[shard] = hashlib.sha256(data).hexdigest()
        atomic_write(self.manifest_path, json.dumps({"music21": music21_version(), "entries": manifest, "shards": digests}))
        done.clear()

    def ensure(self, units: list[Unit], workers: int = 0, progress: bool = True, desc: str = "") -> int:
        """Convert the units missing from the store (in parallel); returns how many."""
        known = self.manifest()
        if all(u.id in known for u in units):
            return 0
        with self._locked():
            known = self.manifest()
            missing = [u for u in units if u.id not in known]
            if not missing:
                return 0
            from .m21convert import convert, private_scratch_dir, use_private_scratch

            # music21's scratch folder (where it reads pickles) is private, never /tmp/music21
            scratch = str(private_scratch_dir(self.root))
            use_private_scratch(scratch)
            workers = int(workers) if workers and workers > 0 else (os.cpu_count() or 1)
            workers = max(1, min(workers, len(missing)))
            by_id = {u.id: u for u in missing}
            from tqdm import tqdm

            bar = tqdm(
                total=len(missing),
                desc=desc or f"converting {self.dir.name}",
                unit="piece",
                file=sys.stderr,
                disable=not progress,
                dynamic_ncols=True,
            )
            done: list = []
            try:
                if workers == 1:
                    results: Any = map(convert, missing)
                    pool = None
                else:
                    import multiprocessing as mp

                    methods = mp.get_all_start_methods()
                    ctx = mp.get_context("fork" if "fork" in methods else "spawn")
                    pool = ctx.Pool(workers, initializer=use_private_scratch, initargs=(scratch,))
                    chunk = max(1, min(16, len(missing) // (workers * 8)))
                    results = pool.imap_unordered(convert, missing, chunksize=chunk)
                try:
                    for unit_id, blob, title, error in results:
                        done.append((by_id[unit_id], blob, title, error))
                        bar.update(1)
                        if len(done) >= FLUSH_EVERY:
                            self._flush(done)
                finally:
                    if pool is not None:
                        pool.terminate()
                        pool.join()
                self._flush(done)
            finally:
                bar.close()
            return len(missing)

    def load(self, ids: list[str]) -> dict[str, tuple[Any, str, str | None]]:
        """id -> (score or None, title, error reason or None) for the ids in the store."""
        from musicfw.music.midiload import parse_score

        head = self._head()
        manifest = self.manifest()  # only checksummed slices of shards inside this folder
        digests = head.get("shards", {}) or {}
        shards: dict[str, bytes] = {}
        out: dict[str, tuple[Any, str, str | None]] = {}
        for unit_id in ids:
            entry = manifest.get(unit_id)
            if entry is None:
                continue
            title = entry.get("title", "")
            if "error" in entry:
                out[unit_id] = (None, title, entry["error"])
                continue
            shard = entry["shard"]
            if shard not in shards:
                try:
                    data = (self.dir / shard).read_bytes()
                except OSError as exc:
                    raise self._damaged(shard, f"it cannot be read ({exc.strerror or exc})") from None
                if hashlib.sha256(data).hexdigest() != digests[shard]:
                    raise self._damaged(shard, "its sha256 differs from the one recorded when it was written")
                shards[shard] = data
            if entry["offset"] + entry["length"] > len(shards[shard]):
                raise self._damaged(shard, "it is shorter than its manifest says")
            blob = shards[shard][entry["offset"] : entry["offset"] + entry["length"]]
            score, reason = parse_score(blob)
            out[unit_id] = (score, title, reason)
        return out


    def _damaged(self, shard: str, why: str) -> DataError:
        return DataError(
            f"The converted-corpus cache file {self.dir / shard} is damaged: {why}. The source "
            f"files are not to blame. Delete the folder {self.dir} and run again: the pieces are "
            "converted anew (or taken from the corpus musicfw ships)."
        )


# --------------------------------------------------------------------------------------
# plugins
# --------------------------------------------------------------------------------------


@dataclass
class CorpusConfig(SplitConfig):
    # many pieces here are one tune (a chorale melody harmonised again, a folk tune's variants):
    # by default they share a split (docs/data.md, "Tune-grouped splits")
    split_by: str = choice(
        "tune",
        ("piece", "tune"),
        "split unit: tune (pieces sharing a 16-step melody run stay in one split) or piece (a "
        "piece, or the file it came from)",
    )
    max_count: Optional[int] = bounded(None, ge=1, help="use at most this many pieces (a fixed, representative subset)")
    cache_dir: Optional[str] = field(
        default=None,
        metadata={"help": "where converted pieces are cached (default: $MUSICFW_CACHE_DIR or "
                  "the user's cache folder)"},
    )
    num_workers: int = bounded(0, ge=0, help="processes converting the corpus the first time (0: all cores)")
    shipped: bool = field(
        default=True,
        metadata={"help": "read the MIDI that musicfw ships, converted ahead from the same music21 "
                  "files (false: convert every piece with the installed music21)"},
    )


class Music21Corpus(MusicDataset):
    """Shared machinery: list the units, convert the missing ones, read them back."""

    collection: str = ""
    #: the folder of the shipped archives (None: the package's ``data/`` folder)
    shipped_dir: Path | None = None
    non_semantic_fields = MusicDataset.non_semantic_fields + ("shipped",)

    @abc.abstractmethod
    def units(self) -> list[Unit]:
        """Every piece of the corpus, in a stable order."""

    def postprocess(self, score: Any) -> Any:
        return score

    def collect(self, progress: bool = True) -> tuple[list[Piece], list[tuple[str, str]]]:
        units = select(self.units(), self.config.max_count)
        skipped: list[tuple[str, str]] = []
        pieces: list[Piece] = []
        by_collection: dict[str, list[Unit]] = {}
        for unit in units:
            by_collection.setdefault(unit.id.split("/", 1)[0], []).append(unit)
        root = cache_root(self.config.cache_dir)
        for collection, members in by_collection.items():
            loaded = self._from_shipped(collection, members) if self.config.shipped else {}
            rest = [u for u in members if u.id not in loaded]
            if rest:
                store = CorpusStore(root, collection)
                store.ensure(
                    rest,
                    workers=self.config.num_workers,
                    progress=progress,
                    desc=f"{self.name}: converting {collection} (once)",
                )
                loaded.update(store.load([u.id for u in rest]))
            for unit in members:
                score, title, reason = loaded.get(unit.id, (None, "", "missing from the cache"))
                if score is not None:
                    score = self.postprocess(score)
                    if score.note_num() == 0:
                        score, reason = None, "no notes in the selected voices"
                if score is None:
                    skipped.append((unit.id, reason or "conversion failed"))
                    continue
                # the group is the source file's path inside music21's corpus folder
                pieces.append(Piece(id=unit.id, score=score, group=unit.group, source=unit.group, title=title))
        if not pieces:
            reasons = "; ".join(f"{i}: {r}" for i, r in skipped[:3])
            raise DataError(
                f"Dataset {self.name!r}: no piece could be converted or kept ({len(skipped)} failed"
                + (f"; for example {reasons}" if reasons else "") + ")."
            )
        return pieces, skipped

    def _from_shipped(self, collection: str, members: list[Unit]) -> dict[str, tuple[Any, str, str | None]]:
        """id -> (score or None, title, reason) for the members the shipped archive holds."""
        from musicfw.music.midiload import parse_score
        from .shipped import shipped

        archive = shipped(collection, self.shipped_dir)
        if archive is None:
            return {}
        out: dict[str, tuple[Any, str, str | None]] = {}
        for unit_id, (blob, title, error) in archive.lookup(members).items():
            if blob is None:
                out[unit_id] = (None, title, error)
            else:
                score, reason = parse_score(blob)
                out[unit_id] = (score, title, reason)
        return out


# -- Bach chorales ------------------------------------------------------------------------

VOICE_PREFIXES = ("soprano", "alto", "tenor", "bass")


def satb_tracks(score: Any) -> Any:
    """Keep the four voices (tracks named Soprano/Alto/Tenor/Bass; a four-track score as it
    is); other parts (doubling instruments, continuo) are dropped."""
    names = [t.name.strip().lower() for t in score.tracks]
    voices = [i for i, n in enumerate(names) if n.startswith(VOICE_PREFIXES)]
    if len(voices) == len(names) or (not voices and len(names) == 4) or not voices:
        return score
    out = score.copy()
    for i in sorted(set(range(len(names))) - set(voices), reverse=True):
        del out.tracks[i]
    return out


@dataclass
class BachChoralesConfig(CorpusConfig):
    voices: str = choice(
        "satb", ("satb", "all"), "satb: the four voices only; all: every part of the score"
    )


class BachChorales(Music21Corpus):
    """The ~410 Bach chorales of music21's corpus, shipped converted to MIDI (see shipped.py)."""

    name = "bach_chorales"
    Config = BachChoralesConfig

    def units(self) -> list[Unit]:
        folder = music21_corpus_dir() / "bach"
        files = [p for p in folder.iterdir() if p.is_file() and p.name.startswith("bwv")]
        stems = {}
        for p in files:
            stem = p.name.rsplit(".", 1)[0]
            if p.suffix.lower() not in (".mxl", ".xml", ".musicxml", ".krn") or stem in NOT_CHORALES:
                continue
            # the same chorale as MusicXML and Humdrum: keep the MusicXML
            if stem in stems and stems[stem].suffix.lower() != ".krn":
                continue
            stems[stem] = p
        return [
            Unit(id=f"bach/{p.name}", group=f"bach/{p.name}", path=str(p))
            for p in sorted(stems.values(), key=lambda p: p.name)
        ]

    def postprocess(self, score: Any) -> Any:
        return satb_tracks(score) if self.config.voices == "satb" else score


# -- folk melodies --------------------------------------------------------------------------

_TUNE_START = re.compile(r"(?m)^X:[ \t]*(\S*)")


def split_abc(text: str) -> tuple[str, list[tuple[str, str]]]:
    """An ABC file -> (file header, [(X number, tune text), ...])."""
    starts = [(m.start(), m.group(1)) for m in _TUNE_START.finditer(text)]
    if not starts:
        return text, []
    header = text[: starts[0][0]]
    tunes = []
    for i, (pos, number) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        tunes.append((number, text[pos:end]))
    return header, tunes


def _header_fields(header: str) -> str:
    """The file header's ABC field lines (comments and free text dropped)."""
    return "".join(
        line + "\n" for line in header.splitlines() if re.match(r"^[A-Za-z]:", line)
    )


@dataclass
class FolkMelodiesConfig(CorpusConfig):
    collections: List[str] = field(
        default_factory=lambda: list(FOLK_COLLECTIONS),
        metadata={"choices": FOLK_COLLECTIONS, "min_items": 1, "help": "which collections (at least one)"},
    )


class FolkMelodies(Music21Corpus):
    """Monophonic folk tunes from music21's corpus (Essen, O'Neill's, Ryan's, Aird's)."""

    name = "folk_melodies"
    Config = FolkMelodiesConfig

    def units(self) -> list[Unit]:
        units: list[Unit] = []
        corpus = music21_corpus_dir()
        for collection in FOLK_COLLECTIONS:
            if collection not in self.config.collections:
                continue
            folder = corpus / collection
            for path in sorted(folder.glob("*.abc")):
                text = path.read_text(encoding="utf-8", errors="replace")
                header, tunes = split_abc(text)
                header = _header_fields(header)
                group = f"{collection}/{path.name}"
                seen: dict[str, int] = {}
                for number, tune in tunes:
                    seen[number] = seen.get(number, 0) + 1
                    suffix = number if seen[number] == 1 else f"{number}-{seen[number]}"
                    units.append(Unit(f"{group}#{suffix}", group, str(path), header + tune))
        return units


def build_archive(
    collection: str,
    units: list[Unit],
    cache_root: str | Path,
    out_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool = True,
) -> Path:
    """Convert ``units`` (all of one collection) through the cache store (conversions already in
    ``cache_root`` are reused), then write ``music21_<collection>.zip``; returns its path."""
    from .shipped import BLOB, FORMAT, MANIFEST, archive_path, source_digest

    store = CorpusStore(Path(cache_root), collection)
    store.ensure(units, workers=workers, progress=progress, desc=f"converting {collection}")
    manifest = store.manifest()
    shards: dict[str, bytes] = {}
    entries: dict[str, dict[str, Any]] = {}
    blobs: list[bytes] = []
    offset = 0
    for unit in sorted(units, key=lambda u: u.id):
        entry = manifest[unit.id]
        item: dict[str, Any] = {"group": unit.group, "title": entry.get("title", ""), "source": source_digest(unit)}
        if "error" in entry:
            item["error"] = entry["error"]
        else:
            shard = entry["shard"]
            if shard not in shards:
                shards[shard] = (store.dir / shard).read_bytes()
            blob = shards[shard][entry["offset"] : entry["offset"] + entry["length"]]
            item.update(offset=offset, length=len(blob))
            blobs.append(blob)
            offset += len(blob)
        entries[unit.id] = item
    head = {
        "format": FORMAT,
        "collection": collection,
        "music21": music21_version(),
        "converter": CONVERTER_VERSION,
        "entries": entries,
    }
    path = archive_path(collection, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as zf:
        # a fixed timestamp: rebuilding from the same conversions gives the same bytes
        for name, data in ((MANIFEST, json.dumps(head, sort_keys=True, separators=(",", ":")).encode()),
                           (BLOB, b"".join(blobs))):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_LZMA
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path
