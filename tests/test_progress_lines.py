"""The training log lines show the validation NLL only when it was computed since the last
line (no stale value repeated), and an ETA."""

from __future__ import annotations

import io
from types import SimpleNamespace


def test_val_nll_is_shown_once_per_validation_and_lines_have_an_eta():
    import torch

    from musicfw.engine.lightning import ProgressLines

    stream = io.StringIO()
    lines = ProgressLines(stream=stream)
    trainer = SimpleNamespace(
        max_steps=100, global_step=0, num_training_batches=10, max_epochs=10, is_global_zero=True,
        callback_metrics={"train/loss": torch.tensor(2.0)},
    )
    lines.on_train_start(trainer, None)
    for step in range(1, 41):
        trainer.global_step = step
        if step == 15:  # a validation ran between the line at step 10 and the one at step 20
            trainer.callback_metrics["val/nll"] = torch.tensor(1.5)
            lines.on_validation_end(trainer, None)
        lines.on_train_batch_end(trainer, None, None, None, step)
    out = stream.getvalue().splitlines()
    assert [line.split()[2] for line in out] == ["10/100", "20/100", "30/100", "40/100"]
    assert "val/nll" not in out[0] and "val/nll 1.500" in out[1]
    assert "val/nll" not in out[2] and "val/nll" not in out[3]  # stale: not repeated
    assert all("ETA" in line for line in out)
