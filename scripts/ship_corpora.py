"""Convert music21's bundled corpora to MIDI and write the archives musicfw ships.

    python scripts/ship_corpora.py [--cache-dir DIR] [--out plugins/datasets/data] [--workers N]

Writes ``music21_<collection>.zip`` for ``bach`` (bach_chorales) and the four folk collections
(folk_melodies) with :func:`musicfw.plugins.datasets.corpora.build_archive`: the same
conversion as a first local load (:func:`musicfw.plugins.datasets.m21convert.convert`, parallel
worker processes).  Conversions already in the cache folder are reused, so running it after
``musicfw data prepare NAME shipped=false`` only packs them.  Rerun it when music21's corpus
or the converter changes (bump ``CONVERTER_VERSION`` in corpora.py for the latter).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from musicfw.plugins.datasets import corpora
from musicfw.core.dataset import cache_root
from musicfw.plugins.datasets.corpora import build_archive
from musicfw.plugins.datasets.shipped import DATA_DIR


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", default=None, help="conversion cache (default: musicfw's)")
    parser.add_argument("--out", default=str(DATA_DIR), help="where the archives go")
    parser.add_argument("--workers", type=int, default=0, help="conversion processes (0: all cores)")
    parser.add_argument("--only", nargs="*", default=None, help="collections to build (default: all)")
    args = parser.parse_args()
    units = corpora.BachChorales().units() + corpora.FolkMelodies().units()
    by_collection: dict[str, list] = {}
    for unit in units:
        by_collection.setdefault(unit.id.split("/", 1)[0], []).append(unit)
    root = cache_root(args.cache_dir)
    for collection, members in by_collection.items():
        if args.only and collection not in args.only:
            continue
        t0 = time.perf_counter()
        path = build_archive(collection, members, root, Path(args.out), workers=args.workers)
        print(f"{path}: {len(members)} pieces, {path.stat().st_size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
