"""musicfw: a plugin-based framework for symbolic music generation.

The public API lives here; the implementation is in :mod:`musicfw.core` and the built-in
plugins in :mod:`musicfw.plugins`.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .core.api import (
    build,
    build_dataset,
    build_metric,
    build_model,
    build_sampler,
    build_tokenizer,
    get_registries,
    list_plugins,
    load_config,
    make_config,
    refresh_plugins,
    run,
)
from .core.errors import ConfigError, DataError, PluginError, UserError
from .core.hookspecs import hookimpl

try:
    __version__ = _metadata.version("musicfw")
except _metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "build",
    "build_dataset",
    "build_metric",
    "build_model",
    "build_sampler",
    "build_tokenizer",
    "get_registries",
    "list_plugins",
    "load_config",
    "make_config",
    "refresh_plugins",
    "run",
    "hookimpl",
    "ConfigError",
    "DataError",
    "PluginError",
    "UserError",
]
