"""Yang & Lerch features against literal (per-note loop) re-implementations of mgeval's
definitions, and the set comparison against scipy's KDE on known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import symusic

import musicfw
from musicfw.music.setcompare import compare_feature, compare_sets, kde_on_grid, scott_bandwidth
from musicfw.plugins.metrics.yang_lerch import NOTE_LENGTH_CLASSES


def make_score(notes_per_track, tpq=480, drums=(), time_sig=None, tempo_qpm=None):
    """notes_per_track: list of lists of (time, duration, pitch)."""
    score = symusic.Score(tpq)
    if time_sig:
        score.time_signatures.append(symusic.TimeSignature(0, *time_sig))
    if tempo_qpm:
        score.tempos.append(symusic.Tempo(0, tempo_qpm))
    for i, notes in enumerate(notes_per_track):
        track = symusic.Track(name=f"t{i}", program=0, is_drum=i in drums)
        for t, d, p in notes:
            track.notes.append(symusic.Note(int(t), int(d), int(p), 80))
        score.tracks.append(track)
    return score


def random_score(seed, n=60, tracks=2, tpq=480, drums=(), jitter=False):
    rng = np.random.default_rng(seed)
    grid = tpq // 4
    parts = []
    for _ in range(tracks):
        t = rng.integers(0, 64, n) * grid
        d = rng.choice([1, 2, 3, 4, 6, 8, 12, 16], n) * grid // 2
        if jitter:  # unquantized, like a performance
            t = t + rng.integers(0, grid, n)
            d = d + rng.integers(-grid // 4, grid // 4, n)
        p = rng.integers(40, 90, n)
        parts.append(list(zip(t, d, p)))
    return make_score(parts, tpq=tpq, drums=drums)


def all_notes(score):
    """(start_s, end_s, time, dur, pitch) of every non-drum note, by a plain loop."""
    secs = score.to("second")
    rows = []
    for track, track_s in zip(score.tracks, secs.tracks):
        if track.is_drum:
            continue
        for note, note_s in zip(track.notes, track_s.notes):
            rows.append((note_s.time, note_s.time + note_s.duration, note.time, note.duration, note.pitch))
    rows.sort(key=lambda r: (r[2], r[4]))
    return rows


def features(score, **cfg):
    return musicfw.build_metric("yang_lerch", **cfg).features(score)


@pytest.mark.parametrize("seed", range(4))
def test_scalar_features_match_their_definitions(seed):
    score = random_score(seed)
    rows = all_notes(score)
    f = features(score)
    pitches = [r[4] for r in rows]
    assert f["pitch_count"] == len(set(pitches))
    assert f["note_count"] == len(rows)
    assert f["pitch_range"] == max(pitches) - min(pitches)
    diffs = [abs(a - b) for a, b in zip(pitches[1:], pitches[:-1])]
    assert f["avg_pitch_interval"] == pytest.approx(sum(diffs) / len(diffs))
    onsets = sorted({r[0] for r in rows})
    iois = [b - a for a, b in zip(onsets[:-1], onsets[1:])]
    assert f["avg_ioi"] == pytest.approx(sum(iois) / len(iois))


@pytest.mark.parametrize("seed", range(4))
def test_histograms_and_transition_matrices_match_loops(seed):
    score = random_score(seed, tpq=96, jitter=True)
    rows = all_notes(score)
    f = features(score, transition_normalize="none")
    # duration-weighted pitch-class histogram
    hist = np.zeros(12)
    for r in rows:
        hist[r[4] % 12] += r[3]
    np.testing.assert_allclose(f["pitch_class_histogram"], hist / hist.sum())
    # pretty_midi: |end_i - start_j| < 0.05 s, every ordered pair of distinct notes
    pctm = np.zeros((12, 12))
    for i, a in enumerate(rows):
        for j, b in enumerate(rows):
            if i != j and abs(a[1] - b[0]) < 0.05:
                pctm[a[4] % 12, b[4] % 12] += 1
    np.testing.assert_array_equal(f["pitch_class_transition_matrix"], pctm)
    # note-length classes: nearest of mgeval's list, whole note = 4 quarters
    unit = 4 * 96 / 96.0
    classes = [int(np.argmin(np.abs(NOTE_LENGTH_CLASSES * unit - r[3]))) for r in rows]
    nlh = np.bincount(classes, minlength=12)
    np.testing.assert_allclose(f["note_length_histogram"], nlh / nlh.sum())
    nltm = np.zeros((12, 12))
    for a, b in zip(classes[:-1], classes[1:]):
        nltm[a, b] += 1
    np.testing.assert_array_equal(f["note_length_transition_matrix"], nltm)
    # normalizations
    g = features(score, transition_normalize="all")
    np.testing.assert_allclose(g["pitch_class_transition_matrix"], pctm / pctm.sum())
    r = features(score, transition_normalize="row")["note_length_transition_matrix"]
    sums = nltm.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(r, np.divide(nltm, np.where(sums == 0, 1, sums)))


def test_note_length_classes_of_known_values():
    tpq = 480
    # whole, half, quarter, 8th, 16th, dotted quarter, 8th triplet
    durs = [1920, 960, 480, 240, 120, 720, 160]
    score = make_score([[(i * 2000, d, 60) for i, d in enumerate(durs)]], tpq=tpq)
    nlh = features(score)["note_length_histogram"] * len(durs)
    expected = np.zeros(12)
    expected[[0, 1, 2, 3, 4, 6, 11]] = 1
    np.testing.assert_allclose(nlh, expected)


def test_per_bar_features_follow_time_signature():
    tpq = 4
    bar = 3 * tpq  # 3/4
    notes = [
        (0, 4, 60), (4, 4, 62), (8, 4, 60),  # bar 0: 3 notes, 2 pitches, C C D
        (bar, 2 * bar, 67),  # bar 1-2: one long G, sounding through bar 2
        (2 * bar + 4, 2, 64),  # bar 2: an E onset
    ]
    f = features(make_score([notes], tpq=tpq, time_sig=(3, 4)), num_bars=4)
    np.testing.assert_array_equal(f["note_count_per_bar"], [3, 1, 1, 0])
    np.testing.assert_array_equal(f["pitch_count_per_bar"], [2, 1, 1, 0])
    h = f["pitch_class_histogram_per_bar"]
    assert h.shape == (4, 12)
    np.testing.assert_allclose(h[0, [0, 2]], [8 / 12, 4 / 12])
    np.testing.assert_allclose(h[1, 7], 1.0)
    # bar 2: G sounds the whole bar (12 ticks), E two ticks
    np.testing.assert_allclose(h[2, [7, 4]], [12 / 14, 2 / 14])
    np.testing.assert_array_equal(h[3], 0)


def test_drums_are_ignored_and_a_track_can_be_chosen():
    melody = [(0, 480, 60), (480, 480, 64)]
    bass = [(0, 960, 36)]
    drums = [(0, 120, 36), (240, 120, 38)]
    score = make_score([melody, bass, drums], drums=(2,))
    assert features(score)["note_count"] == 3
    assert features(score, track=0)["note_count"] == 2
    assert features(score, track=0)["pitch_range"] == 4


def test_empty_piece_gives_nan_not_a_crash():
    f = features(make_score([[]]))
    assert f["note_count"] == 0
    assert math.isnan(f["pitch_range"]) and math.isnan(f["avg_ioi"])
    assert np.isnan(f["pitch_class_histogram"]).all()
    np.testing.assert_array_equal(f["note_count_per_bar"], 0)


def test_features_of_the_external_corpus_are_finite(shared_midi):
    metric = musicfw.build_metric("yang_lerch")
    files = sorted((shared_midi / "one_track").glob("*.mid")) + sorted((shared_midi / "multitrack").glob("*.mid"))
    assert files
    for path in files:
        f = metric.features(symusic.Score(str(path)))
        for name, value in f.items():
            assert np.all(np.isfinite(value)), (path.name, name)
        np.testing.assert_allclose(f["pitch_class_histogram"].sum(), 1.0)


# -- the set comparison -------------------------------------------------------------------


def test_kde_matches_scipy():
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 1.5, 400)
    h = scott_bandwidth(x)
    grid = np.linspace(x.min() - 4 * h, x.max() + 4 * h, 1024)
    ours = kde_on_grid(x, grid, h)
    ref = gaussian_kde(x)(grid)
    assert np.max(np.abs(ours - ref)) < 2e-3 * ref.max()


def test_identical_sets_overlap_fully_and_disjoint_sets_do_not():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (40, 3))
    row, curves = compare_feature(a, a.copy())
    assert row["oa_generated"] == pytest.approx(row["oa_reference"])
    assert row["n_generated"] == row["n_reference"] == 40
    # the intra-set distances of a set against its distances to an identical set
    assert row["oa_generated"] > 0.9 and row["kl_generated"] < 0.05
    assert len(curves["x"]) == len(curves["inter"])
    far = compare_feature(a, a + 100.0)[0]
    assert far["oa_generated"] < 0.01 and far["kl_generated"] > 5
    assert far["inter"]["mean"] == pytest.approx(100 * math.sqrt(3), rel=0.05)


def test_kl_and_oa_of_two_gaussians():
    # intra-set distances of scalar features: compare with the closed forms on the density
    # level through compare_feature's machinery (two normal samples of distances)
    from musicfw.music.setcompare import kl_divergence, overlap_area

    grid = np.linspace(-10, 12, 4001)
    dx = grid[1] - grid[0]
    p = np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi)
    q = np.exp(-0.5 * (grid - 2) ** 2) / math.sqrt(2 * math.pi)
    assert kl_divergence(p, q, dx) == pytest.approx(2.0, rel=1e-3)  # (mu diff)^2 / 2
    assert overlap_area(p, q, dx) == pytest.approx(2 * 0.5 * math.erfc(1 / math.sqrt(2)), rel=1e-3)


def test_pieces_with_nan_are_left_out_and_constant_features_work():
    gen = np.array([1.0, 2.0, np.nan, 3.0])
    ref = np.array([5.0, 5.0, 5.0])
    row, _ = compare_feature(gen, ref)
    assert row["n_generated"] == 3
    assert row["intra_reference"]["mean"] == 0.0
    assert row["oa_reference"] is not None and 0 <= row["oa_reference"] <= 1.0001
    one = compare_feature(np.array([1.0]), ref)[0]
    assert one["intra_generated"]["mean"] is None and one["kl_generated"] is None


def test_compare_sets_summary():
    rng = np.random.default_rng(2)
    gen = {"a": rng.normal(0, 1, 30), "b": rng.normal(0, 1, (30, 12))}
    ref = {"a": rng.normal(0, 1, 30), "b": rng.normal(0, 1, (30, 12))}
    out = compare_sets(gen, ref)
    assert set(out["features"]) == {"a", "b"}
    oas = [out["features"][k]["oa_generated"] for k in ("a", "b")]
    assert out["summary"]["mean_oa_generated"] == pytest.approx(np.mean(oas))


def test_kde_with_a_kernel_wider_than_the_grid():
    x = np.array([0.0, 1.0, 5.0])
    grid = np.linspace(-2, 7, 50)
    dens = kde_on_grid(x, grid, 10.0)
    assert dens.shape == grid.shape
    assert dens.sum() * (grid[1] - grid[0]) == pytest.approx(1.0)


def test_densities_match_scipy_on_mgevals_leave_one_out_distances():
    from scipy.stats import gaussian_kde

    rng = np.random.default_rng(3)
    gen, ref = rng.normal(0, 1, (25, 12)), rng.normal(0.3, 1, (30, 12))
    # mgeval's demo: for each generated piece, distances to every other one (each pair twice)
    intra = [np.linalg.norm(gen[i] - gen[j]) for i in range(25) for j in range(25) if i != j]
    inter = [np.linalg.norm(gen[i] - ref[j]) for i in range(25) for j in range(30)]
    row, curves = compare_feature(gen, ref)
    x = np.asarray(curves["x"])
    for ours, samples in ((curves["intra_generated"], intra), (curves["inter"], inter)):
        exact = gaussian_kde(samples)(x)
        assert np.max(np.abs(np.asarray(ours) - exact)) < 3e-3 * exact.max()
    assert row["intra_generated"]["mean"] == pytest.approx(np.mean(intra))
    assert row["inter"]["mean"] == pytest.approx(np.mean(inter))
