"""Tokenizers: vocabularies, exact round trips, robustness, the tokenize command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import symusic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import musicfw
from musicfw.core.tokenizer import load_tokenizer
from musicfw.music.notes import DRUM_PROGRAM
from musicfw.plugins.tokenizers._common import velocity_bins
from musicfw.plugins.tokenizers.drums import Drums
from musicfw.plugins.tokenizers.melody import Melody, MelodyConfig
from musicfw.plugins.tokenizers.midi_like import MIDILike, MIDILikeConfig
from musicfw.plugins.tokenizers.pianoroll import PianoRoll, PianoRollConfig
from musicfw.plugins.tokenizers.remi import REMI, REMIConfig

from conftest import TEST_MIDI, run_cli

CATEGORICAL = [
    REMI(),
    REMI(REMIConfig(use_chords=True, use_programs=True, beat_resolution=8)),
    REMI(REMIConfig(use_tempos=False, use_time_signatures=False)),
    MIDILike(),
    MIDILike(MIDILikeConfig(min_pitch=21, max_pitch=108, max_shift_steps=50, velocity_bins=8)),
    Melody(),
    Drums(),
]


def _shared_files(*folders: str) -> list:
    files = sorted(p for f in folders for p in (TEST_MIDI / f).glob("*.mid"))
    assert files, f"the test MIDI corpus is missing: {TEST_MIDI}"
    return files


SHARED_FILES = _shared_files("one_track", "multitrack")


def _file_param(paths):
    return pytest.mark.parametrize("path", paths, ids=lambda p: p.name)


# -- independent expectations (the documented quantization, written out plainly) ----------


def _rnd(x: np.ndarray, num: int, den: int) -> np.ndarray:
    """round(x * num / den), halves up, in integers."""
    return (2 * x.astype(np.int64) * num + den) // (2 * den)


def remi_expected(score, cfg: REMIConfig) -> np.ndarray:
    rows = []
    bin_of, _ = velocity_bins(cfg.velocity_bins)
    tpq, res = score.ticks_per_quarter, cfg.beat_resolution
    for track in score.tracks:
        if track.is_drum and not cfg.use_programs:
            continue
        a = track.notes.numpy()
        p = a["pitch"].astype(np.int64)
        keep = (p >= cfg.min_pitch) & (p <= cfg.max_pitch)
        onset = _rnd(a["time"][keep], res, tpq)
        dur = np.clip(_rnd(a["duration"][keep], res, tpq), 1, cfg.max_duration_quarters * res)
        prog = DRUM_PROGRAM if track.is_drum else track.program
        prog = prog if cfg.use_programs else 0
        rows.append(np.stack([onset, dur, p[keep], bin_of[a["velocity"][keep].astype(np.int64)], np.full(keep.sum(), prog)], 1))
    return _sorted_rows(rows, 5)


def remi_decoded(score, tok: REMI) -> np.ndarray:
    rows = []
    unit = score.ticks_per_quarter // tok.config.beat_resolution
    for track in score.tracks:
        a = track.notes.numpy()
        assert np.all(a["time"] % unit == 0) and np.all(a["duration"] % unit == 0)
        prog = (DRUM_PROGRAM if track.is_drum else track.program) if tok.config.use_programs else 0
        rows.append(np.stack([a["time"] // unit, a["duration"] // unit, a["pitch"].astype(np.int64),
                              tok._bin_of[a["velocity"].astype(np.int64)], np.full(len(a["time"]), prog)], 1))
    return _sorted_rows(rows, 5)


def _sorted_rows(rows, width):
    if not rows:
        return np.zeros((0, width), dtype=np.int64)
    arr = np.concatenate(rows).astype(np.int64)
    return arr[np.lexsort(arr.T[::-1])]


def midi_like_expected(score, tok: MIDILike) -> np.ndarray:
    """Onsets/offsets rounded to the step grid; a re-struck pitch cuts the sounding note."""
    c = tok.config
    sec = score.to("second")
    rows = []
    for track in sec.tracks:
        if track.is_drum and not c.include_drums:
            continue
        a = track.notes.numpy()
        t = a["time"].astype(np.float64)
        start = np.round(t * c.steps_per_second).astype(np.int64)
        end = np.round((t + a["duration"]) * c.steps_per_second).astype(np.int64)
        p = a["pitch"].astype(np.int64)
        rows.append(np.stack([p, start, np.maximum(end, start + 1), tok._bin_of[a["velocity"].astype(np.int64)]], 1))
    if not rows:
        return np.zeros((0, 4), dtype=np.int64)
    arr = np.concatenate(rows)
    arr = arr[(arr[:, 0] >= c.min_pitch) & (arr[:, 0] <= c.max_pitch)]
    out = []
    for pitch in np.unique(arr[:, 0]):  # per pitch (a test may loop; the tokenizer may not)
        notes = sorted(arr[arr[:, 0] == pitch].tolist(), key=lambda r: (r[1], -r[2]))
        for i, (p, s, e, b) in enumerate(notes):
            nxt = [r[1] for r in notes[i + 1 :] if r[1] > s]
            if i + 1 < len(notes) and notes[i + 1][1] == s:
                continue  # another note of this pitch starts at the same step: the last one wins
            out.append([s, min(e, nxt[0]) if nxt else e, p, b])
    return _sorted_rows([np.array(out).reshape(-1, 4)], 4)


def midi_like_decoded(score, tok: MIDILike) -> np.ndarray:
    assert score.ticks_per_quarter == tok.config.steps_per_second and len(score.tracks) <= 1
    rows = []
    for track in score.tracks:
        a = track.notes.numpy()
        t = a["time"].astype(np.int64)
        rows.append(np.stack([t, t + a["duration"], a["pitch"].astype(np.int64), tok._bin_of[a["velocity"].astype(np.int64)]], 1))
    return _sorted_rows(rows, 4)


# -- vocabulary and protocol ------------------------------------------------------------


def test_registered_with_documented_sizes():
    names = musicfw.list_plugins()["tokenizers"]
    assert {"remi", "midi_like", "pianoroll", "melody", "drums"} <= set(names)
    assert musicfw.build_tokenizer("midi_like").vocab_size == 128 + 128 + 100 + 32
    assert musicfw.build_tokenizer("midi_like", max_shift_steps=50, velocity_bins=16).vocab_size == 128 + 128 + 50 + 16
    assert musicfw.build_tokenizer("melody").vocab_size == 130
    assert musicfw.build_tokenizer("melody", min_pitch=48, max_pitch=83).vocab_size == 38
    assert musicfw.build_tokenizer("drums").vocab_size == 512
    roll = musicfw.build_tokenizer("pianoroll")
    assert roll.kind == "multihot" and roll.vocab_size == 88
    assert musicfw.build_tokenizer("pianoroll", onsets=True).vocab_size == 176
    remi = musicfw.build_tokenizer("remi")
    kinds = dict(zip(*np.unique(remi.token_types, return_counts=True)))
    assert kinds["Position"] == 32 and kinds["Pitch"] == 88 and kinds["Velocity"] == 32 and kinds["Tempo"] == 32
    assert kinds["Bar"] == 1 and "Chord" not in kinds and "Program" not in kinds


@pytest.mark.parametrize("tok", CATEGORICAL, ids=lambda t: f"{t.name}-{t.vocab_size}")
def test_vocab_structure(tok):
    assert len(tok.vocab) == tok.vocab_size == len(set(tok.vocab)), "names must be unique"
    assert all(isinstance(v, str) and v for v in tok.vocab)
    lo, hi = tok.pitch_range
    assert 0 <= lo <= hi <= 127
    if hasattr(tok, "token_types"):
        assert len(tok.token_types) == len(tok.token_values) == tok.vocab_size
        assert tok.token_values.dtype.kind == "i"
        for name, kind in zip(tok.vocab, tok.token_types):
            assert name.startswith(kind + "_") or name == kind


def test_remi_token_values_match_names():
    tok = REMI(REMIConfig(use_chords=True, use_programs=True))
    for name, kind, value in zip(tok.vocab, tok.token_types, tok.token_values):
        if kind in ("Position", "Pitch", "Velocity", "Duration"):
            assert name == f"{kind}_{value}"
        if kind == "TimeSig":
            n, d = map(int, name.split("_")[1].split("/"))
            assert value == n * 4 * tok.config.beat_resolution // d
    assert tok.vocab[tok.token_id("Program_Drums")] == "Program_Drums"
    assert tok.token_values[tok.token_id("Program_Drums")] == DRUM_PROGRAM


def test_midi_like_layout_is_performance_rnn():
    tok = MIDILike()
    assert tok.vocab[0] == "NoteOn_0" and tok.vocab[128] == "NoteOff_0"
    assert tok.vocab[256] == "TimeShift_1" and tok.vocab[355] == "TimeShift_100"
    assert tok.token_types[356] == "Velocity" and tok.vocab_size == 388


@pytest.mark.parametrize(
    "tok",
    CATEGORICAL + [PianoRoll(), PianoRoll(PianoRollConfig(onsets=True, steps_per_quarter=3, min_pitch=36, max_pitch=96))],
    ids=lambda t: f"{t.name}-{t.vocab_size}",
)
def test_config_json_round_trip(tok, tmp_path):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    again = load_tokenizer(path)
    assert type(again) is type(tok) and again.config == tok.config and again.vocab == tok.vocab


@pytest.mark.parametrize("tok", CATEGORICAL, ids=lambda t: f"{t.name}-{t.vocab_size}")
def test_out_of_range_id_is_a_value_error_naming_it(tok):
    v = tok.vocab_size
    with pytest.raises(ValueError, match=rf"\b{v}\b.*position 2"):
        tok.decode(np.array([0, 1, v, 0]))
    with pytest.raises(ValueError, match=r"-1"):
        tok.decode(np.array([-1]))
    with pytest.raises(ValueError, match="integer"):
        tok.decode(np.array([0.5]))


def test_pianoroll_rejects_wrong_width():
    with pytest.raises(ValueError, match="88"):
        PianoRoll().decode(np.zeros((4, 87)))


# -- exact round trips on real files ---------------------------------------------------------

REMI_CONFIGS = [REMIConfig(), REMIConfig(use_programs=True, use_chords=True), REMIConfig(beat_resolution=8, use_time_signatures=False)]


@_file_param(SHARED_FILES)
def test_remi_round_trip_on_shared_midi(path):
    score = symusic.Score(str(path))
    for cfg in REMI_CONFIGS:
        tok = REMI(cfg)
        ids = tok.encode(score)
        expected = remi_expected(score, cfg)
        assert len(expected) > 0
        decoded = tok.decode(ids)
        np.testing.assert_array_equal(remi_decoded(decoded, tok), expected)
        assert tok.count_invalid(ids) == 0 and tok.count_notes(ids) == len(expected)
        np.testing.assert_array_equal(tok.encode(decoded), ids)


@_file_param(SHARED_FILES)
def test_midi_like_round_trip_on_shared_midi(path):
    score = symusic.Score(str(path))
    for tok in (MIDILike(), MIDILike(MIDILikeConfig(include_drums=True, steps_per_second=50))):
        ids = tok.encode(score)
        expected = midi_like_expected(score, tok)
        assert len(expected) > 0
        decoded = tok.decode(ids)
        np.testing.assert_array_equal(midi_like_decoded(decoded, tok), expected)
        assert tok.count_invalid(ids) == 0 and tok.count_notes(ids) == len(expected)
        np.testing.assert_array_equal(tok.encode(decoded), ids)


@pytest.fixture(scope="module")
def bach_chorales(tmp_path_factory):
    """A handful of Bach chorales from music21's corpus, converted to MIDI here."""
    try:
        from music21 import corpus
    except ImportError:  # pragma: no cover
        pytest.skip("music21 is not installed")
    out = tmp_path_factory.mktemp("bach")
    paths = []
    for name in ("bach/bwv66.6", "bach/bwv269", "bach/bwv347"):
        try:
            stream = corpus.parse(name)
        except Exception as exc:  # pragma: no cover - corpus missing
            pytest.skip(f"music21 corpus has no {name}: {exc}")
        path = out / (name.replace("/", "_") + ".mid")
        stream.write("midi", fp=str(path))
        paths.append(path)
    return paths


