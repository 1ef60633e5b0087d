"""The dataset contract, re-exported for the built-in dataset plugins.

It lives in core (:mod:`musicfw.core.dataset`), where third-party dataset plugins import it
from too: ``from musicfw.core.dataset import MusicDataset, Piece, SplitConfig``.
"""

from musicfw.core.dataset import (  # noqa: F401
    CACHE_ENV,
    SPLITS,
    LoadedData,
    MusicDataset,
    Piece,
    SplitConfig,
    assign_splits,
    cache_root,
    check_fractions,
    format_duration,
    score_seconds,
    split_value,
)
from musicfw.music.midiload import check_midi_bytes, parse_score as parse_midi, load_score as read_midi  # noqa: F401,E402
