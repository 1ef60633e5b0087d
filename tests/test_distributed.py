"""Multi-process training from the CLI: 2 CPU processes (DDP, gloo) against one process with
the same global batch; the run folder, the metrics and the resume of a DDP run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli

# JSB chorales ship with musicfw (no conversion); epochs of 4 steps, so val/nll is measured
# three times in 12 steps: the loss curve the two runs must share
TINY = [
    "train.seq_len=32",
    "model.hidden_size=16",
    "model.num_layers=1",
    "model.embed_dim=8",
    "model.dropout=0.0",
    "train.lr_schedule=constant",
    "train.max_steps=12",
    "train.max_epochs=100",
    "train.limit_train_batches=4",
    "train.early_stopping_patience=0",
    "train.checkpoint_every_n_steps=4",
    "generate.n=2",
    "generate.max_tokens=16",
    "generate.render_audio=false",
    "evaluate.enabled=false",
    "logger.name=csv",
    "train.accelerator=cpu",
]
#: nats per frame.  The union of the two ranks' batches is the one-process batch, so the runs
#: differ only by float rounding, and where one rank's windows hold fewer targets than the
#: other's (DDP averages the ranks' mean losses; one process takes the mean over both).
#: Measured here: identical val/nll, test NLL 1e-6 apart.
TOLERANCE = 1e-3


def _run(out: Path, *extra: str, cache: Path) -> Path:
    result = run_cli(
        "run", "examples/jsb_lstm.yaml", f"output_dir={out}", *TINY, *extra,
        cwd=REPO, env={"MUSICFW_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    folders = list(out.iterdir())
    assert len(folders) == 1, f"one run folder, not {folders}"  # the second process joined it
    return folders[0]


def _val_curve(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    curve: dict[int, float] = {}
    for row in rows:
        if "val/nll" in row:
            assert row["step"] not in curve, f"val/nll logged twice at step {row['step']}"
            curve[row["step"]] = row["val/nll"]
    return curve


def _shape(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if "samples" not in p.parts}


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_one_process(tmp_path):
    cache = tmp_path / "cache"
    single = _run(tmp_path / "one", "train.batch_size=8", "train.devices=1", cache=cache)
    ddp = _run(tmp_path / "ddp", "train.batch_size=4", "train.devices=2", "train.strategy=ddp", cache=cache)

    assert _shape(ddp) == _shape(single)
    one, two = _val_curve(single), _val_curve(ddp)
    assert sorted(one) == sorted(two) and len(one) == 3  # after each 4-step epoch
    diffs = {step: abs(one[step] - two[step]) for step in one}
    assert max(diffs.values()) < TOLERANCE, (one, two)
    first, last = min(one), max(one)
    assert one[last] < one[first] - 0.5  # both runs learned something
    m1 = json.loads((single / "metrics.json").read_text())["training"]
    m2 = json.loads((ddp / "metrics.json").read_text())["training"]
    assert m1["global_step"] == m2["global_step"] == 12
    # the held-out NLL after training: rank 0 alone, over the whole splits
    assert m1["val_n_targets"] == m2["val_n_targets"] and m1["test_n_targets"] == m2["test_n_targets"]
    assert abs(m1["test_nll"] - m2["test_nll"]) < TOLERANCE

    # resume under DDP: continues in the same folder from last.ckpt
    result = run_cli(
        "run", "examples/jsb_lstm.yaml", "--resume", str(ddp), "train.max_steps=16",
        cwd=REPO, env={"MUSICFW_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert list((tmp_path / "ddp").iterdir()) == [ddp]
    assert json.loads((ddp / "metrics.json").read_text())["training"]["global_step"] == 16
    resumed = _val_curve(ddp)
    assert len(resumed) == 4 and all(resumed[s] == two[s] for s in two)


@pytest.mark.slow
def test_torchrun_starts_every_rank_into_one_run_folder(tmp_path):
    """torchrun (or srun) starts both processes at once: rank 0 names the folder after the job
    (--rdzv-id), the other rank waits for it and joins."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, MUSICFW_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    env.pop("MUSICFW_RUN_DIR", None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
         "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", "--rdzv-id=job42",
         "-m", "musicfw.cli", "run", "examples/jsb_lstm.yaml", f"output_dir={tmp_path / 'out'}",
         *TINY, "train.batch_size=4", "train.devices=2", "train.strategy=ddp"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (run_dir,) = (tmp_path / "out").iterdir()
    assert run_dir.name == "jsb_lstm-job42"
    assert len(_val_curve(run_dir)) == 3
    assert json.loads((run_dir / "metrics.json").read_text())["training"]["global_step"] == 12


def test_shares_cover_every_window_and_batch_once(monkeypatch):
    """Without processes: rank r of W gets the positions r, r+W, ... of the one global draw;
    evaluation batches land on exactly one rank, and a rank short of one gets an empty batch
    (a validation split of one piece on two processes)."""
    import torch

    from musicfw.engine import distributed
    from musicfw.engine.data import WindowSampler

    global_draw = list(WindowSampler([3.0, 1.0, 2.0], 11, seed=5))
    shares = []
    for rank in range(2):
        monkeypatch.setattr(distributed, "_world", lambda rank=rank: (rank, 2))
        sampler = distributed.shard_sampler(WindowSampler([3.0, 1.0, 2.0], 11, seed=5))
        assert len(sampler) == 6
        shares.append(list(sampler))
    # batch_size 2 per rank: the union of the k-th batches is the k-th batch of size 4
    for k in range(2):
        union = sorted(shares[0][2 * k : 2 * k + 2] + shares[1][2 * k : 2 * k + 2])
        assert union == sorted(global_draw[4 * k : 4 * k + 4])
    assert shares[1][-1] == global_draw[0]  # 11 windows padded to 12 by wrapping around

    batch = {"tokens": torch.ones(2, 5, dtype=torch.long), "mask": torch.ones(2, 5, dtype=torch.bool)}
    targets = []
    for rank in range(2):
        monkeypatch.setattr(distributed, "_world", lambda rank=rank: (rank, 2))
        dataset, sampler = distributed.eval_share([batch])
        items = [dataset[i] for i in sampler]
        assert len(items) == 1  # Lightning refuses a rank without a batch
        targets.append(sum(int(b["mask"].sum()) for b in items))
    assert targets == [10, 0]  # counted once in all
    monkeypatch.setattr(distributed, "_world", lambda: (0, 1))
    assert distributed.eval_share([batch]) == ([batch], None)


def test_a_strategy_lightning_refuses_is_a_config_error(tmp_path):
    from omegaconf import OmegaConf

    from musicfw.core.errors import ConfigError
    from musicfw.engine.config import train_section
    from musicfw.engine.training import _trainer

    train = train_section(OmegaConf.create({"accelerator": "cpu", "strategy": "fsdp", "devices": 2}))
    with pytest.raises(ConfigError, match=r"train.strategy=fsdp.*requires a GPU"):
        _trainer(train, None, tmp_path, [], [])


def test_untrained_and_counting_weights_are_written_by_rank_zero_only(tmp_path, monkeypatch):
    """max_steps=0 and counting models write their checkpoints outside Lightning: under
    torchrun/srun only rank 0 may write them (the others would race on the same files)."""
    import torch

    from musicfw.engine.training import _save_weights

    model = torch.nn.Linear(2, 2)
    monkeypatch.setenv("RANK", "1")
    _save_weights(model, tmp_path, {"trained": False})
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("RANK", "0")
    _save_weights(model, tmp_path, {"trained": False})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "best.ckpt.sha256", "last.ckpt", "last.ckpt.sha256"]
