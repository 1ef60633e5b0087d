"""First preparation of the bundled corpora: music21 conversion against the shipped archives,
side by side, with a full identity check of what both give.

For each corpus, in one run:

* before: ``load()`` with ``shipped=False`` into an empty cache folder: music21 converts every
  piece in worker processes (``--workers``, default all cores), what every first run did
  before the archives were shipped;
* after: ``load()`` with the shipped archives into another empty cache folder (nothing may be
  converted: the folder must stay absent);
* identity: the piece ids, splits (``--seed``), note counts, titles, skipped pieces with their
  reasons, and the dataset fingerprint (a digest of every piece's MIDI bytes) must be equal.

``--before-cache DIR`` reuses a conversion cache made earlier (for instance by
``MUSICFW_CACHE_DIR=DIR musicfw data prepare NAME shipped=false``) instead of converting again:
the identity check is the same, the "before" time is then not a conversion and is not printed.

    python benchmarks/corpora.py [bach_chorales folk_melodies] [--seed 0] [--workers 0] [--before-cache DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def _load(name: str, cache: Path, shipped: bool, seed: int, workers: int):
    import musicfw

    t0 = time.perf_counter()
    data = musicfw.load_data(
        musicfw.build_dataset(name, cache_dir=str(cache), shipped=shipped, num_workers=workers), seed=seed, progress=False
    )
    return data, time.perf_counter() - t0


def compare(before, after) -> list[str]:
    problems = []
    checks = {
        "ids": lambda d: [p.id for p in d.pieces()],
        "splits": lambda d: [p.split for p in d.pieces()],
        "note counts": lambda d: [p.n_notes for p in d.pieces()],
        "titles": lambda d: [p.title for p in d.pieces()],
        "skipped": lambda d: list(d.skipped),
        "MIDI bytes (fingerprint)": lambda d: d.fingerprint(),
    }
    for what, get in checks.items():
        if get(before) != get(after):
            problems.append(what)
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpora", nargs="*", default=["bach_chorales", "folk_melodies"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--before-cache", default=None)
    args = parser.parse_args()
    failed = False
    print(f"{'corpus':<15} {'before (s)':>11} {'after (s)':>10} {'ratio':>8}  pieces, notes, splits; identical?", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.corpora:
            before_cache = Path(args.before_cache) if args.before_cache else Path(tmp) / f"before-{name}"
            before, t_before = _load(name, before_cache, False, args.seed, args.workers)
            after_cache = Path(tmp) / f"after-{name}"
            after, t_after = _load(name, after_cache, True, args.seed, args.workers)
            if after_cache.exists():
                print(f"{name}: the shipped load converted something into {after_cache}", file=sys.stderr)
                failed = True
            problems = compare(before, after)
            failed |= bool(problems)
            s = after.summary()
            t_before = None if args.before_cache else t_before
            before_txt = f"{t_before:11.1f}" if t_before is not None else f"{'(reused)':>11}"
            ratio = f"{t_before / t_after:7.0f}x" if t_before is not None else f"{'-':>8}"
            splits = "/".join(str(v) for v in s["splits"].values())
            same = "identical" if not problems else "DIFFERENT: " + ", ".join(problems)
            print(f"{name:<15} {before_txt} {t_after:10.2f} {ratio}  {s['pieces']:,}, {s['notes']:,}, {splits}; {same}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