def test_round_trips_on_bach_chorales(bach_chorales):
    for path in bach_chorales:
        score = symusic.Score(str(path))
        for cfg in REMI_CONFIGS:
            tok = REMI(cfg)
            np.testing.assert_array_equal(remi_decoded(tok.decode(tok.encode(score)), tok), remi_expected(score, cfg))
        tok = MIDILike()
        np.testing.assert_array_equal(midi_like_decoded(tok.decode(tok.encode(score)), tok), midi_like_expected(score, tok))
        # the soprano is the top voice: the melody tokenizer keeps one note per soprano note
        mel = Melody()
        ids = mel.encode(score)
        soprano = max((t for t in score.tracks if len(t.notes)), key=lambda t: t.notes.numpy()["pitch"].astype(int).mean())
        assert mel.count_notes(ids) <= len(soprano.notes) + 5
        np.testing.assert_array_equal(mel.encode(mel.decode(ids)), ids)
        roll = PianoRoll(PianoRollConfig(onsets=True))
        frames = roll.encode(score)
        np.testing.assert_array_equal(roll.encode(roll.decode(frames)), frames)


@_file_param(SHARED_FILES)
def test_other_tokenizers_are_stable_on_shared_midi(path):
    score = symusic.Score(str(path))
    for tok in (PianoRoll(), PianoRoll(PianoRollConfig(onsets=True)), Melody(), Drums()):
        ids = tok.encode(score)
        decoded = tok.decode(ids)
        np.testing.assert_array_equal(tok.encode(decoded), ids)
        assert tok.count_notes(ids) == decoded.note_num()


