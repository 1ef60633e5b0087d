"""Harmonisation: ``musicfw harmonize --run RUN|--model NAME|FOLDER melody.mid``.

A built-in plugin written as a third-party one would be: it adds the ``harmonize`` verb through
the public ``musicfw_register_commands`` hook.  The model is any token language model
(Transformer, LSTM) trained on the ``tracks`` tokenizer (voices as MMM-style tracks,
:mod:`musicfw.plugins.tokenizers.tracks`); the decoding is :mod:`.harmonize`.  This module stays
cheap to import (the CLI imports it at start-up).  See docs/harmonize.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from musicfw.core.command import Command
from musicfw.core.hookspecs import hookimpl


class Harmonize(Command):
    name = "harmonize"
    help = "write the missing voices of a piece (alto, tenor, bass under a soprano, or the reverse)"
    description = (
        "Harmonise FILE.mid with a model trained on the tracks tokenizer (examples/harmonize_chorales.yaml): "
        "the given voices (tracks named after them, or a file with as many unnamed tracks) are read, the "
        "others written, --n times. Each output is the input with the written voices added as tracks; "
        "the given notes are unchanged. Outputs go to a new RUN/samples/harmonize-NNN (./samples/"
        "harmonize-NNN with --model) unless --out is given."
    )
    epilog = (
        "Examples: musicfw harmonize --run runs/harmonize_chorales-... melody.mid   |   "
        "musicfw harmonize --run RUN lower.mid --given alto,tenor,bass   |   --voices bass (write only the bass)   |   "
        "--controls \"bass:pitch=low,alto:density=1\" (a model trained with tokenizer.controls)"
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.epilog = self.epilog
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--run", metavar="RUN_DIR", help="a run folder (musicfw run)")
        source.add_argument("--model", metavar="NAME|FOLDER",
                            help="instead: a shipped model (musicfw models) or a folder made by musicfw export")
        p.add_argument("file", metavar="FILE.mid", help="the piece holding the given voices (never changed)")
        p.add_argument("--voices", default=None, metavar="alto,tenor,bass",
                       help="voices to write (default: every voice the model knows that is not given)")
        p.add_argument("--given", default=None, metavar="soprano",
                       help="voices the file holds (default: those it has tracks named after, else the first voice not "
                       "written: a one-track melody is the soprano); a file whose tracks carry no voice name gives "
                       "them to the given voices in order when it has exactly as many")
        p.add_argument("--controls", default=None, metavar="density=high | bass:pitch=low,...",
                       help="attribute levels for the written voices (a model trained with tokenizer.controls): "
                       "attribute=level for every written voice, voice:attribute=level for one, '|' between "
                       "segments; or a YAML file holding such a string, a mapping or a list of them (docs/harmonize.md)")
        p.add_argument("--forbid-parallels", action="store_true",
                       help="no written note may move in parallel fifths or octaves with a voice known at its onset "
                            "(the textbook rule; default: the model's own choice)")
        p.add_argument("--pitch-temperature", type=float, default=None, metavar="T",
                       help="a temperature for the choice among pitches only, after the sampler's own: below 1 "
                            "likelier pitches, the rhythm left as the model has it (default: none)")
        p.add_argument("--n", type=int, default=4, help="harmonisations to write (default 4)")
        p.add_argument("--seed", type=int, default=None,
                       help="random seed (default: a fresh one, printed, so each call draws new voices)")
        p.add_argument("--sampler", nargs="+", action="append", metavar="NAME [key=value ...]",
                       help="a sampler and its parameters; repeat to chain (default: the run's sampler)")
        p.add_argument("--batch-size", type=int, default=8, help="harmonisations written together")
        p.add_argument("--checkpoint", default="auto", help="best, last, a checkpoint path, or auto (--run only)")
        p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: a new .../samples/harmonize-NNN)")
        p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")

    def run(self, args: argparse.Namespace, context: Any) -> int:
        return run_harmonize(args, context.registries)


def run_harmonize(args: argparse.Namespace, registries: Any) -> int:
    """``musicfw harmonize`` (see :class:`Harmonize`)."""
    import json

    from musicfw.cli.commands.generate import fresh_seed, next_output_dir, parse_sampler_args
    from musicfw.core.errors import ConfigError

    from .harmonize import check_harmonizer, harmonize, read_input, resolve_voices

    if args.n < 1 or args.batch_size < 1:
        raise ConfigError(f"--n and --batch-size must be >= 1, got {args.n} and {args.batch_size}.")
    score = read_input(args.file)  # a missing or unreadable file fails before the model loads
    from musicfw.engine.loading import open_model

    opened = open_model(args.run, args.model, checkpoint=args.checkpoint, registries=registries)
    samples_dir, source, config = opened.samples, opened.label, opened.config
    if opened.kind == "run":
        check_harmonizer_config(config, source)  # before the weights load
    loaded = opened.load(registries)
    model, tokenizer = loaded.model, loaded.tokenizer
    check_harmonizer(tokenizer, source)
    given, write = resolve_voices(tokenizer, args.voices, args.given, score)
    controls = read_controls(args.controls)  # checked by harmonize() before any sampling
    from musicfw.engine.generation import build_sampler_chain

    section = parse_sampler_args(args.sampler) if args.sampler else config.sampler
    if isinstance(section, list) and len(section) == 1:
        section = section[0]
    sampler = build_sampler_chain(section, registries=registries)
    seed = args.seed if args.seed is not None else fresh_seed()
    if args.seed is None:
        print(f"seed {seed} (pass --seed {seed} to reproduce)")
    # every check (voices, file, representability) runs inside harmonize before sampling
    outs = harmonize(model, tokenizer, score, voices=args.voices, given=args.given, n=args.n, seed=seed,
                     sampler=sampler, batch_size=args.batch_size, device=args.device, source=source, controls=controls,
                     forbid_parallels=bool(args.forbid_parallels), pitch_temperature=args.pitch_temperature)
    out_dir = Path(args.out) if args.out else next_output_dir(samples_dir, "harmonize")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(args.file).stem
    files = []
    for i, s in enumerate(outs):
        path = out_dir / f"{stem}_harmonized_{i:03d}.mid"
        s.dump_midi(str(path))
        files.append(path.name)
    record = {"source": source, "input": str(args.file), "given": given, "written": write, "n": args.n,
              "seed": seed, "sampler": repr(sampler), "controls": controls,
              "forbid_parallels": bool(args.forbid_parallels), "pitch_temperature": args.pitch_temperature,
              "files": files}
    (out_dir / "harmonize.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {len(files)} harmonisation{'s' if len(files) != 1 else ''} ({', '.join(write)} under "
          f"{', '.join(given)}) to {out_dir}")
    return 0


def read_controls(value: Any) -> Any:
    """``--controls``: the text itself, or the content of a ``.yaml`` / ``.yml`` file (a string
    like the option's, a mapping, or a list of them segment by segment); None stays None."""
    if value is None or not str(value).strip().lower().endswith((".yaml", ".yml")):
        return value
    from musicfw.core.errors import ConfigError

    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"--controls: no file {path} (give attribute=level text, or a YAML file that exists).")
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"--controls: {path} is not valid YAML: {exc}") from None
    if isinstance(data, dict) and set(data) == {"controls"}:
        data = data["controls"]
    if data is None:
        raise ConfigError(f"--controls: {path} holds no controls.")
    return data


def check_harmonizer_config(config: Any, source: str) -> None:
    """Fail before loading weights when a run's tokenizer is not ``tracks``."""
    from musicfw.core.errors import UserError

    name = str(config.tokenizer.name)
    if name != "tracks":
        raise UserError(
            f"{source} was not trained to harmonise: its tokenizer is {name!r}, and harmonisation needs "
            "the 'tracks' tokenizer, which writes each voice as a track (train one with "
            "examples/harmonize_chorales.yaml)."
        )


@hookimpl
def musicfw_register_commands(commands):
    commands.add(Harmonize)
