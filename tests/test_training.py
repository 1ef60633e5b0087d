"""Training through Lightning: checkpoints, history, loggers, resume after a kill, NaN stop,
count-based fitting, and rebuilding a model from a run folder."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import musicfw
from musicfw import api
from musicfw.core.errors import NonFiniteLossError, UserError
from musicfw.engine.loggers import log_samples, read_history
from musicfw.plugins.loggers.builtin import read_wandb_history
from musicfw.core.plugins import get_plugin_manager, load_registries
from musicfw.core.tokenizer import Tokenizer
from musicfw.engine.training import evaluate_nll, load_checkpoint, load_model
from musicfw.engine.training import fit as core_fit
from musicfw.plugins.models.lstm.model import LSTMModel
from musicfw.plugins.models.markov.model import MarkovModel

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
V = 12


def make_data(n: int = 48, T: int = 24, seed: int = 0) -> dict[str, torch.Tensor]:
    """A learnable language: mostly x_t = x_{t-1} + 1 (mod V), sometimes a random jump."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "val", "test"):
        rows = []
        for _ in range(n):
            s = [int(rng.integers(V))]
            for _ in range(T - 1):
                s.append((s[-1] + 1) % V if rng.random() < 0.85 else int(rng.integers(V)))
            rows.append(s)
        out[split] = torch.tensor(rows)
    return out


def make_datamodule(data=None, batch_size: int = 8, resumable: bool = False):
    """``resumable``: the training batches from musicfw's resumable loader (exact resume,
    musicfw/engine/resume.py) instead of torch's shuffling DataLoader."""
    import pytorch_lightning as pl

    data = data if data is not None else make_data()

    class TinyData(pl.LightningDataModule):
        """Batches of {"tokens", "mask"} from tensors held in memory."""

        def _loader(self, split, shuffle=False):
            rows = [{"tokens": x, "mask": torch.ones(len(x), dtype=torch.bool)} for x in data[split]]
            if shuffle and resumable:
                from musicfw.engine.resume import ResumableLoader, ShuffledSampler

                return ResumableLoader(rows, batch_size=batch_size, sampler=ShuffledSampler(len(rows), seed=0))
            gen = torch.Generator().manual_seed(0)
            return torch.utils.data.DataLoader(rows, batch_size=batch_size, shuffle=shuffle, generator=gen)

        def train_dataloader(self):
            return self._loader("train", shuffle=True)

        def val_dataloader(self):
            return self._loader("val")

        def test_dataloader(self):
            return self._loader("test")

    return TinyData()


def make_config(logger: str = "csv", **train) -> OmegaConf:
    base = {"max_epochs": 3, "lr": 1e-2, "checkpoint_every_n_steps": 4}
    base.update(train)
    return OmegaConf.create({"train": base, "logger": {"name": logger, "log_every_n_steps": 2}})


def fit(model, datamodule, config, run_dir, **kw):
    """core's fit with the two sections of a test config."""
    return core_fit(model, datamodule, config.train, run_dir, logger=config.logger, **kw)


def small_lstm(seed: int = 0) -> LSTMModel:
    torch.manual_seed(seed)
    return LSTMModel(V, "categorical", hidden_size=32, num_layers=1, embed_dim=16)


# ------------------------------------------------------------------------------------------
# fit, checkpoints, history
# ------------------------------------------------------------------------------------------


def test_fit_writes_checkpoints_history_and_exact_metrics(tmp_path):
    dm = make_datamodule()
    metrics = fit(small_lstm(), dm, make_config("csv"), tmp_path)
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert metrics["global_step"] == 18 and metrics["epochs"] == 3  # 6 batches x 3 epochs
    assert metrics["train_time_s"] > 0 and metrics["n_parameters"] > 0
    # the model learned the language: far below the uniform ln(12) = 2.48 nats
    assert metrics["val_nll"] < 1.6 and metrics["test_nll"] < 1.6
    assert metrics["val_perplexity"] == pytest.approx(math.exp(metrics["val_nll"]))

    history = read_history(tmp_path)
    assert all("step" in r and "epoch" in r for r in history)
    val = [r for r in history if "val/nll" in r]
    train = [r for r in history if "train/loss" in r]
    assert len(val) == 3 and len(train) >= 5
    assert any("train/lr" in r for r in train) and any("train/grad_norm" in r for r in train)
    # best.ckpt is the epoch with the lowest val/nll, and the final metric is exact for it
    assert metrics["val_nll"] == pytest.approx(min(r["val/nll"] for r in val), rel=1e-5)
    best = load_checkpoint(small_lstm(seed=1), tmp_path / "checkpoints" / "best.ckpt")
    again = evaluate_nll(best, dm.test_dataloader())
    assert again["nll_per_token"] == pytest.approx(metrics["test_nll"], rel=1e-6)
    assert again["n_targets"] == 48 * 24
    # the csv logger got the same values
    assert (tmp_path / "csv" / "metrics.csv").read_text().count("val/nll") >= 1


