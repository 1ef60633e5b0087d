"""The first hour of a new user (issue 19): the quickstart and the MusicVAE quick variant print
no warning lines (only musicfw's own deliberate ``warning:`` lines), training, generation and
rendering show progress with an ETA, and the quickstart stays within its measured budget."""

from __future__ import annotations

import io
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import REPO, run_cli

#: musicfw's own, deliberate warnings: "      warning: the test split has only ..." and
#: "musicfw sample: warning: ..." (musicfw/engine/datacheck.py, the MusicVAE commands)
OWN_WARNING = re.compile(r"^\s*(musicfw[\w ]*: )?warning: ")
#: what a library's warning looks like: Python's warnings module ("file.py:12: UserWarning: ..."),
#: Lightning's reformatted rank_zero_warn ("file.py:588: `ModelCheckpoint(...)` ..."), or any
#: line that says warn/Warning (wandb, symusic, FluidSynth)
LIBRARY_WARNING = re.compile(r"(\.py:\d+: )|warn", re.IGNORECASE)


def warning_lines(text: str) -> list[str]:
    lines = text.replace("\r", "\n").splitlines()
    return [line for line in lines if LIBRARY_WARNING.search(line) and not OWN_WARNING.match(line)]


def test_warning_lines_are_found_and_our_own_are_allowed():
    text = (
        "      warning: the test split has only 1 piece (of 12)\n"
        "musicfw sample: warning: 6 of 8 outputs are empty\n"
        "/x/site-packages/pytorch_lightning/callbacks/model_checkpoint.py:588: `ModelCheckpoint(monitor='val/nll')`"
        " could not find the monitored key\n"
        "/x/torch/nn/modules/rnn.py:123: UserWarning: dropout option adds dropout after all but last\n"
        "wandb: WARNING Something\n"
        "      train step 2/2  train/loss 5.563  1 s\n"
    )
    found = warning_lines(text)
    assert len(found) == 3 and all("warning: the test" not in line for line in found)


def _tiny(example: str) -> list[str]:
    from test_examples import COMMON, TINY

    # the tiny overrides of test_examples, but rendering audio as the example does
    return [o for o in COMMON if not o.startswith("generate.render_audio")] + TINY[example]


@pytest.mark.slow
@pytest.mark.parametrize("example", ["quickstart.yaml", "musicvae_melody_2bar.yaml"])
def test_examples_print_no_library_warnings(example, tmp_path, corpus_cache):
    """The quickstart (with its W&B offline logger) and the MusicVAE quick variant, end to end
    with tiny sizes: training stops before the first validation (max_steps=2), which made
    Lightning warn that val/nll was missing."""
    overrides = [f"output_dir={tmp_path}", *_tiny(example)]
    if example == "musicvae_melody_2bar.yaml":
        overrides.append("data.max_count=40")
    result = run_cli("run", f"examples/{example}", *overrides, cwd=REPO,
                     env={"MUSICFW_CACHE_DIR": str(corpus_cache), "PYTHONWARNINGS": ""})
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout + result.stderr
    assert warning_lines(out) == [], out[-4000:]
    # generation and rendering report progress (lines, since stderr is not a terminal)
    assert re.search(r"generate 2/2 samples", result.stderr), result.stderr[-3000:]
    assert re.search(r"render \(MIDI, PNG[^)]*\) 2/2 samples", result.stderr), result.stderr[-3000:]


def test_counter_lines_have_eta_and_total():
    from musicfw.engine.progress import Counter

    stream = io.StringIO()
    counter = Counter("generate", 4, stream=stream, bar=False, min_interval=0.0)
    for done in (2, 4):
        counter(done, 4)
    counter.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].split()[:3] == ["generate", "2/4", "samples"] and "ETA" in lines[0]
    assert lines[-1].split()[:2] == ["generate", "4/4"] and "ETA" not in lines[-1]


def test_counter_draws_a_bar_on_a_terminal():
    from musicfw.engine.progress import Counter

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    with Counter("render", 3, stream=stream) as counter:
        for done in (1, 2, 3):
            counter.update(done)
    text = stream.getvalue()
    assert "render" in text and "3/3" in text and "\r" in text  # tqdm redraws in place


