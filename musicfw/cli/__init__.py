"""The ``musicfw`` command line.

Core's own verbs (run, plugins, config, ...) are :class:`~musicfw.core.command.Command`
classes in :mod:`musicfw.cli.commands`, written exactly as a plugin's verb is: the parser
adds both the same way and calls both with the same :class:`CommandContext`.  One CLI
invocation loads the plugins once (:func:`main` builds the registries and hands them down);
nothing below loads them again.  Plugins add verbs through the ``musicfw_register_commands``
hook; their names cannot shadow core's.  Everything is imported when the parser is built,
so it must stay cheap (torch and Lightning load inside ``run``).

User mistakes (:class:`~musicfw.core.errors.UserError`) print one paragraph and exit 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

from musicfw.core.errors import UserError
from musicfw.core.version import musicfw_version

#: core's verbs (module in musicfw.cli.commands, class), in the order ``musicfw --help`` lists
#: them (plugin verbs follow)
COMMANDS = (
    ("run", "Run"),
    ("plugins", "Plugins"),
    ("config", "ConfigCommand"),
    ("data", "Data"),
    ("tokenize", "Tokenize"),
    ("generate", "Generate"),
    ("infill", "Infill"),
    ("evaluate", "Evaluate"),
    ("export", "Export"),
    ("models", "Models"),
)


def core_commands() -> list[type]:
    """Core's own :class:`~musicfw.core.command.Command` classes, in ``--help`` order."""
    return [getattr(importlib.import_module(f"musicfw.cli.commands.{module}"), cls) for module, cls in COMMANDS]


def reserved_commands() -> dict[str, str]:
    """Core's verbs, which no plugin command may take: ``{verb: "musicfw"}``."""
    return {cls.name: "musicfw" for cls in core_commands()}


def build_parser(registries=None) -> argparse.ArgumentParser:
    """The whole parser: core's verbs, then every plugin verb of ``registries`` (loaded here
    when None); every verb runs with one :class:`CommandContext` holding ``registries``."""
    if registries is None:
        from musicfw.core.plugins import load_registries

        registries = load_registries(reserved_commands=reserved_commands())
    context = CommandContext(registries)
    parser = argparse.ArgumentParser(
        prog="musicfw",
        description="musicfw: train, sample and evaluate symbolic music models from one YAML file.",
        epilog="Run `musicfw COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"musicfw {musicfw_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cls in core_commands():
        _add_command(sub, cls(), None, context)
    for info in registries.commands:
        _add_command(sub, info.cls(), info.provider, context)
    return parser


def _add_command(sub: Any, command: Any, provider: str | None, context: "CommandContext") -> None:
    """One verb, core's or a plugin's (``provider`` names a plugin's distribution)."""
    shown = f"{command.help} [{provider}]" if provider and provider != "musicfw" else command.help
    p = sub.add_parser(command.name, help=shown, description=command.description or command.help)
    command.add_arguments(p)
    p.set_defaults(func=_runner(command, context))


@dataclass
class CommandContext:
    """What every command, core's and a plugin's, gets besides its arguments: the registries
    of this invocation (the plugins, loaded once)."""

    registries: Any

    def build(self, kind: str, name: str, **params: Any) -> Any:
        """Build a plugin with validated parameters (``context={...}`` for a model's tokenizer)."""
        from musicfw.core.build import build

        context = params.pop("context", None)
        return build(kind, name, registries=self.registries, context=context, **params)


def _runner(command, context):
    def run(args: argparse.Namespace) -> int:
        return command.run(args, context)

    return run


def _print_error(command: str, exc: UserError) -> int:
    message = textwrap.fill(str(exc), width=100, break_long_words=False, break_on_hyphens=False)
    print(f"musicfw {command}: error: {message}", file=sys.stderr)
    return exc.exit_code


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except UserError as exc:  # e.g. two plugins with one name
        return _print_error("(plugins)", exc)
    args, extra = parser.parse_known_args(argv)
    # `key=value` overrides may also follow an option (`run exp.yaml --resume DIR a.b=1`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        return _print_error(args.command, exc)
    except KeyboardInterrupt:
        print("musicfw: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`musicfw tokenize song.mid | head`): what it read was all it
        # wanted; silence the flush at exit instead of printing a traceback
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0

