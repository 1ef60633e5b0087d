"""benchmarks/musicvae.py gives the same numbers for the same seed (issue 19: the README's
2-bar row did not reproduce), and records what else decides them: the data's sha256 per split
and the library versions."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

TINY = ["--quick", "--max-steps", "6", "--max-windows", "32",
        "--set", "model.z_size=8", "--set", "model.enc_rnn_size=[16]", "--set", "model.dec_rnn_size=[16]",
        "--set", "data.max_count=60", "--set", "train.batch_size=8"]


def _bench(tmp_path, name: str, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "musicvae.py"), "--part", "2bar", *TINY, *extra,
           "--out", str(tmp_path / name), "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "data sha256" in result.stdout
    return json.loads(out.read_text())["2bar"][0]


SCORES = ("teacher_forced_accuracy", "sampled_accuracy", "greedy_accuracy", "elbo", "kl", "recon_nll",
          "val_neg_elbo_per_step")


@pytest.mark.slow
def test_same_seed_same_numbers_and_the_run_records_its_data_and_versions(tmp_path, corpus_cache, monkeypatch):
    monkeypatch.setenv("MUSICFW_CACHE_DIR", str(corpus_cache))
    first = _bench(tmp_path, "a")
    again = _bench(tmp_path, "b")
    other = _bench(tmp_path, "c", "--set", "seed=1")
    assert {k: first[k] for k in SCORES} == {k: again[k] for k in SCORES}  # every digit
    assert first["data_sha256"] == again["data_sha256"] and set(first["data_sha256"]) == {"train", "valid", "test"}
    assert first["environment"]["torch_threads"] == 1 and first["environment"]["symusic"]
    assert first["seed"] == 0 and other["seed"] == 1
    assert {k: first[k] for k in SCORES} != {k: other[k] for k in SCORES}  # the seed matters
