"""Issue 26 integrated: attribute controls in bar infilling (``musicfw infill --controls``,
``musicfw.infill(..., controls=)``), plain generation from an infilling model (controls kept,
markers never written, the clock past the base vocabulary), and fine-tuning a plain run into
an infilling one (``init_from``: the vocabulary grows by the three markers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import symusic
import torch

import musicfw
from conftest import TEST_MIDI, untrained_infill_run
from musicfw.core.errors import ConfigError
from musicfw.engine.infill import MARKERS, InfillTokenizer, bar_bounds, fill_tokens

CONTROLS = ["density", "pitch_range"]


def _song(n_bars: int = 6, seed: int = 0) -> symusic.Score:
    rng = np.random.default_rng(seed)
    score = symusic.Score(480)
    track = symusic.Track("piano", 0, False)
    for b in range(n_bars):
        for beat in range(4):
            t = (b * 4 + beat) * 480
            track.notes.append(symusic.Note(t, 480, int(rng.integers(48, 60)), 80))
            track.notes.append(symusic.Note(t, 240, int(rng.integers(60, 80)), 90))
    score.tracks.append(track)
    return score


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny LSTM trained (a few steps) with train.infill on REMI with controls; its run
    also generates with generate.controls (the infilling tokenizer forwards its controls)."""
    root = tmp_path_factory.mktemp("ctlinfill")
    cfg = musicfw.load_config({
        "name": "ctlinfill", "seed": 0, "output_dir": str(root),
        "data": {"name": "midi_folder", "path": str(TEST_MIDI / "one_track")},
        "tokenizer": {"name": "remi", "controls": CONTROLS, "control_levels": 4},
        "model": {"name": "lstm", "hidden_size": 16, "num_layers": 1, "embed_dim": 8},
        "train": {"batch_size": 4, "seq_len": 64, "max_steps": 2, "max_epochs": 1,
                  "infill": {"enabled": True, "max_bars": 2}},
        "sampler": {"name": "temperature", "temperature": 1.0},
        "generate": {"n": 1, "max_tokens": 24, "render_audio": False, "controls": "density=1"},
        "evaluate": {"metrics": ["nll"]},
        "logger": {"name": "none"},
    })
    result = musicfw.run(cfg)
    from musicfw.engine.training import load_model

    model, tokenizer = load_model(result.run_dir)
    assert isinstance(tokenizer, InfillTokenizer) and tokenizer.controls == tuple(CONTROLS)
    return result.run_dir, model, tokenizer


def _bars_of(filled: np.ndarray, tok: InfillTokenizer) -> list[np.ndarray]:
    assert tok.layout == "spm" and tok.is_bar[filled[-1]]  # the opener that ends the last filled bar
    body = filled[:-1]
    opens = np.flatnonzero(tok.is_bar[np.minimum(body, tok.base_vocab_size - 1)] & (body < tok.base_vocab_size))
    return np.split(body[opens[0]:], opens[1:] - opens[0])


def _stated(bar: np.ndarray, tok: InfillTokenizer) -> list[int]:
    """The control ids a filled bar states, in order (every control id in the bar)."""
    ctrl = set(np.asarray(tok.base.control_ids).reshape(-1).tolist())
    return [int(t) for t in bar if int(t) in ctrl]