# -- hand-made cases --------------------------------------------------------------------------


def make_score(notes, tpq=480, program=0, is_drum=False, tempos=((0, 120.0),), time_sigs=()):
    score = symusic.Score(tpq)
    track = symusic.Track("t", program=program, is_drum=is_drum)
    for t, d, p, v in notes:
        track.notes.append(symusic.Note(int(t), int(d), int(p), int(v)))
    score.tracks.append(track)
    for t, q in tempos:
        score.tempos.append(symusic.Tempo(int(t), float(q)))
    for t, n, d in time_sigs:
        score.time_signatures.append(symusic.TimeSignature(int(t), int(n), int(d)))
    return score


def test_remi_time_signatures_and_bars():
    # two bars of 3/4 then 6/8: positions stay inside each bar
    notes = [(0, 480, 60, 80), (480 * 2, 480, 62, 80), (480 * 3, 240, 64, 80), (480 * 6 + 240, 240, 65, 80), (480 * 9 + 240, 480, 67, 80)]
    score = make_score(notes, time_sigs=[(0, 3, 4), (480 * 6, 6, 8)])
    tok = REMI()
    ids = tok.encode(score)
    names = tok.token_names(ids)
    assert names[:2] == ["Bar", "TimeSig_3/4"] and "TimeSig_6/8" in names
    assert names.count("Bar") == 4  # bars at 0, 3, 6 and 9 quarters
    assert names[names.index("TimeSig_6/8") - 1] == "Bar"
    decoded = tok.decode(ids)
    assert [(ts.numerator, ts.denominator, ts.time) for ts in decoded.time_signatures] == [(3, 4, 0), (6, 8, 480 * 6)]
    np.testing.assert_array_equal(remi_decoded(decoded, tok), remi_expected(score, tok.config))


