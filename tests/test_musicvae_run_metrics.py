"""A MusicVAE ``musicfw run`` reports reconstruction accuracy, ELBO and KL (metric
``musicvae_reconstruction``) and no perplexity (its loss is a bound)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

DATA = Path(__file__).parent / "data" / "midi" / "one_track"


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    import musicfw

    out = tmp_path_factory.mktemp("vae-runs")
    config = musicfw.load_config(
        {
            "name": "vae-metrics",
            "output_dir": str(out),
            "data": {"name": "midi_folder", "path": str(DATA)},
            "tokenizer": {"name": "melody", "min_pitch": 21, "max_pitch": 108},
            "model": {"name": "musicvae", "z_size": 4, "enc_rnn_size": [8], "dec_rnn_size": [8], "max_seq_len": 32},
            "sampler": {"name": "temperature", "temperature": 1.0},
            "train": {"max_steps": 3, "batch_size": 8, "seq_len": 32, "window_align": 16},
            "generate": {"n": 1, "max_tokens": 32, "render_audio": False},
            "evaluate": {"metrics": ["nll", {"name": "musicvae_reconstruction", "max_windows": 40}]},
            "logger": {"name": "none"},
        }
    )
    return musicfw.run(config).run_dir


def test_metrics_json_has_accuracies_elbo_and_kl(vae_run):
    likelihood = json.loads((vae_run / "metrics.json").read_text())["likelihood"]
    rec = likelihood["musicvae_reconstruction"]
    for key in ("teacher_forced_accuracy", "sampled_accuracy", "greedy_accuracy"):
        assert 0.0 <= rec[key] <= 1.0
    assert rec["n_windows"] == 40 and rec["window_steps"] == 32
    assert rec["kl"] >= 0 and rec["kl_bits"] == pytest.approx(rec["kl"] / 0.6931471805599453)
    assert rec["elbo"] == pytest.approx(-(rec["recon_nll"] + rec["kl"]))


def test_the_bound_gets_no_perplexity(vae_run):
    metrics = json.loads((vae_run / "metrics.json").read_text())
    nll = metrics["likelihood"]["nll"]
    assert "perplexity" not in nll and "negative ELBO" in nll["bound"]
    assert "test_nll" in metrics["training"] and not any("perplexity" in k for k in metrics["training"])
    assert nll["nll_per_token"] > 0


def test_the_report_shows_them(vae_run):
    page = (vae_run / "report.html").read_text()
    assert "teacher_forced_accuracy" in page and "kl_bits" in page


def test_the_metric_refuses_a_model_that_is_no_vae():
    from musicfw.core.errors import ConfigError
    from musicfw.plugins.models.musicvae.metric import MusicVAEReconstruction

    with pytest.raises(ConfigError, match="measures a MusicVAE"):
        MusicVAEReconstruction().evaluate(torch.nn.Linear(2, 2), datamodule=None, tokenizer=None)


def test_nll_of_an_exact_model_keeps_its_perplexity():
    from musicfw.core.model import Model
    from musicfw.plugins.models.musicvae.model import MusicVAEModel

    assert Model.loss_is_bound is False and MusicVAEModel.loss_is_bound is True


def test_the_text_table_prints_them_without_a_perplexity(vae_run):
    from musicfw.engine.evaluation import format_table

    table = format_table(json.loads((vae_run / "metrics.json").read_text()))
    assert "(a bound: no perplexity)" in table and "perplexity -" not in table
    assert "musicvae_reconstruction (test split): n_windows 40, window_steps 32, teacher_forced_accuracy" in table