@pytest.mark.parametrize("controls, plan", [
    ("density=3,pitch=high", [[3, 3]]),
    ("density=0 | density=2,pitch_range=1", [[0, None], [2, 1]]),
])
def test_filled_bars_carry_exactly_the_requested_control_tokens(trained, controls, plan):
    _, model, tok = trained
    tokens = tok.encode(_song(6))
    k = 3
    res = fill_tokens(model, tok, musicfw.build_sampler("temperature", temperature=1.0), tokens, 1, k, n=2,
                      max_tokens=48, seed=2, controls=controls)
    ids = np.asarray(tok.base.control_ids)
    for filled in res.filled:
        bars = _bars_of(filled, tok)
        assert len(bars) == k
        for b, bar in enumerate(bars):
            want = plan[b % len(plan)]
            stated = _stated(bar, tok)
            assert len(stated) == len(CONTROLS)  # one token per attribute, no more
            assert list(bar[1 : 1 + len(CONTROLS)]) == stated  # right after the bar opener
            for i, level in enumerate(want):
                if level is not None:
                    assert stated[i] == int(ids[i, level])
                else:
                    assert stated[i] in ids[i].tolist()
    # unforced, the same model writes other levels somewhere (the forcing is what made them equal)
    free = fill_tokens(model, tok, musicfw.build_sampler("temperature", temperature=1.0), tokens, 1, k, n=2,
                       max_tokens=48, seed=2)
    levels = {s[0] for f in free.filled for s in (_stated(bar, tok) for bar in _bars_of(f, tok))}
    assert levels != {int(ids[0, 3])}


def test_api_and_cli_take_controls(trained, tmp_path):
    from musicfw.cli import main

    run, _, _ = trained
    out = musicfw.infill(run, _song(6), "2-3", n=1, seed=0, controls={"density": 2}, max_tokens=40)
    assert out.bars == (2, 3)
    song = tmp_path / "song.mid"
    _song(6).dump_midi(str(song))
    before = song.read_bytes()
    dest = tmp_path / "out"
    assert main(["infill", "--run", str(run), str(song), "--bars", "2-4", "--seed", "1", "--out", str(dest),
                 "--controls", "density=1 | pitch=high", "--max-tokens", "48"]) == 0
    record = json.loads((dest / "infill.json").read_text())
    assert record["controls"] == [{"density": "1"}, {"pitch": "high"}]
    assert len(list(dest.glob("*.mid"))) == 1 and song.read_bytes() == before


def test_controls_the_model_was_not_trained_with_are_refused_before_any_output(trained, tmp_path, capsys):
    from musicfw.cli import main

    run, model, tok = trained
    plain = untrained_infill_run(tmp_path, "noctl", {"name": "remi"}, infill=True)
    song = tmp_path / "song.mid"
    _song(6).dump_midi(str(song))
    with pytest.raises(ConfigError, match="has no control tokens"):
        musicfw.infill(plain, _song(6), "2-3", controls="density=1")
    with pytest.raises(ConfigError, match="unknown control 'polyphony'; this model was trained with density, pitch_range"):
        musicfw.infill(run, _song(6), "2-3", controls="polyphony=1")
    with pytest.raises(ConfigError, match="level 9 is out of range; use 0..3"):
        fill_tokens(model, tok, musicfw.build_sampler("greedy"), tok.encode(_song(6)), 1, 1, controls="density=9")
    for source, controls, message in ((plain, "density=1", "has no control tokens"),
                                      (run, "polyphony=1", "unknown control 'polyphony'")):
        dest = tmp_path / f"out-{source.name}"
        assert main(["infill", "--run", str(source), str(song), "--bars", "2-3", "--out", str(dest),
                     "--controls", controls]) == 2
        err = capsys.readouterr().err
        assert message in err.replace("\n", " ") and "Traceback" not in err
        assert not dest.exists()


def test_plain_generation_from_an_infilling_model_keeps_controls_and_writes_no_marker(trained):
    from musicfw.engine.generation import build_sampler_chain, generate

    _, model, tok = trained
    sampler = build_sampler_chain({"name": "temperature", "temperature": 1.0})
    res = generate(model, tok, sampler, n=2, max_tokens=40, seed=0, controls="density=2")
    ids = np.asarray(tok.base.control_ids)
    for seq in res.tokens:
        starts = np.flatnonzero(tok.is_bar[np.minimum(seq, tok.base_vocab_size - 1)] & (seq < tok.base_vocab_size))
        assert len(starts)
        for s in starts:
            if s + 1 < len(seq):
                assert seq[s + 1] == ids[0, 2]
    # a model that prefers the markers: constrained or not, plain generation never writes one,
    # and max_bars / max_seconds (the clock) work on the extended vocabulary
    import copy

    biased = copy.deepcopy(model)
    with torch.no_grad():
        biased.head.bias[tok.base_vocab_size :] += 50.0
    for constraints in (True, False):
        out = generate(biased, tok, sampler, n=2, max_tokens=30, seed=0, constraints=constraints, max_bars=2,
                       max_seconds=30.0)
        for seq in out.tokens:
            assert not np.isin(seq, tok.marker_ids).any()


