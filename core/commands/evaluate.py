"""``musicfw evaluate --generated DIR --reference DIR [--out metrics.json]``: compare two
folders of MIDI files with the Yang & Lerch method and MusPy-style statistics."""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="compare a folder of generated MIDI with a reference folder (Yang & Lerch, MusPy)",
        description="Compute per-piece features of two MIDI folders (recursive; files that do "
        "not load are skipped with a reason) and compare the sets: intra-set and inter-set "
        "distances, their Gaussian KDEs, KL divergence and overlapping area per feature. "
        "Prints the comparison table; --out writes everything as metrics.json "
        "(schema in docs/metrics.md).",
    )
    p.add_argument("--generated", required=True, metavar="DIR", help="folder of generated .mid files")
    p.add_argument("--reference", required=True, metavar="DIR", help="folder of reference .mid files")
    p.add_argument("--out", metavar="FILE", help="write the full results as JSON (metrics.json)")
    p.add_argument(
        "--metrics",
        nargs="+",
        metavar="NAME",
        default=None,
        help="feature metrics to use (default: yang_lerch muspy)",
    )
    p.add_argument("--json", action="store_true", help="print the full JSON instead of the table")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..evaluation import compare_folders, format_table

    result = compare_folders(args.generated, args.reference, metrics=args.metrics, out=args.out)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print(format_table(result))
        if args.out:
            print(f"\nwrote {args.out}")
    return 0
