"""musicfw's own version: the one lookup, from the installed distribution's metadata.

The version is written once, in ``pyproject.toml``; the installed metadata carries it
(``importlib.metadata``); a source tree that was never installed says ``0+unknown``.
Everything that records or prints musicfw's version (``musicfw --version``,
``musicfw.__version__``, token-cache keys, exports, ``metrics.json``, listening studies)
calls :func:`musicfw_version`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata

UNKNOWN = "0+unknown"


@lru_cache(maxsize=None)
def musicfw_version() -> str:
    """The installed musicfw's version, or ``0+unknown`` when it is not installed."""
    try:
        return metadata.version("musicfw")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return UNKNOWN
