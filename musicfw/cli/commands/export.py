"""``musicfw export --run RUN_DIR OUT_DIR [--format NAME] [--push REPO_ID]``: a trained model
in an export format (an ``exporters`` plugin).  The default, ``safetensors``, is a folder that
loads without its run folder (safetensors weights, JSON configs, a model card); see
:mod:`musicfw.engine.pretrained` for its layout."""

from __future__ import annotations

import argparse
from typing import Any

from musicfw.core.command import Command


class Export(Command):
    name = "export"
    help = "export a trained model as a shareable folder (safetensors, config, model card)"
    description = (
        "Write the model trained in RUN_DIR into the new folder OUT_DIR: "
        "model.safetensors (weights; loading them runs no code), config.json (model and tokenizer "
        "configs, sampler and generation defaults, the weights' sha256), tokenizer.json, "
        "vocab.json and README.md (a model card with Hugging Face Hub front matter, the data, "
        "the training and the run's held-out metrics). Load it with `musicfw generate --model "
        "OUT_DIR` or musicfw.load_pretrained(OUT_DIR). --push uploads the folder to the Hub "
        "(needs huggingface_hub and a token: huggingface-cli login or HF_TOKEN). --format picks "
        "another export format a plugin adds (musicfw plugins lists the exporters)."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--run", required=True, metavar="RUN_DIR", help="a run folder (musicfw run)")
        p.add_argument("out_dir", metavar="OUT_DIR", help="the new folder (must not exist or be empty)")
        p.add_argument(
            "--checkpoint",
            default="auto",
            help="best, last, a checkpoint path, or auto (default: the model's preference)",
        )
        p.add_argument(
            "--license",
            default="other",
            help="license identifier for the model card's Hub front matter, e.g. mit, cc-by-4.0 "
            "(default: other; the weights inherit the terms of the training data)",
        )
        p.add_argument(
            "--format", default="safetensors", metavar="NAME",
            help="the export format: safetensors (default) or one a plugin adds (see musicfw plugins)",
        )
        p.add_argument(
            "--param", action="append", default=[], metavar="KEY=VALUE",
            help="a parameter of the export format (repeatable), e.g. --param precision=16",
        )
        p.add_argument("--push", default=None, metavar="REPO_ID", help="also upload to this Hugging Face Hub model repo")
        p.add_argument("--private", action="store_true", help="with --push: create the repo as private")

    def run(self, args: argparse.Namespace, context: Any) -> int:
        from musicfw.engine.pretrained import export_run, push_folder

        out = export_run(
            args.run, args.out_dir, which=args.checkpoint, license=args.license, format=args.format,
            params=_params(args.param), registries=context.registries,
        )
        files = ", ".join(sorted(p.name for p in out.iterdir()))
        print(f"exported {args.run} to {out} ({files})")
        if args.push:
            url = push_folder(out, args.push, private=args.private)
            print(f"pushed {out} to {url}")
        return 0


def _params(items: list[str]) -> dict:
    """``KEY=VALUE`` strings as a dict, each value read as YAML (numbers, booleans, lists)."""
    import yaml

    from musicfw.core.errors import ConfigError

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r} is not of the form KEY=VALUE (e.g. --param precision=16).")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            params[key.strip()] = value
    return params
