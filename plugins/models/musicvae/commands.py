"""MusicVAE's CLI verbs, registered through ``musicfw_register_commands`` like any plugin's:

* ``musicfw sample --run DIR``: decode latent vectors drawn from the prior;
* ``musicfw interpolate --run DIR A.mid B.mid``: a path through the latent space;
* ``musicfw blend --run DIR A.mid B.mid C.mid D.mid``: the beat blender's grid.

Each takes ``--model NAME|PATH`` instead of ``--run``: an installed pretrained MusicVAE
(``musicfw models``) or a folder made by ``musicfw export``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from musicfw.core.command import Command

_CHECKPOINT_HELP = (
    "which checkpoint (default last: a VAE's 'best' by held-out negative ELBO is an "
    "early one while the KL weight is still near 0)"
)


_FILE_LENGTH_HELP = "tokens taken from each file (default: the model's max_seq_len)"
_SEED_HELP = "random seed when temperature > 0 (default 0)"


def _run_arguments(p: argparse.ArgumentParser, out: str, length_help: str, seed_help: str) -> None:
    """The options every MusicVAE command shares: the run, its checkpoint, where to write,
    how many tokens and which seed."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_DIR", help="a run folder with a trained MusicVAE")
    source.add_argument(
        "--model", metavar="NAME|PATH",
        help="instead: an installed pretrained MusicVAE (musicfw models lists them, e.g. drums-2bar) "
        "or a folder made by musicfw export (an existing path wins over a name)",
    )
    p.add_argument("--length", type=int, default=None, help=length_help)
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--out", default=None, metavar="DIR",
                   help=f"output folder (default RUN_DIR/samples/{out}; with --model ./samples/{out})")
    p.add_argument("--checkpoint", default=None, choices=("best", "last"), help=_CHECKPOINT_HELP + "; --run only")


_CHORDS_HELP = (
    'chords, one per bar, separated by spaces (e.g. "C G Am F"; names like C, Am, G7, F#dim, '
    "Bbmaj7, N.C.): the progression a chord-conditioned MusicVAE decodes under"
)


#: the longest --chords progression decoded (bars): a bound on the decoding loop
MAX_CHORD_BARS = 1024


def chord_progression(model: Any, text: str | None, length: int | None) -> tuple[Any, int | None]:
    """``--chords`` -> (chord class per step, length), checked against the model: a
    ConfigError for a model trained without chord conditioning or an unknown chord name."""
    if text is None:
        return None, length
    from musicfw.core.errors import ConfigError

    if not getattr(model, "chord_conditioned", False):
        raise ConfigError(
            "--chords: this MusicVAE was trained without chord conditioning, so chords cannot steer "
            "it; train one with tokenizer.name=melody_chords and model.chord_conditioning=true "
            "(examples/chords_musicvae.yaml)."
        )
    from musicfw.music.chords import parse_triads, progression_steps

    try:
        bars = parse_triads(text)
    except ValueError as exc:
        raise ConfigError(f"--chords {text!r}: {exc}.") from None
    if len(bars) > MAX_CHORD_BARS:
        raise ConfigError(f"--chords: {len(bars)} bars; at most {MAX_CHORD_BARS} (one chord per bar).")
    bar = int(model.config.steps_per_bar)
    length = max(int(length or model.config.max_seq_len), len(bars) * bar)
    return progression_steps(bars, bar, length), length


def load_vae(args: argparse.Namespace, registries: Any = None):
    """``(model, tokenizer, samples folder)`` of ``--run RUN_DIR`` (its samples/) or ``--model
    NAME|PATH`` (an installed pretrained model or an exported folder; ./samples), through the
    one model loader (:mod:`musicfw.engine.loading`); a model that is not a MusicVAE is refused."""
    from musicfw.engine.loading import open_model

    opened = open_model(args.run, args.model, registries=registries,
                        checkpoint=(args.checkpoint or "last") if args.run is not None else args.checkpoint)
    loaded = opened.load(registries)
    _require_vae(loaded)
    return loaded.model, loaded.tokenizer, opened.samples