@pytest.mark.parametrize(
    "pitches, chord",
    [((60, 64, 67), "Chord_C:maj"), ((57, 60, 64), "Chord_A:min"), ((55, 59, 62, 65), "Chord_G:dom7"),
     ((59, 62, 65), "Chord_B:dim"), ((60, 64, 68), "Chord_C:aug")],
)
def test_remi_chords(pitches, chord):
    tok = REMI(REMIConfig(use_chords=True))
    names = tok.token_names(tok.encode(make_score([(0, 960, p, 80) for p in pitches])))
    assert chord in names and names.index(chord) < names.index(f"Pitch_{pitches[0]}")
    assert tok.decode(tok.encode(make_score([(0, 960, p, 80) for p in pitches]))).note_num() == len(pitches)


def test_remi_count_invalid():
    tok = REMI()
    i = tok.token_id
    seq = [i("Bar"), i("Position_0"), i("Pitch_60"), i("Velocity_" + str(tok._bin_value[10])), i("Duration_4"),
           i("Duration_4"), i("Position_20"), i("Pitch_62"), i("Bar")]
    # Duration without Pitch, Position_20 beyond a 16-position 4/4 bar, Pitch without Velocity/Duration
    assert tok.count_invalid(np.array(seq)) == 3
    assert tok.count_notes(np.array(seq)) == 1


