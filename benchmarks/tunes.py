"""Tune-grouped splits (musicfw/music/tunes.py): how the groups and the leakage change with the
run length N, and how fast the grouping is on 100k melodies.

``--part runs`` (the table in docs/data.md): for each bundled corpus and each N, one run:

* groups: the tunes of more than one piece (pieces sharing an N-step melody run, transitively),
  the pieces in them and the largest tune (pieces, share of the corpus): a too-short N chains
  unrelated pieces through stock figures into one giant tune, which no split fraction survives;
* the split by tune at N (seed 0, the corpus' default fractions): test pieces, test pieces
  sharing a 16-step / 8-step run with the training split, the test split's 8-gram overlap;
* the split by piece (the dataset's own groups), for comparison: test pieces sharing an N-step
  run with the training split (the leakage a split by tune at N removes);
* chance: the share of folk tunes sharing an N-step run with a Bach chorale (two unrelated
  repertoires: what N lets through by coincidence).

``--part speed``: 100k synthetic melodies (random walks, 40-160 steps, 5% of them carrying a
32-step run copied from another), side by side with the peer, a pairwise comparison of n-gram
sets (measured on a subsample, extrapolated quadratically):

* melody extraction (:func:`musicfw.music.tunes.melody_from_notes`) from note arrays of 100k
  pieces (a monophonic line per piece, in batches of 1M notes as :func:`melodies` cuts them),
* grouping (:func:`tune_groups`: hashing, sorting, union-find), the leakage of an 80/20 split.

    python benchmarks/tunes.py --part runs [--runs 8,12,16,24,32]
    python benchmarks/tunes.py --part speed [--pieces 100000]
"""

from __future__ import annotations

import argparse
import collections
import time

import numpy as np


def _corpus(name: str):
    import musicfw
    from musicfw.music import tunes

    dataset = musicfw.build_dataset(name)
    pieces, _ = dataset.collect(progress=False)
    pieces = sorted(pieces, key=lambda p: p.id)
    return dataset, pieces, tunes.melodies([p.score for p in pieces])


