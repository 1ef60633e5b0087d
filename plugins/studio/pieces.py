"""The studio's pieces: uploaded, played on the keyboard, or generated; each held per session.

A session is a temporary folder (``tempfile.mkdtemp``) and a dict of pieces; a piece is a
``symusic.Score`` with the indices of its *generated* tracks (what the last action made, marked
on the piano roll).  Nothing a client sends becomes a path: pieces are named by random ids, an
upload's file name is kept as a label only, and every file the studio writes is
``<session folder>/<piece id>.mid`` or ``.wav``.

Bounds (hostile input): an upload is at most ``limits.max_file_bytes`` (read in chunks, refused as
soon as it is over), parsed by the one MIDI loader (:func:`musicfw.music.midiload.parse_score`)
and checked against every piece limit (notes, tracks, length; ``on_exceed: cut`` cuts it); a
played piece is at most :data:`MAX_PLAYED_NOTES` notes of at most :data:`MAX_PLAYED_SECONDS`; a
session holds at most :data:`MAX_PIECES` pieces (the oldest go first) and the server at most
:data:`MAX_SESSIONS` sessions (the least recently used go first, folder and all).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from musicfw.core.errors import DataError

MAX_PIECES = 256
MAX_SESSIONS = 32
MAX_PLAYED_NOTES = 4096
MAX_PLAYED_SECONDS = 600.0
#: ticks per quarter of a played piece
PLAYED_TPQ = 480
LABEL_CHARS = 80
#: bar lines a piece's description lists at most
MAX_BAR_LINES = 10_000


def new_id() -> str:
    return secrets.token_hex(8)


@dataclass
class Piece:
    id: str
    score: Any
    label: str
    generated: list[int] = field(default_factory=list)  # track indices
    origin: str = "upload"  # upload | played | an action's name

    def notes(self) -> list[list[float]]:
        """``[start s, duration s, pitch, velocity, track, generated 0/1, drum 0/1]`` of every note,
        by onset: what the page draws and plays."""
        sec = self.score.to("second")
        rows = []
        for i, track in enumerate(sec.tracks):
            if not len(track.notes):
                continue
            a = track.notes.numpy()
            n = len(a["time"])
            rows.append(np.stack([
                a["time"].astype(np.float64), a["duration"].astype(np.float64), a["pitch"].astype(np.float64),
                a["velocity"].astype(np.float64), np.full(n, i, np.float64),
                np.full(n, 1.0 if i in self.generated else 0.0), np.full(n, 1.0 if track.is_drum else 0.0),
            ], axis=1))
        if not rows:
            return []
        allr = np.concatenate(rows)
        allr = allr[np.argsort(allr[:, 0], kind="stable")]
        return [[round(float(r[0]), 4), round(float(r[1]), 4), int(r[2]), int(r[3]), int(r[4]), int(r[5]), int(r[6])] for r in allr]

    def describe(self, with_notes: bool = True) -> dict[str, Any]:
        out = {"id": self.id, "label": self.label, "origin": self.origin,
               "seconds": round(float(self.score.to("second").end()), 3),
               "notes_total": int(self.score.note_num()), "generated_tracks": list(self.generated)}
        if with_notes:
            out["notes"] = self.notes()
            out["bars"] = self.bars()
        return out

    def bars(self) -> list[float]:
        """The start (seconds) of each bar, from the time signatures (4/4 before the first):
        the bar lines the page draws and lets the musician select (bar 1 starts at 0)."""
        sec = self.score.to("second")
        end = float(sec.end())
        starts = np.asarray(sec.get_downbeats(), dtype=np.float64)[:MAX_BAR_LINES]
        return [round(float(t), 4) for t in starts if t <= end]


class Session:
    def __init__(self, root: Path):
        self.id = new_id()
        self.folder = Path(tempfile.mkdtemp(prefix=f"session-{self.id}-", dir=root))
        self.pieces: OrderedDict[str, Piece] = OrderedDict()
        self.used = time.monotonic()
        self.lock = threading.Lock()

    def add(self, score: Any, label: str, generated: list[int] | None = None, origin: str = "upload") -> Piece:
        piece = Piece(new_id(), score, clean_label(label), list(generated or []), origin)
        with self.lock:
            self.pieces[piece.id] = piece
            while len(self.pieces) > MAX_PIECES:
                old, _ = self.pieces.popitem(last=False)
                for suffix in (".mid", ".wav"):
                    (self.folder / f"{old}{suffix}").unlink(missing_ok=True)
        return piece

    def get(self, piece_id: str) -> Piece:
        with self.lock:
            return self.pieces[piece_id]  # KeyError: unknown

    def midi_path(self, piece: Piece) -> Path:
        path = self.folder / f"{piece.id}.mid"
        if not path.is_file():
            piece.score.dump_midi(str(path))
        return path

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Sessions:
    def __init__(self, root: str | Path | None = None):
        self._own = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="musicfw-studio-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def new(self) -> Session:
        session = Session(self.root)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > MAX_SESSIONS:
                _, old = self._sessions.popitem(last=False)
                old.close()
        return session

    def get(self, session_id: str) -> Session:
        with self._lock:
            session = self._sessions[session_id]  # KeyError: unknown
            self._sessions.move_to_end(session_id)
            session.used = time.monotonic()
            return session

    def close(self) -> None:
        with self._lock:
            for s in self._sessions.values():
                s.close()
            self._sessions.clear()
        if self._own:
            shutil.rmtree(self.root, ignore_errors=True)


def clean_label(text: Any) -> str:
    """A label to show: printable characters only, no folders, at most :data:`LABEL_CHARS`."""
    text = str(text or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if c.isprintable())
    return text[:LABEL_CHARS] or "untitled"


def parse_upload(data: bytes) -> Any:
    """The Score of an uploaded MIDI file, bounded like every MIDI input; DataError with the reason."""
    from musicfw.music.limits import current
    from musicfw.music.midiload import parse_score

    limits = current()
    if len(data) > limits.max_file_bytes:
        raise DataError(f"the file is {len(data):,} bytes, above limits.max_file_bytes={limits.max_file_bytes:,}.")
    score, reason = parse_score(data, min_notes=1, limits=limits)
    if reason is not None:
        raise DataError(f"cannot use this MIDI file: {reason}")
    return score


def played_score(notes: Any, qpm: Any = 120.0, program: Any = 0) -> Any:
    """A Score from notes played on the page: ``[[start s, duration s, pitch, velocity], ...]``
    at ``qpm`` quarters per minute.  DataError naming the first bad value."""
    import symusic

    if not isinstance(notes, list) or not notes:
        raise DataError("notes: send a non-empty list of [start seconds, duration seconds, pitch, velocity].")
    if len(notes) > MAX_PLAYED_NOTES:
        raise DataError(f"notes: {len(notes)} notes; at most {MAX_PLAYED_NOTES} can be sent at once.")
    if isinstance(qpm, bool) or not isinstance(qpm, (int, float)) or not 20 <= qpm <= 400:
        raise DataError(f"qpm must be a number from 20 to 400, got {qpm!r}.")
    if isinstance(program, bool) or not isinstance(program, int) or not 0 <= program <= 127:
        raise DataError(f"program must be an integer from 0 to 127, got {program!r}.")
    rows = []
    for i, n in enumerate(notes):
        if (not isinstance(n, list) or len(n) != 4
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in n)):
            raise DataError(f"notes[{i}]: expected [start seconds, duration seconds, pitch, velocity], got {n!r}.")
        start, dur, pitch, vel = n
        if not (0 <= start <= MAX_PLAYED_SECONDS and 0 < dur <= MAX_PLAYED_SECONDS):
            raise DataError(f"notes[{i}]: start must be 0..{MAX_PLAYED_SECONDS:g} s and duration above 0, got {start!r}, {dur!r}.")
        if not (0 <= pitch <= 127 and 1 <= vel <= 127) or int(pitch) != pitch or int(vel) != vel:
            raise DataError(f"notes[{i}]: pitch must be an integer 0..127 and velocity 1..127, got {pitch!r}, {vel!r}.")
        rows.append((float(start), float(dur), int(pitch), int(vel)))
    per_second = PLAYED_TPQ * float(qpm) / 60.0
    score = symusic.Score(PLAYED_TPQ)
    score.tempos.append(symusic.Tempo(0, float(qpm)))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    track = symusic.Track(program=int(program), name="played")
    for start, dur, pitch, vel in sorted(rows):
        track.notes.append(symusic.Note(int(round(start * per_second)), max(1, int(round(dur * per_second))), pitch, vel))
    score.tracks.append(track)
    return score