def test_midi_like_count_invalid_and_restrike():
    tok = MIDILike()
    on, off, shift = (lambda p: tok.token_id("NoteOn", p)), (lambda p: tok.token_id("NoteOff", p)), (lambda k: tok.token_id("TimeShift", k))
    seq = np.array([off(60), on(60), shift(10), on(60), shift(5), off(60), off(60), on(62), off(62)])
    # orphan NoteOff at the start, second NoteOff of 60, and the zero-length 62 (NoteOn + NoteOff)
    assert tok.count_invalid(seq) == 4
    score = tok.decode(seq)
    notes = [(n.time, n.duration, n.pitch) for n in score.tracks[0].notes]
    assert notes == [(0, 10, 60), (10, 5, 60)]  # a re-struck pitch ends the sounding note


def test_midi_like_sustain_pedal():
    score = make_score([(0, 240, 60, 80), (480, 240, 64, 80), (960, 240, 60, 80)])  # 120 qpm: 480 ticks = 0.5 s
    score.tracks[0].pedals.append(symusic.Pedal(120, 1200))  # down 0.125 s .. 1.375 s
    plain = MIDILike().decode(MIDILike().encode(score))
    pedal_tok = MIDILike(MIDILikeConfig(sustain_pedal=True))
    held = pedal_tok.decode(pedal_tok.encode(score))
    assert [n.duration for n in plain.tracks[0].notes] == [25, 25, 25]
    # 60 is held until it is struck again at 1.0 s; 64 and the second 60 until the release at 1.375 s
    assert [(n.time, n.duration, n.pitch) for n in held.tracks[0].notes] == [(0, 100, 60), (50, 88, 64), (100, 38, 60)]
    # a note that ends after the pedal is released keeps its own end
    late = make_score([(0, 960, 62, 80)])
    late.tracks[0].pedals.append(symusic.Pedal(0, 240))
    assert [n.duration for n in pedal_tok.decode(pedal_tok.encode(late)).tracks[0].notes] == [100]


def test_melody_layout_and_top_note():
    tok = Melody()
    assert tok.vocab[0] == "NoEvent" and tok.vocab[1] == "NoteOff" and tok.vocab[2 + 60].startswith("NoteOn_60")
    assert tok.steps_per_bar == 16
    # a C major chord for a quarter, a rest, then E alone for an eighth
    score = make_score([(0, 480, 60, 80), (0, 480, 64, 80), (0, 480, 67, 80), (960, 240, 64, 80)])
    ids = tok.encode(score)
    np.testing.assert_array_equal(ids, [2 + 67, 0, 0, 0, 1, 0, 0, 0, 2 + 64, 0])
    notes = [(n.time, n.duration, n.pitch) for n in tok.decode(ids).tracks[0].notes]
    assert notes == [(0, 480, 67), (960, 240, 64)]


def test_drums_mapping():
    tok = Drums()
    assert tok.steps_per_bar == 16 and tok.transposable is False
    score = make_score([(0, 60, 35, 100), (0, 60, 40, 100), (120, 60, 42, 90), (240, 60, 51, 90), (240, 60, 59, 90), (240, 60, 99, 90)], is_drum=True)
    ids = tok.encode(score)
    np.testing.assert_array_equal(ids, [0b11, 0b100, 1 << 8])  # kick+snare, closed hi-hat, ride (99 unmapped)
    assert tok.vocab[3] == "Drums_kick+snare"
    decoded = tok.decode(ids)
    assert decoded.tracks[0].is_drum
    assert [(n.time, n.pitch) for n in decoded.tracks[0].notes] == [(0, 36), (0, 38), (120, 42), (240, 51)]


def test_pianoroll_onsets_keep_repeated_notes():
    score = make_score([(0, 480, 60, 80), (480, 480, 60, 80)])
    plain, marked = PianoRoll(), PianoRoll(PianoRollConfig(onsets=True))
    assert plain.decode(plain.encode(score)).note_num() == 1
    assert marked.decode(marked.encode(score)).note_num() == 2


# -- property tests ---------------------------------------------------------------------------

