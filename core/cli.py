"""The ``musicfw`` command line.

Each sub-command lives in its own module under :mod:`musicfw.core.commands` with two
functions: ``add_parser(subparsers)`` and ``main(args) -> int``.  Modules are imported when
the parser is built; they must stay cheap (torch and Lightning load inside ``main``).

User mistakes (:class:`~musicfw.core.errors.UserError`) print one paragraph and exit 2; any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap

from .errors import UserError

#: sub-command modules, in the order ``musicfw --help`` lists them
COMMANDS = ("run", "plugins", "data", "tokenize", "generate", "evaluate", "sample", "interpolate")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("musicfw")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musicfw",
        description="musicfw: train, sample and evaluate symbolic music models from one YAML file.",
        epilog="Run `musicfw COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"musicfw {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"musicfw.core.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
        message = textwrap.fill(str(exc), width=100, break_long_words=False, break_on_hyphens=False)
        print(f"musicfw {args.command}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("musicfw: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
