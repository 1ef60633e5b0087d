"""What lets the suite run in parallel (scripts/test.sh runs it with pytest-xdist): the
conftest's per-session cache folder, one torch thread per process, environment variables put
back after each test, and the script's default options."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from conftest import REPO


def test_the_session_has_its_own_cache_folder_that_subprocesses_inherit(corpus_cache, request):
    from musicfw.core.dataset import cache_root

    root = Path(os.environ["MUSICFW_CACHE_DIR"])
    assert cache_root() == root and root.is_dir()
    made = request.config._musicfw_session_cache  # None: MUSICFW_CACHE_DIR was set before pytest
    if made is not None:
        assert root == Path(made) and root.name.startswith("musicfw-test-cache-")
        assert root != Path.home() / ".cache" / "musicfw"  # never the developer's own cache
        assert corpus_cache == root  # the converted corpora too: one folder for every worker
    else:  # the caller's cache is used as given; the corpora go to a folder of this process
        assert corpus_cache != root and corpus_cache.is_dir()
    assert not str(root).startswith(str(REPO))  # nothing written into the checkout


def test_one_torch_thread_per_process(request):
    """OMP_NUM_THREADS=1 unless set before pytest; torch here and in subprocesses follow it."""
    import torch

    threads = os.environ["OMP_NUM_THREADS"]
    assert torch.get_num_threads() == int(threads)
    assert threads == "1" or request.config._musicfw_threads_given


_BEFORE: dict = {}


def test_a_variable_the_code_under_test_sets_leaks_no_further_part_1():
    from musicfw.engine import distributed

    _BEFORE.update(os.environ)
    os.environ[distributed.RUN_DIR_ENV] = "/nowhere/set-by-part-1"  # as run_folder() does
    os.environ["OMP_NUM_THREADS"] = "7"
    del os.environ["MUSICFW_CACHE_DIR"]


def test_a_variable_the_code_under_test_sets_leaks_no_further_part_2():
    """Runs after part 1 (one file stays on one worker, in order: --dist loadfile)."""
    own = "PYTEST_CURRENT_TEST"
    assert _BEFORE and {k: v for k, v in os.environ.items() if k != own} == {k: v for k, v in _BEFORE.items() if k != own}


def _fake_repo(tmp_path: Path) -> tuple[Path, Path, dict]:
    """scripts/test.sh in a folder whose .venv python only records how it is called."""
    import shutil

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "test.sh", repo / "scripts" / "test.sh")
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    for path, body in (
        (repo / ".venv" / "bin" / "python", f'echo "$* | PYTEST_ADDOPTS=$PYTEST_ADDOPTS" >> {log}\nexit 0\n'),
        *((bin_dir / tool, "exit 0\n") for tool in ("chromium", "fluidsynth", "apt-get")),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/usr/bin/env bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("MUSICFW_TEST_WORKERS", None)
    return repo, log, env


def test_the_test_script_runs_the_suite_in_parallel_by_default(tmp_path):
    repo, log, env = _fake_repo(tmp_path)
    script = str(repo / "scripts" / "test.sh")
    for extra_env, args, expected in (
        ({}, ["-q"], "-m pytest -q | PYTEST_ADDOPTS=-n auto --dist loadfile"),
        ({"MUSICFW_TEST_WORKERS": "3", "PYTEST_ADDOPTS": "-x"}, [], "-m pytest | PYTEST_ADDOPTS=-n 3 --dist loadfile -x"),
        ({"MUSICFW_TEST_WORKERS": "0"}, ["-k", "x"], "-m pytest -k x | PYTEST_ADDOPTS="),
    ):
        log.write_text("")
        proc = subprocess.run(["bash", script, *args], cwd=repo, env={**env, **extra_env},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert log.read_text().splitlines()[-1] == expected
