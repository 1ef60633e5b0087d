"""The ``musicfw`` command line.

Core's own sub-commands live in modules under :mod:`musicfw.cli.commands` with two
functions: ``add_parser(subparsers)`` and ``main(args) -> int``.  Plugins add verbs through
the ``musicfw_register_commands`` hook (:mod:`musicfw.core.command`); their names cannot
shadow core's.  Everything is imported when the parser is built, so it must stay cheap
(torch and Lightning load inside ``main``/``run``).

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

#: core's sub-command modules, in the order ``musicfw --help`` lists them (plugin verbs follow)
COMMANDS = ("run", "plugins", "config", "data", "tokenize", "generate", "evaluate", "export")


def build_parser(registries=None) -> argparse.ArgumentParser:
    """The whole parser: core's verbs, then every plugin verb of ``registries`` (loaded here
    when None)."""
    parser = argparse.ArgumentParser(
        prog="musicfw",
        description="musicfw: train, sample and evaluate symbolic music models from one YAML file.",
        epilog="Run `musicfw COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"musicfw {musicfw_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"musicfw.cli.commands.{name}")
        module.add_parser(sub)
    if registries is None:
        from musicfw.core.plugins import load_registries

        registries = load_registries(reserved_commands={name: "musicfw" for name in COMMANDS})
    for info in registries.commands:
        command = info.cls()
        p = sub.add_parser(
            info.name,
            help=f"{command.help} [{info.provider}]" if info.provider != "musicfw" else command.help,
            description=command.description or command.help,
        )
        command.add_arguments(p)
        p.set_defaults(func=_runner(command, registries))
    return parser


@dataclass
class CommandContext:
    """What a plugin command gets besides its arguments: the registries of this invocation."""

    registries: Any

    def build(self, kind: str, name: str, **params: Any) -> Any:
        """Build a plugin with validated parameters (``context={...}`` for a model's tokenizer)."""
        from musicfw.core.build import build

        context = params.pop("context", None)
        return build(kind, name, registries=self.registries, context=context, **params)


def _runner(command, registries):
    def run(args: argparse.Namespace) -> int:
        return command.run(args, CommandContext(registries))

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

