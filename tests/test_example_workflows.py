"""The two-step examples run as documented, with tiny overrides: fine-tuning the quickstart's
LSTM on the shipped pop songs (examples/finetune.yaml, with its "before" run,
train.max_steps=0) and the beat blender (examples/beat_blender.yaml, then `musicfw blend` on the
four shipped drum corners)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import symusic
import torch

from conftest import REPO, run_cli

TINY_LSTM = ["model.hidden_size=16", "model.num_layers=1", "model.embed_dim=8"]
COMMON = ["logger.name=none", "train.max_epochs=1", "generate.n=2", "generate.max_tokens=48",
          "generate.render_audio=false", "evaluate.max_reference=8"]
CORNERS = sorted((REPO / "examples" / "midi" / "drums").glob("*.mid"))


def _documented(yaml_name: str) -> str:
    """The header comment of an example (the documented commands)."""
    text = (REPO / "examples" / yaml_name).read_text()
    return "\n".join(line for line in text.splitlines() if line.startswith("#"))


def _weights(run_dir: Path, which: str = "last") -> dict[str, torch.Tensor]:
    path = run_dir / "checkpoints" / f"{which}.ckpt"
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("model.")}


def _only_run(folder: Path) -> Path:
    (run_dir,) = folder.iterdir()
    return run_dir


@pytest.mark.slow
def test_finetune_example_starts_from_the_base_run_and_measures_before_and_after(tmp_path, corpus_cache):
    env = {"MUSICFW_CACHE_DIR": str(corpus_cache)}
    header = _documented("finetune.yaml")
    assert "musicfw run examples/quickstart.yaml" in header
    assert "musicfw run examples/finetune.yaml init_from=runs/quickstart-<timestamp>" in header
    assert "train.max_steps=0" in header
    # step 1: the base run, the quickstart as documented (tiny; seed 1, so that its weights are
    # not the initialisation every seed-0 run of the same model starts from)
    base = run_cli("run", "examples/quickstart.yaml", f"output_dir={tmp_path / 'base'}", "seed=1", *COMMON, *TINY_LSTM,
                   "data.max_count=12", "train.batch_size=4", "train.seq_len=64", "train.max_steps=2",
                   "evaluate.enabled=false", cwd=REPO, env=env)
    assert base.returncode == 0, base.stderr[-3000:]
    base_run = _only_run(tmp_path / "base")
    stamp = (base_run / "checkpoints" / "last.ckpt").read_bytes()
    again = run_cli("run", "examples/quickstart.yaml", "--resume", str(base_run), "train.max_steps=0", cwd=REPO, env=env)
    assert again.returncode == 2 and "nothing to resume" in again.stderr, again.stderr[-2000:]
    assert (base_run / "checkpoints" / "last.ckpt").read_bytes() == stamp  # not replaced
    tiny = [*COMMON, *TINY_LSTM, "train.batch_size=2", "train.seq_len=64", "evaluate.metrics=[nll,yang_lerch]"]

    # "before": the base weights, no training step, on the pop songs' split
    before = run_cli("run", "examples/finetune.yaml", f"output_dir={tmp_path / 'before'}", f"init_from={base_run}",
                     "train.max_steps=0", *tiny, cwd=REPO, env=env)
    assert before.returncode == 0, before.stderr[-3000:]
    before_run = _only_run(tmp_path / "before")
    assert f"model starts from {base_run}" in " ".join(before.stderr.split())
    base_w, before_w = _weights(base_run, "best"), _weights(before_run)  # init_from takes the LSTM's best
    assert base_w.keys() == before_w.keys() and all(torch.equal(base_w[k], before_w[k]) for k in base_w)
    m_before = json.loads((before_run / "metrics.json").read_text())
    assert m_before["training"]["global_step"] == 0
    # the held-out NLL is the base model's on the pop test songs: measure it here independently
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.rundir import load_run_config
    from musicfw.engine.training import evaluate_nll, load_model

    model, tokenizer = load_model(base_run, which="best")
    config = load_run_config(before_run)
    data = build_datamodule(config.data, tokenizer, train=config.train, seed=0, progress=False)
    data.setup("test")
    direct = evaluate_nll(model, data.test_dataloader())
    assert direct["n_targets"] == m_before["training"]["test_n_targets"] > 0
    assert direct["nll_per_token"] == pytest.approx(m_before["training"]["test_nll"], rel=1e-6)
    assert m_before["comparison"]["summary"]["mean_oa_generated"] is not None  # samples vs the held-out songs

    # step 2: fine-tune (2 steps): starts at the base weights, moves a little away from them
    after = run_cli("run", "examples/finetune.yaml", f"output_dir={tmp_path / 'after'}", f"init_from={base_run}",
                    "train.max_steps=2", *tiny, cwd=REPO, env=env)
    assert after.returncode == 0, after.stderr[-3000:]
    after_w = _weights(_only_run(tmp_path / "after"))
    moved = max((after_w[k] - base_w[k]).abs().max().item() for k in base_w)
    assert 0 < moved < 0.05  # lr 1e-3, two Adam steps: at most ~2e-3 per weight (+ clipping)
    scratch = run_cli("run", "examples/finetune.yaml", f"output_dir={tmp_path / 'scratch'}",
                      "train.max_steps=2", *tiny, "evaluate.enabled=false", cwd=REPO, env=env)
    assert scratch.returncode == 0, scratch.stderr[-3000:]
    scratch_w = _weights(_only_run(tmp_path / "scratch"))
    assert max((scratch_w[k] - base_w[k]).abs().max().item() for k in base_w) > 0.1  # another start

    # another tokenizer than the base run's: one clear paragraph, exit 2, no run folder
    bad = run_cli("run", "examples/finetune.yaml", f"output_dir={tmp_path / 'bad'}", f"init_from={base_run}",
                  "tokenizer.name=midi_like", *tiny, cwd=REPO, env=env)
    err = " ".join(bad.stderr.split())
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr[-2000:]
    assert f"the run {base_run} used the tokenizer 'remi'; fine-tuning needs the same tokenizer" in err
    assert "(this experiment: 'midi_like')" in err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_beat_blender_corners_are_two_bar_drum_beats():
    from musicfw.core.build import build_from_section
    from musicfw.core.plugins import load_registries

    assert [p.name[0] for p in CORNERS] == ["A", "B", "C", "D"]
    tokenizer = build_from_section("tokenizers", {"name": "drums"}, registries=load_registries(), key="tokenizer")
    for path in CORNERS:
        score = symusic.Score(str(path))
        assert all(t.is_drum for t in score.tracks) and score.note_num() >= 16
        tokens = tokenizer.encode(score)
        assert 24 < len(tokens) <= 32, path  # two bars of 16th-note steps
        assert sum(1 for t in tokens if t) >= 8, path  # a beat, not a few stray hits


@pytest.mark.slow
def test_beat_blender_example_trains_then_blends_the_shipped_corners(tmp_path, corpus_cache):
    header = _documented("beat_blender.yaml")
    assert "musicfw run examples/beat_blender.yaml" in header
    # the documented blend command, with the corner files named as shipped
    documented = re.sub(r"\s*\\\n#\s*", " ", header)
    for path in CORNERS:
        assert f"examples/midi/drums/{path.name}" in documented, path.name
    assert "--grid 5" in documented
    train = run_cli("run", "examples/beat_blender.yaml", f"output_dir={tmp_path / 'runs'}", *COMMON,
                    "train.max_steps=2", "train.batch_size=4", "model.z_size=8", "model.enc_rnn_size=[16]",
                    "model.dec_rnn_size=[16]", cwd=REPO, env={"MUSICFW_CACHE_DIR": str(corpus_cache)})
    assert train.returncode == 0, train.stderr[-3000:]
    run_dir = _only_run(tmp_path / "runs")
    blend = run_cli("blend", "--run", str(run_dir), *map(str, CORNERS), "--grid", "5", "--no-audio", cwd=REPO)
    assert blend.returncode == 0, blend.stderr[-3000:]
    out = run_dir / "samples" / "blend"
    assert len(list(out.glob("cell_r*_c*.mid"))) == 25 and len(list(out.glob("cell_r*_c*.png"))) == 25
    assert (out / "walk.mid").is_file()
    page = (out / "blend.html").read_text()
    assert page.count('class="cell') == 25
    for path in CORNERS:
        assert path.name in page  # each corner is labelled with its file


def test_finetune_example_keeps_the_quickstart_model_and_tokenizer():
    """`init_from` needs the base run's tokenizer and model: the documented two steps work only
    while examples/finetune.yaml repeats examples/quickstart.yaml's sections (the tiny tests
    above override both, so they would not notice a drift)."""
    from omegaconf import OmegaConf

    quick = OmegaConf.load(REPO / "examples" / "quickstart.yaml")
    fine = OmegaConf.load(REPO / "examples" / "finetune.yaml")
    for section in ("tokenizer", "model"):
        assert OmegaConf.to_container(fine[section]) == OmegaConf.to_container(quick[section]), section