note_lists = st.lists(
    st.tuples(
        st.integers(0, 20_000), st.integers(0, 4_000), st.integers(0, 127), st.integers(1, 127), st.integers(0, 2)
    ),
    max_size=60,
)
PROP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_score(notes, tpq, tempo, ts):
    score = symusic.Score(tpq)
    tracks = [symusic.Track("a", 0), symusic.Track("b", 33), symusic.Track("d", 0, is_drum=True)]
    for t, d, p, v, k in notes:
        tracks[k].notes.append(symusic.Note(t, d, p, v))
    for track in tracks:
        score.tracks.append(track)
    score.tempos.append(symusic.Tempo(0, float(tempo)))
    score.tempos.append(symusic.Tempo(7_000, float(tempo) * 1.5))
    score.time_signatures.append(symusic.TimeSignature(0, *ts))
    score.time_signatures.append(symusic.TimeSignature(9_000, 3, 4))
    return score


score_args = dict(
    notes=note_lists,
    tpq=st.sampled_from([96, 120, 384, 480, 960]),
    tempo=st.floats(30, 300),
    ts=st.sampled_from([(4, 4), (3, 4), (6, 8), (7, 8), (5, 4), (2, 2), (11, 16), (9, 4)]),
)


@PROP
@given(**score_args, cfg=st.sampled_from(REMI_CONFIGS))
def test_remi_random_scores_round_trip(notes, tpq, tempo, ts, cfg):
    score = random_score(notes, tpq, tempo, ts)
    tok = REMI(cfg)
    ids = tok.encode(score)
    decoded = tok.decode(ids)
    np.testing.assert_array_equal(remi_decoded(decoded, tok), remi_expected(score, cfg))
    assert tok.count_invalid(ids) == 0
    np.testing.assert_array_equal(tok.encode(decoded), ids)


@PROP
@given(**score_args, sps=st.sampled_from([100, 50, 8]), pedal=st.booleans())
def test_midi_like_random_scores_round_trip(notes, tpq, tempo, ts, sps, pedal):
    score = random_score(notes, tpq, tempo, ts)
    tok = MIDILike(MIDILikeConfig(steps_per_second=sps, max_shift_steps=max(sps, 7), include_drums=True))
    ids = tok.encode(score)
    decoded = tok.decode(ids)
    np.testing.assert_array_equal(midi_like_decoded(decoded, tok), midi_like_expected(score, tok))
    assert tok.count_invalid(ids) == 0
    np.testing.assert_array_equal(tok.encode(decoded), ids)
    if pedal:  # pedal handling only ever lengthens notes and keeps every onset
        ptok = MIDILike(MIDILikeConfig(steps_per_second=sps, max_shift_steps=max(sps, 7), include_drums=True, sustain_pedal=True))
        score.tracks[0].pedals.append(symusic.Pedal(1_000, 5_000))
        a, b = midi_like_decoded(tok.decode(tok.encode(score)), tok), midi_like_decoded(ptok.decode(ptok.encode(score)), ptok)
        a, b = a[np.lexsort((a[:, 2], a[:, 0]))], b[np.lexsort((b[:, 2], b[:, 0]))]
        np.testing.assert_array_equal(a[:, [0, 2]], b[:, [0, 2]])  # same (onset, pitch) pairs
        assert np.all(b[:, 1] >= a[:, 1])


@PROP
@given(**score_args)
def test_step_tokenizers_random_scores_are_stable(notes, tpq, tempo, ts):
    score = random_score(notes, tpq, tempo, ts)
    for tok in (Melody(), Melody(MelodyConfig(min_pitch=48, max_pitch=84, steps_per_quarter=3)), Drums(),
                PianoRoll(), PianoRoll(PianoRollConfig(onsets=True, steps_per_quarter=2))):
        ids = tok.encode(score)
        np.testing.assert_array_equal(tok.encode(tok.decode(ids)), ids)


@PROP
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(1, 6), st.integers(0, 127)), max_size=30))
def test_melody_monophonic_round_trip_is_exact(events):
    # back-to-back monophonic notes on the 16th grid: decode(encode(x)) == x
    t, notes = 0, []
    for gap, dur, pitch in events:
        t += gap
        notes.append((t * 120, dur * 120, pitch, 80))
        t += dur
    tok = Melody()
    decoded = tok.decode(tok.encode(make_score(notes)))
    got = [(n.time, n.duration, n.pitch, n.velocity) for n in decoded.tracks[0].notes] if decoded.tracks else []
    assert got == notes


