"""What ``musicfw tokenize`` and ``musicfw evaluate`` share: the limit options and a clean
exit when the reader of standard output goes away (``musicfw tokenize x.mid | head``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def add_limit_arguments(p: argparse.ArgumentParser) -> None:
    """``--max-notes``, ``--max-tracks``, ``--max-time-signatures``, ``--max-quarters``, ``--max-seconds``, ``--max-tokens``, ``--cut``:
    raise the limits of :mod:`musicfw.music.limits` for this command (on top of
    ``MUSICFW_LIMITS``).  The values are parsed as ``MUSICFW_LIMITS``'s and a ``limits:``
    section's are (:meth:`~musicfw.music.limits.Limits.from_mapping`: ``inf`` is the ceiling
    everywhere, a value above a ceiling is refused everywhere)."""
    g = p.add_argument_group("limits (defaults in docs/reliability.md; also MUSICFW_LIMITS=key=value,...)")
    g.add_argument("--max-notes", metavar="N", help="notes in one piece")
    g.add_argument("--max-tracks", metavar="N", help="tracks in one piece")
    g.add_argument("--max-time-signatures", metavar="N", help="time-signature changes in one piece")
    g.add_argument("--max-quarters", metavar="Q", help="length of a piece in quarter notes")
    g.add_argument("--max-seconds", metavar="S", help="length of a piece in seconds")
    g.add_argument("--max-tokens", metavar="N", help="tokens (or frames) of one encoded piece")
    g.add_argument("--max-file-bytes", metavar="N", help="size of one MIDI file")
    g.add_argument(
        "--cut",
        action="store_true",
        help="cut a piece that is too long or has too many notes to fit, instead of skipping it",
    )


def apply_limit_arguments(args: argparse.Namespace) -> Any:
    """Set the process-wide limits from the options (a ConfigError for a bad value)."""
    from musicfw.music.limits import configure

    values: dict[str, Any] = {}
    for key in ("max_notes", "max_tracks", "max_time_signatures", "max_quarters", "max_seconds", "max_tokens", "max_file_bytes"):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = value
    if getattr(args, "cut", False):
        values["on_exceed"] = "cut"
    return configure(values, where="the command-line limits (--max-...)")


def stdout_closed() -> int:
    """Standard output's reader has gone (a closed pipe): stop writing, exit 0 quietly.

    stdout is pointed at /dev/null so that the interpreter's final flush does not raise
    BrokenPipeError again (Python's documented recipe, docs.python.org/3/library/signal.html
    "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests)
        pass
    return 0
