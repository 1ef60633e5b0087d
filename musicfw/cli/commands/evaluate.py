"""``musicfw evaluate --generated DIR --reference DIR [--out metrics.json]``: compare two
folders of MIDI files with the Yang & Lerch method and MusPy-style statistics.

``musicfw evaluate --run RUN_DIR [--samples DIR|GLOB] [key=value ...]`` re-runs a run folder's
evaluation stage (likelihood, samples/*.mid or the given files vs the held-out split) and
rewrites its metrics.json and report.html."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from musicfw.core.command import Command
from musicfw.cli.commands._output import add_limit_arguments, apply_limit_arguments, stdout_closed


class Evaluate(Command):
    name = "evaluate"
    help = "compare a folder of generated MIDI with a reference folder (Yang & Lerch, MusPy)"
    description = (
        "Compute per-piece features of two MIDI folders (recursive; files that do "
        "not load are skipped with a reason) and compare the sets: intra-set and inter-set "
        "distances, their Gaussian KDEs, KL divergence and overlapping area per feature. "
        "Prints the comparison table; --out writes everything as metrics.json "
        "(schema in docs/metrics.md)."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--generated", metavar="DIR", help="folder of generated .mid files")
        p.add_argument("--reference", metavar="DIR", help="folder of reference .mid files")
        p.add_argument(
            "--run",
            metavar="RUN_DIR",
            help="instead: re-evaluate a run folder (its checkpoint, samples and held-out split) "
            "and rewrite its metrics.json and report.html",
        )
        p.add_argument(
            "--samples",
            metavar="DIR|GLOB",
            help="with --run: the generated files to score, a folder or a glob relative to the run "
            "folder (e.g. samples/generate-001 or 'samples/**/*.mid'; default: samples/*.mid, the "
            "run's own samples)",
        )
        p.add_argument(
            "overrides",
            nargs="*",
            metavar="key=value",
            help="with --run: config overrides, e.g. evaluate.max_reference=50",
        )
        p.add_argument("--out", metavar="FILE", help="write the full results as JSON (metrics.json)")
        p.add_argument(
            "--metrics",
            nargs="+",
            metavar="NAME",
            default=None,
            help="feature metrics to use (default: yang_lerch muspy)",
        )
        p.add_argument("--json", action="store_true", help="print the full JSON instead of the table")
        add_limit_arguments(p)

    def run(self, args: argparse.Namespace, context: Any) -> int:
        return evaluate(args, context.registries)


def evaluate(args: argparse.Namespace, registries: Any) -> int:
    from musicfw.core.errors import ConfigError
    from musicfw.engine.evaluation import compare_folders
    from musicfw.engine.runner import evaluate_run_folder

    apply_limit_arguments(args)
    if args.run:
        if args.generated or args.reference:
            raise ConfigError("Give either --run RUN_DIR or --generated DIR --reference DIR, not both.")
        result = evaluate_run_folder(args.run, overrides=args.overrides, samples=args.samples, registries=registries)
        if args.out:
            from musicfw.engine.evaluation import write_metrics

            write_metrics(result, args.out)
        return _print(result, args, f"\nwrote {args.run}/metrics.json and {args.run}/report.html")
    if args.samples:
        raise ConfigError("--samples applies to --run; with --generated give the folder itself.")
    if not (args.generated and args.reference):
        raise ConfigError("musicfw evaluate needs --generated DIR and --reference DIR (or --run RUN_DIR).")
    if args.overrides:
        raise ConfigError(f"key=value overrides only apply with --run (got {' '.join(args.overrides)}).")
    result = compare_folders(
        args.generated, args.reference, metrics=args.metrics, out=args.out, registries=registries
    )
    return _print(result, args, f"\nwrote {args.out}" if args.out else None)


def _print(result: dict, args: argparse.Namespace, footer: str | None) -> int:
    from musicfw.engine.evaluation import format_table

    try:
        if args.json:
            json.dump(result, sys.stdout, indent=1)
            print()
        else:
            print(format_table(result))
            if footer:
                print(footer)
        sys.stdout.flush()
    except BrokenPipeError:  # `musicfw evaluate ... | head`
        return stdout_closed()
    return 0
