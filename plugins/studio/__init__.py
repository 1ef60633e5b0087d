"""``musicfw studio``: play with a model in the browser (a local web app and its HTTP/JSON API).

A built-in plugin written as a third-party one would be: it adds the ``studio`` verb through the
public ``musicfw_register_commands`` hook.  This module stays cheap to import; the web app
(:mod:`.server`), the model list (:mod:`.catalog`), the actions (:mod:`.actions`), the pieces
(:mod:`.pieces`) and the jobs (:mod:`.jobs`) load when the command runs.  See docs/studio.md.
"""

from __future__ import annotations

import argparse
from typing import Any

from musicfw.core.command import Command
from musicfw.core.hookspecs import hookimpl


class Studio(Command):
    name = "studio"
    help = ("play with a model in the browser: continue, follow chords, infill bars, harmonise, sample, interpolate, "
            "blend (a local web app)")
    description = (
        "Serve the studio page on 127.0.0.1: load a MIDI file or play notes on the on-screen (or a Web MIDI) "
        "keyboard, pick a model and a sampler, continue the piece, follow a chord progression, infill bars, "
        "harmonise a melody, or sample, interpolate and blend with a MusicVAE (whatever the model supports), see the result as a piano roll, "
        "hear it, keep or regenerate it, undo, and download the MIDI. The page talks to an HTTP/JSON API with "
        "streaming and cancel that scripts can use too (docs/studio.md)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        source = parser.add_mutually_exclusive_group()
        source.add_argument("--run", metavar="RUN", help="a run folder (musicfw run) to start with")
        source.add_argument("--model", metavar="PATH|NAME",
                            help="a shipped model (musicfw models), an exported model folder (musicfw export), "
                                 "hf:OWNER/NAME, or the name of a model an installed model source offers")
        parser.add_argument("--runs", metavar="DIR", default=None,
                            help="also list every run folder under DIR (e.g. runs/) in the page's model menu")
        parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
        parser.add_argument("--token", default=None,
                            help="the token the page's address carries (default: a random one, printed)")
        parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                            help="another host name the browser may use in the address (IP addresses and localhost "
                                 "are always accepted; repeatable)")
        parser.add_argument("--soundfont", default=None, metavar="SF2",
                            help="General MIDI soundfont for the audio (default: $MUSICFW_SOUNDFONT or the Debian "
                                 "TimGM6mb); without one the page plays its own synthesiser")

    def run(self, args: argparse.Namespace, context: Any) -> int:
        from musicfw.core.errors import ConfigError

        from .catalog import Catalog, entry_for, entry_point_sources, run_entry, runs_under, shipped_entries

        if not 0 < args.port < 65536:
            raise ConfigError(f"--port must be between 1 and 65535, got {args.port}.")
        if args.token is not None and (len(args.token) < 8 or not args.token.isascii()
                                       or not args.token.replace("-", "").replace("_", "").isalnum()):
            raise ConfigError("--token must be at least 8 characters of letters, digits, '-' or '_'.")
        entries = []
        if args.run:
            from musicfw.engine.rundir import RunFolder

            entries.append(run_entry(RunFolder.open(args.run).path))
        elif args.model:
            entries.append(entry_for(args.model))
        if args.runs:
            entries.extend(runs_under(args.runs))
        catalog = Catalog(context.registries, entries, entry_point_sources())
        if not catalog.entries:
            raise ConfigError("musicfw studio needs a model: --run RUN, --model PATH|NAME, or --runs DIR holding run folders.")
        catalog.add(shipped_entries())  # the shipped models join the menu (musicfw models)
        from .server import serve

        serve(catalog, entries[0].id if entries else None, port=args.port, token=args.token,
              allow_hosts=args.allow_host, soundfont=args.soundfont)
        return 0


@hookimpl
def musicfw_register_commands(commands):
    commands.add(Studio)
