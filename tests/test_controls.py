"""Attribute controls (issue 26 part 3): REMI's per-bar control tokens, their forcing at
generation, and the user's mistakes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic
import torch

import musicfw
from musicfw.core.constraints import violations
from musicfw.core.errors import ConfigError
from musicfw.engine.generation import build_sampler_chain, generate
from musicfw.music.controls import bar_attributes, default_bins, fit_bins, parse_controls, quantise
from musicfw.plugins.tokenizers.remi_controls import force_controls

from conftest import TEST_MIDI, run_cli
from test_generation import ToyGRU

torch.set_num_threads(1)

ALL = ["density", "polyphony", "pitch_range", "duration"]
BINS = {  # 4 levels each, chosen so the hand-made bars land on known levels
    "density": [1.5, 2.5, 3.5],
    "polyphony": [1.2, 1.5, 3.0],
    "pitch_range": [1.0, 5.0, 10.0],
    "duration": [4.0, 8.0, 12.0],
}


def two_bars() -> symusic.Score:
    """4/4, tpq 480 (4 positions a quarter).  Bar 0: C4 and E4 a quarter at beat 1, G4 a half
    at beat 2.  Bar 1: C5, a whole note."""
    score = symusic.Score(480)
    track = symusic.Track("p", program=0)
    for t, d, p in ((0, 480, 60), (0, 480, 64), (480, 960, 67), (1920, 1920, 72)):
        track.notes.append(symusic.Note(t, d, p, 80))
    score.tracks.append(track)
    score.tempos.append(symusic.Tempo(0, 120.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    return score


def controlled(**kw):
    params = {"controls": ALL, "control_levels": 4, "control_bins": BINS}
    params.update(kw)
    return musicfw.build_tokenizer("remi", **params)


def test_attributes_of_a_hand_made_score():
    att = bar_attributes(
        onset=np.array([0, 0, 4, 16]), duration=np.array([4, 4, 8, 16]), pitch=np.array([60, 64, 67, 72]),
        bar_starts=np.array([0, 16]), bar_lengths=np.array([16, 16]),
    )
    assert att["density"].tolist() == [3, 1]
    assert att["pitch_range"].tolist() == [7, 0]
    assert np.allclose(att["duration"], [16 / 3, 16])
    # bar 0: two notes sound over positions 0-3, one over 4-11, none over 12-15
    assert np.allclose(att["polyphony"], [(2 * 4 + 1 * 8) / 12, 1])
    assert quantise([0, 1.5, 2, 99], [1.5, 2.5]).tolist() == [0, 1, 1, 2]


def test_control_tokens_follow_each_bar_with_the_measured_levels():
    tok = controlled()
    names = tok.token_names(tok.encode(two_bars()))
    bars = [i for i, n in enumerate(names) if n == "Bar"]
    assert len(bars) == 2
    assert names[bars[0] + 1 : bars[0] + 6] == ["Density_2", "Polyphony_1", "PitchRange_2", "MeanDuration_1", "TimeSig_4/4"]
    assert names[bars[1] + 1 : bars[1] + 5] == ["Density_0", "Polyphony_0", "PitchRange_0", "MeanDuration_3"]
    # the order is the configured one; a subset writes only its own
    sub = controlled(controls=["pitch_range", "density"], control_bins={k: BINS[k] for k in ("pitch_range", "density")})
    names = sub.token_names(sub.encode(two_bars()))
    assert names[1:4] == ["PitchRange_2", "Density_2", "TimeSig_4/4"]
    # decode ignores them: the same notes come back
    a, b = tok.decode(tok.encode(two_bars())), musicfw.build_tokenizer("remi").decode(
        musicfw.build_tokenizer("remi").encode(two_bars()))
    assert [(n.time, n.duration, n.pitch) for n in a.tracks[0].notes] == [(n.time, n.duration, n.pitch) for n in b.tracks[0].notes]
    m = tok.measure_controls(tok.encode(two_bars()))
    assert m["levels"]["density"].tolist() == m["tokens"]["density"].tolist() == [2, 0]


def test_default_remi_is_unchanged_and_controls_only_add_ids_at_the_end():
    plain = musicfw.build_tokenizer("remi")
    assert plain.config.controls == [] and plain.vocab_size == 277
    assert not any(n.split("_")[0] in ("Density", "Polyphony", "PitchRange", "MeanDuration") for n in plain.vocab)
    tok = musicfw.build_tokenizer("remi", controls=ALL)  # default bins, 8 levels
    assert tok.vocab[: plain.vocab_size] == plain.vocab and tok.vocab_size == plain.vocab_size + 4 * 8
    path = sorted((TEST_MIDI / "one_track").glob("*.mid"))[0]
    score = symusic.Score(str(path))
    ids, with_ctrl = plain.encode(score), tok.encode(score)
    assert np.array_equal(with_ctrl[with_ctrl < plain.vocab_size], ids)
    assert (with_ctrl >= plain.vocab_size).sum() == 4 * int((ids == 0).sum())
    assert violations(tok.grammar(1), with_ctrl) == []
    # bars and notes decode the same
    assert plain.count_notes(ids) == tok.count_notes(with_ctrl)
    assert tok.count_invalid(with_ctrl) == 0


def test_bins_default_fit_and_bad_bins():
    assert default_bins("density", 8) == pytest.approx(np.geomspace(2, 48, 7).tolist())
    assert fit_bins(np.arange(100), 4) == pytest.approx([24.75, 49.5, 74.25])
    assert fit_bins(np.array([3, 3, 3, 3, 5]), 3) == [3.0, 5.0]  # ties: the next value the data holds
    assert fit_bins(np.array([4.0] * 8 + [4.5, 6.0]), 4) == [4.0, 4.5, 6.0]
    with pytest.raises(ConfigError, match="control_bins.density must be 3 increasing"):
        controlled(control_bins={"density": [3, 2, 1]})
    with pytest.raises(ConfigError, match="must be a list of 3 increasing numbers"):
        controlled(control_bins={"density": list(range(100))})
    with pytest.raises(ConfigError, match="not in tokenizer.controls"):
        musicfw.build_tokenizer("remi", controls=["density"], control_bins={"polyphony": [1, 2, 3, 4, 5, 6, 7]})
    with pytest.raises(ConfigError, match="controls"):
        musicfw.build_tokenizer("remi", controls=["loudness"])
    # the bins travel in tokenizer.json
    tok = controlled()
    again = musicfw.build_tokenizer("remi", **json.loads(json.dumps(tok.to_dict()))["config"])
    assert again.control_bins == tok.control_bins and again.vocab == tok.vocab


def _bars_controls(tok, seq):
    """The control-token names after each Bar of ``seq``."""
    names = tok.token_names(seq)
    n = len(tok.controls)
    return [names[i + 1 : i + 1 + n] for i, t in enumerate(names) if t == "Bar"]


def test_forcing_puts_the_requested_tokens_after_every_bar():
    tok = controlled()
    model = ToyGRU(tok.vocab_size, seed=1)
    sampler = build_sampler_chain({"name": "temperature", "temperature": 1.0})
    res = generate(model, tok, sampler, n=6, batch_size=3, max_tokens=160, seed=0,
                   controls="density=3,pitch=high")
    bars_seen = 0
    free_levels = set()
    for seq in res.tokens:
        for names in _bars_controls(tok, seq):
            if len(names) < 4:  # cut by max_tokens
                continue
            bars_seen += 1
            assert names[0] == "Density_3" and names[2] == "PitchRange_3", names
            assert names[1].startswith("Polyphony_") and names[3].startswith("MeanDuration_")
            free_levels.add(names[1])
        assert violations(tok.grammar(1), seq) == []
        assert tok.count_invalid(seq) == 0
    assert bars_seen >= 6
    assert len(free_levels) > 1  # an attribute not given is the model's choice
    # bar by bar, repeating; mid/low by name
    res = generate(model, tok, sampler, n=3, max_tokens=300, seed=1,
                   controls=[{"density": "low"}, {"density": 1, "duration": "mid"}])
    seen = 0
    for seq in res.tokens:
        got = [b for b in _bars_controls(tok, seq) if len(b) == 4]
        seen += len(got)
        for k, names in enumerate(got):
            assert names[0] == ("Density_0" if k % 2 == 0 else "Density_1")
            if k % 2:
                assert names[3] == "MeanDuration_1"
    assert seen >= 5
    # without controls the model samples every control token, still after every Bar
    res = generate(model, tok, sampler, n=2, max_tokens=120, seed=2)
    for seq in res.tokens:
        for names in _bars_controls(tok, seq):
            assert [n.split("_")[0] for n in names] == ["Density", "Polyphony", "PitchRange", "MeanDuration"][: len(names)]


def test_force_controls_is_a_reusable_constraint_and_counts_bars_after_start():
    tok = controlled()
    g = force_controls(tok, {"polyphony": 2}, batch_size=2)
    bar, p2 = tok.token_id("Bar"), tok.token_id("Polyphony_2")
    g.feed(np.array([bar]))  # a prompt's bar: not forced
    assert g.mask(None)[0, tok.control_ids[0]].all()
    g.feed(tok.control_ids[:, 0])
    g.start()
    g.update(np.array([bar, bar]))
    g.update(np.array([tok.token_id("Density_1")] * 2))
    allowed = g.mask(None)
    assert allowed[:, p2].all() and allowed.sum(axis=1).tolist() == [1, 1]


@pytest.mark.parametrize(
    "controls, message",
    [
        ("loudness=2", "unknown control 'loudness'; this model was trained with density, polyphony, pitch_range, duration"),
        ("density=4", "level 4 is out of range; use 0..3 or low (=0), mid (=1), high (=3)"),
        ("density=dense", "level 'dense' is not allowed"),
        ("density", "not attribute=level"),
    ],
)
def test_bad_controls_are_config_errors_naming_what_is_allowed(controls, message):
    tok = controlled()
    model = ToyGRU(tok.vocab_size)
    sampler = build_sampler_chain({"name": "greedy"})
    with pytest.raises(ConfigError) as exc:
        generate(model, tok, sampler, n=1, max_tokens=8, controls=controls)
    assert message in str(exc.value)


def test_controls_need_a_tokenizer_trained_with_them_and_constraints():
    plain = musicfw.build_tokenizer("remi")
    sampler = build_sampler_chain({"name": "greedy"})
    with pytest.raises(ConfigError, match="no control tokens"):
        generate(ToyGRU(plain.vocab_size), plain, sampler, n=1, max_tokens=8, controls="density=1")
    tok = controlled()
    with pytest.raises(ConfigError, match="constraints: false"):
        generate(ToyGRU(tok.vocab_size), tok, sampler, n=1, max_tokens=8, controls="density=1", constraints=False)
    with pytest.raises(ValueError, match="given twice"):
        parse_controls("density=1,density=2")
    # from an experiment config: refused when the experiment is assembled, before training
    from musicfw.core.plugins import load_registries
    from musicfw.engine.assemble import build_experiment

    config = musicfw.load_config({
        "name": "c", "data": {"name": "midi_folder", "path": str(TEST_MIDI / "one_track")},
        "tokenizer": {"name": "remi", "controls": ["density"], "control_levels": 3},
        "model": {"name": "lstm", "hidden_size": 8, "num_layers": 1, "embed_dim": 4},
        "generate": {"controls": {"density": 5}},
    })
    with pytest.raises(ConfigError, match="generate.controls: density: level 5 is out of range; use 0..2"):
        build_experiment(config, load_registries())


@pytest.fixture(scope="module")
def control_run(tmp_path_factory):
    from musicfw.api import build_from_section
    from musicfw.engine.rundir import RunFolder

    root = tmp_path_factory.mktemp("runs")
    config = musicfw.load_config({
        "name": "ctl", "seed": 3, "data": {"name": "midi_folder", "path": str(root)},
        "tokenizer": {"name": "remi", "controls": ["density", "pitch_range"], "control_levels": 4},
        "model": {"name": "lstm", "hidden_size": 16, "num_layers": 1, "embed_dim": 8},
        "sampler": {"name": "temperature", "temperature": 1.0},
        "generate": {"n": 2, "max_tokens": 60, "render_audio": False, "controls": "density=1"},
    })
    run = RunFolder.create(root, config.name)
    run.save_config(config)
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    tokenizer.save(run.tokenizer_path)
    torch.manual_seed(0)
    model = build_from_section("models", config.model, tokenizer=tokenizer)
    run.checkpoints.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, run.checkpoints / "best.ckpt")
    return run.path, tokenizer


def test_generate_cli_controls(control_run, tmp_path):
    run, tok = control_run
    out = tmp_path / "a"
    r = run_cli("generate", "--run", str(run), "--seed", "1", "--controls", "pitch=high,density=0",
                "--out", str(out), "--no-audio")
    assert r.returncode == 0, r.stderr
    record = json.loads((out / "generation.json").read_text())
    assert record["settings"]["controls"] == {"pitch": "high", "density": "0"}
    bad = run_cli("generate", "--run", str(run), "--controls", "polyphony=2", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown control 'polyphony'; this model was trained with density, pitch_range" in bad.stderr.replace("\n", " ")
    assert not (tmp_path / "bad").exists()


def test_controls_combine_with_a_chord_progression():
    tok = controlled(use_chords=True, controls=["density"], control_bins={"density": BINS["density"]})
    model = ToyGRU(tok.vocab_size, seed=2)
    sampler = build_sampler_chain({"name": "temperature", "temperature": 1.0})
    res = generate(model, tok, sampler, n=2, max_tokens=200, seed=3, chords="C G", controls="density=high")
    for seq in res.tokens:
        names = tok.token_names(seq)
        bars = [i for i, n in enumerate(names) if n == "Bar"]
        assert bars and all(names[i + 1] == "Density_3" for i in bars if i + 1 < len(names))
        chords = [n for n in names if n.startswith("Chord_")]
        assert chords and chords == ["Chord_C:maj", "Chord_G:maj"] * (len(chords) // 2) + ["Chord_C:maj"] * (len(chords) % 2)
        assert violations(tok.grammar(1), seq) == [] and tok.count_invalid(seq) == 0
