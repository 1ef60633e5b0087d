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
    from musicfw.engine.rundir import RunFolder

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


# --- beat blender -------------------------------------------------------------------------------


def test_blend_latents_put_the_corners_in_the_corners_and_slerp_between():
    from musicfw.plugins.models.musicvae.blend import blend_latents, walk_order
    from musicfw.plugins.models.musicvae.model import slerp

    gen = torch.Generator().manual_seed(0)
    corners = torch.randn(4, 6, generator=gen)
    zs = blend_latents(corners, 3).reshape(3, 3, 6)
    for (r, c), k in {(0, 0): 0, (0, 2): 1, (2, 0): 2, (2, 2): 3}.items():
        assert torch.allclose(zs[r, c], corners[k], atol=1e-6)
    centre = slerp(slerp(corners[0], corners[1], 0.5), slerp(corners[2], corners[3], 0.5), 0.5)
    assert torch.allclose(zs[1, 1], centre, atol=1e-6)
    assert torch.allclose(zs[0, 1], slerp(corners[0], corners[1], 0.5), atol=1e-6)
    order = walk_order(3)
    assert sorted(order) == [(r, c) for r in range(3) for c in range(3)]
    assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in zip(order, order[1:]))  # neighbours


def test_blend_command_writes_the_grid_the_walk_and_the_page(vae_run: Path, tmp_path: Path):
    files = [melody_file(tmp_path / f"{n}.mid", [60 + i, 64 + i, 67 + i, 72 - i] * 2) for i, n in enumerate("abcd")]
    out = tmp_path / "blend"
    result = run_cli("blend", "--run", str(vae_run), *map(str, files), "--grid", "3", "--temperature", "1.0",
                     "--out", str(out), "--no-audio")
    assert result.returncode == 0, result.stderr[-2000:]
    cells = sorted(out.glob("cell_r*_c*.mid"))
    assert len(cells) == 9 and len(list(out.glob("cell_r*_c*.png"))) == 9
    total = sum(symusic.Score(str(p)).note_num() for p in cells)
    assert symusic.Score(str(out / "walk.mid")).note_num() == total > 0
    page = (out / "blend.html").read_text()
    assert page.count('class="cell') == 9 and "play path" in page and "<script" in page
    assert "http" not in page.split("<script", 1)[1]  # no network: the page plays with WebAudio
    bad = run_cli("blend", "--run", str(vae_run), *map(str, files), "--grid", "40", "--out", str(out))
    assert bad.returncode == 2 and "--grid must be in 2..16" in bad.stderr


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


def test_evaluate_gives_the_same_bound_every_time(tmp_path: Path):
    """MusicVAE's held-out number samples its latent: ``musicfw evaluate`` draws it from torch's
    generator seeded with the run's seed, so the same folder gives the same digits (unseeded,
    two evaluations differ)."""
    import musicfw
    from musicfw.engine.rundir import RunFolder
    from musicfw.engine.runner import evaluate_run_folder

    if "melody" not in musicfw.list_plugins()["tokenizers"]:
        pytest.skip("the melody tokenizer plugin is not installed")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(10):
        melody_file(corpus / f"m{i}.mid", [60 + (i + j * 3) % 12 for j in range(24)])
    model_section = {"name": "musicvae", "z_size": 4, "enc_rnn_size": [8], "dec_rnn_size": [8],
                     "decoder": "flat", "max_seq_len": 32}
    config = musicfw.load_config({
        "name": "vae", "seed": 3, "output_dir": str(tmp_path),
        "data": {"name": "midi_folder", "path": str(corpus), "train_fraction": 0.6, "valid_fraction": 0.2},
        "tokenizer": {"name": "melody", "min_pitch": 21, "max_pitch": 108},
        "model": model_section,
        "evaluate": {"metrics": ["nll"]},
    })
    run = RunFolder.create(tmp_path, "vae")
    run.save_config(config)
    tok = musicfw.build_tokenizer("melody", min_pitch=21, max_pitch=108)
    tok.save(run.tokenizer_path)
    torch.manual_seed(0)
    model = musicfw.build_model("musicvae", tokenizer=tok, **{k: v for k, v in model_section.items() if k != "name"})
    with torch.no_grad():  # a wide posterior: the sampled latent moves the bound
        for name, p in model.named_parameters():
            if "sigma" in name or "log" in name:
                p.add_(1.0)
    run.checkpoints.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, run.checkpoints / "last.ckpt")
    first = evaluate_run_folder(run.path, report=False)["likelihood"]["nll"]["nll_sum"]
    second = evaluate_run_folder(run.path, report=False)["likelihood"]["nll"]["nll_sum"]
    assert first == second
    other = evaluate_run_folder(run.path, overrides=["seed=4"], report=False)["likelihood"]["nll"]["nll_sum"]
    assert other != first  # the draws did matter: another seed, another bound