def test_early_stopping_and_cosine_schedule(tmp_path):
    # lr 0: val/nll never improves, so patience 1 stops after the second epoch
    metrics = fit(small_lstm(), make_datamodule(), make_config("none", lr=0.0, max_epochs=20, early_stopping_patience=1), tmp_path / "a")
    assert metrics["epochs"] == 2
    assert not (tmp_path / "a" / "csv").exists() and not (tmp_path / "a" / "wandb").exists()

    fit(small_lstm(), make_datamodule(), make_config("none", lr_schedule="cosine", warmup_steps=3, max_epochs=2), tmp_path / "b")
    lrs = [r["train/lr"] for r in read_history(tmp_path / "b") if "train/lr" in r]
    assert lrs[0] < 1e-2 * 0.9  # warming up
    assert max(lrs) == pytest.approx(1e-2, rel=0.1)
    assert lrs[-1] < 0.2 * max(lrs)  # cosine decay towards 0


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    class Exploding(LSTMModel):
        def on_train_step(self, step):
            self.step_now = step

        def loss(self, batch):
            out = super().loss(batch)
            if self.training and self.step_now >= 9:
                out["loss"] = out["loss"] * float("nan")
            return out

    torch.manual_seed(0)
    model = Exploding(V, hidden_size=16, num_layers=1, embed_dim=8)
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 9.*last good checkpoint") as info:
        fit(model, make_datamodule(), make_config("csv", max_epochs=5), tmp_path)
    assert isinstance(info.value, UserError)  # the CLI prints it without a traceback
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8  # saved every 4 steps; step 9 was never applied
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert "error" in read_history(tmp_path)[-1]


# ------------------------------------------------------------------------------------------
# resume after a hard kill mid-epoch
# ------------------------------------------------------------------------------------------

KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from test_training import fit, make_config, make_datamodule, small_lstm

model = small_lstm()
def die_at(step):
    if step == 10:  # mid-epoch 1 (6 batches per epoch); last.ckpt was written at step 8
        os.kill(os.getpid(), signal.SIGKILL)
model.on_train_step = die_at
fit(model, make_datamodule(resumable=True), make_config("csv", max_epochs=4), {run!r})
"""


def test_resume_continues_from_the_last_checkpoint_after_a_kill(tmp_path, recwarn):
    run = tmp_path / "killed"
    script = KILLED_RUN.format(tests=str(REPO / "tests"), run=str(run))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]  # killed, nothing saved on the way out
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 8 and ckpt["epoch"] == 1

    seen: list[int] = []
    model = small_lstm(seed=5)  # different init: resuming must restore the weights
    model.on_train_step = seen.append
    metrics = fit(model, make_datamodule(resumable=True), make_config("csv", max_epochs=4), run, resume=True)
    assert seen[0] == 8  # continued where the checkpoint left off, mid-epoch
    assert metrics["global_step"] == 24 and metrics["epochs"] == 4
    assert metrics["val_nll"] < 1.6
    steps = [r["step"] for r in read_history(run) if "train/loss" in r]
    assert steps == sorted(steps)
    # exact: the run that was never killed ends with the same digits, and nothing warned
    whole = fit(small_lstm(), make_datamodule(resumable=True), make_config("none", max_epochs=4), tmp_path / "whole")
    assert (metrics["val_nll"], metrics["test_nll"]) == (whole["val_nll"], whole["test_nll"])
    assert not [str(w.message) for w in recwarn if "resumable" in str(w.message) or "data-loader" in str(w.message)]


def _csv_steps(run):
    import csv

    with open(run / "csv" / "metrics.csv", newline="") as f:
        return sorted({int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")})


def test_resume_keeps_the_csv_rows_written_before(tmp_path):
    """Lightning's CSV writer deletes metrics.csv when it starts; a resumed run appends."""
    fit(small_lstm(), make_datamodule(resumable=True), make_config("csv", max_epochs=2), tmp_path)
    before = _csv_steps(tmp_path)
    assert before and before[-1] <= 12
    fit(small_lstm(), make_datamodule(resumable=True), make_config("csv", max_epochs=4), tmp_path, resume=True)
    after = _csv_steps(tmp_path)
    assert after[: len(before)] == before and after[-1] > 12


