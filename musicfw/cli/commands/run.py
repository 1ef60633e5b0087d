"""``musicfw run EXPERIMENT.yaml [key=value ...]``: the whole pipeline into a new run folder."""

from __future__ import annotations

import argparse
from typing import Any

from musicfw.core.command import Command


class Run(Command):
    name = "run"
    help = "run an experiment: data -> tokenizer -> train -> generate -> evaluate -> report"
    description = (
        "Run an experiment YAML end to end. Every run writes a new folder "
        "<output_dir>/<name>-<timestamp>/ with the resolved config.yaml, the tokenizer, "
        "checkpoints, samples, metrics.json and report.html."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("experiment", help="the experiment YAML file")
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="key=value",
            help="config overrides as omegaconf dotlist, e.g. model.hidden_size=256 train.max_epochs=3",
        )
        p.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue an interrupted run in RUN_DIR from its last checkpoint",
        )

    def run(self, args: argparse.Namespace, context: Any) -> int:
        from musicfw.engine.config import load_config
        from musicfw.engine.runner import run_experiment

        registries = context.registries
        if args.resume:
            from musicfw.engine.rundir import load_run_config

            config = load_run_config(args.resume, overrides=args.overrides, registries=registries)
        else:
            config = load_config(args.experiment, overrides=args.overrides, registries=registries)
        result = run_experiment(config, resume=args.resume, registries=registries)
        print(result.summary())
        return 0