@PROP
@given(st.integers(1, 40), st.integers(0, 2**31 - 1), st.floats(0.0, 0.9))
def test_pianoroll_frames_round_trip_exactly(T, seed, density):
    # the JSB path: steps_per_quarter=1, any binary frames -> notes -> the same frames
    rng = np.random.default_rng(seed)
    tok = PianoRoll(PianoRollConfig(steps_per_quarter=1))
    frames = (rng.random((T, 88)) < density).astype(np.uint8)
    frames[-1, rng.integers(88)] = 1  # the last frame sounds (the roll ends with its last note)
    np.testing.assert_array_equal(tok.encode(tok.decode(frames)), frames)
    marked = PianoRoll(PianoRollConfig(steps_per_quarter=1, onsets=True))
    active = frames.astype(bool)
    prev = np.vstack([np.zeros((1, 88), bool), active[:-1]])
    onset = active & (~prev | (rng.random((T, 88)) < 0.3))
    both = np.hstack([active, onset]).astype(np.uint8)
    np.testing.assert_array_equal(marked.encode(marked.decode(both)), both)


@PROP
@given(st.data())
def test_any_in_range_sequence_decodes(data):
    tok = data.draw(st.sampled_from(CATEGORICAL))
    ids = np.array(data.draw(st.lists(st.integers(0, tok.vocab_size - 1), max_size=200)), dtype=np.int64)
    score = tok.decode(ids)
    assert isinstance(score, symusic.Score)
    n_invalid = tok.count_invalid(ids) if hasattr(tok, "count_invalid") else 0
    assert 0 <= n_invalid <= len(ids)
    assert tok.count_notes(ids) == score.note_num()
    score.dumps_midi()  # and it is a writable MIDI file


@PROP
@given(st.integers(0, 30), st.integers(0, 2**31 - 1))
def test_any_frames_decode(T, seed):
    rng = np.random.default_rng(seed)
    for tok in (PianoRoll(), PianoRoll(PianoRollConfig(onsets=True))):
        frames = rng.random((T, tok.vocab_size))
        score = tok.decode(frames)
        assert tok.count_notes(frames) == score.note_num()


# -- the command line and import cost ----------------------------------------------------------


def test_tokenize_command(shared_midi):
    path = shared_midi / "one_track" / "POP909_008.mid"
    res = run_cli("tokenize", "--tokenizer", "remi", "use_chords=true", str(path), "--limit", "40")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("# POP909_008.mid: remi") and "Bar" in res.stdout and "Pitch_" in res.stdout
    res = run_cli("tokenize", "--tokenizer", "remi", "nope=1", str(path))
    assert res.returncode == 2 and "nope" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("tokenize", "--tokenizer", "remi", str(shared_midi / "bad" / "not_a_midi.mid"))
    assert res.returncode == 2 and "not_a_midi.mid" in res.stderr


def test_tokenizer_modules_are_cheap_to_import():
    code = (
        "import sys; import musicfw.plugins.tokenizers.remi, musicfw.plugins.tokenizers.midi_like, "
        "musicfw.plugins.tokenizers.pianoroll, musicfw.plugins.tokenizers.melody, musicfw.plugins.tokenizers.drums; "
        "print([m for m in ('torch', 'lightning', 'pytorch_lightning', 'music21', 'matplotlib', 'miditok') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pianoroll_keeps_trailing_silent_frames_of_the_benchmark_scores():
    from musicfw.plugins.datasets.piano_roll_benchmark import frames_to_score

    frames = np.zeros((6, 88), dtype=np.uint8)
    frames[0:2, 39] = 1  # middle C for two frames, then four silent frames
    tok = musicfw.build_tokenizer("pianoroll", steps_per_quarter=1)
    assert np.array_equal(tok.encode(frames_to_score(frames)), frames)


def test_tokenize_prints_one_bar_per_line_from_the_clock_and_survives_a_closed_pipe(shared_midi):
    """Bars come from the tokenizer's clock (no token-name test in core); `| head` is no error."""
    import subprocess
    import sys

    path = str(shared_midi / "one_track" / "POP909_008.mid")
    out = [line for line in run_cli("tokenize", "--tokenizer", "remi", path).stdout.splitlines() if not line.startswith("#")]
    assert len(out) > 3 and all(line.startswith("Bar ") for line in out)
    frames = [line for line in run_cli("tokenize", "--tokenizer", "melody", path).stdout.splitlines() if not line.startswith("#")]
    assert all(len(line.split()) <= 16 for line in frames)
    cmd = f"{sys.executable} -m musicfw.cli tokenize --tokenizer melody {path} | head -1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
