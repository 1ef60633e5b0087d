"""The README's promises: its Python example runs, its experiment YAML validates."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

import musicfw

from conftest import REPO

README = (REPO / "README.md").read_text()


def _section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_python_api_example_runs(tmp_path, corpus_cache):
    (code,) = re.findall(r"```python\n(.*?)```", _section("Python API"), re.S)
    env = {"MUSICFW_CACHE_DIR": str(corpus_cache), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    nll = float(re.search(r"test NLL per token: ([0-9.]+)", out.stdout).group(1))
    assert 0 < nll < 3  # far below the uniform model's log(vocab) ~ 5.8
    assert sorted(p.name for p in tmp_path.glob("*.mid")) == ["chorale_0.mid", "chorale_1.mid"]
    assert "'Bar'" in out.stdout


def test_experiment_yaml_in_readme_validates(tmp_path):
    (text,) = re.findall(r"```yaml\n(.*?)```", _section("The experiment file"), re.S)
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    cfg = musicfw.load_config(path)
    assert cfg.model.name == "lstm" and [s.name for s in cfg.sampler] == ["temperature", "top_p"]
    assert yaml.safe_load(text)["tokenizer"]["name"] == "remi"


def test_two_setup_commands_are_the_ones_ci_runs():
    setup = _section("Set-up: two commands")
    assert "pip install torch==2.13.0 && pip install . && musicfw run examples/quickstart.yaml" in setup
    assert "bash scripts/test.sh" in setup
    assert "exec bash scripts/test.sh\n" in (REPO / ".ci" / "run").read_text()