def part_runs(runs: list[int], seed: int) -> None:
    from musicfw.core.dataset import assign_splits
    from musicfw.music import tunes

    corpora = {name: _corpus(name) for name in ("bach_chorales", "folk_melodies")}
    bach_index = tunes.MelodyIndex(corpora["bach_chorales"][2])
    folk = corpora["folk_melodies"][2]
    print(f"| corpus | N | tunes of >1 piece | pieces in them | largest tune | test pieces (by tune at N) "
          f"| test sharing 16 / 8 steps with train (by tune at N) | test 8-gram overlap (by tune at N) "
          f"| test sharing N steps with train, split by piece | folk tunes sharing N steps with a chorale |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (dataset, pieces, melodies) in corpora.items():
        cfg = dataset.config
        ids = [p.id for p in pieces]
        by_piece = assign_splits([p.group for p in pieces], seed, cfg.train_fraction, cfg.valid_fraction)
        piece_split = [by_piece[p.group] for p in pieces]
        for n in runs:
            t0 = time.perf_counter()
            keys = tunes.tune_groups(melodies, ids, n)
            seconds = time.perf_counter() - t0
            sizes = collections.Counter(keys)
            shared = [c for c in sizes.values() if c > 1]
            table = assign_splits(keys, seed, cfg.train_fraction, cfg.valid_fraction)
            split = [table[k] for k in keys]
            train = [m for m, s in zip(melodies, split) if s == "train"]
            test = [m for m, s in zip(melodies, split) if s == "test"]
            index = tunes.MelodyIndex(train)
            share16 = int(index.sharing(test, 16).sum())
            share8 = int(index.sharing(test, 8).sum())
            found, total = index.overlap(test, 8)
            p_index = tunes.MelodyIndex([m for m, s in zip(melodies, piece_split) if s == "train"])
            p_test = [m for m, s in zip(melodies, piece_split) if s == "test"]
            p_share = int(p_index.sharing(p_test, n).sum())
            chance = int(bach_index.sharing(folk, n).sum())
            largest = max(sizes.values())
            print(
                f"| {name} | {n} | {len(shared):,} | {sum(shared):,} | {largest:,} ({100 * largest / len(pieces):.1f}%) "
                f"| {len(test):,} | {share16:,} / {share8:,} | {100 * found / max(total, 1):.1f}% "
                f"| {p_share:,} of {len(p_test):,} | {chance:,} of {len(folk):,} ({100 * chance / len(folk):.2f}%) |"
                f"  <!-- grouping {seconds:.2f} s -->"
            )


def _synthetic(n_pieces: int, seed: int):
    """Note arrays of ``n_pieces`` monophonic lines (onset, end, pitch, owner) and their
    planted duplicates: piece i copies a 32-step stretch of piece ``copied[i]`` (or -1)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(41, 161, n_pieces)  # notes per piece: 40-160 steps
    owner = np.repeat(np.arange(n_pieces), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    pos = np.arange(len(owner)) - starts[owner]
    durations = rng.choice(np.array([1, 2, 2, 4, 4, 4, 6, 8]), size=len(owner))
    intervals = rng.integers(-3, 4, size=len(owner))
    copied = np.full(n_pieces, -1)
    chosen = rng.permutation(n_pieces)
    donors, takers = chosen[: n_pieces // 20], chosen[n_pieces // 20 : n_pieces // 10]
    for d, t in zip(donors, takers):  # a 33-note (32-step) stretch: the same intervals and lengths
        a, b = starts[d] + 2, starts[t] + 5
        durations[b : b + 33] = durations[a : a + 33]
        intervals[b + 1 : b + 33] = intervals[a + 1 : a + 33]
        copied[t] = d
    intervals[pos == 0] = 0
    pitch = 60 + np.cumsum(intervals)
    pitch = pitch - (pitch[starts] - 60)[owner]  # each piece starts at 60 (mod drift), within MIDI
    pitch = np.clip(pitch, 0, 127)
    onset = np.cumsum(durations) - durations
    onset = onset - onset[starts][owner]
    return onset * 120, (onset + durations) * 120, pitch, owner, copied


def part_speed(n_pieces: int, pairwise: int, seed: int) -> None:
    from musicfw.music import tunes

    onset, end, pitch, owner, copied = _synthetic(n_pieces, seed)
    print(f"{n_pieces:,} synthetic melodies, {len(onset):,} notes, {int((copied >= 0).sum()):,} planted copies")
    t0 = time.perf_counter()
    melodies: list[np.ndarray] = []
    bounds = np.searchsorted(owner, np.arange(n_pieces + 1))
    step = max(1, tunes.BATCH_NOTES // 100)
    for lo in range(0, n_pieces, step):  # batches of ~1M notes, as tunes.melodies cuts them
        hi = min(lo + step, n_pieces)
        sl = slice(bounds[lo], bounds[hi])
        melodies.extend(tunes.melody_from_notes(onset[sl], end[sl], pitch[sl], 480, owner[sl] - lo, hi - lo))
    t_melody = time.perf_counter() - t0
    t0 = time.perf_counter()
    keys = tunes.tune_groups(melodies, [f"p{i:06d}" for i in range(n_pieces)], tunes.DEFAULT_RUN)
    t_group = time.perf_counter() - t0
    found = sum(1 for t, d in enumerate(copied) if d >= 0 and keys[t] == keys[d])
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed + 1)
    is_train = rng.random(n_pieces) < 0.8
    report = tunes.leakage([m for m, tr in zip(melodies, is_train) if tr], [m for m, tr in zip(melodies, is_train) if not tr])
    t_leak = time.perf_counter() - t0
    # the peer: every pair of pieces compared through sets of n-step runs (a subsample)
    n = tunes.DEFAULT_RUN
    sets = [{tuple(m[i : i + n].tolist()) for i in range(len(m) - n + 1)} for m in melodies[:pairwise]]
    t0 = time.perf_counter()
    pairs = 0
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            pairs += bool(sets[i] & sets[j])
    t_pair_sub = time.perf_counter() - t0
    t_pair = t_pair_sub * (n_pieces / pairwise) ** 2
    total = t_melody + t_group
    print(f"planted copies found in one tune: {found:,} of {int((copied >= 0).sum()):,}; "
          f"tunes of >1 piece: {sum(1 for c in collections.Counter(keys).values() if c > 1):,}")
    print(f"leakage of a random 80/20 split: {report['test_sharing_run']:,} of {report['test_pieces']:,} test melodies")
    print()
    print("| step | seconds | ratio to the pairwise peer |")
    print("|---|---|---|")
    print(f"| melody extraction, {len(onset):,} notes | {t_melody:.2f} | |")
    print(f"| grouping: hash {n}-step runs, sort, union-find | {t_group:.2f} | |")
    print(f"| leakage of an 80/20 split (16-step runs, 4- and 8-gram overlap) | {t_leak:.2f} | |")
    print(f"| melody + grouping | {total:.2f} | {t_pair / total:,.0f}x faster |")
    print(f"| peer: pairwise set intersection ({pairwise:,} pieces: {t_pair_sub:.2f} s), extrapolated to "
          f"{n_pieces:,} | {t_pair:,.0f} | 1 |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("runs", "speed"), default="runs")
    parser.add_argument("--runs", default="8,12,16,24,32", help="run lengths N to measure")
    parser.add_argument("--pieces", type=int, default=100_000)
    parser.add_argument("--pairwise", type=int, default=2_000, help="pieces in the pairwise peer's subsample")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.part == "runs":
        part_runs([int(x) for x in args.runs.split(",")], args.seed)
    else:
        part_speed(args.pieces, args.pairwise, args.seed)


if __name__ == "__main__":
    main()
