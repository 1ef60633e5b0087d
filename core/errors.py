"""Exception types.

``UserError`` and its subclasses are mistakes a user can make (a bad config, a missing
file, an unknown plugin name).  The CLI prints them as one paragraph, without a traceback,
and exits with status 2.  Any other exception is a bug of ours and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: printed without a traceback, exit code 2."""

    exit_code = 2


class ConfigError(UserError):
    """A bad experiment file, key, value or override."""


class PluginError(UserError):
    """A plugin name that is unknown, duplicated, or a plugin config that does not fit."""


class DataError(UserError):
    """Input data that cannot be used (no loadable file in a folder, a missing corpus, ...)."""


class RunFolderError(UserError):
    """A run folder that is missing or lacks what a command needs."""


class NonFiniteLossError(UserError):
    """Training produced a NaN/inf loss or gradient; the run stopped before applying it."""
