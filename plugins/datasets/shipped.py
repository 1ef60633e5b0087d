"""The bundled corpora, converted to MIDI ahead of time and shipped inside musicfw.

Converting music21's corpora to MIDI the first time takes minutes (music21's parser dominates;
before/after times in docs/scaling.md), and it is the same work on every machine.  So musicfw
ships the result: one archive per music21 collection, ``data/music21_<collection>.zip``, built
by :func:`build_archive` (``python scripts/ship_corpora.py``) with exactly the conversion the
cache uses (:func:`.m21convert.convert`).  The music is in the public domain (Bach's chorale
harmonizations; the Essen folk songs, O'Neill's 1850, Ryan's Mammoth Collection and Aird's Airs
tune collections); the encodings come with music21's corpus, which ships them as well.

An archive is a standard zip file (LZMA) with two members:

* ``manifest.json``: ``{"format", "collection", "music21", "converter", "entries"}`` where
  ``entries`` maps a unit id (``bach/bwv1.6.mxl``, ``essenFolksong/altdeu10.abc#12``) to
  ``{"group", "title", "source", "offset", "length"}`` or, for a piece music21 could not
  convert, ``{"group", "title", "source", "error"}``;
* ``midi.bin``: the MIDI files, one after the other (``offset``/``length`` in bytes).

``source`` is a digest of exactly what was converted (the corpus file's bytes, or the tune's
ABC text with its file header), so a piece is taken from the archive only when the installed
music21 holds the same source; any other piece (a changed corpus file, a new one) is converted
with the installed music21 into the cache as before.  ``shipped: false`` in the dataset's
config converts everything locally instead.

No pickle is read; sizes in the manifest are checked against the archive before slicing.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from .m21convert import Unit

#: bump when the conversion's output changes: old caches are then left alone, not reused
CONVERTER_VERSION = 1
FORMAT = 1
DATA_DIR = Path(__file__).resolve().parent / "data"
MANIFEST, BLOB = "manifest.json", "midi.bin"
#: decompressed size limit of an archive member (the largest real one is ~15 MB)
MAX_MEMBER_BYTES = 256 * 1024 * 1024


def archive_path(collection: str, folder: str | Path | None = None) -> Path:
    return Path(folder or DATA_DIR) / f"music21_{collection}.zip"


def source_digest(unit: Unit) -> str:
    """What the conversion of ``unit`` reads, hashed: the tune's ABC text, else the file."""
    h = hashlib.sha256(b"musicfw-m21-source\0")
    if unit.text is not None:
        h.update(b"abc\0" + unit.text.encode("utf-8"))
    else:
        h.update(b"file\0" + Path(unit.path).read_bytes())
    return h.hexdigest()[:32]


@dataclass
class ShippedCollection:
    """One collection's archive, read into memory on first use."""

    path: Path
    collection: str
    music21: str
    converter: int
    entries: dict[str, dict[str, Any]]
    blob: bytes

    @classmethod
    def read(cls, path: str | Path) -> "ShippedCollection":
        path = Path(path)
        with zipfile.ZipFile(path) as zf:
            members = {info.filename: info for info in zf.infolist()}
            for name in (MANIFEST, BLOB):
                if name not in members:
                    raise ValueError(f"{path}: no {name} in the archive")
                if members[name].file_size > MAX_MEMBER_BYTES:
                    raise ValueError(f"{path}: {name} is {members[name].file_size} bytes, over the limit")
            head = json.loads(zf.read(MANIFEST).decode("utf-8"))
            blob = zf.read(BLOB)
        if head.get("format") != FORMAT:
            raise ValueError(f"{path}: archive format {head.get('format')!r}, expected {FORMAT}")
        return cls(path, str(head["collection"]), str(head["music21"]), int(head["converter"]), dict(head["entries"]), blob)

    def lookup(self, units: Iterable[Unit]) -> dict[str, tuple[bytes | None, str, str | None]]:
        """id -> (MIDI bytes or None, title, error or None) for the units whose source matches."""
        out: dict[str, tuple[bytes | None, str, str | None]] = {}
        for unit in units:
            entry = self.entries.get(unit.id)
            if entry is None or entry.get("group") != unit.group:
                continue
            try:
                if entry.get("source") != source_digest(unit):
                    continue
            except OSError:
                continue
            title = str(entry.get("title", ""))
            if "error" in entry:
                out[unit.id] = (None, title, str(entry["error"]))
                continue
            offset, length = int(entry["offset"]), int(entry["length"])
            if offset < 0 or length <= 0 or offset + length > len(self.blob):
                continue  # a damaged entry: convert that piece instead
            out[unit.id] = (self.blob[offset : offset + length], title, None)
        return out


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> ShippedCollection | None:
    try:
        return ShippedCollection.read(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        import logging

        logging.getLogger("musicfw.data").warning("ignoring the shipped corpus %s: %s", path, exc)
        return None


def shipped(collection: str, folder: str | Path | None = None) -> ShippedCollection | None:
    """The shipped archive of ``collection`` (None if musicfw ships none or it is unreadable)."""
    path = archive_path(collection, folder)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    found = _load(str(path), mtime)
    if found is None or found.collection != collection or found.converter != CONVERTER_VERSION:
        return None
    return found


