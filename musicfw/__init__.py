"""musicfw: a plugin-based framework for symbolic music generation.

The public API lives here.  The kernel (contracts, registries, plugin manager) is
:mod:`musicfw.core`; the music library :mod:`musicfw.music`; what runs an experiment
:mod:`musicfw.engine`; the command line :mod:`musicfw.cli`; the built-in plugins
:mod:`musicfw.plugins`.
"""

from __future__ import annotations

import os as _os

# Before torch loads libgomp: its default busy-waiting makes torch's CPU threads fight any
# other busy process. Measured on a loaded 2-core machine: an LSTM training step took 5.7 s
# with 2 spinning threads, 0.17 s with passive waiting (0.24 s with one thread).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .api import (
    build,
    build_dataset,
    build_metric,
    build_model,
    build_sampler,
    build_tokenizer,
    get_registries,
    infill,
    harmonize,
    list_plugins,
    load_config,
    load_data,
    make_config,
    pretrained_models,
    refresh_plugins,
    run,
)
from .core.errors import ConfigError, DataError, PluginError, UserError
from .core.hookspecs import hookimpl
from .core.version import musicfw_version as _musicfw_version
from .engine.pretrained import export_run, load_pretrained

__version__ = _musicfw_version()

__all__ = [
    "__version__",
    "build",
    "build_dataset",
    "build_metric",
    "build_model",
    "build_sampler",
    "build_tokenizer",
    "get_registries",
    "harmonize",
    "export_run",
    "infill",
    "list_plugins",
    "load_data",
    "load_config",
    "load_pretrained",
    "make_config",
    "pretrained_models",
    "refresh_plugins",
    "run",
    "hookimpl",
    "ConfigError",
    "DataError",
    "PluginError",
    "UserError",
]
