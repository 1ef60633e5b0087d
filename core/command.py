"""The command contract: plugins add CLI verbs (``musicfw <verb> ...``), as datasette's
``register_commands`` does.

A command is a class with a ``name`` (the verb), a one-line ``help``, ``add_arguments(parser)``
(an :mod:`argparse` parser of its own) and ``run(args, context) -> int`` (the exit code)::

    class Hello(Command):
        name = "hello"
        help = "say hello"

        def add_arguments(self, parser):
            parser.add_argument("--who", default="world")

        def run(self, args, context):
            print(f"hello {args.who}")
            return 0

    @hookimpl
    def musicfw_register_commands(commands):
        commands.add(Hello)

``context`` is a :class:`musicfw.cli.CommandContext`: the registries of this invocation
(build plugins with ``context.build(kind, name, **params)``).  A :class:`~musicfw.core.errors.UserError`
raised by ``run`` is printed as one paragraph with exit code 2, like core's own commands.
Imports inside ``run`` keep ``musicfw --help`` fast.  Core's own verbs (run, plugins, data,
...) are reserved: a plugin command with one of their names is an error naming both.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

from musicfw.core.errors import PluginError


class Command:
    """Base class of a CLI verb."""

    name: ClassVar[str]
    #: one line for ``musicfw --help``
    help: ClassVar[str] = ""
    #: the paragraph of ``musicfw <verb> --help`` (default: ``help``)
    description: ClassVar[str] = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the verb's options and arguments."""

    def run(self, args: argparse.Namespace, context: Any) -> int:  # pragma: no cover
        """Do the work; ``context`` is a :class:`musicfw.cli.CommandContext`.  Returns the
        exit code."""
        raise TypeError(f"command {self.name!r} does not implement run(args, context)")


@dataclass(frozen=True)
class CommandInfo:
    name: str
    cls: type
    provider: str


class CommandRegistry:
    """Named commands; a name registered twice (or a core verb) is an error naming both."""

    def __init__(self, reserved: dict[str, str] | None = None):
        self._commands: dict[str, CommandInfo] = {}
        self._reserved = dict(reserved or {})
        self.current_provider = "<python api>"
        self.current_version: str | None = None

    def add(self, cls: type) -> type:
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name or name.startswith("-") or " " in name:
            raise PluginError(f"{self.current_provider}: command class {cls!r} needs a `name` (one word, the verb).")
        if not (isinstance(cls, type) and issubclass(cls, Command)):
            raise PluginError(
                f"{self.current_provider}: command {name!r} must subclass musicfw.core.command.Command."
            )
        if name in self._reserved:
            raise PluginError(
                f"{self.current_provider} registers a command {name!r}, but that is musicfw's own "
                f"`{name}` command; choose another name."
            )
        if name in self._commands:
            other = self._commands[name]
            raise PluginError(
                f"Two commands are named {name!r}: one from {other.provider} "
                f"({other.cls.__module__}.{other.cls.__qualname__}) and one from "
                f"{self.current_provider} ({cls.__module__}.{cls.__qualname__}). "
                "Rename one, or block one with MUSICFW_BLOCK_PLUGINS."
            )
        self._commands[name] = CommandInfo(name, cls, self.current_provider)
        return cls

    def names(self) -> list[str]:
        return sorted(self._commands)

    def __iter__(self) -> Iterator[CommandInfo]:
        return iter(self._commands[n] for n in self.names())

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __len__(self) -> int:
        return len(self._commands)
