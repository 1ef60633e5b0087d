"""``musicfw sample`` and ``musicfw interpolate`` on a run folder (an untrained MusicVAE's
weights saved as the run's checkpoint: no training needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
symusic = pytest.importorskip("symusic")

from conftest import run_cli  # noqa: E402


@pytest.fixture
def vae_run(tmp_path: Path) -> Path:
    import musicfw
    from musicfw.core.rundir import RunFolder

    if "melody" not in musicfw.list_plugins()["tokenizers"]:
        pytest.skip("the melody tokenizer plugin is not installed")
    config = musicfw.load_config(
        {
            "name": "vae",
            "output_dir": str(tmp_path),
            "data": {"name": "midi_folder", "path": str(tmp_path)},
            "tokenizer": {"name": "melody", "min_pitch": 21, "max_pitch": 108},
            "model": {
                "name": "musicvae", "z_size": 4, "enc_rnn_size": [8], "dec_rnn_size": [8],
                "decoder": "hierarchical", "max_seq_len": 32,
            },
        }
    )
    run = RunFolder.create(tmp_path, "vae")
    run.save_config(config)
    tok = musicfw.build_tokenizer("melody", min_pitch=21, max_pitch=108)
    tok.save(run.tokenizer_path)
    torch.manual_seed(0)
    model = musicfw.build_model(
        "musicvae", tokenizer=tok, z_size=4, enc_rnn_size=[8], dec_rnn_size=[8],
        decoder="hierarchical", max_seq_len=32,
    )
    run.checkpoints.mkdir()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, run.checkpoints / "last.ckpt")
    return run.path


def melody_file(path: Path, pitches: list[int]) -> Path:
    score = symusic.Score(480)
    track = symusic.Track()
    for i, p in enumerate(pitches):
        track.notes.append(symusic.Note(i * 240, 240, p, 80))
    score.tracks.append(track)
    score.dump_midi(str(path))
    return path


def test_sample_command(vae_run: Path):
    res = run_cli("sample", "--run", str(vae_run), "--n", "3", "--temperature", "0.5")
    assert res.returncode == 0, res.stderr
    out = vae_run / "samples" / "prior"
    assert sorted(p.name for p in out.glob("*.mid")) == ["sample_000.mid", "sample_001.mid", "sample_002.mid"]
    assert (out / "samples.png").is_file()


def test_interpolate_command(vae_run: Path, tmp_path: Path):
    a = melody_file(tmp_path / "a.mid", [60, 62, 64, 65, 67, 69, 71, 72] * 2)
    b = melody_file(tmp_path / "b.mid", [72, 71, 69, 67, 65, 64, 62, 60] * 2)
    res = run_cli("interpolate", "--run", str(vae_run), str(a), str(b), "--steps", "4", "--out", str(tmp_path / "i"))
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (tmp_path / "i").iterdir())
    assert names == [
        "interpolation.mid", "interpolation.png", "step_00.mid", "step_01.mid", "step_02.mid", "step_03.mid",
    ]
    assert "endpoint reconstruction accuracy" in res.stdout
    row = symusic.Score(str(tmp_path / "i" / "interpolation.mid"))
    one = symusic.Score(str(tmp_path / "i" / "step_00.mid"))
    assert row.note_num() >= one.note_num()


def test_user_mistakes_exit_2_without_traceback(vae_run: Path, tmp_path: Path):
    res = run_cli("interpolate", "--run", str(vae_run), str(tmp_path / "nope.mid"), str(tmp_path / "nope.mid"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "not found" in res.stderr
    res = run_cli("sample", "--run", str(tmp_path / "missing"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = run_cli("interpolate", "--run", str(vae_run), "a.mid", "b.mid", "--steps", "1")
    assert res.returncode == 2 and "--steps" in res.stderr


def _bias_decoder(run: Path, token: int) -> None:
    """Make the run's decoder prefer ``token`` at every step, as an under-trained MusicVAE
    prefers its most frequent token ("no event", id 0): greedy or cool decoding collapses."""
    ckpt = run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    key = next(k for k in state["state_dict"] if k.endswith("output_projection.bias"))
    state["state_dict"][key][token] += 20.0
    torch.save(state, ckpt)


def test_empty_outputs_are_warned_about_with_cause_and_fix(vae_run: Path, tmp_path: Path):
    _bias_decoder(vae_run, 0)
    a = melody_file(tmp_path / "a.mid", [60, 62, 64, 65, 67, 69, 71, 72] * 2)
    b = melody_file(tmp_path / "b.mid", [72, 71, 69, 67, 65, 64, 62, 60] * 2)
    res = run_cli("interpolate", "--run", str(vae_run), str(a), str(b), "--steps", "3", "--temperature", "0",
                  "--out", str(tmp_path / "i"))
    assert res.returncode == 0, res.stderr
    assert "notes per step (temperature 0): 0, 0, 0" in res.stdout
    assert "on the input's note onsets only: A 0.000, B 0.000" in res.stdout  # not the no-event steps
    err = res.stderr.replace("\n", " ")
    assert "warning: 3 of 3 outputs are empty" in err and "greedy decoding (--temperature 0)" in err
    assert "train longer" in err and "--temperature 0.5 to 1.0" in err
    res = run_cli("sample", "--run", str(vae_run), "--n", "2", "--out", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr
    assert "temperature 0.5" in res.stdout  # Magenta's default, not greedy
    assert "warning: 2 of 2 outputs are empty" in res.stderr.replace("\n", " ")


def test_no_warning_when_the_outputs_hold_notes(vae_run: Path, tmp_path: Path):
    _bias_decoder(vae_run, 50)  # a note-on at every step
    res = run_cli("sample", "--run", str(vae_run), "--n", "2", "--out", str(tmp_path / "s"))
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr and "notes per sample: 32, 32" in res.stdout
