"""Fine-tuning: `init_from: RUN_DIR` starts a run from a trained run's weights, `train.freeze`
keeps parts of the model fixed; mismatches are clear errors before any run folder exists."""

from __future__ import annotations

import textwrap

import numpy as np
import torch

from conftest import run_cli


def _melodies(folder, n, seed, low=55):
    import symusic

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pitches = low + np.cumsum(rng.integers(-2, 3, size=32)).clip(-10, 10) + 10
        score = symusic.Score(480)
        track = symusic.Track("melody")
        track.notes = symusic.Note.from_numpy(
            time=(np.arange(32) * 240).astype(np.int32), duration=np.full(32, 240, dtype=np.int32),
            pitch=pitches.astype(np.int8), velocity=np.full(32, 80, dtype=np.int8),
        )
        score.tracks.append(track)
        score.dump_midi(str(folder / f"m{i}.mid"))


def _experiment(tmp_path, name, data, extra=""):
    exp = tmp_path / f"{name}.yaml"
    exp.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            output_dir: {tmp_path / name}
            data: {{name: midi_folder, path: {data}}}
            tokenizer: {{name: remi}}
            model: {{name: lstm, hidden_size: 16, num_layers: 1, embed_dim: 8}}
            train: {{max_steps: 6, batch_size: 2, seq_len: 32, lr: 0.01}}
            generate: {{n: 1, max_tokens: 16, render_audio: false}}
            evaluate: {{metrics: [nll]}}
            logger: {{name: none}}
            """
        )
        + extra
    )
    return exp


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def test_init_from_and_freeze(tmp_path):
    _melodies(tmp_path / "base_data", 8, 0)
    _melodies(tmp_path / "mine", 8, 1, low=62)
    base = run_cli("run", str(_experiment(tmp_path, "base", tmp_path / "base_data")))
    assert base.returncode == 0, base.stderr[-3000:]
    (base_run,) = (tmp_path / "base").iterdir()

    tuned = run_cli(
        "run", str(_experiment(tmp_path, "tuned", tmp_path / "mine")),
        f"init_from={base_run}", "train.freeze=[embed]",
    )
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "model starts from" in tuned.stderr
    (tuned_run,) = (tmp_path / "tuned").iterdir()
    before, after = _weights(base_run), _weights(tuned_run)
    assert torch.equal(before["model.embed.weight"], after["model.embed.weight"])  # frozen
    assert not torch.equal(before["model.head.weight"], after["model.head.weight"])  # trained on
    scratch = run_cli("run", str(_experiment(tmp_path, "scratch", tmp_path / "mine")))
    (scratch_run,) = (tmp_path / "scratch").iterdir()
    assert not torch.equal(_weights(scratch_run)["model.embed.weight"], before["model.embed.weight"])
    assert f"init_from: {base_run}" in (tuned_run / "config.yaml").read_text()


def test_mismatches_are_clear_errors_before_a_run_folder(tmp_path):
    _melodies(tmp_path / "data", 6, 0)
    base = run_cli("run", str(_experiment(tmp_path, "base", tmp_path / "data")))
    assert base.returncode == 0, base.stderr[-3000:]
    (base_run,) = (tmp_path / "base").iterdir()
    cases = [
        (["tokenizer.beat_resolution=8"], "same tokenizer"),
        (["model.hidden_size=32"], "do not fit this model"),
        ([f"init_from={tmp_path}"], "not a trained musicfw run folder"),
        (["train.freeze=[nope]"], "no parameter of LSTMModel starts with 'nope'"),
    ]
    for overrides, needle in cases:
        args = [f"init_from={base_run}", *overrides] if not overrides[0].startswith("init_from") else overrides
        result = run_cli("run", str(_experiment(tmp_path, "bad", tmp_path / "data")), *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (overrides, result.stderr[-2000:])
        assert needle in " ".join(result.stderr.split()), (needle, result.stderr)
        assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
