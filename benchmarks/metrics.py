"""Speed of the evaluation metrics, side by side with mgeval's way of computing them.

    python benchmarks/metrics.py [--pieces N] [--repeat R] [--peer-features K]

1. Features: Yang & Lerch (and MusPy-style statistics) of every Bach chorale in music21's
   corpus (~410; the bach_chorales dataset converts and caches them on first use; that
   conversion is not timed).  Target: < 5 s for the Yang & Lerch features.
2. Set comparison of 100 vs 100 chorales over every feature: intra-/inter-set distances, KDEs,
   KL divergence and overlapping area.  Target: < 10 s.
   The peer is mgeval's method as its utils.py and demo notebook compute it: leave-one-out
   loops of per-pair ``np.linalg.norm``, ``scipy.stats.gaussian_kde`` evaluated point by
   point, KL on two separate linspace grids and the overlap with ``scipy.integrate.quad``.
   It runs on ``--peer-features`` features (it is slow) and the table scales its time per
   feature.  The same run checks that our binned KDE agrees with scipy's exact KDE.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load_chorales(limit: int | None):
    import musicfw

    t0 = time.perf_counter()
    data = musicfw.load_data("bach_chorales", seed=0, progress=True)
    pieces = data.pieces()
    if limit:
        pieces = pieces[:limit]
    return [(p.id, p.score) for p in pieces], time.perf_counter() - t0


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


# -- mgeval's comparison, as its utils.py / demo.ipynb compute it --------------------------


def mgeval_compare(gen: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    import warnings

    from scipy import integrate, stats

    warnings.filterwarnings("ignore", category=integrate.IntegrationWarning)

    def c_dist(a, b):
        out = np.zeros(len(b))
        for i in range(len(b)):
            out[i] = np.linalg.norm(a - b[i])
        return out

    n_g, n_r = len(gen), len(ref)
    intra = []
    for i in range(n_g):  # leave-one-out, as the notebook's LeaveOneOut loop
        others = np.delete(gen, i, axis=0)
        intra.append(c_dist(gen[i], others))
    inter = [c_dist(gen[i], ref) for i in range(n_g)]
    intra_d = np.concatenate(intra)
    inter_d = np.concatenate(inter)
    pdf_a, pdf_b = stats.gaussian_kde(intra_d), stats.gaussian_kde(inter_d)
    sa = np.linspace(intra_d.min(), intra_d.max(), 1000)
    sb = np.linspace(inter_d.min(), inter_d.max(), 1000)
    kl = stats.entropy(pdf_a(sa), pdf_b(sb))
    lo, hi = min(intra_d.min(), inter_d.min()), max(intra_d.max(), inter_d.max())
    oa = integrate.quad(lambda x: min(pdf_a(x)[0], pdf_b(x)[0]), lo, hi, limit=50)[0]
    return {"kl": float(kl), "oa": float(oa), "n_ref": n_r}


def kde_agreement(gen: np.ndarray, ref: np.ndarray) -> float:
    """Max |OA(ours) - OA(scipy exact KDE on our grid)| for one feature."""
    from scipy import stats

    from musicfw.music.setcompare import compare_feature, pairwise_distances

    row, curves = compare_feature(gen, ref)
    x = np.asarray(curves["x"])
    intra = np.repeat(pairwise_distances(gen), 2)  # ordered pairs, as mgeval's loop
    inter = pairwise_distances(gen, ref)
    grid = np.linspace(x[0], x[-1], 1024)
    dx = grid[1] - grid[0]
    p = stats.gaussian_kde(intra)(grid)
    q = stats.gaussian_kde(inter)(grid)
    exact_oa = float(np.minimum(p / (p.sum() * dx), q / (q.sum() * dx)).sum() * dx)
    return abs(exact_oa - row["oa_generated"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", type=int, default=0, help="limit the corpus (0: all chorales)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peer-features", type=int, default=2)
    args = ap.parse_args(argv)

    import musicfw
    from musicfw.engine.evaluation import piece_features
    from musicfw.music.notes import piece_notes
    from musicfw.music.setcompare import compare_sets, stack_features

    pieces, load_s = load_chorales(args.pieces or None)
    n_notes = sum(s.note_num() for _, s in pieces)
    print(f"Bach chorales: {len(pieces)} pieces, {n_notes} notes (loaded in {load_s:.1f} s, not timed below)")

    yl = musicfw.build_metric("yang_lerch")
    mp = musicfw.build_metric("muspy")
    t_yl, _ = timed(lambda: [yl.features(s) for _, s in pieces], args.repeat)
    t_mp, _ = timed(lambda: [mp.features(s) for _, s in pieces], args.repeat)
    t_both, (feats, info) = timed(lambda: piece_features([yl, mp], pieces), args.repeat)
    t_notes, _ = timed(lambda: [piece_notes(s) for _, s in pieces], args.repeat)

    names = list(info)
    per_piece = list(feats.values())
    n_set = min(100, len(per_piece) // 2)
    gen = stack_features(per_piece[:n_set], names)
    ref = stack_features(per_piece[n_set : 2 * n_set], names)
    t_cmp, comp = timed(lambda: compare_sets(gen, ref), args.repeat)

    # the peer on a few features (its time grows with every feature)
    peer_names = [n for n in names if np.ndim(gen[n][0]) == 0][: max(1, args.peer_features // 2)]
    peer_names += [n for n in names if np.ndim(gen[n][0]) > 0][: max(1, args.peer_features - len(peer_names))]
    t0 = time.perf_counter()
    peer = {n: mgeval_compare(gen[n].reshape(n_set, -1), ref[n].reshape(n_set, -1)) for n in peer_names}
    t_peer = time.perf_counter() - t0
    t_peer_all = t_peer / len(peer_names) * len(names)
    t_ours_peer, _ = timed(lambda: compare_sets({n: gen[n] for n in peer_names}, {n: ref[n] for n in peer_names}), args.repeat)
    agreement = max(kde_agreement(gen[n], ref[n]) for n in names)

    print()
    print(f"{'measure':<58} {'time (s)':>9}  {'target':>8}")
    print("-" * 79)
    print(f"{'Yang & Lerch features, ' + str(len(pieces)) + ' chorales':<58} {t_yl:>9.2f}  {'< 5 s':>8}")
    print(f"{'MusPy-style statistics, ' + str(len(pieces)) + ' chorales':<58} {t_mp:>9.2f}")
    print(f"{'both, sharing one note extraction per piece':<58} {t_both:>9.2f}")
    print(f"{'  of which note extraction (ticks + seconds)':<58} {t_notes:>9.2f}")
    label = f"set comparison {n_set} vs {n_set}, all {len(names)} features"
    print(f"{label:<58} {t_cmp:>9.2f}  {'< 10 s':>8}")
    print()
    print(f"side by side with mgeval's comparison method on {len(peer_names)} features ({', '.join(peer_names)}):")
    print(f"{'':<40} {'musicfw':>10} {'mgeval way':>11} {'ratio':>8}")
    print(f"{'seconds, ' + str(len(peer_names)) + ' features':<40} {t_ours_peer:>10.3f} {t_peer:>11.2f} {t_peer / t_ours_peer:>7.0f}x")
    print(f"{'seconds, all features (peer scaled)':<40} {t_cmp:>10.3f} {t_peer_all:>11.1f} {t_peer_all / t_cmp:>7.0f}x")
    print()
    print(f"{'feature':<32} {'OA ours':>8} {'OA mgeval':>10} {'KLD ours':>9} {'KLD mgeval':>11}")
    for n in peer_names:
        row = comp["features"][n]
        print(f"{n:<32} {row['oa_generated']:>8.3f} {peer[n]['oa']:>10.3f} {row['kl_generated']:>9.3f} {peer[n]['kl']:>11.3f}")
    print(
        "(mgeval integrates only between the smallest and largest distance, cutting the kernel "
        "tails, and evaluates the two densities of its KL on different grids; see docs/metrics.md)"
    )
    print(f"\nbinned KDE vs scipy's exact gaussian_kde on the same grid: max |OA difference| over features = {agreement:.4f}")
    s = comp["summary"]
    print(f"mean OA (first {n_set} vs next {n_set} chorales): {s['mean_oa_generated']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
