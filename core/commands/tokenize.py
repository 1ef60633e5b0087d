"""``musicfw tokenize --tokenizer NAME [key=value ...] FILE.mid``: print a file's tokens."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokenize",
        help="print the tokens of a MIDI file, for a person to inspect",
        description="Encode a MIDI file with a tokenizer and print the token names (one bar per "
        "line for remi; frames for pianoroll). Tokenizer parameters are key=value pairs, e.g. "
        "`musicfw tokenize --tokenizer remi use_chords=true song.mid`.",
    )
    p.add_argument("--tokenizer", "-t", required=True, metavar="NAME", help="tokenizer plugin name")
    p.add_argument("params", nargs="*", metavar="key=value", help="tokenizer parameters")
    p.add_argument("file", metavar="FILE.mid", help="the MIDI file")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="print only the first N tokens")
    p.add_argument("--ids", action="store_true", help="print id:name instead of names")
    p.add_argument("--json", action="store_true", help="print {tokenizer, ids, names} as JSON")
    p.set_defaults(func=main)


def _parse_params(items: list[str]) -> dict:
    import yaml

    from ..errors import ConfigError

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


def main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from ..build import build
    from ..errors import DataError

    tokenizer = build("tokenizers", args.tokenizer, key="--tokenizer", **_parse_params(args.params))
    path = Path(args.file)
    if not path.is_file():
        raise DataError(f"no such MIDI file: {path}")
    import symusic

    try:
        score = symusic.Score(str(path))
    except Exception as exc:  # symusic raises plain errors for unreadable files
        raise DataError(f"cannot read {path} as MIDI: {exc}") from None
    tokens = tokenizer.encode(score)
    shown = tokens if args.limit is None else tokens[: max(args.limit, 0)]
    names = tokenizer.token_names(shown)
    if args.json:
        ids = shown.tolist()
        json.dump({"tokenizer": tokenizer.to_dict()["config"] | {"name": tokenizer.name}, "ids": ids, "names": names},
                  sys.stdout)
        print()
        return 0
    n_notes = tokenizer.count_notes(tokens)
    shape = "x".join(str(s) for s in tokens.shape)
    print(f"# {path.name}: {tokenizer.name}, {shape} tokens, vocabulary {tokenizer.vocab_size}, {n_notes} notes")
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
    return 0
