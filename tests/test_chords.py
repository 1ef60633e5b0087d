"""Chord conditioning of REMI language models: chord names, the chord recogniser, chord
placement by constrained decoding (API, ``musicfw generate --chords``, ``generate.chords``),
and the ``chord_tone_ratio`` metric."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import symusic

import musicfw
from musicfw.core.errors import ConfigError
from musicfw.engine.generation import generate
from musicfw.music.chords import (
    chord_name,
    chord_tone_ratio,
    chord_track_of_progression,
    marker_chords,
    parse_chord,
    parse_progression,
    parse_triad,
    triad_name,
)
from musicfw.plugins.metrics.chords import ChordToneRatio

from conftest import REPO, run_cli


def chord(name: str) -> int:
    return parse_chord(name)


# -- names --------------------------------------------------------------------------------


def test_chord_names_and_progressions():
    assert [chord_name(parse_chord(n)) for n in ("C", "Am", "F#m", "Bb7", "Ebdim", "G+", "D:min", "N.C.")] == [
        "C:maj", "A:min", "F#:min", "A#:dom7", "D#:dim", "G:aug", "D:min", "N.C.",
    ]
    assert parse_progression("C G Am F") == [[chord("C")], [chord("G")], [chord("Am")], [chord("F")]]
    assert parse_progression("C G | Am") == [[chord("C"), chord("G")], [chord("Am")]]
    assert parse_progression(["C", "Am F"]) == [[chord("C")], [chord("Am"), chord("F")]]


@pytest.mark.parametrize("bad", ["C Hm", "Csus4", "C || G", ""])
def test_unknown_chord_or_empty_bar_is_a_config_error(bad):
    with pytest.raises(ConfigError) as err:
        parse_progression(bad)
    text = str(err.value)
    if "Hm" in bad or "sus4" in bad:
        assert repr(bad.split()[-1]) in text
    # the allowed qualities are listed
    for quality in ("maj", "min", "dim", "aug", "dom7", "N.C."):
        assert quality in text


# -- the recogniser -----------------------------------------------------------------------


def _score(notes, tpq=480, ts=(4, 4)):
    """notes: (onset quarters, duration quarters, pitch)"""
    s = symusic.Score(tpq)
    t = symusic.Track("", 0, False)
    for on, dur, p in notes:
        t.notes.append(symusic.Note(int(on * tpq), int(dur * tpq), p, 80))
    s.tracks.append(t)
    s.time_signatures.append(symusic.TimeSignature(0, *ts))
    return s


def test_recogniser_cosine_prefers_the_triad_over_a_passing_seventh():
    # C E G for two beats with a short Bb: a C major chord (the count method says C7)
    notes = [(0, 2, 48), (0, 2, 64), (0, 2, 67), (1.5, 0.5, 70)]
    cos = musicfw.build_tokenizer("remi", use_chords=True, chord_method="cosine")
    count = musicfw.build_tokenizer("remi", use_chords=True, chord_method="count")
    assert chord_name(cos.recognise_chords(_score(notes))[1][0]) == "C:maj"
    assert chord_name(count.recognise_chords(_score(notes))[1][0]) == "C:dom7"
    # A C E G with A in the bass: A minor (seventh), not C major
    am7 = [(0, 2, 45), (0, 2, 60), (0, 2, 64), (0, 2, 67)]
    assert chord_name(cos.recognise_chords(_score(am7))[1][0]) == "A:min"
    # the Chord tokens encode writes are the recogniser's changes
    tok = cos
    ids = tok.encode(_score(notes + [(2, 2, 45), (2, 2, 60), (2, 2, 64)]))
    names = [n for n in tok.token_names(ids) if n.startswith("Chord_")]
    assert names == ["Chord_C:maj", "Chord_A:min"]


# -- placement ----------------------------------------------------------------------------


def _bars(tokenizer, tokens):
    names = tokenizer.token_names(tokens)
    bars, cur = [], None
    for n in names:
        if n == "Bar":
            cur = []
            bars.append(cur)
        elif cur is not None:
            cur.append(n)
    return bars


MODELS = {
    "lstm": {"hidden_size": 16, "num_layers": 1, "embed_dim": 8},
    # max_context 64: generation slides the window (the KV cache rolls) past it
    "transformer": {"d_model": 16, "num_layers": 1, "num_heads": 2, "d_ff": 32, "max_context": 64},
}


def _tiny(name="lstm"):
    import torch

    torch.manual_seed(0)
    tok = musicfw.build_tokenizer("remi", use_chords=True)
    return tok, musicfw.build_model(name, tokenizer=tok, **MODELS[name])


def _bar_lengths(bars):
    """Each bar's length in positions (beat_resolution 4): 4/4 until a TimeSig says otherwise,
    and a TimeSig holds until the next one."""
    out, length = [], 16
    for bar in bars:
        ts = [n for n in bar if n.startswith("TimeSig_")]
        if ts:
            num, den = map(int, ts[0].split("_")[1].split("/"))
            length = num * 16 // den
        out.append(length)
    return out


def _eager(tok, model):
    """An untrained model moves on through positions and opens bars whenever it may, so
    that a few bars fit a small budget (the grammar still decides what may come)."""
    import torch

    with torch.no_grad():
        model.head.bias[tok.token_id("Bar")] += 4.0
        model.head.bias[torch.as_tensor(np.flatnonzero(tok.token_types == "Position"))] += 3.0
    return model


@pytest.fixture(scope="module")
def tiny():
    return _tiny()


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_bar_starts_with_the_given_chord(model_name):
    tok, model = _tiny(model_name)  # untrained: it would put any token anywhere; the grammar decides
    _eager(tok, model)
    sampler = musicfw.build_sampler("temperature", temperature=1.0)
    result = generate(model, tok, sampler, n=4, max_bars=5, max_tokens=1500, seed=1,
                      chords="C G | Am | F#7 | N.C.")
    want = [["Chord_C:maj", "Chord_G:maj"], ["Chord_A:min"], ["Chord_F#:dom7"], ["Chord_N.C."], ["Chord_C:maj", "Chord_G:maj"]]
    for tokens, reason in zip(result.tokens, result.stop_reasons):
        assert tok.count_invalid(tokens) == 0
        bars = _bars(tok, tokens)
        assert reason == "max_bars" and len(bars) == 5, (reason, len(bars))
        for bar, chords, bar_len in zip(bars, want, _bar_lengths(bars)):
            # the bar opens: [TimeSig] Position_0 [Tempo] Chord, before any note
            body = [n for n in bar if not n.startswith(("TimeSig", "Tempo"))]
            assert body[:2] == ["Position_0", chords[0]], bar[:6]
            assert [n for n in bar if n.startswith("Chord_")] == chords  # no other chord
            if len(chords) == 2:  # the second chord at the middle of the bar
                i = bar.index(chords[1])
                pos = [n for n in bar[:i] if n.startswith("Position_")][-1]
                assert int(pos.split("_")[1]) == bar_len // 2
    # decode writes the chords as markers
    texts = [m.text for m in result.scores[0].markers]
    assert texts[:3] == ["Chord_C:maj", "Chord_G:maj", "Chord_A:min"]


def test_a_chord_that_goes_on_is_not_written_again_inside_a_bar():
    tok, model = _tiny()
    _eager(tok, model)
    sampler = musicfw.build_sampler("temperature", temperature=1.0)
    # one chord per beat: C C G G | F F F F
    result = generate(model, tok, sampler, n=2, max_bars=2, max_tokens=800, seed=0, chords="C C G G | F F F F")
    for tokens in result.tokens:
        bars = _bars(tok, tokens)
        assert [[n for n in bar if n.startswith("Chord_")] for bar in bars] == [["Chord_C:maj", "Chord_G:maj"], ["Chord_F:maj"]]
        i = bars[0].index("Chord_G:maj")
        pos = [n for n in bars[0][:i] if n.startswith("Position_")][-1]
        assert int(pos.split("_")[1]) == 2 * _bar_lengths(bars)[0] // 4  # slot 2 of 4 (beat 3 of 4/4)


def test_chords_start_after_a_prompt(tiny, tmp_path):
    tok, model = tiny
    prompt = _score([(0, 1, 60), (1, 1, 64), (4, 1, 62), (5, 1, 65)])
    sampler = musicfw.build_sampler("temperature", temperature=1.0)
    result = generate(model, tok, sampler, n=2, max_bars=2, max_tokens=600, seed=0, prompt=prompt, chords="F Dm")
    n_prompt = result.prompt_length
    for tokens in result.tokens:
        new = tokens[n_prompt:]
        bars = _bars(tok, new)
        assert [[n for n in bar if n.startswith("Chord_")] for bar in bars] == [["Chord_F:maj"], ["Chord_D:min"]]


def test_chords_need_chord_tokens_and_constraints(tiny):
    tok, model = tiny
    sampler = musicfw.build_sampler("top_p")
    with pytest.raises(ConfigError, match="unknown chord|Unknown chord"):
        generate(model, tok, sampler, n=1, max_tokens=8, chords="C Q7")
    with pytest.raises(ConfigError, match="constraints"):
        generate(model, tok, sampler, n=1, max_tokens=8, chords="C", constraints=False)
    plain = musicfw.build_tokenizer("remi")
    plain_model = musicfw.build_model("lstm", tokenizer=plain, hidden_size=8, num_layers=1, embed_dim=4)
    with pytest.raises(ConfigError, match="use_chords"):
        generate(plain_model, plain, sampler, n=1, max_tokens=8, chords="C")
    midi_like = musicfw.build_tokenizer("midi_like")
    ml_model = musicfw.build_model("lstm", tokenizer=midi_like, hidden_size=8, num_layers=1, embed_dim=4)
    with pytest.raises(ConfigError, match="no chord tokens"):
        generate(ml_model, midi_like, sampler, n=1, max_tokens=8, chords="C")


# -- the metric ---------------------------------------------------------------------------


def test_chord_tone_ratio_on_a_hand_made_example():
    # C major for bar 1, A minor for bar 2 (4/4, 480 ticks per quarter)
    onset = [0, 480, 960, 1920, 2400]
    pitch = [60, 62, 67, 69, 71]  # C (yes) D (no) G (yes) | A (yes) B (no)
    duration = [480, 480, 960, 480, 480]
    r = chord_tone_ratio(onset, pitch, [0, 1920], [chord("C"), chord("Am")], duration)
    assert r["chord_tone_ratio"] == pytest.approx(3 / 5)
    assert r["chord_tone_ratio_duration"] == pytest.approx(1920 / 2880)
    # notes before the first chord and under N.C. are not counted
    r = chord_tone_ratio([0, 960, 1920], [61, 60, 61], [480, 1920], [chord("C"), chord("N.C.")])
    assert r["counted"] == 1 and r["chord_tone_ratio"] == 1.0


def test_metric_reads_markers_else_recognises_and_progressions_follow_bars():
    s = _score([(0, 1, 60), (1, 1, 62), (3, 1, 64), (4, 1, 57), (5, 1, 59), (6, 1, 64)], ts=(3, 4))
    # a progression over 3/4 bars: C for bar 1 (0-3 quarters), Am for bar 2 (3-6), C again
    ticks, chords = chord_track_of_progression(s, "C Am")
    assert ticks.tolist() == [0, 1440, 2880] and chords.tolist() == [chord("C"), chord("Am"), chord("C")]
    s.markers.append(symusic.TextMeta(0, "Chord_C:maj"))
    s.markers.append(symusic.TextMeta(1440, "Chord_A:min"))
    s.markers.append(symusic.TextMeta(100, "Verse"))  # not ours: ignored
    t, c = marker_chords(s)
    assert t.tolist() == [0, 1440]
    metric = ChordToneRatio()
    # C(y) D(n) | E(y) A(y) B(n) | E under C (y)
    assert metric.features(s)["chord_tone_ratio"] == pytest.approx(4 / 6)
    # markers only: a piece without them has nothing counted (NaN); auto recognises C-E-G
    assert math.isnan(musicfw.build_metric("chord_tone_ratio", source="markers").features(_score([(0, 1, 60)]))[
        "chord_tone_ratio"])
    triad = _score([(0, 2, 48), (0, 2, 64), (0, 2, 67), (0, 2, 62)])
    assert metric.features(triad)["chord_tone_ratio"] == pytest.approx(3 / 4)


# -- the command line and the example ---------------------------------------------------------


@pytest.fixture(scope="module")
def chord_run(tmp_path_factory):
    import torch

    from musicfw.api import build_from_section
    from musicfw.engine.rundir import RunFolder

    root = tmp_path_factory.mktemp("runs")
    config = musicfw.load_config(
        {
            "name": "chords",
            "seed": 3,
            "data": {"name": "midi_folder", "path": str(root)},
            "tokenizer": {"name": "remi", "use_chords": True},
            "model": {"name": "lstm", "hidden_size": 16, "num_layers": 1, "embed_dim": 8},
            "generate": {"n": 2, "max_tokens": 400, "max_bars": 3, "render_audio": False},
        }
    )
    run = RunFolder.create(root, config.name)
    run.save_config(config)
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    tokenizer.save(run.tokenizer_path)
    torch.manual_seed(0)
    model = build_from_section("models", config.model, tokenizer=tokenizer)
    with torch.no_grad():  # untrained, but it opens bars when it may: 3 bars fit the budget
        model.head.bias[tokenizer.token_id("Bar")] += 4.0
    run.checkpoints.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, run.checkpoints / "best.ckpt")
    return run.path


def test_generate_cli_chords(chord_run, tmp_path):
    out = tmp_path / "out"
    r = run_cli("generate", "--run", str(chord_run), "--seed", "2", "--chords", "Dm G7 C", "--out", str(out), "--no-audio")
    assert r.returncode == 0, r.stderr
    for mid in sorted(out.glob("*.mid")):
        texts = [m.text for m in symusic.Score(str(mid)).markers]
        assert texts == ["Chord_D:min", "Chord_G:dom7", "Chord_C:maj"], texts
    record = json.loads((out / "generation.json").read_text())
    assert record["settings"]["chords"] == "Dm G7 C"
    bad = run_cli("generate", "--run", str(chord_run), "--seed", "2", "--chords", "Dm H7", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "'H7'" in bad.stderr and "dom7" in bad.stderr
    free = run_cli("generate", "--run", str(chord_run), "--seed", "2", "--chords", "none", "--out", str(tmp_path / "free"), "--no-audio")
    assert free.returncode == 0, free.stderr
    assert json.loads((tmp_path / "free" / "generation.json").read_text())["settings"]["chords"] is None


@pytest.mark.parametrize(
    "override, message",
    [("generate.chords=C Xm", "'Xm'"), ("tokenizer.use_chords=false", "use_chords")],
)
def test_run_refuses_bad_chords_before_training(tmp_path, override, message):
    r = run_cli("run", "examples/chords_remi.yaml", f"output_dir={tmp_path}", override, cwd=REPO)
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # nothing was made


@pytest.mark.slow
def test_chords_example_runs_and_measures_chord_tones(tmp_path, corpus_cache):
    from test_examples import COMMON, TINY

    overrides = [f"output_dir={tmp_path}", *COMMON, *TINY["chords_remi.yaml"], "logger.name=none",
                 "generate.max_tokens=400", "generate.max_bars=3"]
    r = run_cli("run", "examples/chords_remi.yaml", *overrides, cwd=REPO, env={"MUSICFW_CACHE_DIR": str(corpus_cache)})
    assert r.returncode == 0, r.stderr[-4000:]
    (run_dir,) = tmp_path.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    gen = metrics["statistics"]["generated"]
    assert "chord_tone_ratio" in gen and gen["chord_tone_ratio"]["n"] >= 1
    assert "chord_tone_ratio" in metrics["statistics"]["reference"]
    for mid in sorted((run_dir / "samples").glob("*.mid")):
        texts = [m.text for m in symusic.Score(str(mid)).markers]
        # the example's progression, bar by bar: "G D | Em C | Am D7 | ..." (as far as the
        # budget of a 2-step model's sample reaches)
        want = ["Chord_G:maj", "Chord_D:maj", "Chord_E:min", "Chord_C:maj", "Chord_A:min", "Chord_D:dom7"]
        assert texts and texts == want[: len(texts)]
    np.testing.assert_equal(len(list((run_dir / "samples").glob("*.mid"))), 2)


def test_remi_and_musicvae_read_one_chord_syntax():
    """`musicfw generate --chords` (REMI) and `musicfw sample --chords` (MusicVAE) accept the
    same names; each maps them onto its own vocabulary (REMI keeps the dominant seventh)."""
    names = ["C", "Am", "F#m7", "Bb7", "Ebdim", "G+", "Cmaj7", "C13", "D/F#", "Abm7b5", "G:dom7", "N.C."]
    remi = [chord_name(parse_chord(n)) for n in names]
    vae = [triad_name(parse_triad(n)) for n in names]
    assert remi == ["C:maj", "A:min", "F#:min", "A#:dom7", "D#:dim", "G:aug", "C:maj", "C:dom7", "D:maj",
                    "G#:dim", "G:dom7", "N.C."]
    assert vae == ["C", "Am", "F#m", "Bb", "Ebdim", "Gaug", "C", "C", "D", "Abdim", "G", "N.C."]
    for bad in ("Csus4", "C5", "H", "Cxyz"):
        with pytest.raises(ConfigError):
            parse_chord(bad)
        with pytest.raises(ValueError):
            parse_triad(bad)
