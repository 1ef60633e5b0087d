"""Per-voice attribute controls (issue 26 point 3, per track): the ``tracks`` tokenizer writes each
voice's levels after its Track token in every segment, fits their boundaries to the training
split, and harmonisation forces the levels a user asks for; every mistake is a ConfigError before
anything is written.  Tiny untrained models: the forcing is checked on the tokens;
benchmarks/harmonize.py --controls measures how a trained model follows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import musicfw
from musicfw.cli import main
from musicfw.core.errors import ConfigError
from musicfw.music.controls import fit_bins
from musicfw.plugins.harmonize.harmonize import _sample, build_plan, harmonize, map_given
from musicfw.plugins.tokenizers.tracks import CONTROL, TRACK, Tracks
from musicfw.plugins.tokenizers.tracks_controls import score_levels

from test_harmonize import _chorale, _fake_run, _score, _soprano_only, _tiny_model, _track

torch.set_num_threads(1)

CTRL = ["density", "pitch_range", "duration"]


def _tok(**kw) -> Tracks:
    base = dict(min_pitch=28, max_pitch=88, segment_bars=1, positions="every", order="fixed", controls=CTRL,
                control_levels=4, control_bins={"density": [2, 4, 5], "pitch_range": [2, 4, 6], "duration": [3, 4, 6]})
    base.update(kw)
    return Tracks(Tracks.Config(**base))


def _controls_after_tracks(tok: Tracks, ids: np.ndarray) -> list[tuple[str, list[int]]]:
    """(voice, levels) for every Track token: the tokens right after it, in order."""
    names = tok.token_names(ids)
    out = []
    for i in np.flatnonzero(tok.type_codes[ids] == TRACK):
        k = len(tok.controls)
        follow = ids[i + 1: i + 1 + k]
        assert np.all(tok.type_codes[follow] >= CONTROL), names[i: i + k + 2]
        assert names[i + 1 + k] == "Bar"
        out.append((tok.voices[int(tok.token_values[ids[i]])], tok.token_values[follow].tolist()))
    return out


def test_controls_follow_each_track_token_and_measure_that_voice_in_that_bar():
    score = _chorale()
    plain = Tracks(Tracks.Config(min_pitch=28, max_pitch=88, segment_bars=1, positions="every", order="fixed"))
    tok = _tok()
    # ids after every other id: a vocabulary without controls is unchanged
    assert tok.vocab[: plain.vocab_size] == plain.vocab
    assert tok.vocab[plain.vocab_size:][:4] == ["Density_0", "Density_1", "Density_2", "Density_3"]
    ids = tok.encode(score)
    found = _controls_after_tracks(tok, ids)
    assert len(found) == 4 * 4  # 4 voices x 4 one-bar segments
    # by hand (bins density 2/4/5 notes, range 2/4/6 semitones, mean duration 3/4/6 positions):
    # bar 1 of the alto: 4 notes (67 for 8 positions, 65 and 64 for 2, 62 for 8 from position 12):
    # density 4 -> level 2, range 5 -> 2, mean duration 5 -> 2
    assert found[1] == ("alto", [2, 2, 2])
    # bar 1 of the tenor: a chord of two whole notes (60, 64): 2 notes -> 1, range 4 -> 2, 16 -> 3
    assert found[2] == ("tenor", [1, 2, 3])
    # bar 4 (3/4) of the bass: one note of 16 positions -> 0, range 0 -> 0, 16 -> 3
    assert found[15] == ("bass", [0, 0, 3])
    # score_levels measures the same levels from a score
    levels = score_levels(tok, score)
    for seg in range(4):
        for k, v in enumerate(tok.voices):
            assert found[seg * 4 + k] == (v, levels[v][seg].tolist())
    # decoding ignores the controls: the notes are those of the layout without them
    got, lens, invalid = tok.decode_voices(ids)
    want, _, _ = plain.decode_voices(plain.encode(score))
    assert invalid == 0 and lens == [16, 16, 16, 12]
    for v in want:
        for key in want[v]:
            np.testing.assert_array_equal(got[v][key], want[v][key])
    np.testing.assert_array_equal(tok.encode(tok.decode(ids)), ids)
    # a control token anywhere but right after a Track token is invalid
    bar = int(np.flatnonzero(np.array(tok.token_names(ids)) == "Bar")[0])
    moved = np.insert(ids, bar + 1, tok.control_ids[0, 0])
    assert tok.decode_voices(moved)[2] == 1


def test_fit_uses_quantiles_of_the_voice_segments_and_is_stored(tmp_path):
    from musicfw.core.tokenizer import load_tokenizer

    score = _chorale()
    tok = _tok(control_bins={}, control_binning="fit")
    assert tok.unfitted == tuple(CTRL)
    att = tok.segment_attributes(score)
    assert len(att["density"]) == 16  # 4 voices x 4 one-bar segments
    assert tok.fit(iter([score])) is True and tok.unfitted == ()
    for a in CTRL:
        assert tok.control_bins[a] == fit_bins(att[a], 4) == tok.config.control_bins[a]
    tok.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert again.control_bins == tok.control_bins and again.unfitted == ()
    np.testing.assert_array_equal(again.encode(score), tok.encode(score))
    # fixed binning has nothing to fit; a tokenizer.json written before controls existed still loads
    assert _tok().fit(iter([score])) is False
    old = json.loads((tmp_path / "tokenizer.json").read_text())
    for key in ("controls", "control_levels", "control_bins", "control_binning"):
        old["config"].pop(key)
    old["vocab"] = old["vocab"][: -12]
    old["vocab_size"] = len(old["vocab"])
    (tmp_path / "old.json").write_text(json.dumps(old))
    legacy = load_tokenizer(tmp_path / "old.json")
    assert legacy.controls == () and legacy.vocab == old["vocab"]


def test_bad_control_keys_are_config_errors():
    with pytest.raises(ConfigError, match="controls.*'loudness' is not allowed.*density, polyphony, pitch_range, duration"):
        _tok(controls=["loudness"], control_bins={})
    with pytest.raises(ConfigError, match="tracks: tokenizer.control_bins.density must be a list of 3"):
        _tok(control_bins={"density": [1, 2]})
    with pytest.raises(ConfigError, match="control_bins has boundaries for 'polyphony'"):
        _tok(control_bins={"polyphony": [1, 2, 3]})


def test_control_plan_per_voice_and_for_every_written_voice():
    tok = _tok()
    write = ["alto", "tenor", "bass"]
    plan = tok.control_plan("density=high", write)
    assert plan.shape == (1, 3, 3) and plan[0, :, 0].tolist() == [3, 3, 3] and (plan[0, :, 1:] == -1).all()
    plan = tok.control_plan("bass:pitch=low,alto:density=1,duration=2", write)
    assert plan[0].tolist() == [[1, -1, 2], [-1, -1, 2], [-1, 0, 2]]
    # a voice's own setting wins over one for every voice, whatever the order
    assert tok.control_plan("bass:density=0,density=3", write)[0, :, 0].tolist() == [3, 3, 0]
    # segment by segment, and a mapping as the API takes it
    plan = tok.control_plan([{"density": 0}, {"bass:density": 3}], write)
    assert plan[:, :, 0].tolist() == [[0, 0, 0], [-1, -1, 3]]


@pytest.mark.parametrize("controls,message", [
    ("density=1", "tokenizer has no control tokens.*tokenizer.controls"),
])
def test_controls_on_a_model_without_them(controls, message):
    plain = Tracks(Tracks.Config(min_pitch=28, max_pitch=88))
    with pytest.raises(ConfigError, match=message):
        harmonize(_tiny_model(plain), plain, _soprano_only(), controls=controls)


@pytest.fixture(scope="module")
def model_and_tok():
    tok = _tok()
    return _tiny_model(tok), tok


@pytest.mark.parametrize("controls,message", [
    ("polyphony=1", "unknown control 'polyphony'; this model was trained with density, pitch_range, duration"),
    ("density=4", r"density: level 4 is out of range; use 0\.\.3 or low"),
    ("density=loud", "level 'loud' is not allowed"),
    ("soprano:density=1", "soprano is not written here.*alto, tenor, bass"),
    ("baritone:density=1", "unknown voice 'baritone'; the model knows soprano, alto, tenor, bass"),
    ("density", "'density' is not attribute=level"),
])
def test_bad_controls_are_config_errors(model_and_tok, controls, message):
    model, tok = model_and_tok
    with pytest.raises(ConfigError, match=message):
        harmonize(model, tok, _soprano_only(), controls=controls)
    with pytest.raises(ConfigError, match=message):
        musicfw.harmonize(model, _soprano_only(), tokenizer=tok, controls=controls)


def test_forced_levels_follow_each_written_track_token(model_and_tok):
    model, tok = model_and_tok
    piece = _soprano_only()
    write = ["alto", "tenor", "bass"]
    mapping = map_given(tok, piece, ["soprano"], write, "the piece")
    levels = tok.control_plan("density=3,bass:pitch_range=0,alto:duration=1", write)
    plan, _ = build_plan(tok, piece, mapping, write, levels)
    from musicfw.engine.generation import build_sampler_chain

    sampler = build_sampler_chain({"name": "temperature", "temperature": 1.0})
    seqs = _sample(model, tok, sampler, plan, 3, 0, None)
    given_levels = score_levels(tok, piece)["soprano"]
    seen_free = set()
    for seq in seqs:
        found = _controls_after_tracks(tok, seq)
        assert len(found) == 4 * 4
        for seg in range(4):
            for voice, lv in found[seg * 4: seg * 4 + 4]:
                if voice == "soprano":  # the given voice: the levels its own notes have, as encode writes them
                    assert lv == given_levels[seg].tolist()
                    continue
                assert lv[0] == 3
                if voice == "bass":
                    assert lv[1] == 0
                if voice == "alto":
                    assert lv[2] == 1
                seen_free.add((voice, lv[1] if voice != "bass" else lv[2]))
        assert tok.decode_voices(seq)[2] == 0
    assert len(seen_free) > 3, "the attributes not asked for are sampled, not fixed"
    # without controls the model still writes one control token per attribute (its own choice)
    free_plan, _ = build_plan(tok, piece, mapping, write)
    for seq in _sample(model, tok, sampler, free_plan, 2, 0, None):
        assert len(_controls_after_tracks(tok, seq)) == 16


def test_cli_controls_text_and_yaml_file_and_errors_before_any_output(model_and_tok, tmp_path, monkeypatch, capsys):
    model, tok = model_and_tok
    import musicfw.engine.training as training

    monkeypatch.setattr(training, "load_model", lambda *a, **k: (model, tok))
    run = _fake_run(tmp_path)
    song = tmp_path / "melody.mid"
    _soprano_only().dump_midi(str(song))
    out = tmp_path / "out"
    assert main(["harmonize", "--run", str(run), str(song), "--n", "1", "--seed", "0", "--out", str(out),
                 "--controls", "bass:pitch=low,alto:density=1"]) == 0
    record = json.loads((out / "harmonize.json").read_text())
    assert record["controls"] == "bass:pitch=low,alto:density=1"
    spec = tmp_path / "controls.yaml"
    spec.write_text("controls:\n  - {density: high}\n  - {bass:density: 0}\n")
    out2 = tmp_path / "out2"
    assert main(["harmonize", "--run", str(run), str(song), "--n", "1", "--seed", "0", "--out", str(out2),
                 "--controls", str(spec)]) == 0
    assert json.loads((out2 / "harmonize.json").read_text())["controls"] == [{"density": "high"}, {"bass:density": 0}]
    capsys.readouterr()
    cases = [
        (["--controls", "polyphony=2"], "unknown control 'polyphony'"),
        (["--controls", "density=7"], "level 7 is out of range"),
        (["--voices", "bass", "--controls", "alto:density=1"], "alto is not written here"),
        (["--controls", str(tmp_path / "missing.yaml")], "--controls: no file"),
    ]
    for extra, message in cases:
        target = tmp_path / "bad"
        assert main(["harmonize", "--run", str(run), str(song), "--seed", "0", "--out", str(target), *extra]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert message in err and "Traceback" not in err
        assert not target.exists()
    assert not (run / "samples").exists()


def test_control_adherence_metric_leaves_a_tracks_run_alone(model_and_tok):
    from musicfw.plugins.metrics.controls import ControlAdherence

    model, tok = model_and_tok
    assert ControlAdherence().evaluate(model, None, tok) is None


def test_a_file_without_voice_names_still_gets_controls(model_and_tok):
    model, tok = model_and_tok
    mel = _score([_track("", [(0, 480, 72), (480, 480, 71), (960, 1920, 69)])])
    (out,) = harmonize(model, tok, mel, voices="bass", n=1, seed=0, controls="density=0")
    assert [t.name for t in out.tracks] == ["", "Bass"]
