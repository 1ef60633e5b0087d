"""``musicfw data``: list the datasets, and prepare one (convert, cache, split, summarize)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from musicfw.core.command import Command


class Data(Command):
    name = "data"
    help = "list datasets; prepare one and print its summary"
    description = (
        "List the installed datasets, or prepare one: convert and cache a bundled "
        "corpus, load a MIDI folder, split it, and print pieces, notes, total duration, split "
        "sizes and the skipped files with their reasons."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        _add_actions(p)

    def run(self, args: argparse.Namespace, context: Any) -> int:
        if args.data_command == "list":
            return _list(args, context.registries)
        if args.data_command == "repair":
            return _repair(args, context.registries)
        return _prepare(args, context.registries)


def _add_actions(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True
    ls = actions.add_parser("list", help="list the installed datasets and their parameters")
    ls.add_argument("--json", action="store_true", help="print machine-readable JSON")
    prep = actions.add_parser(
        "prepare",
        help="prepare a dataset and print its summary",
        description="Prepare a dataset (e.g. `musicfw data prepare folk_melodies max_count=500` "
        "or `musicfw data prepare midi_folder path=my_midi/`) and print its summary. With "
        "--tokenizer, also tokenize it: a large midi_folder (format=shards, or format=auto from "
        "2,000 files) is tokenized in --workers processes into checked, resumable token shards "
        "(docs/scaling.md).",
    )
    prep.add_argument("name", help="dataset name (see `musicfw data list`)")
    prep.add_argument("params", nargs="*", metavar="key=value", help="dataset parameters")
    prep.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    prep.add_argument(
        "--tokenizer",
        metavar="NAME",
        help="also tokenize it with this tokenizer (default parameters): token cache or shards",
    )
    prep.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes reading and tokenizing files (sets the dataset's num_workers; 0: all cores)",
    )
    prep.add_argument("--json", action="store_true", help="print the summary as JSON")
    prep.add_argument("--quiet", action="store_true", help="no progress bars")
    rep = actions.add_parser(
        "repair",
        help="rebuild the damaged shards of a token shard folder",
        description="Check every shard of a token shard folder against the sha256 in its "
        "manifest.json and rebuild the missing, truncated or altered ones (from the dataset, "
        "tokenizer and limits the manifest records); the intact shards are kept.",
    )
    rep.add_argument("folder", help="the shard folder (named in the error that found the damage)")
    rep.add_argument("--workers", type=int, default=0, metavar="N", help="processes (0: all cores)")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")


def _list(args: argparse.Namespace, registries: Any) -> int:
    registry = registries["datasets"]
    rows = [
        {
            "name": info.name,
            "provider": info.provider,
            "description": info.description,
            "config": info.config_fields(),
        }
        for info in registry
    ]
    if args.json:
        json.dump(rows, sys.stdout, indent=1, default=repr)
        print()
        return 0
    if not rows:
        print("(no datasets installed)")
    for row in rows:
        print(f"{row['name']}  [{row['provider']}]  {row['description']}")
        for f in row["config"]:
            help_text = f"  # {f['help']}" if f["help"] else ""
            print(f"    {f['name']}: {f['type']} = {f['default']!r}{help_text}")
    return 0


def _params(items: list[str]) -> dict:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from musicfw.core.errors import ConfigError

    for item in items:
        if "=" not in item:
            raise ConfigError(f"Parameter {item!r} is not of the form key=value (e.g. max_count=100).")
    try:
        params = OmegaConf.to_container(OmegaConf.from_dotlist(list(items)))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"Cannot parse the parameters: {exc}") from None
    assert isinstance(params, dict)
    return params


def format_summary(summary: dict, seed: int) -> str:
    lines = [
        f"{summary['dataset']}: {summary['pieces']:,} pieces, {summary['notes']:,} notes, "
        f"{summary['duration']} ({summary['duration_s']:,.0f} s)",
        f"splits (seed {seed}): " + ", ".join(f"{k} {v:,}" for k, v in summary["splits"].items()),
    ]
    if "tokens" in summary:
        lines.append(
            f"tokens ({summary['token_kind']}): "
            + ", ".join(f"{k} {v:,}" for k, v in summary["tokens"].items())
        )
        label = "token shards" if summary.get("token_format") == "shards" else "token cache"
        lines.append(f"{label}: {summary['token_cache']}")
        lost = summary.get("not_represented") or {}
        if lost.get("notes"):
            reasons = "; ".join(f"{why}: {n:,}" for why, n in sorted(lost.get("reasons", {}).items(), key=lambda kv: -kv[1]))
            lines.append(
                f"notes the tokenizer cannot represent: {lost.get('dropped', 0):,} of {lost['notes']:,}"
                + (f" ({reasons})" if reasons else "")
            )
    if summary.get("split"):
        from musicfw.engine.splits import format_split_report

        lines.append(format_split_report(summary["split"]))
    skipped = summary["skipped"]
    lines.append(f"skipped: {len(skipped)}" + (" files" if skipped else ""))
    lines.extend(f"  {item}" for item in skipped)
    return "\n".join(lines)


def _prepare(args: argparse.Namespace, registries: Any) -> int:
    from omegaconf import OmegaConf

    from musicfw.core.build import build_from_section
    from musicfw.core.params import validate_plugin_section

    params = _params(args.params)
    if args.workers is not None:
        if args.workers < 0:
            from musicfw.core.errors import ConfigError

            raise ConfigError(f"--workers {args.workers}: give a number of processes >= 0 (0: all cores).")
        params["num_workers"] = args.workers
    section = validate_plugin_section(
        OmegaConf.create({"name": args.name, **params}), "datasets", registries, key="data"
    )
    t0 = time.perf_counter()
    dataset = build_from_section("datasets", section, registries=registries)
    if args.tokenizer:
        from musicfw.engine.data import MusicDataModule

        tokenizer = build_from_section("tokenizers", {"name": args.tokenizer}, registries=registries)
        summary = MusicDataModule(
            dataset, tokenizer, seed=args.seed, cache_dir=section.get("cache_dir"), progress=not args.quiet,
            data_format=str(section.get("format", "cache") or "cache"),
            workers=int(section.get("num_workers", 0) or 0),
            shard_files=int(section.get("shard_files", 500) or 500),
        ).summary()
    else:
        from musicfw.engine.splits import load_data

        summary = load_data(dataset, seed=args.seed, progress=not args.quiet).summary()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        print()
    else:
        print(format_summary(summary, args.seed))
        print(f"prepared in {summary['seconds']:.1f} s")
    return 0


def _repair(args: argparse.Namespace, registries: Any) -> int:
    from musicfw.engine.shards import repair

    t0 = time.perf_counter()
    rebuilt = repair(args.folder, registries=registries, workers=args.workers, progress=not args.quiet)
    if rebuilt:
        n = sum(1 for name in rebuilt if name.endswith(".arrow"))
        print(f"rebuilt {n} shard(s) in {time.perf_counter() - t0:.1f} s: {', '.join(rebuilt)}")
    else:
        print(f"every shard in {args.folder} matches its manifest; nothing to rebuild")
    return 0