def test_the_clock_steps_over_marker_ids():
    tok = InfillTokenizer(musicfw.build_tokenizer("remi"))
    tokens = tok.encode(_song(4))
    bounds = bar_bounds(tokens, tok.is_bar)
    with_markers = np.insert(tokens, [int(bounds[1]), int(bounds[2]) + 3], [tok.ids.fill, tok.ids.end])
    a, b = tok.clock(2), tok.clock(2)
    for t in tokens:
        a.update(np.array([t, t]))
    for t in with_markers:
        b.update(np.array([t, t]))
        assert not b.would_open_bar(np.array([tok.ids.sep, tok.ids.fill])).any()
    assert np.allclose(a.bars, b.bars) and np.allclose(a.seconds, b.seconds) and a.bars[0] == 4
    # one row reads a marker, the other a real token: only the second moves
    c = tok.clock(2)
    c.update(np.array([int(tokens[0]), tok.ids.fill]))
    assert c.bars.tolist() == [1.0, 0.0]


def test_init_from_a_plain_run_grows_the_vocabulary_by_the_markers(tmp_path):
    from musicfw.core.plugins import load_registries
    from musicfw.engine.assemble import build_experiment
    from musicfw.engine.training import load_model

    plain = untrained_infill_run(tmp_path, "plain", {"name": "remi"}, infill=False)
    old, old_tok = load_model(plain)
    cfg = musicfw.load_config({
        "name": "ft", "seed": 1, "init_from": str(plain),
        "data": {"name": "midi_folder", "path": str(TEST_MIDI / "one_track")},
        "tokenizer": {"name": "remi"},
        "model": {"name": "lstm", "hidden_size": 16, "num_layers": 1, "embed_dim": 8},
        "train": {"infill": {"enabled": True}},
    })
    built = build_experiment(cfg, load_registries())
    assert isinstance(built.tokenizer, InfillTokenizer)
    V0, V = old_tok.vocab_size, built.tokenizer.vocab_size
    assert V == V0 + len(MARKERS)
    new_state, old_state = built.model.state_dict(), old.state_dict()
    grown = [k for k in new_state if new_state[k].shape != old_state[k].shape]
    assert grown  # the embedding and the output rows
    assert sorted(grown) == ["embed.weight", "head.bias", "head.weight"]
    for key, value in new_state.items():
        if key == "embed.weight":  # rows 0..V0-1: the ids, row V0: the start input, moved to row V
            assert value.shape[0] == V + 1 and torch.equal(value[:V0], old_state[key][:V0])
            assert torch.equal(value[V], old_state[key][V0])
            assert value[V0:V].abs().sum() > 0  # the markers' rows: the model's own initialisation
        elif key in grown:
            assert value.shape[0] == V and torch.equal(value[:V0], old_state[key])  # old rows copied
        else:
            assert torch.equal(value, old_state[key])
    # the other way (an infilling run into a plain one) keeps the rows of the plain vocabulary
    infilling = untrained_infill_run(tmp_path, "filler", {"name": "remi"}, infill=True)
    src, _ = load_model(infilling)
    cfg.init_from, cfg.train.infill.enabled = str(infilling), False
    back = build_experiment(cfg, load_registries())
    assert back.tokenizer.vocab_size == V0
    theirs = src.state_dict()
    for key, value in back.model.state_dict().items():
        if key == "embed.weight":
            assert torch.equal(value[:V0], theirs[key][:V0]) and torch.equal(value[V0], theirs[key][V])
        elif key in grown:
            assert torch.equal(value, theirs[key][:V0])
        else:
            assert torch.equal(value, theirs[key])
