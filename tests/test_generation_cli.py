"""``musicfw generate --run DIR`` on a run folder made by hand (a tiny untrained LSTM)."""

from __future__ import annotations

import json

import pytest
import symusic

from conftest import run_cli


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs"), {"n": 2, "max_tokens": 24, "render_audio": False})


def make_run(root, generate_section, limits=None):
    import torch

    import musicfw
    from musicfw.api import build_from_section
    from musicfw.engine.rundir import RunFolder

    config = musicfw.load_config(
        {
            "name": "cli-gen",
            "seed": 3,
            "data": {"name": "midi_folder", "path": str(root)},
            "tokenizer": {"name": "remi"},
            "model": {"name": "lstm", "hidden_size": 16, "num_layers": 1, "embed_dim": 8},
            "sampler": [{"name": "temperature", "temperature": 1.0}, {"name": "top_p", "p": 0.95}],
            "generate": generate_section,
            **({"limits": limits} if limits else {}),
        }
    )
    run = RunFolder.create(root, config.name)
    run.save_config(config)
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    tokenizer.save(run.tokenizer_path)
    torch.manual_seed(0)
    model = build_from_section("models", config.model, tokenizer=tokenizer)
    run.checkpoints.mkdir()
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state}, run.checkpoints / "best.ckpt")
    return run.path


def test_generate_writes_a_new_folder_each_time(run_dir):
    first = run_cli("generate", "--run", str(run_dir), "--seed", "1")
    assert first.returncode == 0, first.stderr
    assert "wrote 2 samples" in first.stdout and "dropped tokens 0.00% (constrained)" in first.stdout
    out1 = run_dir / "samples" / "generate-001"
    assert sorted(p.name for p in out1.iterdir()) == [
        "generation.json", "sample_000.mid", "sample_000.png", "sample_001.mid", "sample_001.png",
    ]
    record = json.loads((out1 / "generation.json").read_text())
    assert record["settings"]["max_tokens"] == 24 and record["settings"]["seed"] == 1
    assert "Temperature" in record["sampler"] and "TopP" in record["sampler"]  # the run's chain
    assert record["stats"]["invalid_tokens"] == 0

    second = run_cli(
        "generate", "--run", str(run_dir), "--n", "3", "--max-tokens", "16",
        "--sampler", "temperature", "temperature=1.5", "--sampler", "top_k", "k=5",
    )
    assert second.returncode == 0, second.stderr
    out2 = run_dir / "samples" / "generate-002"
    assert len(list(out2.glob("*.mid"))) == 3
    record = json.loads((out2 / "generation.json").read_text())
    assert "k=5" in record["sampler"] and "temperature=1.5" in record["sampler"]
    # the first folder is untouched
    assert len(list(out1.glob("*.mid"))) == 2


