"""MusPy-style statistics against literal re-implementations of muspy/metrics/metrics.py
(tick piano rolls and per-note loops), on random scores and the external corpus."""

from __future__ import annotations

import math

import numpy as np
import pytest
import symusic

import musicfw
from musicfw.plugins.metrics.muspy_stats import groove_consistency, pitch_in_scale_rate


def random_score(seed, tpq=24, n=50, tracks=3, drums=(2,)):
    rng = np.random.default_rng(seed)
    score = symusic.Score(tpq)
    for k in range(tracks):
        track = symusic.Track(name=f"t{k}", program=0, is_drum=k in drums)
        t = rng.integers(0, 40 * tpq, n)
        d = rng.integers(1, 3 * tpq, n)
        p = rng.integers(36, 96, n)
        for a, b, c in zip(t, d, p):
            track.notes.append(symusic.Note(int(a), int(b), int(c), 90))
        score.tracks.append(track)
    return score


def stats(score, **cfg):
    return musicfw.build_metric("muspy", **cfg).features(score)


# -- literal MusPy definitions (loops over notes, tick piano roll) -------------------------


def muspy_length(score):
    return max((n.time + n.duration for t in score.tracks for n in t.notes), default=0)


def muspy_pianoroll(score):
    roll = np.zeros((muspy_length(score), 128), bool)
    for track in score.tracks:
        if track.is_drum:
            continue
        for note in track.notes:
            roll[note.time : note.time + note.duration, note.pitch] = 1
    return roll


def muspy_polyphony(score):
    roll = muspy_pianoroll(score)
    denom = np.count_nonzero(roll.sum(1) > 0)
    return roll.sum() / denom if denom else math.nan


def muspy_polyphony_rate(score, threshold=2):
    roll = muspy_pianoroll(score)
    return np.count_nonzero(roll.sum(1) > threshold) / len(roll)


def muspy_entropy(counter):
    prob = counter / counter.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(prob * np.log2(prob))


def muspy_groove(score, measure_resolution):
    length = muspy_length(score)
    # MusPy: length // measure_resolution + 1 bars; we count the bars covering the piece
    # (documented deviation: no extra empty bar for a piece ending on a barline)
    n_measures = max(math.ceil(length / measure_resolution), max_onset_bar(score, measure_resolution) + 1)
    patterns = np.zeros((n_measures, measure_resolution), bool)
    for track in score.tracks:
        for note in track.notes:
            m, pos = divmod(note.time, measure_resolution)
            patterns[m, pos] = 1
    hamming = np.count_nonzero(patterns[:-1] != patterns[1:])
    return 1 - hamming / (measure_resolution * (n_measures - 1))


