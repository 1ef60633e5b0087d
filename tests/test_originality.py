"""The ``originality`` metric (plugins/metrics/originality.py) and the batched longest shared run
it uses (musicfw/music/tunes.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import symusic

from musicfw.core.dataset import Piece
from musicfw.core.errors import UserError
from musicfw.music import tunes


def test_the_batched_longest_shared_run_equals_the_per_piece_binary_search():
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 6, size=rng.integers(0, 80)).astype(np.uint16) for _ in range(120)]
    queries = []
    for _ in range(80):
        parts = []
        for _ in range(3):
            t = train[rng.integers(len(train))]
            a = int(rng.integers(0, max(len(t), 1)))
            parts += [t[a : a + int(rng.integers(0, 40))], rng.integers(0, 6, size=rng.integers(0, 4))]
        queries.append(np.concatenate(parts).astype(np.uint16))
    queries += [np.zeros(0, np.uint16), np.array([7, 7, 7], np.uint16)]
    index = tunes.MelodyIndex(train)
    expected = [index.longest_shared_run(q) for q in queries]
    assert max(expected) >= 20  # the copies are found: the test is not all zeros
    assert index.longest_shared_runs(queries).tolist() == expected
    assert [int(index.longest_shared_runs([q])[0]) for q in queries[:20]] == expected[:20]
    assert tunes.MelodyIndex([]).longest_shared_runs(queries[:3]).tolist() == [0, 0, 0]


def _score(pitches, durations) -> symusic.Score:
    score = symusic.Score(480)
    track = symusic.Track("melody", 0, False)
    t = 0
    for p, d in zip(pitches, durations):
        track.notes.append(symusic.Note(t, d * 120, int(p), 80))
        t += d * 120
    score.tracks.append(track)
    return score


class _Data:
    def __init__(self, train):
        self._train = train

    def pieces(self, split):
        assert split == "train"
        return self._train


def test_the_metric_measures_a_copied_run_and_a_transposed_copy_against_the_training_split():
    import musicfw

    rng = np.random.default_rng(1)
    train_pitches = [60 + np.cumsum(rng.integers(-4, 5, 40)) % 24 for _ in range(6)]
    train_durs = [rng.integers(1, 4, 40) for _ in range(6)]
    train = [Piece(id=f"t{i}", score=_score(p, d)) for i, (p, d) in enumerate(zip(train_pitches, train_durs))]
    metric = musicfw.build_metric("originality")
    metric.prepare(_Data(train))
    # 21 notes of training piece 2, transposed up a fifth, between notes of its own
    copy = _score(
        np.concatenate([[90, 30, 91], train_pitches[2][5:26] + 7, [20, 95]]),
        np.concatenate([[1, 3, 1], train_durs[2][5:26], [2, 1]]),
    )
    out = metric.features(copy)
    # 21 notes are 20 melody steps; the step into the copy changes interval, the one out too
    assert out["originality_longest_run"] == 20
    assert 0 < out["originality_shared_8"] < 1 and 0 < out["originality_shared_16"] < 1
    fresh = _score(rng.integers(30, 90, 30), rng.integers(5, 9, 30))
    assert metric.features(fresh)["originality_longest_run"] < 4
    assert metric.features(fresh)["originality_shared_16"] == 0.0
    short = metric.features(_score([60, 62, 64], [1, 1, 1]))
    assert math.isnan(short["originality_shared_8"])


def test_two_midi_folders_have_no_training_split_and_are_refused(tmp_path: Path):
    from musicfw.engine.evaluation import compare_folders

    for name in ("g", "r"):
        (tmp_path / name).mkdir()
        _score([60, 62, 64, 65], [1, 1, 1, 1]).dump_midi(str(tmp_path / name / "a.mid"))
    with pytest.raises(UserError, match="evaluate.metrics=\\[originality\\]"):
        compare_folders(tmp_path / "g", tmp_path / "r", metrics=["originality"])


def test_the_report_puts_the_samples_next_to_the_held_out_pieces(tmp_path: Path):
    from musicfw.core.report import ReportContext
    from musicfw.plugins.metrics.originality import report_sections

    def feats(run, s8, s16):
        return {"originality_longest_run": run, "originality_shared_8": s8, "originality_shared_16": s16}

    metrics = {
        "sets": {"reference": {"source": "test split"}},
        "features": {
            "generated": {"a.mid": feats(40, 0.5, 0.25), "b.mid": feats(10, 0.1, None)},
            "reference": {"x": feats(8, 0.2, 0.0), "y": feats(12, 0.3, 0.1), "z": feats(9, None, None)},
        },
    }
    (section,) = report_sections(ReportContext(tmp_path, {}, metrics))
    assert "held-out real pieces (test split)" in section.html
    assert "<td>generated samples</td><td>2</td><td>25</td><td>40</td><td>30.0%</td><td>25.0%</td>" in section.html
    assert "<td>3</td><td>9</td><td>12</td><td>25.0%</td><td>5.0%</td>" in section.html
    assert "median 25 steps (max 40), held-out real pieces 9 (max 12)" in section.summary[0]
    assert report_sections(ReportContext(tmp_path, {}, {"features": {}})) == []