def test_generate_continues_a_prompt(run_dir, tmp_path):
    import numpy as np

    score = symusic.Score(480)
    track = symusic.Track("p", 0, False)
    track.notes = symusic.Note.from_numpy(
        np.arange(0, 1920, 480, dtype=np.int32), np.full(4, 480, np.int32), np.array([60, 62, 64, 65], np.int8), np.full(4, 90, np.int8)
    )
    score.tracks.append(track)
    prompt = tmp_path / "prompt.mid"
    score.dump_midi(str(prompt))
    out = tmp_path / "out"
    proc = run_cli("generate", "--run", str(run_dir), "--n", "1", "--prompt", str(prompt), "--out", str(out), "--sampler", "greedy")
    assert proc.returncode == 0, proc.stderr
    generated = symusic.Score(str(out / "sample_000.mid"))
    notes = generated.tracks[0].notes.numpy()
    have = set(zip(notes["time"].tolist(), notes["pitch"].tolist()))
    assert {(0, 60), (480, 62), (960, 64), (1440, 65)} <= have  # the prompt opens the sample
    assert len(notes["pitch"]) >= 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sampler", "nucleus"], "Unknown sampler 'nucleus'"),
        (["--sampler", "top_k", "kk=3"], "sampler.kk"),
        (["--sampler", "temperature", "temperature=0"], "sampler.temperature must be a finite number > 0"),
        (["--sampler", "top_k", "k"], "not of the form key=value"),
        (["--sampler", "bernoulli"], "cannot draw categorical"),
        (["--prompt", "missing.mid"], "Prompt file not found"),
        (["--n", "0"], "--n must be >= 1"),
    ],
)
def test_user_mistakes_exit_2_without_traceback(run_dir, args, message):
    proc = run_cli("generate", "--run", str(run_dir), *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr.replace("\n", " ")
    assert "Traceback" not in proc.stderr


def test_missing_run_folder(tmp_path):
    proc = run_cli("generate", "--run", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "Run folder not found" in proc.stderr


def test_generate_without_seed_draws_new_samples_and_says_how_to_redo_them(run_dir, tmp_path):
    import re

    outs, seeds = [], []
    for i in range(2):
        out = tmp_path / f"fresh{i}"
        proc = run_cli("generate", "--run", str(run_dir), "--out", str(out))
        assert proc.returncode == 0, proc.stderr
        m = re.search(r"^seed (\d+) \(pass --seed (\d+) to reproduce\)$", proc.stdout, re.M)
        assert m and m.group(1) == m.group(2), proc.stdout
        record = json.loads((out / "generation.json").read_text())
        assert record["settings"]["seed"] == int(m.group(1)) and record["seed_source"].startswith("drawn")
        outs.append(out)
        seeds.append(int(m.group(1)))
    assert seeds[0] != seeds[1] and 3 not in seeds  # not the run's seed (3), not twice the same
    first = [p.read_bytes() for p in sorted(outs[0].glob("*.mid"))]
    assert first != [p.read_bytes() for p in sorted(outs[1].glob("*.mid"))]
    # the printed seed reproduces the samples byte for byte
    again = tmp_path / "again"
    proc = run_cli("generate", "--run", str(run_dir), "--out", str(again), "--seed", str(seeds[0]))
    assert proc.returncode == 0 and "pass --seed" not in proc.stdout
    assert [p.read_bytes() for p in sorted(again.glob("*.mid"))] == first
    assert json.loads((again / "generation.json").read_text())["seed_source"] == "--seed"


def test_a_time_limit_sizes_the_token_budget_and_the_stop_reasons_are_said(tmp_path):
    from musicfw.engine.budget import save_rates

    run = make_run(tmp_path, {"n": 2, "max_seconds": 3.0, "render_audio": False})  # no max_tokens
    save_rates(run, {"tokens_per_second": 10.0, "tokens_per_second_p90": 12.0, "tokens_per_bar": 30.0})
    out = tmp_path / "out"
    proc = run_cli("generate", "--run", str(run), "--out", str(out), "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "generation.json").read_text())
    assert record["settings"]["max_tokens"] == 72  # ceil(2 x 12 tokens/s x 3 s), not 512
    assert "max_seconds 3" in record["max_tokens_from"]
    assert len(record["stop_reasons"]) == 2
    assert set(record["stop_reasons"]) <= {"max_tokens", "max_seconds", "end_token"}
    assert "max_tokens 72 (max_seconds 3 x 12.0 tokens/second" in proc.stdout
    assert "stopped by: " in proc.stdout
    # an explicit --max-tokens wins
    # (one REMI token cannot hold 3 s: the first Position is < 2 s at the default 120 qpm)
    proc = run_cli("generate", "--run", str(run), "--out", str(tmp_path / "o2"), "--seed", "0", "--max-tokens", "1")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "o2" / "generation.json").read_text())
    assert record["settings"]["max_tokens"] == 1 and record["stop_reasons"] == ["max_tokens", "max_tokens"]
    assert "2 of 2 ran out of tokens (max_tokens=1) before max_seconds=3" in proc.stdout


def test_a_runs_own_limits_hold_for_later_commands_on_it(tmp_path):
    """Issue 30, class 6: the run's ``limits:`` persist in its folder and ``generate --run``
    enforces them (here max_prompt_tokens against a prompt of hundreds of tokens)."""
    from conftest import TEST_MIDI

    run = make_run(tmp_path, {"n": 1, "max_tokens": 8, "render_audio": False}, limits={"max_prompt_tokens": 5})
    assert "max_prompt_tokens: 5" in (run / "config.yaml").read_text()
    prompt = sorted((TEST_MIDI / "one_track").glob("*.mid"))[0]
    proc = run_cli("generate", "--run", str(run), "--prompt", str(prompt), "--seed", "1")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "limits.max_prompt_tokens=5" in said, said
    plain = make_run(tmp_path / "plain", {"n": 1, "max_tokens": 8, "render_audio": False})
    ok = run_cli("generate", "--run", str(plain), "--prompt", str(prompt), "--seed", "1", "--no-audio")
    assert ok.returncode == 0, ok.stderr  # the same prompt under the default limits


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-tokens", "1000000000000"], "above limits.max_tokens=1,000,000"),
        (["--n", "1000000000", "--batch-size", "1000000000"], "above 1,000,000 samples per call"),
        (["--n", "8", "--batch-size", "1000000000"], "generate.batch_size=1,000,000,000 is above 65,536"),
    ],
)
def test_huge_generation_flags_are_clear_errors_before_any_folder_is_made(run_dir, args, message):
    before = sorted(p.name for p in (run_dir / "samples").glob("*")) if (run_dir / "samples").exists() else []
    proc = run_cli("generate", "--run", str(run_dir), "--seed", "1", *args)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and message in said, proc.stderr
    after = sorted(p.name for p in (run_dir / "samples").glob("*")) if (run_dir / "samples").exists() else []
    assert after == before
