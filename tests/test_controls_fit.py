"""Attribute controls, issue 26 part 3-4: boundaries fitted to the training split
(``control_binning: fit``, stored in tokenizer.json) and control adherence in a run's
metrics.json (the ``control_adherence`` metric)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import symusic
import torch

import musicfw
from musicfw.core.errors import ConfigError, DataError
from musicfw.music.controls import default_bins, fit_bins

from conftest import TEST_MIDI, run_cli

torch.set_num_threads(1)

ALL = ["density", "polyphony", "pitch_range", "duration"]


def _scores() -> list[symusic.Score]:
    return [symusic.Score(str(p)) for p in sorted((TEST_MIDI / "one_track").glob("*.mid"))]


def test_fitted_bins_make_levels_about_equally_common_and_travel_in_tokenizer_json():
    scores = _scores()
    tok = musicfw.build_tokenizer("remi", controls=ALL, control_levels=4, control_binning="fit")
    assert tok.unfitted == tuple(ALL)
    assert tok.fit(iter(scores)) is True and tok.unfitted == ()
    for i, a in enumerate(ALL):
        stated = np.concatenate([tok.measure_controls(tok.encode(s))["tokens"][a] for s in scores])
        counts = np.bincount(stated, minlength=4)
        # quantile boundaries: every level holds about a quarter of the bars
        assert counts.min() >= 0.7 * len(stated) / 4 and counts.max() <= 1.3 * len(stated) / 4, (a, counts)
        values = np.concatenate([tok.score_attributes(s)[a] for s in scores])
        assert tok.control_bins[a] == fit_bins(values, 4) == tok.config.control_bins[a]
    # the fixed bins put most of these bars into a few levels: the fit is what balanced them
    fixed = musicfw.build_tokenizer("remi", controls=ALL, control_levels=4)
    assert fixed.fit(iter(scores)) is False and fixed.control_bins["density"] == default_bins("density", 4)
    # stored and reloaded: the same boundaries, nothing left to fit, the same tokens
    again = musicfw.build_tokenizer("remi", **json.loads(json.dumps(tok.to_dict()))["config"])
    assert again.control_bins == tok.control_bins and again.unfitted == ()
    assert again.fit(iter(())) is False
    assert all(np.array_equal(again.encode(s), tok.encode(s)) for s in scores)
    # an attribute given in control_bins keeps its boundaries; only the others are fitted
    part = musicfw.build_tokenizer("remi", controls=["density", "pitch_range"], control_levels=3,
                                   control_binning="fit", control_bins={"density": [5.0, 9.0]})
    assert part.unfitted == ("pitch_range",) and part.fit(iter(scores))
    assert part.control_bins["density"] == [5.0, 9.0] and len(part.control_bins["pitch_range"]) == 2


def test_fit_without_bars_and_bad_binning_are_clear_errors():
    tok = musicfw.build_tokenizer("remi", controls=["density"], control_levels=4, control_binning="fit")
    with pytest.raises(DataError, match="control_binning: fit found no bar in the training split"):
        tok.fit(iter([symusic.Score(480)]))
    with pytest.raises(ConfigError, match="control_binning.*fixed.*fit"):
        musicfw.build_tokenizer("remi", controls=["density"], control_binning="quantile")


def test_shards_refuse_a_tokenizer_that_fits_itself(tmp_path):
    from musicfw.engine.data import build_datamodule

    tok = musicfw.build_tokenizer("remi", controls=["density"], control_levels=4, control_binning="fit")
    from omegaconf import OmegaConf

    data = OmegaConf.create({"name": "midi_folder", "path": str(TEST_MIDI / "one_track"), "format": "shards",
                             "cache_dir": str(tmp_path / "cache")})
    with pytest.raises(ConfigError, match="data.format: shards encodes the files before the split is known"):
        build_datamodule(data, tok, progress=False)


def test_only_a_tokenizer_that_fits_reads_the_training_split(tmp_path, monkeypatch):
    """The data stage hands ``fit`` a lazy stream: a tokenizer with nothing to fit reads no
    piece (no sort, no score), and only a fitted one is marked for tokenizer.json's rewrite."""
    from omegaconf import OmegaConf

    import musicfw.engine.data as data_mod

    read = []
    original = data_mod._training_scores

    def counting(data):
        for score in original(data):
            read.append(1)
            yield score

    monkeypatch.setattr(data_mod, "_training_scores", counting)
    data = OmegaConf.create({"name": "midi_folder", "path": str(_corpus(tmp_path)), "cache_dir": str(tmp_path / "c")})
    plain = data_mod.build_datamodule(data, musicfw.build_tokenizer("remi", controls=["density"]), progress=False)
    assert plain.tokenizer_fitted is False and read == []
    fitting = musicfw.build_tokenizer("remi", controls=["density"], control_levels=3, control_binning="fit")
    fitted = data_mod.build_datamodule(data, fitting, progress=False)
    assert fitted.tokenizer_fitted is True and len(read) == len(fitted.data.pieces("train")) > 0