# ------------------------------------------------------------------------------------------
# W&B offline
# ------------------------------------------------------------------------------------------


def test_wandb_offline_run_lives_in_the_run_folder_and_reads_back(tmp_path):
    from PIL import Image

    metrics = fit(small_lstm(), make_datamodule(), make_config("wandb", max_epochs=2), tmp_path)
    assert os.environ["WANDB_MODE"] == "offline"
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    rows = read_wandb_history(tmp_path)
    val = [r["val/nll"] for r in rows if "val/nll" in r]
    ours = [r["val/nll"] for r in read_history(tmp_path) if "val/nll" in r]
    assert len(val) == 2 and val == pytest.approx(ours, rel=1e-6)
    assert any("train/loss" in r for r in rows) and any("train/lr" in r for r in rows)
    final = [r for r in rows if "final/test_nll" in r]
    assert final and final[-1]["final/test_nll"] == pytest.approx(metrics["test_nll"])

    # generated samples: a piano-roll image and a wav, logged into the same offline run
    (tmp_path / "config.yaml").write_text("logger:\n  name: wandb\n  project: musicfw\n")
    png = tmp_path / "sample_0.png"
    Image.new("RGB", (32, 16), (200, 30, 30)).save(png)
    wav = tmp_path / "sample_0.wav"
    import soundfile

    soundfile.write(wav, np.zeros(800, dtype=np.float32), 8000)
    assert log_samples(tmp_path, [png], [wav]) == 2
    media = [r for r in read_wandb_history(tmp_path) if "samples/piano_roll._type" in r]
    assert media and media[-1]["samples/audio._type"] == "audio"
    assert media[-1]["samples/piano_roll._type"].startswith("images")
    assert media[-1]["_step"] == metrics["global_step"]  # on the training run's step axis
    assert list((tmp_path / "wandb").glob("offline-run-*/files/media/images/**/*.png"))


def test_fit_reports_held_out_metrics_of_the_checkpoint_the_model_prefers(tmp_path):
    """Language models are judged on best.ckpt; a model preferring "last" (MusicVAE) on last.ckpt."""
    for prefer, folder in (("best", tmp_path / "a"), ("last", tmp_path / "b")):
        model = small_lstm()
        model.preferred_checkpoint = prefer
        metrics = fit(model, make_datamodule(), make_config("none", max_epochs=2), folder)
        assert Path(metrics["checkpoint"]).name == f"{prefer}.ckpt"
        saved = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
        for key, value in model.state_dict().items():  # the model now holds those very weights
            assert torch.equal(value, saved[f"model.{key}"])


def test_tensorboard_logger(tmp_path):  # tensorboardX comes with the [test] extra
    fit(small_lstm(), make_datamodule(), make_config("tensorboard", max_epochs=1), tmp_path)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_tensorboard_without_its_package_is_a_user_error(tmp_path, monkeypatch):
    from musicfw.engine.loggers import build_loggers

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # None in sys.modules: import fails
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(UserError, match=r"logger.name: tensorboard needs .*musicfw\[tensorboard\]"):
        build_loggers(make_config("tensorboard", max_epochs=1).logger, tmp_path)


# ------------------------------------------------------------------------------------------
# count-based models and load_model from a run folder
# ------------------------------------------------------------------------------------------


