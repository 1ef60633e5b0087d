"""Re-export of :mod:`musicfw.music.notes` (the flat note arrays a ``notes``-input metric reads)."""

from musicfw.music.notes import DEFAULT_BAR_QUARTERS, PieceNotes, piece_notes  # noqa: F401
