"""``musicfw play``: stream generation to a MIDI output port in real time, and answer what is
played on an input port (call and response).

A built-in plugin written as a third-party one would be: it adds the ``play`` verb through the
public ``musicfw_register_commands`` hook.  This module stays cheap to import; mido/rtmidi
(:mod:`.ports`) and the scheduler (:mod:`.player`) load when the command runs.  See docs/live.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from musicfw.core.command import Command
from musicfw.core.hookspecs import hookimpl


class Play(Command):
    name = "play"
    help = "play generated music on a MIDI port in real time; with --in, answer what you play (call and response)"
    description = (
        "Stream generation to a MIDI output port note by note (each note as soon as it is generated; playback "
        "starts --buffer seconds after the opening onset and generation runs ahead of it) (--out virtual:NAME "
        "opens a virtual port a DAW can record). With --in PORT it listens, and "
        "when you pause it answers with a continuation of what you played, in its tempo, then listens again. "
        "Needs mido and python-rtmidi: pip install \"musicfw[live]\" (docs/live.md)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--run", metavar="RUN", help="a run folder (musicfw run)")
        source.add_argument("--model", metavar="PATH|NAME",
                            help="a shipped model (musicfw models), an exported model folder (musicfw export), "
                                 "or hf:OWNER/NAME")
        parser.add_argument("--out", required=True, metavar="PORT",
                            help="MIDI output port name, or virtual:NAME for a new virtual port")
        parser.add_argument("--in", dest="inport", default=None, metavar="PORT",
                            help="MIDI input port: call and response (or virtual:NAME)")
        parser.add_argument("--bars", type=int, default=16, help="bars to play (each answer's length with --in; default 16, 2 with --in)")
        parser.add_argument("--tempo", type=float, default=None, metavar="BPM",
                            help="tempo (default: the model's output tempo; with --in, estimated from your onsets)")
        parser.add_argument("--silence", type=float, default=1.5, metavar="SECONDS",
                            help="with --in: a pause this long ends your phrase (default 1.5)")
        parser.add_argument("--lookahead", type=float, default=0.0, metavar="BARS",
                            help="bars generated before playback starts (default 0: play once the first onset's notes "
                                 "are out)")
        parser.add_argument("--buffer", type=float, default=None, metavar="SECONDS",
                            help="playback starts this long after the first onset is ready (default 0.05): the "
                                 "look-ahead at the start, which grows while generation outpaces the music")
        parser.add_argument("--generator", choices=("process", "thread"), default=None,
                            help="generate in a forked, niced process (default on Linux: the MIDI sender shares no "
                                 "interpreter lock with it) or in this process")
        parser.add_argument("--sampler", default=None, help="sampler name (default: the model's own setting)")
        parser.add_argument("--temperature", type=float, default=None)
        parser.add_argument("--seed", type=int, default=0)

    def run(self, args: argparse.Namespace, context: Any) -> int:
        from musicfw.core.errors import ConfigError

        if args.bars is not None and not 0 < args.bars <= 10000:
            raise ConfigError(f"--bars must be between 1 and 10000, got {args.bars}.")
        if args.tempo is not None and not 10 <= args.tempo <= 400:
            raise ConfigError(f"--tempo must be between 10 and 400 BPM, got {args.tempo}.")
        if not 0.1 <= args.silence <= 60:
            raise ConfigError(f"--silence must be between 0.1 and 60 seconds, got {args.silence}.")
        if args.buffer is not None and not 0 <= args.buffer <= 60:
            raise ConfigError(f"--buffer must be between 0 and 60 seconds, got {args.buffer}.")
        if not 0 <= args.lookahead <= 64:
            raise ConfigError(f"--lookahead must be between 0 and 64 bars, got {args.lookahead}.")
        from .ports import open_port

        out = open_port(args.out, output=True)  # the port first: a missing backend is told before a model loads
        inport = open_port(args.inport, output=False) if args.inport else None
        try:
            model, tokenizer, sampler = load_for_play(args, context)
            return play(model, tokenizer, sampler, out, inport, args)
        finally:
            out.close()
            if inport is not None:
                inport.close()


def load_for_play(args: argparse.Namespace, context: Any) -> tuple[Any, Any, Any]:
    """The model, its tokenizer and the sampler: ``--sampler``/``--temperature`` if given, else
    the run's (or exported folder's) own sampler section."""
    from musicfw.engine.generation import build_sampler_chain
    from musicfw.engine.loading import open_model

    loaded = open_model(args.run, args.model, registries=context.registries).load(context.registries)
    section: Any = loaded.sampler
    if args.sampler is not None or args.temperature is not None:
        section = {"name": args.sampler or "temperature"}
        if args.temperature is not None:
            section["temperature"] = args.temperature
    return loaded.model.eval(), loaded.tokenizer, build_sampler_chain(section, registries=context.registries)


def play(model: Any, tokenizer: Any, sampler: Any, out: Any, inport: Any, args: argparse.Namespace) -> int:
    import threading

    from musicfw.engine.generation import GenerationCancelled

    from .player import BUFFER_SECONDS, GeneratorProcess, Scheduler, call_and_response, stream_generation, warm_up

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    import torch

    torch.set_num_threads(1)  # batch 1: one thread is fastest, and leaves the other core to the sender
    warm_up(model, tokenizer, sampler)  # the first forward pass belongs to loading, not to the first note
    use_process = (args.generator or ("process" if sys.platform.startswith("linux") else "thread")) == "process"
    # started before the clock: a stream's first note does not wait for a fork
    process = GeneratorProcess(model, tokenizer, sampler) if use_process else False
    buffer = BUFFER_SECONDS if args.buffer is None else args.buffer
    sched = Scheduler(out)
    stop = threading.Event()
    try:
        if inport is None:
            stats = stream_generation(model, tokenizer, sampler, sched, bars=args.bars, bpm=args.tempo, seed=args.seed,
                                      lookahead_bars=args.lookahead, buffer=buffer, cancel=stop, say=say,
                                      process=process)
            lat = stats.extra.get("lateness", {})
            say(f"played {stats.notes} notes, {stats.music_seconds:.1f} s of music; generated at "
                f"{stats.realtime_factor:.1f}x real time; first note after {1000 * (stats.first_note_seconds or 0):.0f} ms; "
                f"{stats.late} of {stats.messages} messages late by more than 20 ms (p99.9 "
                f"{lat.get('p999_ms', 0):.1f} ms, max {lat.get('max_ms', 0):.1f} ms); {stats.underruns} underruns")
        else:
            say(f"listening on {args.inport}; play, then pause {args.silence:g} s for an answer (Ctrl-C stops)")
            call_and_response(model, tokenizer, sampler, sched, inport, bars=args.bars or 2, silence=args.silence,
                              bpm=args.tempo, seed=args.seed, stop=stop, say=say, process=process)
    except (KeyboardInterrupt, GenerationCancelled):
        stop.set()
        say("stopped: all notes off")
    finally:
        sched.stop()
        if process:
            process.close()
    return 0


@hookimpl
def musicfw_register_commands(commands):
    commands.add(Play)
