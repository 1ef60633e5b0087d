"""What the hardening (docs/reliability.md) costs on ordinary files, side by side in one run.

* pitch-class transition matrix: the pair-listing version (memory ~ 8 bytes per pair of notes
  within 0.05 s of each other) against the prefix sums of pitch classes now in
  ``plugins/metrics/yang_lerch.py``;
* piano-roll and melody frames: ``np.bincount`` on int64 cells (the earlier encode, ~25 bytes
  per cell) against ``np.add.at`` on int32 cells (now, ~5 bytes per cell);
* ``check_piece``: what the limits check adds per piece.

Times are the best of --repeat runs over tests/data/midi/{one_track,multitrack} (ratio =
new / old; below 1 is faster).  Peak memory of the 50,000-note chord is printed for the new
matrix only: the old one needs ~18.6 GiB.

    python benchmarks/hardening.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIDI = REPO / "tests" / "data" / "midi"


def pctm_pairs(notes, threshold_s):
    n = len(notes)
    if n < 2:
        return np.zeros((12, 12))
    order = np.argsort(notes.start_s, kind="stable")
    starts = notes.start_s[order]
    lo = np.searchsorted(starts, notes.end_s - threshold_s, side="right")
    hi = np.searchsorted(starts, notes.end_s + threshold_s, side="left")
    counts = np.maximum(hi - lo, 0)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((12, 12))
    src = np.repeat(np.arange(n), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    dst = order[np.repeat(lo, counts) + offsets]
    keep = src != dst
    pc = notes.pitch % 12
    return np.bincount(pc[src[keep]] * 12 + pc[dst[keep]], minlength=144).reshape(12, 12).astype(np.float64)


def rolls_bincount(start, end, key, T, K):
    size = (T + 1) * K
    diff = np.bincount(start * K + key, minlength=size) - np.bincount(end * K + key, minlength=size)
    return (np.cumsum(diff.reshape(T + 1, K), axis=0)[:T] > 0).astype(np.uint8)


def rolls_add_at(start, end, key, T, K):
    diff = np.zeros((T + 1, K), dtype=np.int32)
    np.add.at(diff, (start, key), 1)
    np.add.at(diff, (end, key), -1)
    np.cumsum(diff, axis=0, out=diff)
    return (diff[:T] > 0).view(np.uint8)


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    import musicfw
    from musicfw.music.limits import check_piece
    from musicfw.music.midiload import load_score
    from musicfw.music.notes import piece_notes
    from musicfw.plugins.metrics.yang_lerch import pitch_class_transitions

    paths = sorted((MIDI / "one_track").glob("*.mid")) + sorted((MIDI / "multitrack").glob("*.mid"))
    scores = [s for s, r in (load_score(p) for p in paths) if s is not None]
    notes = [piece_notes(s) for s in scores]
    n_notes = sum(len(n) for n in notes)
    print(f"{len(scores)} files, {n_notes:,} notes")

    for a, b in zip(notes, notes):
        assert np.array_equal(pctm_pairs(a, 0.05), pitch_class_transitions(b, 0.05))
    old = best(lambda: [pctm_pairs(n, 0.05) for n in notes], args.repeat)
    new = best(lambda: [pitch_class_transitions(n, 0.05) for n in notes], args.repeat)
    print(f"pitch-class transitions: pairs {old * 1e3:.1f} ms, prefix sums {new * 1e3:.1f} ms, ratio {new / old:.2f}")

    tok = musicfw.build_tokenizer("pianoroll")
    qs = [tok.quantize(s) for s in scores]
    K = tok.n_pitches
    cases = []
    for q in qs:
        T = int(q["end"].max()) if len(q["end"]) else 0
        cases.append((q["start"], q["end"], q["pitch"] - tok.config.min_pitch, T, K))
    for c in cases:
        assert np.array_equal(rolls_bincount(*c), rolls_add_at(*c))
    old = best(lambda: [rolls_bincount(*c) for c in cases], args.repeat)
    new = best(lambda: [rolls_add_at(*c) for c in cases], args.repeat)
    cells = sum(c[3] * K for c in cases)
    print(f"piano-roll frames ({cells:,} cells): bincount int64 {old * 1e3:.1f} ms, add.at int32 {new * 1e3:.1f} ms, ratio {new / old:.2f}")

    t_check = best(lambda: [check_piece(s) for s in scores], args.repeat)
    t_encode = best(lambda: [tok.encode(s) for s in scores], args.repeat)
    print(f"check_piece: {t_check * 1e3:.2f} ms for all files ({t_check / t_encode:.1%} of a pianoroll encode of them)")

    from musicfw.music.midiload import parse_score

    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("hostile", REPO / "tests" / "test_hardening.py")
    chord = None
    if spec and spec.loader:
        module = importlib.util.module_from_spec(spec)
        sys.modules["hostile"] = module
        spec.loader.exec_module(module)
        chord, _ = parse_score(module.simultaneous(50_000))
    if chord is not None:
        cn = piece_notes(chord)
        tracemalloc.start()
        t0 = time.perf_counter()
        pitch_class_transitions(cn, 0.05)
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"50,000 simultaneous notes: prefix sums {dt * 1e3:.0f} ms, peak {peak / 2**20:.1f} MiB "
              f"(pair listing: {50_000 * 49_999 * 8 / 2**30:.1f} GiB for the pair indices alone)")


if __name__ == "__main__":
    main()
