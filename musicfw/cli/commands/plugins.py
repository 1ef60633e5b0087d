"""``musicfw plugins``: every registry, every plugin, where it comes from, its parameters."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from musicfw.core.command import Command


class Plugins(Command):
    name = "plugins"
    help = "list installed plugins and their parameters"
    description = (
        "List every registry (tokenizers, models, samplers, datasets, metrics, loggers, exporters), each "
        "plugin in it, the distribution that provides it, and its config fields with types, "
        "defaults and the values each allows (choices, bounds); then the CLI commands plugins add."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    def run(self, args: argparse.Namespace, context: Any) -> int:
        return show(context.registries, as_json=args.json)


def describe(registries) -> dict:
    out: dict = {}
    for kind, registry in registries.by_kind.items():
        out[kind] = [
            {
                "name": info.name,
                "provider": info.provider,
                "version": info.version,
                "class": f"{info.cls.__module__}.{info.cls.__qualname__}",
                "description": info.description,
                "config": info.config_fields(),
            }
            for info in registry
        ]
    out["commands"] = [
        {
            "name": info.name,
            "provider": info.provider,
            "class": f"{info.cls.__module__}.{info.cls.__qualname__}",
            "description": info.cls.help,
        }
        for info in registries.commands
    ]
    out["failed"] = [vars(f) for f in registries.failures]
    return out


def show(registries: Any, as_json: bool = False) -> int:
    """Print what :func:`describe` finds (``as_json``: as JSON)."""
    data = describe(registries)
    if as_json:
        json.dump(data, sys.stdout, indent=1, default=repr)
        print()
        return 0
    for kind in registries.by_kind:
        print(f"{kind}:")
        if not data[kind]:
            print("  (none)")
        for plugin in data[kind]:
            print(f"  {plugin['name']}  [{plugin['provider']}]  {plugin['description']}")
            for f in plugin["config"]:
                allowed = f", {f['allowed']}" if f["allowed"] else ""
                help_text = f"  # {f['help']}" if f["help"] else ""
                print(f"      {f['name']}: {f['type']} = {f['default']!r}{allowed}{help_text}")
    print("commands (added by plugins):")
    if not data["commands"]:
        print("  (none)")
    for command in data["commands"]:
        print(f"  {command['name']}  [{command['provider']}]  {command['description']}")
    for failure in registries.failures:
        print(
            f"failed to load: {failure.entry_point} ({failure.value}, from {failure.distribution}): "
            f"{failure.error}"
        )
    return 0
