"""``midi_folder``: every .mid/.midi file under a folder, however messy the folder is, and
(``scores: true``, the default) every MusicXML, ABC and Humdrum file, converted to MIDI once
and cached by content hash (:mod:`.scorefiles`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from musicfw.core.dataset import MusicDataset, Piece, SplitConfig
from musicfw.core.errors import ConfigError, DataError
from musicfw.core.params import bounded, choice
from musicfw.music.midiload import load_score

from .scorefiles import SCORE_SUFFIXES

from musicfw.music.midiload import MIDI_SUFFIXES  # noqa: E402  (one list for datasets and evaluate)


@dataclass
class MidiFolderConfig(SplitConfig):
    path: str = field(default="", metadata={"help": "folder of MIDI files (or one MIDI file)"})
    recursive: bool = field(default=True, metadata={"help": "also read sub-folders"})
    min_notes: int = bounded(1, ge=0, help="skip files with fewer notes")
    max_files: Optional[int] = bounded(None, ge=0, help="read only the first N files (sorted by path)")
    scores: bool = field(
        default=True,
        metadata={"help": "also read MusicXML (.musicxml .xml .mxl), ABC (.abc) and Humdrum (.krn) "
                  "files, converted to MIDI once and cached"},
    )
    cache_dir: Optional[str] = field(
        default=None,
        metadata={"help": "where converted scores are cached (default: $MUSICFW_CACHE_DIR or "
                  "the user's cache folder)"},
    )
    num_workers: int = bounded(
        0, ge=0,
        help="processes reading and tokenizing the files into token shards (format "
        "shards) and converting scores the first time (0: all cores)",
    )
    format: str = choice(
        "auto", ("auto", "cache", "shards"),
        "token storage: cache (one memory-mapped array, read in one process), "
        "shards (Arrow shards prepared in parallel, resumable, checked; docs/scaling.md), "
        "auto: shards from 2,000 files on",
    )
    shard_files: int = bounded(500, ge=1, help="format shards: about this many files per shard")


class MidiFolder(MusicDataset):
    """Your own MIDI (and MusicXML/ABC/Humdrum) files: a folder, searched recursively; bad
    files are skipped with a reason."""

    name = "midi_folder"
    Config = MidiFolderConfig
    non_semantic_fields = MusicDataset.non_semantic_fields + ("format", "shard_files")

    def __init__(self, config: MidiFolderConfig | None = None):
        super().__init__(config)
        if not self.config.path:
            raise ConfigError(
                "The midi_folder dataset needs a folder: set data.path (for example "
                "`data: {name: midi_folder, path: my_midi/}` or the override data.path=my_midi/)."
            )

    def suffixes(self) -> tuple[str, ...]:
        return MIDI_SUFFIXES + (SCORE_SUFFIXES if self.config.scores else ())

    def files(self) -> tuple[Path, list[Path]]:
        root, listing = self._listing()
        return root, [Path(full) for _, full in listing]

    def _listing(self) -> tuple[Path, list[tuple[str, str]]]:
        """``(root, [(path relative to root, in posix form; full path)])`` of the files with a
        known suffix, sorted by the relative path.  ``os.scandir`` strings, not ``Path``
        objects: for a folder of 20,000 files the ``pathlib`` version cost more than parsing
        all of them (benchmarks/data.py)."""
        root = Path(self.config.path).expanduser()
        if not root.exists():
            raise DataError(f"MIDI folder not found: {root} (data.path).")
        if root.is_file():
            return root.parent, [(root.name, str(root))]
        suffixes = self.suffixes()
        found: list[tuple[str, str]] = []
        folders = [(str(root), "")]
        while folders:  # symlinked folders are not entered (as Path.rglob)
            folder, prefix = folders.pop()
            try:
                entries = list(os.scandir(folder))
            except OSError:  # unreadable folder: skipped, as Path.rglob does
                continue
            for entry in entries:
                rel = prefix + entry.name
                try:
                    if self.config.recursive and entry.is_dir(follow_symlinks=False):
                        folders.append((entry.path, rel + "/"))
                    elif os.path.splitext(entry.name)[1].lower() in suffixes and entry.is_file():
                        found.append((rel, entry.path))
                except OSError:
                    continue
        found.sort(key=lambda x: x[0])
        if not found:
            where = "or its sub-folders " if self.config.recursive else ""
            raise DataError(
                f"No MIDI file ({', '.join(suffixes)}) in {root} {where}(data.path)."
            )
        if self.config.max_files is not None:
            found = found[: max(int(self.config.max_files), 0)]
        return root, found

    def sources(self) -> list[tuple[str, str]]:
        return [(full, rel) for rel, full in self._listing()[1]]

    def read_source(self, path: str, name: str) -> tuple[list[Piece], list[tuple[str, str]]]:
        file = Path(path)
        min_notes = max(int(self.config.min_notes), 1)
        if file.suffix.lower() in SCORE_SUFFIXES and self.config.scores:
            from .scorefiles import read_scores

            converted = read_scores([file], cache_dir=self.config.cache_dir, min_notes=min_notes,
                                    workers=1, progress=False)
            return self._score_pieces(file, name, converted[file])
        score, reason = load_score(file, min_notes=min_notes)
        if reason is not None:
            return [], [(str(file), reason)]
        return [Piece(id=name, score=score, source=str(file), title=file.stem)], []

    @staticmethod
    def _score_pieces(path: Path, rel: str, entries: list) -> tuple[list[Piece], list[tuple[str, str]]]:
        """MusicXML / ABC / Humdrum: one piece per tune."""
        pieces, skipped = [], []
        for tune, score, title, reason in entries:
            name = f"{rel}#{tune}" if tune and len(entries) > 1 else rel
            if reason is not None:
                skipped.append((f"{path}#{tune}" if tune and len(entries) > 1 else str(path), reason))
                continue
            pieces.append(Piece(id=name, score=score, group=rel, source=str(path), title=title or path.stem))
        return pieces, skipped

    def collect(self, progress: bool = True) -> tuple[list[Piece], list[tuple[str, str]]]:
        root, files = self.files()
        pieces: list[Piece] = []
        skipped: list[tuple[str, str]] = []
        min_notes = max(int(self.config.min_notes), 1)
        score_files = [p for p in files if p.suffix.lower() in SCORE_SUFFIXES and self.config.scores]
        converted = {}
        if score_files:
            from .scorefiles import read_scores

            converted = read_scores(
                score_files, cache_dir=self.config.cache_dir, min_notes=min_notes,
                workers=self.config.num_workers, progress=progress,
            )
        for path in files:
            rel = path.relative_to(root).as_posix()
            if path in converted:  # MusicXML / ABC / Humdrum: one piece per tune
                got, lost = self._score_pieces(path, rel, converted[path])
            else:
                got, lost = self.read_source(str(path), rel)
            pieces.extend(got)
            skipped.extend(lost)
        if not pieces:
            reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:5])
            more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
            raise DataError(
                f"None of the {len(files)} MIDI files in {root} could be loaded: {reasons}{more}."
            )
        return pieces, skipped
