"""``musicfw tokenize --tokenizer NAME [key=value ...] FILE.mid``: print a file's tokens."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from musicfw.core.command import Command
from musicfw.cli.commands._output import add_limit_arguments, apply_limit_arguments, stdout_closed


class Tokenize(Command):
    name = "tokenize"
    help = "print the tokens of a MIDI file, for a person to inspect"
    description = (
        "Encode a MIDI file with a tokenizer and print the token names (one bar per "
        "line for remi; frames for pianoroll). Tokenizer parameters are key=value pairs, e.g. "
        "`musicfw tokenize --tokenizer remi use_chords=true song.mid`."
    )

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--tokenizer", "-t", required=True, metavar="NAME", help="tokenizer plugin name")
        p.add_argument("params", nargs="*", metavar="key=value", help="tokenizer parameters")
        p.add_argument("file", metavar="FILE.mid", help="the MIDI file")
        p.add_argument("--limit", type=int, default=None, metavar="N", help="print only the first N tokens")
        p.add_argument("--ids", action="store_true", help="print id:name instead of names")
        p.add_argument("--json", action="store_true", help="print {tokenizer, ids, names, coverage} as JSON")
        add_limit_arguments(p)

    def run(self, args: argparse.Namespace, context: Any) -> int:
        return show(args, context.registries)


def _parse_params(items: list[str]) -> dict:
    import yaml

    from musicfw.core.errors import ConfigError

    params = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"tokenizer parameter {item!r} is not key=value (e.g. beat_resolution=8)")
        key, value = item.split("=", 1)
        try:
            params[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            params[key.strip()] = value
    return params


def coverage_line(cov: dict) -> str:
    """``12 of 1,200 notes not represented: 12 drum track (...)`` (or all represented)."""
    if not cov["dropped"]:
        text = f"all {cov['notes']:,} notes represented"
    else:
        why = "; ".join(f"{n:,} {reason}" for reason, n in cov["reasons"].items())
        text = f"{cov['dropped']:,} of {cov['notes']:,} notes not represented: {why}"
    if cov.get("altered"):
        text += "; changed: " + "; ".join(f"{n:,} {what}" for what, n in cov["altered"].items())
    return text


def show(args: argparse.Namespace, registries: Any) -> int:
    """Print the tokens of ``args.file`` (see the command's help)."""
    import json
    from pathlib import Path

    import numpy as np

    from musicfw.core.build import build
    from musicfw.core.errors import DataError
    from musicfw.music.limits import PieceRejected
    from musicfw.music.midiload import load_score

    tokenizer = build(
        "tokenizers", args.tokenizer, registries=registries, key="--tokenizer", **_parse_params(args.params)
    )
    apply_limit_arguments(args)
    path = Path(args.file)
    if not path.is_file():
        raise DataError(f"no such MIDI file: {path}")
    # the tokenizer applies the limits itself (and its coverage reports a cut)
    score, reason = load_score(path, min_notes=0, check_limits=False)
    if reason is not None:
        raise DataError(f"cannot use {path}: {reason}")
    try:
        tokens = tokenizer.encode(score)
        coverage = tokenizer.coverage(score, tokens)
    except PieceRejected as exc:
        raise DataError(f"cannot tokenize {path} with {tokenizer.name}: {exc}") from None
    shown = tokens if args.limit is None else tokens[: max(args.limit, 0)]
    names = tokenizer.token_names(shown)
    try:
        if args.json:
            ids = shown.tolist()
            json.dump(
                {
                    "tokenizer": tokenizer.to_dict()["config"] | {"name": tokenizer.name},
                    "ids": ids,
                    "names": names,
                    "coverage": coverage,
                },
                sys.stdout,
            )
            print()
            sys.stdout.flush()
            return 0
        n_notes = tokenizer.count_notes(tokens)
        shape = "x".join(str(s) for s in tokens.shape)
        print(f"# {path.name}: {tokenizer.name}, {shape} tokens, vocabulary {tokenizer.vocab_size}, {n_notes} notes")
        print(f"# coverage: {coverage_line(coverage)}")
        if args.ids and tokenizer.kind == "categorical":
            names = [f"{int(i)}:{n}" for i, n in zip(shown, names)]
        # one bar per line where the tokenizer's clock marks bars with tokens (REMI's Bar, ...),
        # else 16 tokens per line
        clock = tokenizer.clock(1) if tokenizer.kind == "categorical" else None
        opens_bar = (
            clock.would_open_bar(np.asarray(shown, dtype=np.int64).reshape(-1, 1)).reshape(-1)
            if clock is not None and clock.bar_tokens else None
        )
        line: list[str] = []
        for i, name in enumerate(names):
            if opens_bar is not None and opens_bar[i] and line:
                print(" ".join(line))
                line = []
            line.append(name)
            if opens_bar is None and len(line) >= 16:
                print(" ".join(line))
                line = []
        if line:
            print(" ".join(line))
        sys.stdout.flush()
    except BrokenPipeError:  # `musicfw tokenize x.mid | head`
        return stdout_closed()
    return 0
