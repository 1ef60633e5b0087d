"""How fast the ``originality`` metric (plugins/metrics/originality.py) is on a big training set.

The folk melodies corpus (~12.7k tunes): 10,000 tunes are the training set, and the audit is
run for the remaining tunes as "held-out" pieces and for a stand-in "generated" set (each
held-out melody with a 24-step run of a training melody spliced into its middle, so the
longest shared run is known to be at least 24).  Timed separately:

* melody extraction from the Scores (:func:`musicfw.music.tunes.melodies`), for the training set;
* the audit: indexing the training melodies (sorted hashes), the longest shared run of every
  query piece (:meth:`MelodyIndex.longest_shared_runs`) and the 8-/16-step run shares, for both
  query sets (what ``evaluate.metrics: [originality]`` computes);
* the peer: the same longest shared run by a per-piece binary search over the run length
  (:meth:`MelodyIndex.longest_shared_run`, one full hash set per probed length), on 50 pieces.

    python benchmarks/originality.py [--train 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=10_000)
    ap.add_argument("--peer", type=int, default=50, help="pieces the per-piece peer is timed on")
    args = ap.parse_args()

    import musicfw
    from musicfw.music import tunes
    from musicfw.plugins.metrics.originality import audit

    dataset = musicfw.build_dataset("folk_melodies")
    pieces, _ = dataset.collect(progress=False)
    pieces = sorted(pieces, key=lambda p: p.id)
    order = np.random.default_rng(0).permutation(len(pieces))
    train_pieces = [pieces[i] for i in order[: args.train]]
    held_pieces = [pieces[i] for i in order[args.train :]]
    notes = sum(int(p.score.note_num()) for p in train_pieces)

    t = time.perf_counter()
    train = tunes.melodies([p.score for p in train_pieces])
    t_extract = time.perf_counter() - t
    held = tunes.melodies([p.score for p in held_pieces])
    rng = np.random.default_rng(1)
    generated = []
    for m in held:
        src = train[int(rng.integers(len(train)))]
        while len(src) < 24:
            src = train[int(rng.integers(len(train)))]
        a = int(rng.integers(len(src) - 24 + 1))
        half = len(m) // 2
        generated.append(np.concatenate([m[:half], src[a : a + 24], m[half:]]).astype(np.uint16))

    t = time.perf_counter()
    result = audit(train, generated, held)
    t_audit = time.perf_counter() - t

    index = tunes.MelodyIndex(train)
    t = time.perf_counter()
    peer = [index.longest_shared_run(m) for m in generated[: args.peer]]
    t_peer = time.perf_counter() - t
    ours = tunes.MelodyIndex(train).longest_shared_runs(generated[: args.peer])
    assert list(ours) == peer, "the batched longest run disagrees with the per-piece binary search"
    assert result["generated"]["longest_run_median"] >= 24

    steps = sum(len(m) for m in train)
    print(f"folk_melodies: {len(train):,} training tunes ({notes:,} notes, {steps:,} melody steps), "
          f"{len(held):,} held-out tunes, {len(generated):,} stand-in generated pieces")
    print()
    print("| stage | seconds |")
    print("| --- | --- |")
    print(f"| melody extraction, {len(train):,} training Scores | {t_extract:.2f} |")
    print(f"| audit: index + longest run + 8/16-step shares, {len(generated) + len(held):,} queries | {t_audit:.2f} |")
    print(f"| total | {t_extract + t_audit:.2f} |")
    per_peer = t_peer / max(len(peer), 1)
    per_ours = t_audit / max(len(generated) + len(held), 1)
    print(f"| peer: per-piece binary search, {len(peer)} pieces | {t_peer:.2f} ({per_peer * 1000:.0f} ms/piece; "
          f"ours {per_ours * 1000:.1f} ms/piece incl. the shares, {per_peer / per_ours:.0f}x) |")
    print()
    for name in ("generated", "heldout"):
        s = result[name]
        print(f"{name:9s}: pieces {s['pieces']}, longest shared run median {s['longest_run_median']:.0f} "
              f"max {s['longest_run_max']:.0f}, 8-step runs in train {s['shared_8_mean']:.3f}, "
              f"16-step {s['shared_16_mean']:.3f}")


if __name__ == "__main__":  # pragma: no cover
    main()
