"""load_model picks the checkpoint a model prefers: best for language models, last for MusicVAE."""

from __future__ import annotations

import pytest
import torch

import musicfw
from musicfw.engine.config import load_config, to_yaml
from musicfw.engine.training import load_model


def _run_folder(tmp_path, model_section):
    cfg = load_config(
        {"data": {"name": "midi_folder", "path": str(tmp_path)}, "tokenizer": {"name": "melody"}, "model": model_section}
    )
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    tokenizer = musicfw.build_tokenizer("melody")
    tokenizer.save(tmp_path / "tokenizer.json")
    params = {k: v for k, v in model_section.items() if k != "name"}
    model = musicfw.build_model(model_section["name"], tokenizer=tokenizer, **params)
    (tmp_path / "checkpoints").mkdir()
    for which, value in (("best", 1.0), ("last", 2.0)):
        state = {f"model.{k}": torch.full_like(v, value) for k, v in model.state_dict().items()}
        torch.save({"state_dict": state}, tmp_path / "checkpoints" / f"{which}.ckpt")
    return tmp_path


@pytest.mark.parametrize(
    "section, expected",
    [
        ({"name": "lstm", "hidden_size": 8, "num_layers": 1, "embed_dim": 4}, 1.0),
        ({"name": "musicvae", "z_size": 4, "enc_rnn_size": [8], "dec_rnn_size": [8]}, 2.0),
    ],
)
def test_auto_checkpoint(tmp_path, section, expected):
    run = _run_folder(tmp_path, section)
    model, _ = load_model(run)
    first = next(iter(model.state_dict().values()))
    assert float(first.flatten()[0]) == expected
    model, _ = load_model(run, which="best")
    assert float(next(iter(model.state_dict().values())).flatten()[0]) == 1.0
