"""The music library's one chord vocabulary, one recogniser, one chord-tone ratio, one note-array
type and the grid (musicfw/music/chords.py, notes.py, grid.py), and that REMI, melody_chords and
the chord_tone_ratio metric go through them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import symusic

from musicfw.music import chords as mc
from musicfw.music.grid import bar_grid, bar_lengths, time_signature_table, to_steps
from musicfw.music.notes import DRUM_PROGRAM, piece_notes
from musicfw.plugins.metrics.chords import ChordToneRatio, ChordToneRatioConfig
from musicfw.plugins.tokenizers.melody_chords import MelodyChords, MelodyChordsConfig
from musicfw.plugins.tokenizers.remi import CHORD, REMI, REMIConfig


def _random_score(seed: int, drums: bool = True) -> symusic.Score:
    """Three random voices (one a drum track), a 3/4 and a 6/8 stretch, two tempi."""
    rng = np.random.default_rng(seed)
    score = symusic.Score(480)
    for i, (name, program, is_drum) in enumerate([("Soprano", 0, False), ("Bass", 33, False), ("Kit", 0, True)]):
        if is_drum and not drums:
            continue
        track = symusic.Track(name, program, is_drum)
        n = 120
        time = np.sort(rng.integers(0, 480 * 40, n)).astype(np.int32)
        lo, hi = (60, 84) if i == 0 else (28, 60)
        track.notes = symusic.Note.from_numpy(
            time, rng.integers(1, 1500, n).astype(np.int32), rng.integers(lo, hi, n).astype(np.int8),
            rng.integers(1, 127, n).astype(np.int8),
        )
        score.tracks.append(track)
    score.time_signatures = symusic.TimeSignature.from_numpy(
        np.array([0, 1920 * 3, 1920 * 3 + 1440 * 2 + 100], np.int32), np.array([4, 3, 6], np.uint8), np.array([4, 4, 8], np.uint8)
    )
    return score


# -- the vocabulary ---------------------------------------------------------------------------------


def test_the_triad_classes_are_a_view_of_the_one_vocabulary():
    assert mc.N_CHORDS == 61 and mc.N_TRIAD_CLASSES == 49
    for k in range(mc.N_TRIAD_CLASSES):
        assert mc.triad_class(mc.triad_chord(k)) == k
        # a triad class sounds the tones of the chord it stands for
        assert mc.triad_name(k) == ("N.C." if k == 0 else mc.triad_name(mc.parse_triad(mc.chord_name(mc.triad_chord(k)))))
    # dom7 folds onto its major triad, N.C. onto class 0; arrays map element-wise
    g7, g = mc.parse_chord("G7"), mc.parse_chord("G")
    assert mc.chord_name(g7) == "G:dom7" and mc.triad_class(g7) == mc.triad_class(g) == mc.parse_triad("G7") == 8
    assert mc.triad_class(mc.NO_CHORD) == mc.TRIAD_NO_CHORD == 0
    np.testing.assert_array_equal(mc.triad_class(np.array([g7, mc.NO_CHORD])), [8, 0])
    assert mc.CHORD_TONES[g7].sum() == 4 and not mc.CHORD_TONES[mc.NO_CHORD].any()
    with pytest.raises(ValueError, match="outside 0..48"):
        mc.triad_chord(49)


# -- the recogniser -------------------------------------------------------------------------------


def test_granularity_is_a_parameter_of_the_one_recogniser():
    # C major for a 3/4 bar, then F major: one chord per bar from the bar lines, but segments of
    # one 4/4 bar from 0 straddle the change
    start = np.array([0, 0, 0, 12, 12, 12])
    end = start + 12
    pitch = np.array([48, 52, 55, 53, 57, 60])
    c, f = mc.parse_chord("C"), mc.parse_chord("F")
    bars = mc.bar_segments([0, 12], [12, 12], 12)
    np.testing.assert_array_equal(bars[0], [0, 12])
    assert mc.recognise(start, end, pitch, *bars).tolist() == [c, f]
    # two-beat segments inside the bars: the chord of every half bar (3/4: 8 + 4 steps)
    halves = mc.bar_segments([0, 12], [12, 12], 8)
    np.testing.assert_array_equal(halves[0], [0, 8, 12, 20])
    np.testing.assert_array_equal(halves[1], [8, 12, 20, 24])
    assert mc.recognise(start, end, pitch, *halves).tolist() == [c, c, f, f]
    even = mc.even_segments(16, 2)  # 4/4 bars from 0: the first holds C (12 steps) and F (4 steps)
    assert mc.recognise(start, end, pitch, *even).tolist() == [c, f]
    # notes past the last segment are left out; a segment with one pitch class is N.C.
    assert mc.recognise(start, end, pitch, *mc.even_segments(6, 1)).tolist() == [c]
    assert mc.recognise([0], [4], [60], *mc.even_segments(4, 1)).tolist() == [mc.NO_CHORD]


def test_the_scoring_methods_differ_where_their_docstring_says():
    # C E G with a short passing B flat: cosine keeps the triad, count takes the seventh,
    # triads answers with a seventh template (dom7), which folds onto the major triad class
    start, end = np.array([0, 0, 0, 0]), np.array([16, 16, 16, 4])
    pitch = np.array([48, 52, 55, 58])
    seg = mc.even_segments(16, 1)
    assert mc.chord_name(mc.recognise(start, end, pitch, *seg, method="cosine")[0]) == "C:maj"
    assert mc.chord_name(mc.recognise(start, end, pitch, *seg, method="count")[0]) == "C:dom7"
    triads = mc.recognise(start, end, pitch, *seg, method="triads")[0]
    assert mc.triad_name(mc.triad_class(triads)) == "C"
    # A C E G (Am7 in root position): triads reads the minor seventh as minor, cosine the bass's A minor
    am7 = (np.zeros(4, int), np.full(4, 16), np.array([45, 48, 52, 55]))
    assert mc.triad_name(mc.triad_class(mc.recognise(*am7, *seg, method="triads")[0])) == "Am"
    assert mc.chord_name(mc.recognise(*am7, *seg, method="cosine")[0]) == "A:min"
    with pytest.raises(ValueError, match="cosine, count, triads"):
        mc.recognise(start, end, pitch, *seg, method="template")


@pytest.mark.parametrize("config", [
    {"chord_quarters": 1}, {"chord_quarters": 2, "chord_method": "count"}, {"chord_quarters": 3, "use_time_signatures": False},
])
def test_remi_writes_the_chords_of_recognise_score(config):
    """REMI's Chord tokens are the library recogniser's chords (what the metric reads without a
    tokenizer): the same ticks and chords, at REMI's granularity."""
    tok = REMI(REMIConfig(use_chords=True, **config))
    kwargs = {"chord_quarters": config["chord_quarters"], "method": config.get("chord_method", "cosine"),
              "time_signatures": config.get("use_time_signatures", True)}
    for seed in range(4):
        score = _random_score(seed)
        for every in (False, True):
            ticks, chords = tok.recognise_chords(score, every_segment=every)
            lib_ticks, lib_chords = mc.recognise_score(score, every_segment=every, **kwargs)
            np.testing.assert_array_equal(ticks, lib_ticks)
            np.testing.assert_array_equal(chords, lib_chords)
        ids = tok.encode(score)
        chord_ids = ids[tok.type_codes[ids] == CHORD]
        np.testing.assert_array_equal(tok.token_values[chord_ids], mc.recognise_score(score, **kwargs)[1])