def max_onset_bar(score, measure_resolution):
    return max((n.time // measure_resolution for t in score.tracks for n in t.notes), default=0)


def fixed_empty_beat_rate(score):
    """Our documented definition: a beat is busy if a note sounds in [b, b+1) quarters."""
    tpq = score.tpq
    length = muspy_length(score)
    n_beats = math.ceil(length / tpq)
    busy = np.zeros(n_beats, bool)
    for track in score.tracks:
        for note in track.notes:
            end = max(note.time + note.duration, note.time + 1)
            for b in range(note.time // tpq, (end - 1) // tpq + 1):
                busy[b] = True
    return 1 - busy.sum() / n_beats


@pytest.mark.parametrize("seed", range(5))
def test_statistics_match_muspy_definitions(seed):
    score = random_score(seed)
    s = stats(score)
    pitched = [n.pitch for t in score.tracks if not t.is_drum for n in t.notes]
    assert s["polyphony"] == pytest.approx(muspy_polyphony(score))
    assert s["polyphony_rate"] == pytest.approx(muspy_polyphony_rate(score))
    assert stats(score, polyphony_threshold=0)["polyphony_rate"] == pytest.approx(muspy_polyphony_rate(score, 0))
    assert s["pitch_entropy"] == pytest.approx(muspy_entropy(np.bincount(pitched, minlength=128)))
    assert s["pitch_class_entropy"] == pytest.approx(
        muspy_entropy(np.bincount(np.array(pitched) % 12, minlength=12))
    )
    assert s["empty_beat_rate"] == pytest.approx(fixed_empty_beat_rate(score))
    # 4/4 at MusPy's resolution 24: the groove grid is the tick grid
    assert s["groove_consistency"] == pytest.approx(muspy_groove(score, 4 * 24))


def test_pitch_in_scale_rate():
    c_major = [60, 62, 64, 65, 67, 69, 71]
    assert pitch_in_scale_rate(np.array(c_major)) == 1.0
    assert pitch_in_scale_rate(np.array(c_major + [61])) == pytest.approx(7 / 8)
    assert pitch_in_scale_rate(np.array(c_major), root=0, mode="major") == 1.0
    # C major notes against A minor (same notes) and against C minor (E, A, B out)
    assert pitch_in_scale_rate(np.array(c_major), root=9, mode="minor") == 1.0
    assert pitch_in_scale_rate(np.array(c_major), root=0, mode="minor") == pytest.approx(4 / 7)
    assert math.isnan(pitch_in_scale_rate(np.array([], dtype=np.int64)))


def test_groove_consistency_closed_form():
    # the same onset pattern in every bar -> 1; alternating patterns -> known distance
    same = np.concatenate([np.array([0, 8]) + 16 * m for m in range(4)])
    assert groove_consistency(same, 4 * 16, 16) == pytest.approx(1.0)
    alt = np.concatenate([(np.array([0, 8]) if m % 2 == 0 else np.array([4])) + 16 * m for m in range(4)])
    # bars {0,8},{4},{0,8},{4}: each neighbour pair differs in 3 positions
    assert groove_consistency(alt, 4 * 16, 16) == pytest.approx(1 - 9 / (16 * 3))
    # a piece ending inside a fifth, empty bar: that bar counts
    assert groove_consistency(alt, 4 * 16 + 1, 16) == pytest.approx(1 - 10 / (16 * 4))
    assert math.isnan(groove_consistency(np.array([0]), 10, 16))


def test_empty_beat_rate_deviation_from_muspy():
    # four whole-note-long notes with a one-bar rest between: MusPy's end-inclusive rule
    # would mark the first beat of each rest bar busy; ours does not
    tpq = 24
    score = symusic.Score(tpq)
    track = symusic.Track()
    for bar in (0, 2):
        track.notes.append(symusic.Note(bar * 4 * tpq, 4 * tpq, 60, 80))
    score.tracks.append(track)
    assert stats(score)["empty_beat_rate"] == pytest.approx(4 / 12)


def test_groove_resolution_makes_values_independent_of_ticks_per_quarter():
    a = random_score(3, tpq=24)
    b = a.copy()
    b = b.resample(tpq=480, min_dur=0)
    sa, sb = stats(a), stats(b)
    for key in sa:
        assert sb[key] == pytest.approx(sa[key]), key


def test_empty_and_drum_only_pieces():
    score = symusic.Score(480)
    score.tracks.append(symusic.Track())
    s = stats(score)
    assert all(math.isnan(v) for v in s.values())
    drums = random_score(0, tracks=1, drums=(0,))
    s = stats(drums)
    assert math.isnan(s["pitch_entropy"]) and math.isnan(s["polyphony"])
    assert 0 <= s["empty_beat_rate"] <= 1 and not math.isnan(s["groove_consistency"])


def test_real_files_match_the_tick_piano_roll(shared_midi):
    path = shared_midi / "one_track" / "POP909_008.mid"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    score = symusic.Score(str(path))
    s = stats(score)
    assert s["polyphony"] == pytest.approx(muspy_polyphony(score))
    assert s["polyphony_rate"] == pytest.approx(muspy_polyphony_rate(score))
    for value in s.values():
        assert math.isfinite(value)