class CountingTokens(Tokenizer):
    """A tokenizer that exists only in these tests (ids are note numbers mod V)."""

    name = "test_counting_tokens"

    @dataclass
    class Config:
        size: int = V

    @property
    def vocab(self):
        return [f"T{i}" for i in range(self.config.size)]

    def encode(self, score):
        pitches = [note.pitch for track in score.tracks for note in track.notes]
        return np.asarray(pitches, dtype=np.int64) % self.config.size

    def decode(self, tokens):
        import symusic

        score = symusic.Score(480)
        track = symusic.Track()
        for i, t in enumerate(tokens):
            track.notes.append(symusic.Note(i * 480, 480, 60 + int(t), 80))
        score.tracks.append(track)
        return score


class TestData:
    """A dataset card that exists only in these tests."""

    name = "test_training_data"

    @dataclass
    class Config:
        size: int = 4

    @classmethod
    def from_config(cls, config, **context):
        return cls()


class _Plugins:
    @musicfw.hookimpl
    def musicfw_register_tokenizers(self, registry):
        registry.add(CountingTokens)

    @musicfw.hookimpl
    def musicfw_register_datasets(self, registry):
        registry.add(TestData)


@pytest.fixture
def registries(monkeypatch):
    regs = load_registries(get_plugin_manager(autoload=False, extra_plugins=[_Plugins()]))
    monkeypatch.setattr(api, "_default_registries", regs)
    return regs


def _run_folder(tmp_path: Path, model: dict) -> tuple[Path, object]:
    cfg = musicfw.load_config(
        {
            "name": "t",
            "data": {"name": "test_training_data"},
            "tokenizer": {"name": "test_counting_tokens"},
            "model": model,
            "sampler": {"name": "top_p"},
            "evaluate": {"metrics": []},
            "logger": {"name": "none"},
            "train": {"max_epochs": 2, "lr": 1e-2},
        }
    )
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    tok = musicfw.build_tokenizer("test_counting_tokens")
    tok.save(run / "tokenizer.json")
    return run, cfg


def test_markov_fit_and_load_model(tmp_path, registries):
    run, cfg = _run_folder(tmp_path, {"name": "markov", "order": 2})
    model = musicfw.build_model("markov", tokenizer=musicfw.build_tokenizer("test_counting_tokens"), order=2)
    dm = make_datamodule()
    metrics = fit(model, dm, cfg, run)
    assert metrics["train_time_s"] < 5 and metrics["val_nll"] < 1.6
    history = read_history(run)
    assert history[0]["val/nll"] == pytest.approx(metrics["val_nll"])
    loaded, tok = load_model(run, registries=registries)
    assert isinstance(loaded, MarkovModel) and tok.vocab_size == V
    assert evaluate_nll(loaded, dm.test_dataloader())["nll_per_token"] == pytest.approx(metrics["test_nll"])


def test_lstm_load_model_best_and_last(tmp_path, registries):
    run, cfg = _run_folder(tmp_path, {"name": "lstm", "hidden_size": 32, "num_layers": 1, "embed_dim": 16})
    torch.manual_seed(0)
    model = musicfw.build_model(
        "lstm", tokenizer=musicfw.build_tokenizer("test_counting_tokens"), hidden_size=32, num_layers=1, embed_dim=16
    )
    dm = make_datamodule()
    metrics = fit(model, dm, cfg, run)
    best, _ = load_model(run, which="best", registries=registries)
    assert not best.training
    assert evaluate_nll(best, dm.val_dataloader())["nll_per_token"] == pytest.approx(metrics["val_nll"], rel=1e-6)
    last, _ = load_model(run, which="last", registries=registries)
    assert isinstance(last, LSTMModel)
    with pytest.raises(UserError, match="No checkpoint"):
        load_model(run, which=str(run / "checkpoints" / "nope.ckpt"), registries=registries)


