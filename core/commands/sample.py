"""``musicfw sample --run DIR``: decode latent vectors drawn from a MusicVAE's prior."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="sample a trained MusicVAE from its prior (z ~ N(0, I)) into MIDI files",
        description="Draw --n latent vectors from the prior N(0, I) of the MusicVAE trained in "
        "RUN_DIR, decode each into a sequence, and write RUN_DIR/samples/prior/sample_XXX.mid "
        "(or --out) with a piano-roll image of all samples.",
    )
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="a run folder with a trained MusicVAE")
    p.add_argument("--n", type=int, default=8, help="number of samples (default 8)")
    p.add_argument(
        "--temperature", type=float, default=1.0,
        help="softmax temperature of every step; 0 = argmax (default 1.0)",
    )
    p.add_argument("--length", type=int, default=None, help="tokens per sample (default: the model's max_seq_len)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default RUN_DIR/samples/prior)")
    p.add_argument(
        "--checkpoint", default="last", choices=("best", "last"),
        help="which checkpoint (default last: a VAE's 'best' by held-out negative ELBO is an "
        "early one while the KL weight is still near 0)",
    )
    p.set_defaults(func=main)


def load_vae_run(run_dir: str, which: str = "last"):
    """(model, tokenizer, RunFolder) of a run folder."""
    from ..rundir import RunFolder
    from ..training import load_model

    run = RunFolder.open(run_dir)
    model, tokenizer = load_model(run.path, which=which)
    return model, tokenizer, run


def main(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}.")
    if args.temperature < 0:
        raise ConfigError(f"--temperature must be >= 0, got {args.temperature}.")
    from musicfw.plugins.models.musicvae.tools import sample_to_midi

    model, tokenizer, run = load_vae_run(args.run, args.checkpoint)
    out = args.out or (run.samples / "prior")
    written = sample_to_midi(
        model, tokenizer, out, n=args.n, temperature=args.temperature, length=args.length, seed=args.seed
    )
    print(f"wrote {len(written.midi)} samples to {out}")
    if written.image is not None:
        print(f"piano roll: {written.image}")
    return 0