def load_vae_run(run_dir: str, which: str = "last", registries: Any = None):
    """(model, tokenizer, RunFolder) of a run folder whose model is a MusicVAE."""
    from musicfw.engine.loading import open_model
    from musicfw.engine.rundir import RunFolder

    loaded = open_model(run=run_dir, checkpoint=which, registries=registries).load(registries)
    _require_vae(loaded)
    return loaded.model, loaded.tokenizer, RunFolder(loaded.source.path)


def _require_vae(loaded: Any) -> None:
    from musicfw.core.errors import ConfigError

    from .model import MusicVAEModel

    if not isinstance(loaded.model, MusicVAEModel):
        what = f"--model {loaded.source.label}" if loaded.source.kind != "run" else loaded.source.label
        raise ConfigError(f"{what} holds a {type(loaded.model).__name__}, not a MusicVAE; this command needs a MusicVAE.")


class Sample(Command):
    name = "sample"
    help = "sample a trained MusicVAE from its prior (z ~ N(0, I)) into MIDI files"
    description = (
        "Draw --n latent vectors from the prior N(0, I) of the MusicVAE trained in RUN_DIR, "
        "decode each into a sequence, and write RUN_DIR/samples/prior/sample_XXX.mid (or --out) "
        "with a piano-roll image of all samples."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _run_arguments(p, "prior", "tokens per sample (default: the model's max_seq_len)", "random seed (default 0)")
        p.add_argument("--n", type=int, default=8, help="number of samples (default 8)")
        p.add_argument(
            "--chords", default=None, metavar='"C G Am F"',
            help=_CHORDS_HELP + ", repeated to --length, which grows to hold the whole progression",
        )
        p.add_argument(
            "--temperature", type=float, default=None,
            help="softmax temperature of every step; 0 = argmax (default 0.5, as Magenta's music_vae_generate)",
        )

    def run(self, args: argparse.Namespace, context: Any) -> int:
        from musicfw.core.errors import ConfigError

        from .tools import DEFAULT_TEMPERATURE, near_empty_warning, sample_to_midi

        if args.temperature is None:
            args.temperature = DEFAULT_TEMPERATURE
        if args.n < 1:
            raise ConfigError(f"--n must be >= 1, got {args.n}.")
        if args.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {args.temperature}.")

        model, tokenizer, samples = load_vae(args, context.registries)
        chords, args.length = chord_progression(model, args.chords, args.length)
        out = args.out or (samples / "prior")
        written = sample_to_midi(
            model, tokenizer, out, n=args.n, temperature=args.temperature, length=args.length, seed=args.seed,
            chords=chords,
        )
        if args.chords is not None:
            print(f"chords, one per bar: {args.chords}")
        notes = written.extra["notes"]
        print(f"wrote {len(written.midi)} samples to {out} (temperature {args.temperature:g}; notes per sample: "
              f"{', '.join(map(str, notes))})")
        if written.image is not None:
            print(f"piano roll: {written.image}")
        steps = len(written.tokens[0]) if written.tokens else 0
        warning = near_empty_warning(notes, "sample", args.temperature, steps, getattr(tokenizer, "steps_per_bar", 16))
        if warning:
            print(warning, file=sys.stderr)
        return 0


class Interpolate(Command):
    name = "interpolate"
    help = "interpolate between two MIDI files through a trained MusicVAE's latent space"
    description = (
        "Encode the first bars of A.mid and B.mid (as many tokens as the model's max_seq_len) "
        "with the MusicVAE trained in RUN_DIR, decode --steps points of the spherical "
        "interpolation between the two encodings (step 0 reconstructs A, the last B), and write "
        "step_XX.mid for each step, interpolation.mid with all steps in a row, and "
        "interpolation.png (a piano-roll strip of the whole path)."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _run_arguments(p, "interpolation", _FILE_LENGTH_HELP, _SEED_HELP)
        p.add_argument("a", metavar="A.mid", help="the start")
        p.add_argument("b", metavar="B.mid", help="the end")
        p.add_argument("--steps", type=int, default=8, help="points on the path, endpoints included (default 8)")
        p.add_argument(
            "--chords", default=None, metavar='"C G Am F"',
            help=_CHORDS_HELP + " at every point of the path, repeated or cut to the inputs' length "
            "(default: each point takes the chords recognised in the nearer input file)",
        )
        p.add_argument(
            "--temperature", type=float, default=None,
            help="softmax temperature of the decoder; 0 = argmax, which an under-trained model decodes "
            "to silence (default 0.5, as Magenta's music_vae_generate)",
        )

    def run(self, args: argparse.Namespace, context: Any) -> int:
        from musicfw.core.errors import ConfigError

        from .tools import DEFAULT_TEMPERATURE, interpolate_files, near_empty_warning

        if args.temperature is None:
            args.temperature = DEFAULT_TEMPERATURE
        if args.steps < 2:
            raise ConfigError(f"--steps must be >= 2 (the two endpoints), got {args.steps}.")
        if args.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {args.temperature}.")

        model, tokenizer, samples = load_vae(args, context.registries)
        chords = None
        if args.chords is not None:
            chords, _ = chord_progression(model, args.chords, None)
        out = args.out or (samples / "interpolation")
        written = interpolate_files(
            model, tokenizer, args.a, args.b, out, steps=args.steps, temperature=args.temperature,
            length=args.length, seed=args.seed, chords=chords,
        )
        extra = written.extra
        print(f"wrote {args.steps} steps of {extra['length']} tokens to {out}")
        print(f"all steps in a row: {written.midi[-1]}")
        if written.image is not None:
            print(f"piano-roll strip: {written.image}")
        def fmt(x: Any) -> str:
            return "n/a" if x is None else f"{x:.3f}"

        print(
            f"endpoint reconstruction accuracy per step: A {extra['reconstruction_accuracy_a']:.3f}, "
            f"B {extra['reconstruction_accuracy_b']:.3f}; on the input's note onsets only: "
            f"A {fmt(extra['onset_accuracy_a'])}, B {fmt(extra['onset_accuracy_b'])}"
        )
        print(f"notes per step (temperature {args.temperature:g}): {', '.join(map(str, extra['notes']))}")
        warning = near_empty_warning(
            extra["notes"], "interpolate", args.temperature, extra["length"], getattr(tokenizer, "steps_per_bar", 16)
        )
        if warning:
            print(warning, file=sys.stderr)
        return 0


class Blend(Command):
    name = "blend"
    help = "beat blender: decode a grid of latent points between four MIDI files (MusicVAE)"
    description = (
        "Encode A.mid B.mid C.mid D.mid with the MusicVAE trained in RUN_DIR and decode the "
        "--grid x --grid points of the bilinear (spherical) blend between them: A top left, B top "
        "right, C bottom left, D bottom right.  Writes every cell's MIDI, piano roll and WAV, "
        "walk.mid (the whole grid as one piece) and blend.html (click a cell to hear it; path "
        "mode plays a walk of your choosing) into RUN_DIR/samples/blend (or --out)."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _run_arguments(p, "blend", _FILE_LENGTH_HELP, _SEED_HELP)
        p.add_argument("corners", nargs=4, metavar="X.mid", help="the corners A B C D")
        p.add_argument("--grid", type=int, default=5, help="cells per side, corners included (default 5)")
        p.add_argument("--temperature", type=float, default=0.0, help="softmax temperature of the decoder; 0 = argmax (default 0)")
        p.add_argument("--no-audio", action="store_true", help="write no WAV files")

    def run(self, args: argparse.Namespace, context: Any) -> int:
        from musicfw.core.errors import ConfigError

        if not 2 <= args.grid <= 16:
            raise ConfigError(f"--grid must be in 2..16, got {args.grid}.")
        if args.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {args.temperature}.")
        from .blend import blend, write_blend

        model, tokenizer, samples = load_vae(args, context.registries)
        result = blend(model, tokenizer, args.corners, grid=args.grid, temperature=args.temperature,
                       length=args.length, seed=args.seed)
        out = args.out or (samples / "blend")
        written = write_blend(result, out, render_audio=not args.no_audio)
        empty = sum(1 for row in result.scores for s in row if s.note_num() == 0)
        print(f"wrote a {args.grid}x{args.grid} blend to {out}: {written['page']}")
        if empty:
            print(f"warning: {empty} of {args.grid ** 2} cells decoded to no notes (an under-trained model "
                  "decoded greedily falls silent: train longer or pass --temperature 0.5)")
        return 0