# ------------------------------------------------------------------------------------------
# hostile or broken checkpoints: no code runs, a clear error names the file
# ------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this object would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["pickle", "truncated", "empty", "not_a_zip"])
def test_resume_and_load_refuse_a_broken_or_malicious_checkpoint(tmp_path, kind):
    from musicfw.core.errors import RunFolderError

    run = tmp_path / "run"
    fit(small_lstm(), make_datamodule(), make_config("none", max_epochs=1), run)
    last = run / "checkpoints" / "last.ckpt"
    Path(str(last) + ".sha256").unlink()  # no checksum to catch it: the safe loader must
    marker = tmp_path / "code_ran"
    if kind == "pickle":
        torch.save({"state_dict": {}, "evil": _Payload(str(marker))}, last)
    elif kind == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif kind == "empty":
        last.write_bytes(b"")
    else:
        last.write_bytes(b"just some text\n")
    with pytest.raises(RunFolderError, match=r"cannot be read safely.*last\.ckpt|last\.ckpt.*cannot be read safely"):
        fit(small_lstm(), make_datamodule(), make_config("none", max_epochs=2), run, resume=True)
    with pytest.raises(RunFolderError, match="cannot be read safely"):
        load_checkpoint(small_lstm(), last)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["empty_state_dict", "state_dict_not_a_mapping", "wrong_shapes", "other_names", "weights_only"])
def test_a_checkpoint_that_loads_safely_but_is_not_this_models_is_a_clear_error(tmp_path, kind):
    """Issue 30, class 2: files that `weights_only` accepts but that are not this model's
    checkpoint: refused with what differs, by loading and by resuming, before Lightning sees them."""
    from musicfw.core.errors import RunFolderError

    run = tmp_path / "run"
    fit(small_lstm(), make_datamodule(), make_config("none", max_epochs=1), run)
    last = run / "checkpoints" / "last.ckpt"
    Path(str(last) + ".sha256").unlink()
    good = torch.load(last, weights_only=True)
    if kind == "empty_state_dict":
        bad, match = {**good, "state_dict": {}}, "does not fit this model.*missing"
    elif kind == "state_dict_not_a_mapping":
        bad, match = {**good, "state_dict": "abc"}, "no mapping of weight names to tensors"
    elif kind == "wrong_shapes":
        sd = {k: (torch.zeros(3, 3) if v.ndim == 2 else v) for k, v in good["state_dict"].items()}
        bad, match = {**good, "state_dict": sd}, r"does not fit this model.*other shapes.*\(3, 3\)"
    elif kind == "other_names":
        sd = {k.replace("model.", "model.other_"): v for k, v in good["state_dict"].items()}
        bad, match = {**good, "state_dict": sd}, "does not fit this model.*unexpected"
    else:
        bad, match = {"state_dict": good["state_dict"]}, "no training state to resume from.*pytorch-lightning_version"
    torch.save(bad, last)
    with pytest.raises(RunFolderError, match=match):
        fit(small_lstm(), make_datamodule(), make_config("none", max_epochs=2), run, resume=True)
    if kind == "weights_only":  # the weights fit: loading them for generation is fine
        load_checkpoint(small_lstm(), last)
    else:
        with pytest.raises(RunFolderError, match=match):
            load_checkpoint(small_lstm(), last)


def test_a_changed_checkpoint_fails_its_checksum(tmp_path):
    from musicfw.core.errors import RunFolderError

    run = tmp_path / "run"
    fit(small_lstm(), make_datamodule(), make_config("none", max_epochs=1), run)
    for name in ("last.ckpt", "best.ckpt"):
        assert (run / "checkpoints" / f"{name}.sha256").is_file()
    best = run / "checkpoints" / "best.ckpt"
    load_checkpoint(small_lstm(), best)  # intact: loads
    data = bytearray(best.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the middle of the weights
    best.write_bytes(bytes(data))
    with pytest.raises(RunFolderError, match="does not match the sha256"):
        load_checkpoint(small_lstm(), best)


def test_read_history_skips_a_half_written_line(tmp_path):
    """A run killed while writing history.jsonl leaves a partial last line: the curves before
    it are still read (the report and the resume code read the same file the same way)."""
    (tmp_path / "history.jsonl").write_text(
        '{"step": 1, "train/loss": 2.5}\n["not", "a", "row"]\n\n{"step": 2, "train/loss": 2.1}\n{"step": 3, "tra'
    )
    assert [r["step"] for r in read_history(tmp_path)] == [1, 2]
