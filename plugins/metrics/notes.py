"""Re-export of :mod:`musicfw.core.notes` (the flat note arrays a ``notes``-input metric reads)."""

from musicfw.core.notes import DEFAULT_BAR_QUARTERS, PieceNotes, piece_notes  # noqa: F401
