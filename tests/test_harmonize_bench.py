"""benchmarks/harmonize.py's intervals: how surely the soprano lowers the lower voices' NLL (a
paired bootstrap over the chorales), and a set's chord-tone ratio against the real chorales'."""

from __future__ import annotations

import numpy as np

from conftest import benchmark_module


def _bench():
    return benchmark_module("harmonize")


def _nll(given, absent):
    return {"given soprano": {"piece_nll_sums": list(given)}, "soprano absent": {"piece_nll_sums": list(absent)}}


def test_soprano_effect_interval_excludes_one_only_when_the_soprano_helps_throughout():
    bench = _bench()
    rng = np.random.default_rng(1)
    absent = rng.uniform(200, 900, size=41)
    helped = bench.soprano_effect(_nll(absent * rng.uniform(0.88, 0.96, size=41), absent))
    assert helped["pieces_lower"] == 41 and helped["pieces"] == 41
    lo, hi = helped["ci95"]
    assert lo < helped["ratio"] < hi < 0.97 and lo > 0.88
    # pieces helped and hurt alike: the interval straddles 1 and about half are lower
    mixed = bench.soprano_effect(_nll(absent * rng.uniform(0.85, 1.15, size=41), absent))
    assert mixed["ci95"][0] < 1.0 < mixed["ci95"][1] and 10 < mixed["pieces_lower"] < 31
    # the ratio is of the sums (the same target tokens), not a mean of per-piece ratios
    two = bench.soprano_effect(_nll([90.0, 10.0], [100.0, 5.0]))
    assert abs(two["ratio"] - 100.0 / 105.0) < 1e-12 and two["pieces_lower"] == 1


def test_paired_interval_pairs_the_pieces():
    """Two sets that differ by a constant piece by piece give a tight interval around it even
    when the pieces themselves vary widely (an unpaired resampling would not)."""
    bench = _bench()
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 100, size=40)
    diff = lambda x, y, axis=-1: x.mean(axis) - y.mean(axis)  # noqa: E731
    lo, hi = bench.paired_ci((a + 3.0 + rng.normal(0, 0.1, size=40), a), diff)
    assert 2.9 < lo < 3.0 < hi < 3.1
    # exactly constant: BCa is undefined there, the percentile interval is the constant
    lo, hi = bench.paired_ci((a + 3.0, a), diff)
    assert 2.999 < lo <= hi < 3.001
