"""``musicfw models``: the installed pretrained models (musicfw/engine/zoo.py), by name."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from musicfw.core.command import Command


class Models(Command):
    name = "models"
    help = "list the installed pretrained models (use one with --model NAME)"
    description = (
        "List the pretrained models installed packages ship (the distribution musicfw-models: "
        "pip install ./models from a clone of musicfw): name, task, size on disk, held-out "
        "metrics, licence and distribution. Use one by name: musicfw generate --model NAME, "
        "musicfw sample|interpolate|blend --model NAME, init_from: NAME, "
        "musicfw.load_pretrained(NAME). Each model's card is NAME/README.md in the printed folder."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    def run(self, args: argparse.Namespace, context: Any) -> int:
        from musicfw.engine.zoo import describe, names

        rows = describe()
        if args.json:
            json.dump(rows, sys.stdout, indent=1)
            print()
            return 0
        if not names():
            print("No pretrained models are installed. From a clone of musicfw: pip install ./models "
                  "(the distribution musicfw-models).")
            return 0
        table = [("name", "task", "size", "held-out metrics", "licence", "from")]
        for r in rows:
            metrics = ", ".join(f"{k} {_num(v)}" for k, v in (r["metrics"] or {}).items())
            table.append((r["name"], r["task"], f"{r['size_bytes'] / 1e6:.1f} MB", metrics, r["license"], r["distribution"]))
        widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
        for row in table:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        total = sum(r["size_bytes"] for r in rows)
        print(f"\n{len(rows)} models, {total / 1e6:.1f} MB in all; cards: {rows[0]['path'].rsplit('/', 1)[0]}/NAME/README.md")
        return 0


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
