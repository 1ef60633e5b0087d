"""Every experiment in examples/ runs as it is, here with tiny overrides so none of them rots."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, run_cli

EXAMPLES = sorted(p.name for p in (REPO / "examples").glob("*.yaml"))

TINY_LSTM = ["model.hidden_size=16", "model.num_layers=1", "model.embed_dim=8"]
TINY_TRANSFORMER = ["model.d_model=16", "model.num_layers=1", "model.num_heads=2", "model.d_ff=32", "model.max_context=64"]
TINY_VAE = ["model.z_size=8", "model.enc_rnn_size=[16]", "model.dec_rnn_size=[16]"]
#: per example: the overrides that make it take seconds (the config itself stays as shipped)
TINY = {
    "quickstart.yaml": ["data.max_count=12", "train.batch_size=4", "train.seq_len=64", *TINY_LSTM],
    "markov_baseline.yaml": ["data.max_count=12"],
    "performance_rnn.yaml": ["data.max_files=3", "train.seq_len=64", "train.batch_size=2", *TINY_LSTM],
    "jsb_lstm.yaml": ["train.seq_len=32", *TINY_LSTM],
    "jsb_nade.yaml": ["train.seq_len=32", *TINY_LSTM, "model.nade_hidden=8"],
    "chords_remi.yaml": ["data.max_count=12", "train.batch_size=4", "train.seq_len=64", *TINY_LSTM],
    "transformer_chorales.yaml": ["data.max_count=12", "train.batch_size=4", "train.seq_len=64", *TINY_TRANSFORMER],
    "harmonize_chorales.yaml": ["data.max_count=12", "train.batch_size=4", "train.seq_len=64", *TINY_TRANSFORMER],
    "harmonize_chorales_controls.yaml": ["data.max_count=12", "train.batch_size=4", "train.seq_len=64", *TINY_TRANSFORMER],
    "transformer_performance.yaml": ["data.max_files=3", "train.seq_len=64", "train.batch_size=2", *TINY_TRANSFORMER],
    "musicvae_melody_2bar.yaml": ["data.max_count=40", "train.batch_size=4", *TINY_VAE],
    "musicvae_melody_16bar.yaml": ["data.max_count=40", "train.batch_size=2", *TINY_VAE],
    "musicvae_drums_2bar.yaml": ["train.batch_size=4", *TINY_VAE],
    "chords_musicvae.yaml": ["data.max_count=30", "train.batch_size=4", *TINY_VAE],
    "beat_blender.yaml": ["train.batch_size=4", *TINY_VAE],
    "infill_chorales.yaml": ["data.max_count=12", "train.batch_size=4", "train.seq_len=64", *TINY_LSTM],
    "infill_chorales_transformer.yaml": ["data.max_count=12", "train.batch_size=4", "train.seq_len=64", *TINY_TRANSFORMER],
    "finetune.yaml": ["train.batch_size=2", "train.seq_len=64", *TINY_LSTM],  # from scratch here; init_from: test_example_workflows.py
}
COMMON = [
    "train.max_steps=2",
    "train.max_epochs=1",
    "train.early_stopping_patience=0",
    "generate.n=2",
    "generate.max_tokens=48",
    "generate.render_audio=false",
    "evaluate.max_reference=8",
]


def test_every_example_has_tiny_overrides():
    assert set(EXAMPLES) == set(TINY), "add the new example to TINY so a test runs it"


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_runs(example, tmp_path, corpus_cache):
    overrides = [f"output_dir={tmp_path}", *COMMON, *TINY[example]]
    if example != "quickstart.yaml":  # the quickstart keeps its default logger (W&B offline)
        overrides.append("logger.name=none")
    result = run_cli("run", f"examples/{example}", *overrides, cwd=REPO, env={"MUSICFW_CACHE_DIR": str(corpus_cache)})
    assert result.returncode == 0, result.stderr[-4000:]
    (run_dir,) = tmp_path.iterdir()
    for name in ("config.yaml", "tokenizer.json", "metrics.json", "report.html"):
        assert (run_dir / name).is_file(), name
    assert len(list((run_dir / "samples").glob("*.mid"))) == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["test_n_targets"] > 0
    assert "report:" in result.stdout and str(run_dir) in result.stdout
    if example == "quickstart.yaml":
        assert any((run_dir / "wandb").rglob("*.wandb")), "the offline W&B run is in the run folder"


@pytest.mark.slow
def test_run_resume_continues_in_the_same_folder(tmp_path, corpus_cache):
    common = [f"output_dir={tmp_path}", *COMMON, *TINY["quickstart.yaml"], "logger.name=none",
              "train.max_epochs=100", "train.checkpoint_every_n_steps=2", "evaluate.enabled=false"]
    env = {"MUSICFW_CACHE_DIR": str(corpus_cache)}
    first = run_cli("run", "examples/quickstart.yaml", *common, cwd=REPO, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    again = run_cli("run", "examples/quickstart.yaml", "--resume", str(run_dir), "train.max_steps=6", cwd=REPO, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert list(tmp_path.iterdir()) == [run_dir]  # no new folder
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["global_step"] == 6
