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
    check_midi_bytes,
    format_duration,
    parse_midi,
    read_midi,
    score_seconds,
    split_value,
)