def test_melody_chords_reads_the_library_recogniser_per_beat():
    tok = MelodyChords(MelodyChordsConfig(chord_quarters=1))
    for seed in range(3):
        score = _random_score(seed, drums=False)
        n_steps = 160
        lower = piece_notes(score).select(piece_notes(score).track == 1)
        seg = mc.even_segments(int(score.ticks_per_quarter), n_steps // 4)
        want = mc.triad_class(mc.recognise(lower.time, lower.time + np.maximum(lower.duration, 1), lower.pitch, *seg, method="triads"))
        np.testing.assert_array_equal(tok.step_chords(score, n_steps), np.repeat(want, 4))


# -- the chord-tone ratio ---------------------------------------------------------------------------


def test_one_chord_tone_ratio_for_steps_and_for_ticks():
    tok = MelodyChords(MelodyChordsConfig(min_pitch=48, max_pitch=84))
    c, g = mc.parse_triad("C"), mc.parse_triad("G")
    on = tok.note_on_id
    # steps: C4 E4 (over C), F4 (over C, not a tone), B4 D5 (over G), an onset past the chords
    melody = np.array([on(60), 1, on(64), 0, on(65), 0, on(71), on(74), on(60)])
    chords = np.array([c, c, c, c, c, g, g, g])
    onset, pitch, chord_steps, chord_ids = tok.notes_and_chords(melody, chords)
    np.testing.assert_array_equal(onset, [0, 2, 4, 6, 7])
    np.testing.assert_array_equal(pitch, [60, 64, 65, 71, 74])
    r = mc.chord_tone_ratio(onset, pitch, chord_steps, chord_ids)
    assert (r["hits"], r["counted"]) == (4, 5) and r["chord_tone_ratio"] == pytest.approx(0.8)
    # N.C. steps are not counted; the chords cut to a shorter melody
    r = mc.chord_tone_ratio(*tok.notes_and_chords(melody[:3], np.array([0, c, c, g])))
    assert (r["hits"], r["counted"]) == (1, 1)
    assert math.isnan(mc.chord_tone_ratio(*tok.notes_and_chords(melody, np.zeros(8, int)))["chord_tone_ratio"])


def test_the_chord_metric_builds_no_tokenizer(monkeypatch):
    score = _random_score(7)
    tok = REMI(REMIConfig(use_chords=True, chord_quarters=1))
    ticks, chords = tok.recognise_chords(score)
    notes = piece_notes(score).pitched()
    want = mc.chord_tone_ratio(notes.time, notes.pitch, ticks, chords, notes.duration)

    def refuse(*args, **kwargs):
        raise AssertionError("the chord_tone_ratio metric built a REMI tokenizer")

    monkeypatch.setattr(REMI, "__init__", refuse)
    metric = ChordToneRatio(ChordToneRatioConfig(source="recognise", chord_quarters=1))
    got = metric.features(score)
    assert got == {k: want[k] for k in ("chord_tone_ratio", "chord_tone_ratio_duration")}
    assert 0 < got["chord_tone_ratio"] < 1


# -- the note arrays and the grid ---------------------------------------------------------------


def test_piece_notes_options():
    score = _random_score(1)
    every = piece_notes(score)
    assert len(every) == 360 and every.start_s is not None
    assert np.all(np.diff(every.time) >= 0)
    np.testing.assert_array_equal(every.program[every.is_drum], DRUM_PROGRAM)
    assert set(every.program[~every.is_drum].tolist()) == {0, 33}
    pitched = piece_notes(score, drums="exclude", sort=False, seconds=False)
    assert pitched.start_s is None and pitched.end_s is None
    # track order: the score's notes track after track
    np.testing.assert_array_equal(pitched.time[:120], score.tracks[0].notes.numpy()["time"])
    np.testing.assert_array_equal(pitched.track, np.repeat([0, 1], 120))
    drums = piece_notes(score, drums="only")
    assert len(drums) == 120 and drums.is_drum.all()
    kept = pitched.select(pitched.pitch >= 60)
    assert len(kept.program) == len(kept) == int((pitched.pitch >= 60).sum()) and kept.start_s is None
    with pytest.raises(ValueError, match="include, exclude, only"):
        piece_notes(score, drums="none")


def test_grid_rounding_and_bars():
    np.testing.assert_array_equal(to_steps([0, 59, 60, 119, 120, 480], 480, 4), [0, 0, 1, 1, 1, 4])
    table = time_signature_table(4, 8)
    assert (4, 4) in table and (3, 4) in table and (6, 8) in table and (9, 4) not in table
    lengths = bar_lengths(table, 4)
    assert lengths[table.index((3, 4))] == 12 and lengths[-1] == 16
    score = _random_score(0)
    # 4/4 x 3, then 3/4 x 2, then 6/8 announced 100 ticks after a bar line: from the next one
    starts, slots = bar_grid(score, 4, table, 100)
    np.testing.assert_array_equal(starts[:7], [0, 16, 32, 48, 60, 72, 84])
    assert [table[s] for s in slots[:7]] == [(4, 4)] * 3 + [(3, 4)] * 3 + [(6, 8)]
    plain, plain_slots = bar_grid(score, 4, [], 40)
    np.testing.assert_array_equal(plain, [0, 16, 32])
    np.testing.assert_array_equal(plain_slots, [0, 0, 0])
