"""One way to read a MIDI file, with one set of reasons for the files that cannot be used.

Every reader of user MIDI (the ``midi_folder`` dataset, ``musicfw evaluate``, ``musicfw
tokenize``) goes through :func:`load_score`, so a file is either used by all of them or
skipped by all of them with the same reason:

* the bytes are checked first (:func:`check_midi_bytes`): empty, too short, no ``MThd``,
  a corrupt header, 0 ticks per quarter, a track count the file does not hold, a chunk
  running past the end of the file (symusic reads some of these without complaint);
* symusic parses the file (its error message becomes ``unreadable MIDI: ...``);
* a file with no note, or fewer than ``min_notes``, is skipped (``no notes``);
* the piece must fit :mod:`musicfw.music.limits` (``too large: ...`` / ``unusable ...``); with
  ``limits.on_exceed == "cut"`` a piece that is too long is cut to fit instead.

The functions never raise for bad input; they return ``(None, reason)``.  This module imports
the standard library and numpy only (symusic is imported when a file is parsed).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from musicfw.music.limits import ENV, Limits, PieceRejected, check_piece, current


#: the file names read as Standard MIDI Files, everywhere (datasets, evaluate)
MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")


def check_midi_bytes(data: bytes) -> str | None:
    """Why these bytes are not a usable Standard MIDI File (None if the structure is sound).

    Checks what symusic's parser lets through: the header's track count against the chunks
    the file holds, and chunk lengths running past the end of the file.
    """
    if len(data) == 0:
        return "empty file (0 bytes)"
    if len(data) < 14:
        return f"too short to be a MIDI file ({len(data)} bytes)"
    if data[:4] != b"MThd":
        return "not a MIDI file (no MThd header)"
    (hlen,) = struct.unpack(">I", data[4:8])
    if hlen < 6 or 8 + hlen > len(data):
        return f"corrupt MIDI header (length {hlen})"
    fmt, ntrks, division = struct.unpack(">HHH", data[8:14])
    if fmt > 2:
        return f"unknown MIDI format {fmt}"
    if division == 0:
        return "corrupt MIDI header (0 ticks per quarter)"
    if division & 0x8000:
        return "SMPTE time division (frames per second) is not supported; musicfw needs ticks per quarter"
    pos, tracks = 8 + hlen, 0
    while pos + 8 <= len(data) and tracks < ntrks:
        chunk = data[pos : pos + 4]
        (clen,) = struct.unpack(">I", data[pos + 4 : pos + 8])
        if pos + 8 + clen > len(data):
            if chunk == b"MTrk":
                return (
                    f"truncated: track {tracks + 1} claims {clen} bytes but only "
                    f"{len(data) - pos - 8} remain"
                )
            break
        if chunk == b"MTrk":
            tracks += 1
        pos += 8 + clen
    if tracks < ntrks:
        return f"the header declares {ntrks} tracks but the file holds {tracks}"
    return None


def parse_score(
    data: bytes, min_notes: int = 1, limits: Limits | None = None, check_limits: bool = True
) -> tuple[Any, str | None]:
    """``(score, None)`` or ``(None, reason)`` for the bytes of a MIDI file.

    ``check_limits=False`` leaves the limits (and the cut) to the caller: a tokenizer checks
    them itself and reports a cut in its coverage."""
    reason = check_midi_bytes(data)
    if reason is not None:
        return None, reason
    import symusic

    try:
        score = symusic.Score.from_midi(data)
    except Exception as exc:  # symusic reports malformed events as RuntimeError
        message = str(exc).replace("MiniMidi: ", "").replace(": iostream error", "").strip()
        return None, f"unreadable MIDI: {message}"
    n = int(score.note_num())
    if n == 0:
        return None, "no notes"
    if n < min_notes:
        return None, f"only {n} notes (min_notes={min_notes})"
    if not check_limits:
        return score, None
    try:
        score = check_piece(score, limits)
    except PieceRejected as exc:
        return None, str(exc)
    return score, None


def load_score(
    path: str | os.PathLike, min_notes: int = 1, limits: Limits | None = None, check_limits: bool = True
) -> tuple[Any, str | None]:
    """``(score, None)`` or ``(None, reason)`` for one file; never raises for bad input.

    ``limits`` defaults to :func:`musicfw.music.limits.current`."""
    limits = limits or current()
    try:
        size = Path(path).stat().st_size
        if size > limits.max_file_bytes:
            return None, (
                f"too large: file of {size:,} bytes > limits.max_file_bytes={limits.max_file_bytes:,} "
                f"(raise it with limits.max_file_bytes or {ENV}=max_file_bytes=N)"
            )
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"cannot read the file: {exc.strerror or exc}"
    return parse_score(data, min_notes, limits, check_limits)


def read_midi_source(dataset: Any, path: str, name: str) -> tuple[list, list[tuple[str, str]]]:
    """The pieces of one source file of ``dataset``: its own :meth:`read_source` where it has
    one, else the file as one MIDI piece named ``name`` through :func:`load_score` (limits
    checked; a bad file is skipped with its reason)."""
    got = dataset.read_source(path, name)
    if got is not None:
        return got
    from pathlib import Path

    from musicfw.core.dataset import Piece

    min_notes = max(int(getattr(dataset.config, "min_notes", 1) or 1), 1)
    score, reason = load_score(path, min_notes=min_notes)
    if reason is not None:
        return [], [(str(path), reason)]
    return [Piece(id=name, score=score, source=str(path), title=Path(path).stem)], []