def test_adherence_scores():
    from musicfw.plugins.metrics.controls import _collect, scores

    s = scores([0, 1, 2, 3], [0, 2, 1, 3])
    assert s["exact"] == 0.5 and s["within_one"] == 1.0 and s["spearman"] == pytest.approx(0.8)
    assert scores([0, 1, 2, 3], [3, 2, 0, 1])["within_one"] == 0.25
    assert scores([1, 1], [0, 2])["spearman"] is None and scores([], [])["exact"] is None
    # a piece the token budget cut off: its last (unfinished) bar is not measured
    tok = musicfw.build_tokenizer("remi", controls=["density"], control_levels=3, control_bins={"density": [2, 3]})
    seq = tok.encode(_scores()[0])
    bars = int((seq == 0).sum())
    plan = np.zeros((bars + 5, 1), dtype=np.int64)
    for reason, n in (("max_bars", bars), ("max_tokens", bars - 1)):
        pairs = {"density": ([], [])}
        _collect(pairs, tok, ("density",), plan, seq, reason)
        assert len(pairs["density"][0]) == n


def _corpus(root: Path) -> Path:
    """10 short pieces, 8 bars each, 1-4 notes a bar and pitch spans 0-20 semitones."""
    rng = np.random.default_rng(0)
    folder = root / "midi"
    folder.mkdir()
    for i in range(10):
        score, track = symusic.Score(480), symusic.Track("p", program=0)
        for b in range(8):
            k, span = int(rng.integers(1, 5)), int(rng.integers(0, 20))
            for j in range(k):
                track.notes.append(symusic.Note(b * 1920 + j * 480, 480, 60 + (span if j == k - 1 else 0) - j % 2, 80))
        score.tracks.append(track)
        score.dump_midi(str(folder / f"p{i}.mid"))
    return folder


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitrun")
    cfg = musicfw.load_config({
        "name": "fitctl", "seed": 0, "output_dir": str(root),
        "data": {"name": "midi_folder", "path": str(_corpus(root))},
        "tokenizer": {"name": "remi", "controls": ["density", "pitch_range"], "control_levels": 3,
                      "control_binning": "fit", "use_tempos": False},
        "model": {"name": "lstm", "hidden_size": 32, "num_layers": 1, "embed_dim": 16},
        "train": {"batch_size": 8, "seq_len": 64, "max_steps": 40, "max_epochs": 100, "lr": 0.01},
        "sampler": {"name": "temperature", "temperature": 1.0},
        "generate": {"n": 1, "max_tokens": 24, "render_audio": False, "controls": "density=1"},
        "evaluate": {"metrics": ["nll", {"name": "control_adherence", "pieces": 2, "bars": 4}]},
        "logger": {"name": "none"},
    })
    return musicfw.run(cfg), cfg


def test_a_run_fits_its_bins_on_the_training_split_and_measures_adherence(fitted_run, tmp_path):
    result, cfg = fitted_run
    run = result.run_dir
    stored = json.loads((run / "tokenizer.json").read_text())["config"]
    assert stored["control_binning"] == "fit" and set(stored["control_bins"]) == {"density", "pitch_range"}
    # the boundaries are the training split's quantiles
    data = musicfw.load_data(musicfw.build_dataset("midi_folder", path=cfg.data.path), seed=0, progress=False)
    tok = musicfw.build_tokenizer("remi", **{**stored, "control_bins": {}})
    tok.fit(p.score for p in sorted(data.pieces("train"), key=lambda p: p.id))
    assert tok.control_bins == stored["control_bins"]
    # generation and a reloaded model use them
    from musicfw.engine.training import load_model

    _, loaded = load_model(run)
    assert loaded.control_bins == stored["control_bins"]
    metrics = json.loads((run / "metrics.json").read_text())
    adh = metrics["likelihood"]["control_adherence"]
    assert adh["pieces"] >= 1 and adh["levels"] == 3 and adh["bars"] > 0 and adh["uncontrolled_bars"] > 0
    for prefix in ("", "uncontrolled_"):
        for a in ("density", "pitch_range"):
            exact, within = adh[f"{prefix}{a}_exact"], adh[f"{prefix}{a}_within_one"]
            assert 0 <= exact <= within <= 1
            assert f"{prefix}{a}_spearman" in adh
    html = (run / "report.html").read_text()
    assert "Control adherence" in html and "uncontrolled: exact" in html
    # a control the model was not trained with stays a clear error
    bad = run_cli("generate", "--run", str(run), "--controls", "polyphony=1", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "unknown control 'polyphony'; this model was trained with density, pitch_range" in bad.stderr.replace("\n", " ")
    assert not (tmp_path / "bad").exists()


def test_control_adherence_measures_nothing_without_controls(tmp_path):
    from musicfw.engine.evaluation import evaluate_run

    plain = musicfw.build_tokenizer("remi")
    metric = musicfw.build_metric("control_adherence")
    assert metric.evaluate(None, None, plain) is None
    base = {"data": {"name": "midi_folder", "path": str(tmp_path)}, "tokenizer": {"name": "remi"}, "model": {"name": "markov"}}
    assert [m.name for m in musicfw.load_config(base).evaluate.metrics][-1] == "control_adherence"  # a default
    section = musicfw.load_config({**base, "evaluate": {"metrics": ["control_adherence"]}}).evaluate
    result = evaluate_run(section, tmp_path, model=object(), tokenizer=plain, datamodule=object())
    assert result["likelihood"] == {} and not result["notes"]
