"""``musicfw infill --run RUN song.mid --bars 5-8``: fill bars of a song with a model trained
to infill (``train.infill.enabled``; musicfw/engine/infill.py, docs/infill.md).

Writes ``--n`` versions of the song, each with those bars replaced and every note outside them
the input's own, into ``--out`` (default: a new ``RUN_DIR/samples/infill-NNN/``, or
``./samples/infill-NNN`` with ``--model``), with ``infill.json`` (settings).  Every check (the
model, the song, the bar range, the context) happens before anything is written; the input
file is only read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from musicfw.core.command import Command


class Infill(Command):
    name = "infill"
    help = "fill bars of a MIDI song with a model trained to infill"
    description = (
        "Replace bars --bars (1-based, inclusive, e.g. 5-8) of SONG.mid with --n versions generated "
        "by a model trained with train.infill.enabled, given the bars before and after them. Notes "
        "outside the range are the input's own. Output: OUT/<song>_infill_<bars>_NNN.mid."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--run", metavar="RUN_DIR", help="a run folder (musicfw run) trained to infill")
        source.add_argument("--model", metavar="NAME|PATH",
                            help="instead: a shipped model (musicfw models) or a folder made by musicfw export")
        p.add_argument("song", metavar="SONG.mid", help="the MIDI file whose bars are filled (read only)")
        p.add_argument("--bars", required=True, metavar="FIRST-LAST", help="the bars to fill, 1-based inclusive: 5-8 or 5")
        p.add_argument("--n", type=int, default=1, help="versions to write (default 1)")
        p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: a new RUN_DIR/samples/infill-NNN)")
        p.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
        p.add_argument(
            "--sampler", nargs="+", action="append", metavar="NAME [key=value ...]",
            help="a sampler and its parameters; repeat to chain (default: the run's sampler)",
        )
        p.add_argument(
            "--controls", default=None, metavar='"density=4,pitch=high"',
            help="attribute controls forced in every filled bar (attribute=level, levels 0..control_levels-1 or "
            "low/mid/high; \"density=1 | density=6\": filled bar by filled bar, repeated); a model whose "
            "tokenizer was trained with controls (remi controls: [...])",
        )
        p.add_argument("--max-tokens", type=int, default=None, help="tokens the filled bars may take in all")
        p.add_argument("--checkpoint", default="auto", help="best, last, a checkpoint path, or auto")

    def run(self, args: argparse.Namespace, context: Any) -> int:
        return infill_command(args, context.registries)


def infill_command(args: argparse.Namespace, registries: Any) -> int:
    import json

    from musicfw.cli.commands.generate import fresh_seed, next_output_dir, parse_sampler_args
    from musicfw.core.errors import ConfigError, DataError
    from musicfw.engine.generation import build_sampler_chain
    from musicfw.engine.infill import check_fill_controls, infill, parse_bars, prepare_song

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}.")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise ConfigError(f"--max-tokens must be >= 1, got {args.max_tokens}.")
    parse_bars(args.bars)  # an empty range before anything is loaded
    if not Path(args.song).is_file():
        raise DataError(f"infill: no such MIDI file {args.song}.")
    from musicfw.engine.loading import open_model

    opened = open_model(args.run, args.model, checkpoint=args.checkpoint, registries=registries)
    loaded = opened.load(registries)
    loaded.require("infill")  # a model not trained to infill: refused naming it
    model, tokenizer, config = loaded.model, loaded.tokenizer, loaded.config
    samples, source = opened.samples, opened.label
    try:
        section: Any = config.sampler
        if args.sampler:
            sections = parse_sampler_args(args.sampler)
            section = sections[0] if len(sections) == 1 else sections
        sampler = build_sampler_chain(section, registries=registries)
    except ConfigError as exc:
        raise type(exc)(f"{exc} (from the --sampler option)" if args.sampler else str(exc)) from None
    prepare_song(tokenizer, args.song, args.bars)  # the model, the song and the range: before any folder exists
    controls = check_fill_controls(tokenizer, args.controls, "--controls") if args.controls is not None else None
    seed = args.seed if args.seed is not None else fresh_seed()
    if args.seed is None:
        print(f"seed {seed} (pass --seed {seed} to reproduce)")
    # generate first, then make the folder: a refusal (context too short) leaves nothing behind
    result = infill(model, tokenizer, args.song, args.bars, sampler=sampler, n=args.n, seed=seed,
                    max_tokens=args.max_tokens, out_dir=None, controls=controls)
    out = Path(args.out) if args.out else next_output_dir(samples, prefix="infill")
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.song).stem
    src = Path(args.song).resolve()
    paths, i = [], 0
    for score in result.scores:
        while True:
            path = out / f"{stem}_infill_{result.bars[0]}-{result.bars[1]}_{i:03d}.mid"
            i += 1
            if not path.exists() and path.resolve() != src:
                break
        score.dump_midi(str(path))
        paths.append(path)
    record = {
        "source": source, "song": str(args.song), "bars": list(result.bars), "song_bars": result.n_bars,
        "n": args.n, "seed": seed, "sampler": repr(sampler), "max_tokens": args.max_tokens,
        "controls": controls,
        "files": [p.name for p in paths],
    }
    (out / "infill.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"filled bars {result.bars[0]}-{result.bars[1]} of {args.song} ({result.n_bars} bars): "
          f"wrote {len(paths)} MIDI files to {out}")
    return 0
