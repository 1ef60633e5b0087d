"""Harmonisation (issue 26 part 2): the ``tracks`` layout, ``musicfw harmonize`` and its API,
the parallel fifths/octaves counter, and the errors for bad input.  Tiny untrained models: these
tests check structure (the layout, the grammar, the given voices untouched), not musicality
(benchmarks/harmonize.py measures that)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from symusic import Note, Score, Tempo, TimeSignature, Track

import musicfw
from musicfw.cli import main
from musicfw.core.errors import ConfigError, DataError, UserError
from musicfw.music.voiceleading import parallel_motion, score_parallels
from musicfw.plugins.harmonize.harmonize import harmonize
from musicfw.plugins.tokenizers.tracks import BAR, TRACK, TRACK_END, Tracks

from conftest import REPO

torch.set_num_threads(1)

VOICES = ("soprano", "alto", "tenor", "bass")


def _track(name: str, notes: list[tuple[int, int, int]], drum: bool = False) -> Track:
    t = Track(name, 0, drum)
    for time, dur, pitch in notes:
        t.notes.append(Note(time, dur, pitch, 80))
    return t


def _score(tracks: list[Track], ts: tuple[int, int] = (4, 4), tpq: int = 480) -> Score:
    s = Score(tpq)
    s.tempos.append(Tempo(0, 120.0))
    s.time_signatures.append(TimeSignature(0, *ts))
    for t in tracks:
        s.tracks.append(t)
    return s


def _chorale() -> Score:
    """Four voices over 5 bars (a 3/4 bar change, a rest, a note across a bar line, a chord
    inside the tenor)."""
    q = 480
    s = _score([
        _track("Soprano", [(0, q, 72), (q, q, 71), (2 * q, 2 * q, 69), (4 * q, 3 * q, 67), (7 * q, 2 * q, 72),
                           (10 * q, q, 74), (12 * q, 4 * q, 72)]),
        _track("Alto", [(0, 2 * q, 67), (2 * q, q // 2, 65), (5 * q // 2, q // 2, 64), (3 * q, 2 * q, 62),
                        (5 * q, q, 64), (8 * q, 4 * q, 65), (12 * q, 4 * q, 64)]),
        _track("Tenor", [(0, 4 * q, 64), (0, 4 * q, 60), (4 * q, 4 * q, 59), (8 * q, 8 * q, 60)]),
        _track("Bass", [(0, q, 48), (q, q, 47), (2 * q, q, 45), (3 * q, q, 43), (4 * q, 8 * q, 43),
                        (12 * q, 4 * q, 36)]),
    ])
    s.time_signatures.append(TimeSignature(12 * q, 3, 4))
    return s


def _tiny_model(tok: Tracks, seed: int = 0):
    torch.manual_seed(seed)
    return musicfw.build_model("transformer", tok, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                               max_context=128, position="rope", dropout=0.0)


def _notes(track: Track) -> dict:
    a = track.notes.numpy()
    return {k: a[k].copy() for k in ("time", "duration", "pitch", "velocity")}


# -- the layout ---------------------------------------------------------------------------------

def test_layout_round_trips_every_voice_in_fixed_and_shuffled_order():
    score = _chorale()
    for order, positions in (("fixed", "needed"), ("shuffled", "needed"), ("fixed", "every")):
        tok = Tracks(Tracks.Config(order=order, drop_voices=0.0, segment_bars=2, positions=positions))
        ids = tok.encode(score)
        parts = tok.parts(score)
        decoded, lens, invalid = tok.decode_voices(ids)
        assert invalid == 0 and ids[-1] == tok.end_id
        assert set(decoded) == set(VOICES)
        for v in VOICES:
            for k in ("onset", "duration", "pitch"):
                np.testing.assert_array_equal(decoded[v][k], parts[v][k], err_msg=f"{order} {v} {k}")
        assert lens == [16, 16, 16, 12]
        # the decoded score re-encodes to the same tokens (fixed order)
        if order == "fixed":
            np.testing.assert_array_equal(tok.encode(tok.decode(ids)), ids)
    # the chord in the tenor needs a Pos token; legato notes need none
    tok = Tracks(Tracks.Config(order="fixed"))
    names = tok.token_names(tok.encode(score))
    assert names[:4] == ["Segment", "BarLen_16", "BarLen_16", "Track_soprano"]
    tenor = names[names.index("Track_tenor"):]
    assert tenor[:6] == ["Track_tenor", "Bar", "Pitch_60", "Dur_16", "Pos_0", "Pitch_64"]


def test_shuffled_order_varies_by_piece_and_is_deterministic():
    score = _chorale()
    tok = Tracks(Tracks.Config(order="shuffled", drop_voices=0.0, segment_bars=1))
    ids = tok.encode(score)
    np.testing.assert_array_equal(ids, tok.encode(score))  # a pure function (one token cache)
    tracks = tok.type_codes[ids] == TRACK
    orders = {tuple(ids[tracks][i: i + 4]) for i in range(0, int(tracks.sum()), 4)}
    assert len(orders) > 1, "one segment order for every segment: not shuffled"
    # drop_voices=1: every piece keeps a proper, non-empty subset of its voices
    dropped = Tracks(Tracks.Config(order="shuffled", drop_voices=1.0))
    kept = set(dropped.decode_voices(dropped.encode(score))[0])
    assert 1 <= len(kept) < 4


def test_track_mask_marks_exactly_the_written_voices():
    tok = Tracks(Tracks.Config(order="fixed"))
    ids = tok.encode(_chorale())
    m = tok.track_mask(ids, ["alto", "bass"])
    names = tok.token_names(ids)
    current = None
    for i, name in enumerate(names):
        if name.startswith("Track_"):
            current = name[6:]
            assert not m[i]
        elif name in ("Segment", "End") or name.startswith("BarLen"):
            current = None
            assert not m[i]
        else:
            assert m[i] == (current in ("alto", "bass")), (i, name)
            if name == "TrackEnd":
                current = None
    assert m.sum() > 0


def test_real_chorales_round_trip():
    data = musicfw.load_data(musicfw.build_dataset("bach_chorales", max_count=12), progress=False)
    tok = Tracks(Tracks.Config(order="fixed", min_pitch=28, max_pitch=88))
    for piece in data.pieces():
        parts = tok.parts(piece.score)
        decoded, _, invalid = tok.decode_voices(tok.encode(piece.score))
        assert invalid == 0 and set(decoded) == set(VOICES)
        for v in VOICES:
            for k in ("onset", "duration", "pitch"):
                np.testing.assert_array_equal(decoded[v][k], parts[v][k])


# -- harmonisation -------------------------------------------------------------------------------

def _soprano_only() -> Score:
    s = _chorale()
    out = _score([s.tracks[0].copy()])
    return out


@pytest.mark.parametrize("given,write,positions", [(None, ["alto", "tenor", "bass"], "needed"),
                                                   ("alto,tenor,bass", ["soprano"], "needed"),
                                                   (None, ["alto", "tenor", "bass"], "every")])
def test_given_voices_come_back_unchanged_and_written_voices_are_complete(given, write, positions):
    tok = Tracks(Tracks.Config(min_pitch=28, max_pitch=88, positions=positions, segment_bars=1 if positions == "every" else 2))
    model = _tiny_model(tok)
    full = _chorale()
    if given is None:
        piece = _soprano_only()
    else:
        piece = _score([full.tracks[i].copy() for i in (1, 2, 3)])
    before = [_notes(t) for t in piece.tracks]
    outs = harmonize(model, tok, piece, given=given, n=3, seed=1, batch_size=2)
    assert len(outs) == 3
    bars = tok.grid(piece, int(max(t.notes.numpy()["time"].max() for t in piece.tracks) // 120))[1]
    seg_end = int(np.sum(bars)) * 120
    for out in outs:
        assert len(out.tracks) == len(piece.tracks) + len(write)
        for t, b in zip(out.tracks, before):  # the given tracks first, note for note
            got = _notes(t)
            for k in b:
                np.testing.assert_array_equal(got[k], b[k])
        written = {t.name.lower(): t for t in out.tracks[len(piece.tracks):]}
        assert sorted(written) == sorted(write)
        for w in write:
            a = written[w].notes.numpy()
            assert len(a["time"]) > 0
            # one note at a time, inside the piece's bars, on the grid
            assert np.all(a["time"][1:] >= a["time"][:-1] + a["duration"][:-1])
            assert a["time"].min() >= 0 and (a["time"] + a["duration"]).max() <= seg_end
            assert np.all(a["time"] % 120 == 0)
    # the same seed (and batch size) draws the same voices
    again = harmonize(model, tok, piece, given=given, n=3, seed=1, batch_size=2)
    for a, b in zip(outs, again):
        for ta, tb in zip(a.tracks, b.tracks):
            np.testing.assert_array_equal(ta.notes.numpy()["pitch"], tb.notes.numpy()["pitch"])


def test_writing_one_voice_under_one(tmp_path):
    tok = Tracks(Tracks.Config(min_pitch=28, max_pitch=88))
    model = _tiny_model(tok)
    path = tmp_path / "melody.mid"
    mel = _soprano_only()
    mel.tracks[0].name = ""  # an unnamed single track is the given voice
    mel.dump_midi(str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (out,) = harmonize(model, tok, str(path), voices="bass", n=1, seed=0)
    assert [t.name for t in out.tracks][-1] == "Bass" and len(out.tracks) == 2
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_writing_grammar_states():
    from musicfw.plugins.harmonize.harmonize import _Writer

    for positions in ("needed", "every"):
        tok = Tracks(Tracks.Config(positions=positions))
        ids = {n: i for i, n in enumerate(tok.vocab)}
        w = _Writer(tok, [16, 12])
        allowed = lambda: {tok.vocab[i] for i in np.flatnonzero(w.mask())}  # noqa: E731
        assert allowed() == {"Bar"}
        w.update(ids["Bar"])
        first = allowed()
        assert ("Pitch_60" in first) == (positions == "needed")  # a note at the cursor needs no Pos
        assert ("Pos_0" in first) == (positions == "every") and "Pos_15" in first and "Pos_16" not in first
        assert "TrackEnd" not in first and "Bar" in first
        w.update(ids["Pos_14"])
        assert allowed() == {f"Pitch_{p}" for p in range(21, 109)}
        w.update(ids["Pitch_60"])
        assert allowed() == {f"Dur_{d}" for d in range(1, 15)}  # no note past the segment's 28 positions
        w.update(ids["Dur_4"])  # the note runs 2 positions into bar 2
        after = allowed()
        assert "Pos_15" not in after and "Bar" in after and "TrackEnd" not in after
        w.update(ids["Bar"])
        second = allowed()
        assert "Pos_1" not in second and ("Pos_2" in second) == (positions == "every")
        assert "Pos_3" in second and "Pos_11" in second and "Pos_12" not in second
        assert "TrackEnd" in second and "Bar" not in second


# -- parallel fifths and octaves -------------------------------------------------------------------

def _v(*notes):
    a = np.array(notes, dtype=np.int64).reshape(-1, 3)
    return a[:, 0], a[:, 1], a[:, 2]


def test_parallel_counter_on_hand_made_examples():
    # C4-G4 -> D4-A4: parallel fifths (both move up)
    assert parallel_motion([_v((0, 4, 67), (4, 4, 69)), _v((0, 4, 60), (4, 4, 62))]) == {"fifths": 1, "octaves": 0, "transitions": 1}
    # octaves C3-C4 -> D3-D4, and a compound octave (two octaves apart) counts too
    assert parallel_motion([_v((0, 4, 72), (4, 4, 74)), _v((0, 4, 48), (4, 4, 50))])["octaves"] == 1
    # contrary motion into an octave / a fifth: not parallel
    assert parallel_motion([_v((0, 4, 67), (4, 4, 74)), _v((0, 4, 60), (4, 4, 50))])["octaves"] == 0
    assert parallel_motion([_v((0, 4, 64), (4, 4, 67)), _v((0, 4, 55), (4, 4, 48))])["fifths"] == 0
    # oblique motion (one voice holds) and repeated notes: not parallel
    assert parallel_motion([_v((0, 8, 67)), _v((0, 4, 60), (4, 4, 62))])["fifths"] == 0
    assert parallel_motion([_v((0, 4, 67), (4, 4, 67)), _v((0, 4, 60), (4, 4, 60))])["fifths"] == 0
    # hidden fifth (third -> fifth in similar motion): not a parallel fifth
    assert parallel_motion([_v((0, 4, 64), (4, 4, 69)), _v((0, 4, 60), (4, 4, 62))])["fifths"] == 0
    # a rest between the two fifths breaks the pair
    assert parallel_motion([_v((0, 2, 67), (4, 4, 69)), _v((0, 2, 60), (2, 2, 59), (4, 4, 62))])["fifths"] == 0
    # three voices: soprano-bass octaves and alto-bass fifths at once, in 3 pairs of 2 transitions
    r = parallel_motion([_v((0, 4, 72), (4, 4, 74), (8, 4, 72)), _v((0, 4, 67), (4, 4, 69), (8, 4, 71)),
                         _v((0, 4, 60), (4, 4, 62), (8, 4, 60))])
    assert r == {"fifths": 1, "octaves": 2, "transitions": 6}


# -- bad input ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_and_tok():
    tok = Tracks(Tracks.Config(min_pitch=28, max_pitch=88))
    return _tiny_model(tok), tok


def test_bad_input_errors(model_and_tok, tmp_path):
    model, tok = model_and_tok
    q = 480
    # a model not trained to harmonise
    remi = musicfw.build_tokenizer("remi")
    with pytest.raises(UserError, match="not trained to harmonise.*'remi'"):
        harmonize(model, remi, _soprano_only())
    # voices the model was not trained for
    with pytest.raises(ConfigError, match="not trained for the voice 'piano'.*soprano, alto, tenor, bass"):
        harmonize(model, tok, _soprano_only(), voices="piano")
    with pytest.raises(ConfigError, match="both name alto"):
        harmonize(model, tok, _soprano_only(), voices="alto", given="alto")
    # a file without the given voice(s)
    two = _score([_track("Flute", [(0, q, 72)]), _track("Cello", [(0, q, 48)])])
    with pytest.raises(DataError, match="no track for the given voice soprano.*'Flute', 'Cello'"):
        harmonize(model, tok, two)
    with pytest.raises(DataError, match="no track for the given voices alto, bass"):
        harmonize(model, tok, _soprano_only(), given="alto,bass", voices="tenor")
    # a file that already has a voice to write
    with pytest.raises(DataError, match="already has a track for alto"):
        harmonize(model, tok, _chorale(), given="soprano", voices="alto")
    # songs the tokenizer cannot represent: pitch out of range, an unsupported time signature
    high = _score([_track("Soprano", [(0, q, 72), (q, q, 100)])])
    with pytest.raises(DataError, match=r"outside the pitch range 28\.\.88.*first pitch 100 at tick 480"):
        harmonize(model, tok, high)
    odd = _score([_track("Soprano", [(0, q, 72)])], ts=(9, 4))
    with pytest.raises(DataError, match="time signature 9/4"):
        harmonize(model, tok, odd)
    # a fixed-order model cannot write earlier voices given later ones
    fixed = Tracks(Tracks.Config(order="fixed", min_pitch=28, max_pitch=88))
    with pytest.raises(UserError, match="fixed order.*not trained to write soprano given alto"):
        harmonize(model, fixed, _chorale(), given="alto,tenor,bass")


def _fake_run(tmp_path: Path, tokenizer: str = "tracks") -> Path:
    run = tmp_path / "run"
    run.mkdir(parents=True)
    text = (REPO / "examples" / "harmonize_chorales.yaml").read_text()
    if tokenizer != "tracks":
        text = (REPO / "examples" / "quickstart.yaml").read_text()
    (run / "config.yaml").write_text(text)
    return run


def test_cli_writes_harmonisations_and_keeps_the_input(model_and_tok, tmp_path, monkeypatch, capsys):
    model, tok = model_and_tok
    run = _fake_run(tmp_path)
    import musicfw.engine.training as training

    monkeypatch.setattr(training, "load_model", lambda *a, **k: (model, tok))
    song = tmp_path / "melody.mid"
    _soprano_only().dump_midi(str(song))
    digest = hashlib.sha256(song.read_bytes()).hexdigest()
    out = tmp_path / "out"
    assert main(["harmonize", "--run", str(run), str(song), "--n", "2", "--seed", "3", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.glob("*.mid"))
    assert files == ["melody_harmonized_000.mid", "melody_harmonized_001.mid"]
    assert hashlib.sha256(song.read_bytes()).hexdigest() == digest
    written = Score(str(out / files[0]))
    assert [t.name for t in written.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    np.testing.assert_array_equal(written.tracks[0].notes.numpy()["pitch"], _soprano_only().tracks[0].notes.numpy()["pitch"])
    assert "alto, tenor, bass under soprano" in capsys.readouterr().out
    assert json.loads((out / "harmonize.json").read_text())["pitch_temperature"] is None
    sharp = tmp_path / "sharp"
    assert main(["harmonize", "--run", str(run), str(song), "--n", "1", "--seed", "3", "--out", str(sharp),
                 "--pitch-temperature", "0.5"]) == 0
    assert json.loads((sharp / "harmonize.json").read_text())["pitch_temperature"] == 0.5
    assert main(["harmonize", "--run", str(run), str(song), "--n", "1", "--seed", "3", "--out", str(tmp_path / "bad"),
                 "--pitch-temperature", "0"]) == 2
    assert "must be a number > 0" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_cli_bad_input_is_exit_2_before_any_output(model_and_tok, tmp_path, monkeypatch, capsys):
    model, tok = model_and_tok
    import musicfw.engine.training as training

    monkeypatch.setattr(training, "load_model", lambda *a, **k: (model, tok))
    run = _fake_run(tmp_path)
    song = tmp_path / "melody.mid"
    _score([_track("Piano", [(0, 480, 60)]), _track("Strings", [(0, 480, 48)])]).dump_midi(str(song))
    digest = hashlib.sha256(song.read_bytes()).hexdigest()
    cases = [
        ([str(song)], "no track for the given voice soprano"),
        ([str(song), "--voices", "descant"], "not trained for the voice 'descant'"),
        ([str(tmp_path / "missing.mid")], "Input file not found"),
    ]
    for extra, message in cases:
        assert main(["harmonize", "--run", str(run), *extra, "--seed", "0"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert message in err and "Traceback" not in err
    # a run whose model was not trained to harmonise: refused before its weights load
    other = tmp_path / "other"
    shutil.copytree(_fake_run(tmp_path / "x", tokenizer="remi"), other)
    assert main(["harmonize", "--run", str(other), str(song)]) == 2
    assert "not trained to harmonise" in " ".join(capsys.readouterr().err.split())
    assert not (run / "samples").exists() and not (other / "samples").exists()
    assert hashlib.sha256(song.read_bytes()).hexdigest() == digest


# -- limits and coverage ---------------------------------------------------------------------------

def test_hostile_scores_are_refused_and_coverage_adds_up(shared_midi):
    from musicfw.music.limits import MalformedPiece, PieceTooLarge
    from musicfw.music.midiload import load_score

    tok = Tracks()
    gaps = _score([_track("Soprano", [(0, 1, 60), (2**30, 1, 62)])], tpq=1)
    with pytest.raises(PieceTooLarge):
        tok.encode(gaps)
    bad = _score([_track("Soprano", [(0, 1, 60)])])
    bad.ticks_per_quarter = 0
    with pytest.raises(MalformedPiece):
        tok.encode(bad)
    # every note is represented, or dropped with a reason (voice dropout included)
    files = sorted((shared_midi / "multitrack").glob("*.mid"))[:2] + sorted((shared_midi / "one_track").glob("*.mid"))[:1]
    scores = [load_score(p)[0] for p in files] + [_chorale()]
    for drop in (0.0, 1.0):
        t = Tracks(Tracks.Config(drop_voices=drop))
        for score in scores:
            cov = t.coverage(score)
            assert cov["notes"] == score.note_num() == cov["represented"] + cov["dropped"]
            assert cov["dropped"] == sum(cov["reasons"].values())
            assert t.count_notes(t.encode(score)) == cov["represented"]
    assert Tracks(Tracks.Config(drop_voices=1.0)).coverage(_chorale())["dropped"] > 0


def test_python_api(model_and_tok):
    model, tok = model_and_tok
    (out,) = musicfw.harmonize(model, _soprano_only(), tokenizer=tok, n=1, seed=0)
    assert [t.name for t in out.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    with pytest.raises(ConfigError, match="needs its tokenizer"):
        musicfw.harmonize(model, _soprano_only())


# -- --forbid-parallels ------------------------------------------------------------------------------

def test_the_parallel_rule_forbids_exactly_the_parallel_pitches():
    from musicfw.plugins.harmonize.harmonize import _Voices

    known = _Voices({"soprano": {"onset": np.array([0, 4]), "duration": np.array([4, 4]), "pitch": np.array([67, 69])},
                     "alto": {"onset": np.array([0, 4]), "duration": np.array([4, 4]), "pitch": np.array([64, 65])}})
    known.add("bass", 0, 4, 60)  # C under G: a fifth (and C under E: no perfect interval)
    pitches = np.arange(40, 80)
    bad = set(pitches[known.parallel_pitches("bass", 4, pitches)].tolist())
    # the soprano rises G -> A over the bass's C (a fifth): rising into a fifth with A is a
    # parallel (D 62, and E 76 a fifth above it); D 50 falls, A 57 falls, C 60 holds: allowed;
    # the alto E -> F was a third above C: no rule
    assert bad == {62, 76}
    # an octave: a tenor an octave under the alto's E, the alto rising to F; the bass's C has
    # ended by then (not known at t), the soprano was a minor third away
    known.add("tenor", 0, 4, 52)
    assert set(pitches[known.parallel_pitches("tenor", 4, pitches)].tolist()) == {53, 65, 77}
    # a voice that rests (no note before t) is free
    assert not known.parallel_pitches("unknown", 4, pitches).any()


def test_forbid_parallels_writes_none_against_the_given_and_written_voices():
    """A model pushed to write quarter notes on two neighbouring pitches writes unisons that move
    together (parallel octaves, interval class 0) all the time; with forbid_parallels none."""
    tok = Tracks(Tracks.Config(min_pitch=28, max_pitch=88))  # positions: needed (a note at the cursor needs no Pos)
    model = _tiny_model(tok, seed=3)
    with torch.no_grad():
        for name in ("Pitch_48", "Pitch_50", "Dur_4"):
            model.head.bias[tok.vocab.index(name)] += 12.0
    piece = _soprano_only()
    free = harmonize(model, tok, piece, n=4, seed=0)
    strict = harmonize(model, tok, piece, n=4, seed=0, forbid_parallels=True)
    count = lambda outs: sum(score_parallels(o)["fifths"] + score_parallels(o)["octaves"] for o in outs)  # noqa: E731
    assert count(free) > 10  # the pushed model moves in parallel (so the rule has something to stop)
    assert count(strict) == 0
    for out in strict:  # still complete four-voice harmonisations
        assert len(out.tracks) == 4 and all(len(t.notes) for t in out.tracks)


def test_sharpen_within_changes_only_the_choice_among_the_given_ids():
    """The tokens' total probability stays, their mutual odds follow the temperature, every other
    token keeps its probability; temperature 1 changes nothing; a row whose ids are all masked
    is left alone (no NaN)."""
    from musicfw.plugins.harmonize.harmonize import sharpen_within

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 12, generator=g) * 2
    logits[2, 3:8] = float("-inf")
    ids = torch.arange(3, 8)
    out = sharpen_within(logits, ids, 0.5)
    p, q = torch.softmax(logits, -1), torch.softmax(out, -1)
    assert torch.allclose(q[:, ids].sum(-1), p[:, ids].sum(-1), atol=1e-6)
    others = torch.ones(12, dtype=torch.bool)
    others[ids] = False
    assert torch.allclose(q[:, others], p[:, others], atol=1e-6)
    want = torch.softmax(logits[:2, ids] / 0.5, -1)
    assert torch.allclose(q[:2, ids] / q[:2, ids].sum(-1, keepdim=True), want, atol=1e-6)
    assert not torch.equal(out[:2], logits[:2])
    assert torch.equal(out[2, ids], logits[2, ids]) and not torch.isnan(out).any()
    assert torch.allclose(sharpen_within(logits[:2], ids, 1.0), logits[:2], atol=1e-6)


def test_pitch_temperature_sharpens_the_pitches_written_and_refuses_bad_values():
    tok = Tracks(Tracks.Config(min_pitch=28, max_pitch=88))
    model = _tiny_model(tok, seed=3)
    with torch.no_grad():
        model.head.bias[tok.vocab.index("Pitch_48")] += 2.0  # a mild favourite
    piece = _soprano_only()

    def share_48(outs):
        pitches = np.concatenate([t.notes.numpy()["pitch"] for o in outs for t in o.tracks[1:]])
        return float((pitches == 48).mean())

    free = harmonize(model, tok, piece, n=4, seed=0)
    sharp = harmonize(model, tok, piece, n=4, seed=0, pitch_temperature=0.1)
    assert share_48(sharp) > share_48(free) + 0.2
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="pitch_temperature.*> 0"):
            harmonize(model, tok, piece, n=1, seed=0, pitch_temperature=bad)