def test_training_bar_counts_all_steps_of_the_run_with_an_eta():
    """On a terminal, one tqdm bar over all optimizer steps (Lightning's own restarts every
    epoch), with the loss and the latest validation NLL and its step."""
    import torch

    from musicfw.engine.lightning import StepProgressBar

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = StepProgressBar(stream=stream)
    trainer = SimpleNamespace(
        max_steps=40, global_step=0, num_training_batches=10, max_epochs=100, is_global_zero=True,
        sanity_checking=False, callback_metrics={"train/loss": torch.tensor(2.0)},
    )
    bar.on_train_start(trainer, None)
    for step in range(1, 41):
        trainer.global_step = step
        if step == 10:  # an epoch ended: a validation ran
            trainer.callback_metrics["val/nll"] = torch.tensor(1.5)
            bar.on_validation_end(trainer, None)
        bar.on_train_batch_end(trainer, None, None, None, step)
    bar.on_train_end(trainer, None)
    text = stream.getvalue().replace("\r", "\n")
    final = [line for line in text.splitlines() if "40/40" in line]
    assert final, text[-500:]
    assert "val/nll=1.500 (step 10)" in final[-1] and "loss=2.000" in final[-1]
    assert "<00:00" in final[-1]  # tqdm's elapsed<remaining: the ETA of the whole run


def test_training_uses_the_step_bar_on_a_terminal_and_lines_elsewhere(monkeypatch, tmp_path):
    from musicfw.engine import training
    from musicfw.engine.config import train_section
    from musicfw.engine.lightning import ProgressLines, StepProgressBar

    seen = {}

    def fake_trainer(train, logger, run_dir, loggers, callbacks):
        seen["callbacks"] = callbacks
        raise RuntimeError("stop here")

    monkeypatch.setattr(training, "_trainer", fake_trainer)
    monkeypatch.setattr(training, "build_loggers", lambda *a, **k: [])
    train = train_section(None)
    for tty, kind in ((True, StepProgressBar), (False, ProgressLines)):
        monkeypatch.setattr("sys.stderr.isatty", lambda tty=tty: tty, raising=False)
        with pytest.raises(RuntimeError, match="stop here"):
            training._fit_lightning(None, None, train, SimpleNamespace(), {}, tmp_path, False)
        assert any(isinstance(c, kind) for c in seen["callbacks"]), seen["callbacks"]


#: the quickstart's training cost: LSTM multiply-adds per training token x tokens per step x steps.
#: Measured (README, "The examples"): the shipped budget, 1 x 256, 128-token windows of 16,
#: 1,200 steps (9.7e11): training took 125 s, and the quickstart from a fresh clone, installs
#: included, 4 min 3 s wall (169 s of CPU) on the shared machine; the old default (2 x 256, 256-token windows, 1,000
#: steps: 3.8e12) trained for 356 s and the quickstart took 8 min 11 s.
QUICKSTART_BUDGET_MACS = 1.1e12


def test_quickstart_stays_within_its_measured_budget():
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "examples" / "quickstart.yaml")
    h, layers, e = cfg.model.hidden_size, cfg.model.num_layers, cfg.model.embed_dim
    per_token = 4 * h * (e + h) + (layers - 1) * 4 * h * (2 * h)  # the LSTM's gate products
    macs = per_token * cfg.train.batch_size * cfg.train.seq_len * cfg.train.max_steps
    assert macs <= QUICKSTART_BUDGET_MACS, (
        f"examples/quickstart.yaml now trains {macs:.3g} LSTM multiply-adds (budget "
        f"{QUICKSTART_BUDGET_MACS:.3g}): measure the quickstart again (README) before raising it"
    )


def test_tokenizing_progress_in_a_log_file_is_lines_not_carriage_returns(tmp_path, capsys):
    """Not a terminal (a log file, CI): the token cache's progress is a few plain lines."""
    import musicfw
    from musicfw.engine.data import MusicDataModule

    dataset = musicfw.build_dataset("bach_chorales", max_count=220, cache_dir=str(tmp_path))
    MusicDataModule(dataset, musicfw.build_tokenizer("remi"), cache_dir=str(tmp_path), progress=True).prepare()
    err = capsys.readouterr().err
    assert "tokenizing with remi 220/220 pieces" in err, err
    assert "\r" not in err
