"""``musicfw generate --run DIR``: sample new pieces from a trained run (or, with
``--model PATH``, from a folder written by ``musicfw export``).

Defaults come from the run's saved config (its ``sampler`` and ``generate`` sections); the
options override them.  Samples go to a new numbered folder ``RUN_DIR/samples/generate-NNN/``
(never over earlier ones): ``sample_000.mid``, ``.png`` piano rolls, ``.wav`` audio when a
General MIDI soundfont is found, and ``generation.json`` with the settings and statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from musicfw.core.command import Command


class Generate(Command):
    name = "generate"
    help = "sample new MIDI pieces from a trained run"
    description = (
        "Generate --n pieces with the model trained in RUN_DIR and write them (MIDI, "
        "piano-roll PNG, WAV when a soundfont is found) into a new folder RUN_DIR/samples/"
        "generate-NNN/. Unset options take the run's config (sampler and generate sections)."
    )
    epilog = (
        "Sampler examples: --sampler top_k k=20   |   --sampler temperature temperature=0.9 "
        "--sampler top_p p=0.9 (a chain, applied in order)"
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.epilog = self.epilog
        source = p.add_mutually_exclusive_group(required=True)
        source.add_argument("--run", metavar="RUN_DIR", help="a run folder (musicfw run)")
        source.add_argument(
            "--model",
            metavar="NAME|PATH",
            help="instead: an installed pretrained model (musicfw models lists them, e.g. chorales-lstm), "
            "a folder made by musicfw export (an existing path wins over a name), or hf:OWNER/NAME on the Hugging Face Hub "
            "(defaults from its config.json; samples go to ./samples/generate-NNN unless --out is given)",
        )
        p.add_argument("--n", type=int, default=None, help="number of samples (default: the run's generate.n)")
        p.add_argument(
            "--sampler",
            nargs="+",
            action="append",
            metavar="NAME [key=value ...]",
            help="a sampler and its parameters; repeat to chain samplers (default: the run's sampler)",
        )
        p.add_argument("--prompt", default=None, metavar="FILE.mid", help="a MIDI file to continue")
        p.add_argument(
            "--chords",
            default=None,
            metavar='"C G Am F"',
            help="a chord progression to follow, one chord per bar (\"C G | Am F\": two chords in the "
            "first bar), placed by constrained decoding and repeated when the piece is longer; 'none': "
            "unconditioned even if the run's config has generate.chords (REMI trained with use_chords)",
        )
        p.add_argument(
            "--controls",
            default=None,
            metavar='"density=4,pitch=high"',
            help="attribute controls forced after every bar (attribute=level, levels 0..control_levels-1 or "
            "low/mid/high; \"density=1 | density=6\": bar by bar, repeated); unset attributes are sampled; "
            "'none': not forced even if the run's config has generate.controls (REMI trained with controls)",
        )
        p.add_argument("--max-tokens", type=int, default=None, help="new tokens per sample at most")
        p.add_argument("--max-bars", type=int, default=None, help="stop after this many new bars")
        p.add_argument("--max-seconds", type=float, default=None, help="stop after this many new seconds")
        p.add_argument("--batch-size", type=int, default=None, help="samples generated together")
        p.add_argument(
            "--seed",
            type=int,
            default=None,
            help="random seed (default: a fresh one, printed and stored in generation.json, so each call "
            "draws new samples; pass the run's seed to redo its own samples)",
        )
        p.add_argument(
            "--constraints",
            choices=("on", "off"),
            default=None,
            help="mask tokens that cannot follow (remi, midi_like; default: the run's generate.constraints)",
        )
        p.add_argument("--no-audio", action="store_true", help="do not render .wav files")
        p.add_argument("--soundfont", default=None, metavar="FILE.sf2", help="General MIDI soundfont for .wav files")
        p.add_argument(
            "--checkpoint",
            default="auto",
            help="best, last, a checkpoint path, or auto (default: the model's preference, best for "
            "language models, last for MusicVAE)",
        )
        p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: a new RUN_DIR/samples/generate-NNN)")
        p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")

    def run(self, args: argparse.Namespace, context: Any) -> int:
        return generate_samples(args, context.registries)


def parse_sampler_args(groups: list[list[str]]) -> list[dict]:
    """``[["top_k", "k=5"], ...]`` -> ``[{"name": "top_k", "k": 5}, ...]`` (values typed as YAML)."""
    import yaml

    from musicfw.core.errors import ConfigError

    sections = []
    for group in groups:
        name, *pairs = group
        if "=" in name:
            raise ConfigError(
                f"--sampler {' '.join(group)}: give the sampler's name first, then key=value "
                "parameters (for example --sampler top_k k=20)."
            )
        section: dict = {"name": name}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ConfigError(f"--sampler {name}: {pair!r} is not of the form key=value.")
            try:
                section[key.strip()] = yaml.safe_load(value) if value.strip() else None
            except yaml.YAMLError:
                section[key.strip()] = value
        sections.append(section)
    return sections


def next_output_dir(samples: Path, prefix: str = "generate") -> Path:
    """A new folder ``samples/<prefix>-NNN`` (the first number not taken), created atomically."""
    samples.mkdir(parents=True, exist_ok=True)
    taken = [
        int(p.name[len(prefix) + 1 :])
        for p in samples.glob(f"{prefix}-*")
        if p.name[len(prefix) + 1 :].isdigit()
    ]
    i = max(taken, default=0) + 1
    while True:
        out = samples / f"{prefix}-{i:03d}"
        try:
            out.mkdir()
            return out
        except FileExistsError:
            i += 1


def fresh_seed() -> int:
    """A new seed for a generate call without ``--seed`` (from the OS's entropy), small
    enough to type back."""
    import os

    return int.from_bytes(os.urandom(4), "little") % 2_000_000_000


def generate_samples(args: argparse.Namespace, registries: Any) -> int:
    """``musicfw generate`` (see the module docstring)."""
    import json

    from musicfw.core.errors import ConfigError
    from musicfw.engine.loading import open_model

    # a run folder, an exported folder or a shipped model's name: the config now, the weights below
    opened = open_model(args.run, args.model, checkpoint=args.checkpoint, registries=registries)
    config, samples_dir, source = opened.config, opened.samples, opened.label
    gen = config.generate
    for flag in ("n", "max_tokens", "max_bars", "batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {value}.")
    if args.max_seconds is not None and args.max_seconds <= 0:
        raise ConfigError(f"--max-seconds must be > 0, got {args.max_seconds}.")
    if args.prompt is not None and not Path(args.prompt).is_file():
        from musicfw.core.errors import DataError

        raise DataError(f"Prompt file not found: {args.prompt}")

    from musicfw.engine.generation import (
        build_sampler_chain,
        check_controls,
        chords_setting,
        controls_setting,
        generate,
    )

    try:
        if args.sampler:
            sections = parse_sampler_args(args.sampler)
            sampler_section = sections[0] if len(sections) == 1 else sections
        else:
            sampler_section = config.sampler
        sampler = build_sampler_chain(sampler_section, registries=registries)
    except ConfigError as exc:
        raise type(exc)(f"{exc} (from the --sampler option)" if args.sampler else str(exc)) from None

    loaded = opened.load(registries)
    model, tokenizer = loaded.model, loaded.tokenizer
    if tokenizer.kind not in sampler.token_kinds:
        raise ConfigError(
            f"The sampler {sampler!r} cannot draw {tokenizer.kind} tokens (tokenizer {tokenizer.name!r}); "
            + ("use --sampler bernoulli (or greedy)." if tokenizer.kind == "multihot" else "use greedy, temperature, top_k or top_p.")
        )
    settings = {
        "n": args.n or int(gen.n),
        "batch_size": args.batch_size or int(gen.batch_size),
        "max_tokens": None,  # below: --max-tokens, generate.max_tokens, or sized from a time/bar limit
        "max_bars": args.max_bars if args.max_bars is not None else gen.max_bars,
        "max_seconds": args.max_seconds if args.max_seconds is not None else gen.max_seconds,
        "prompt": args.prompt if args.prompt is not None else gen.prompt,
        "constraints": (args.constraints == "on") if args.constraints else bool(gen.constraints),
        "seed": args.seed if args.seed is not None else fresh_seed(),
        "chords": chords_setting(gen.get("chords")),
    }
    if args.chords is not None:
        settings["chords"] = None if args.chords.strip().lower() == "none" else args.chords
    settings["controls"] = controls_setting(gen.get("controls"))
    if args.controls is not None:
        settings["controls"] = (None if args.controls.strip().lower() == "none"
                                else controls_setting(args.controls, "--controls"))
    if settings["controls"] is not None:  # before the output folder exists
        try:
            check_controls(tokenizer, settings["controls"], settings["constraints"])
        except ConfigError as exc:
            raise ConfigError(f"{exc} (from --controls)" if args.controls else str(exc)) from None
    if args.seed is None:
        print(f"seed {settings['seed']} (pass --seed {settings['seed']} to reproduce)")
    from musicfw.engine.budget import load_rates, stop_summary, token_budget

    given = args.max_tokens if args.max_tokens is not None else gen.get("max_tokens")
    settings["max_tokens"], budget_how = token_budget(
        given, settings["max_bars"], settings["max_seconds"],
        load_rates(opened.path),
    )
    from musicfw.engine.generation import SampleWriter, check_generation_size

    check_generation_size(  # before the output folder exists (the prompt is checked again in generate)
        settings["n"], settings["batch_size"], settings["max_tokens"], kind=tokenizer.kind,
        vocab_size=int(tokenizer.vocab_size), needs_history=bool(getattr(sampler, "needs_history", False)),
    )
    out = Path(args.out) if args.out else next_output_dir(samples_dir)
    from musicfw.engine.progress import Counter, step_line

    audio = not args.no_audio and bool(gen.render_audio)
    # each sample is written as its batch finishes (memory flat in --n); a line every few
    # seconds within a long batch
    with Counter("generate", settings["n"]) as generating:
        writer = SampleWriter(out, render_audio=audio, soundfont=args.soundfont or gen.soundfont,
                              expected=settings["n"])
        result = generate(model, tokenizer, sampler, device=args.device, progress=generating, sink=writer,
                          step_progress=step_line("generate"), **settings)
    paths = writer.written
    record = {
        "run": source,
        "checkpoint": args.checkpoint,
        "sampler": repr(sampler),
        "settings": settings,
        "max_tokens_from": budget_how,
        "stop_reasons": list(result.stop_reasons),
        "seed_source": "--seed" if args.seed is not None else "drawn (no --seed given)",
        "stats": result.stats,
        "files": [p.name for p in paths],
    }
    (out / "generation.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    stats = result.stats
    kinds = {}
    for p in paths:
        kinds[p.suffix] = kinds.get(p.suffix, 0) + 1
    files = ", ".join(f"{v} {k[1:]}" for k, v in sorted(kinds.items()))
    print(f"wrote {writer.count} samples to {out} ({files})")
    line = (
        f"{stats['tokens_generated']} tokens in {stats['seconds']:.2f} s "
        f"({stats['tokens_per_second']:,.0f} tokens/s), {stats['notes']} notes"
    )
    if "invalid_rate" in stats:
        line += f", dropped tokens {stats['invalid_rate']:.2%}"
        line += " (constrained)" if stats["constrained"] else " (unconstrained)"
    print(line)
    print(f"max_tokens {settings['max_tokens']} ({budget_how}); "
          + stop_summary(result.stop_reasons, settings["max_bars"], settings["max_seconds"], settings["max_tokens"]))
    return 0
