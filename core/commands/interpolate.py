"""``musicfw interpolate --run DIR A.mid B.mid``: a path through a MusicVAE's latent space."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "interpolate",
        help="interpolate between two MIDI files through a trained MusicVAE's latent space",
        description="Encode the first bars of A.mid and B.mid (as many tokens as the model's "
        "max_seq_len) with the MusicVAE trained in RUN_DIR, decode --steps points of the "
        "spherical interpolation between the two encodings (step 0 reconstructs A, the last "
        "B), and write step_XX.mid for each step, interpolation.mid with all steps in a row, "
        "and interpolation.png (a piano-roll strip of the whole path).",
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="a run folder with a trained MusicVAE")
    p.add_argument("a", metavar="A.mid", help="the start")
    p.add_argument("b", metavar="B.mid", help="the end")
    p.add_argument("--steps", type=int, default=8, help="points on the path, endpoints included (default 8)")
    p.add_argument(
        "--temperature", type=float, default=0.0,
        help="softmax temperature of the decoder; 0 = argmax (default 0)",
    )
    p.add_argument("--length", type=int, default=None, help="tokens taken from each file (default: the model's max_seq_len)")
    p.add_argument("--seed", type=int, default=0, help="random seed when temperature > 0 (default 0)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default RUN_DIR/samples/interpolation)")
    p.add_argument(
        "--checkpoint", default="last", choices=("best", "last"),
        help="which checkpoint (default last: a VAE's 'best' by held-out negative ELBO is an "
        "early one while the KL weight is still near 0)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    if args.steps < 2:
        raise ConfigError(f"--steps must be >= 2 (the two endpoints), got {args.steps}.")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}.")
    from musicfw.plugins.models.musicvae.tools import interpolate_files

    from .sample import load_vae_run

    model, tokenizer, run = load_vae_run(args.run, args.checkpoint)
    out = args.out or (run.samples / "interpolation")
    written = interpolate_files(
        model, tokenizer, args.a, args.b, out, steps=args.steps, temperature=args.temperature,
        length=args.length, seed=args.seed,
    )
    extra = written.extra
    print(f"wrote {args.steps} steps of {extra['length']} tokens to {out}")
    print(f"all steps in a row: {written.midi[-1]}")
    if written.image is not None:
        print(f"piano-roll strip: {written.image}")
    print(
        f"endpoint reconstruction accuracy: A {extra['reconstruction_accuracy_a']:.3f}, "
        f"B {extra['reconstruction_accuracy_b']:.3f}"
    )
    return 0
