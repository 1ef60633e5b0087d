"""Shared test helpers, and what keeps tests apart when they run in parallel
(``pytest -n 2``, pytest-xdist, as scripts/test.sh runs them):

* one cache folder per test session (``$MUSICFW_CACHE_DIR``, made here, shared by the session's
  workers and removed at its end) instead of the user's ``~/.cache/musicfw``: a test never
  reads what an earlier session, or a developer's own runs, left there.  The caches are safe
  to share between processes (atomic renames, a lock around corpus conversion).  A
  ``MUSICFW_CACHE_DIR`` set before pytest starts is kept (a warm cache, on purpose);
* one torch thread per process (``OMP_NUM_THREADS=1``, inherited by every ``musicfw``
  subprocess; ``torch.set_num_threads(1)`` here): two workers on two cores, no oversubscription,
  and the same arithmetic with or without ``-n``;
* environment variables a test sets without ``monkeypatch`` (``MUSICFW_RUN_DIR`` and the wandb
  variables, set by the code under test) are undone after it.

Ports are free ones asked of the OS; run folders and outputs live under ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real MIDI files (one_track/, multitrack/, bad/) shipped with the tests: see data/midi/README.md.
TEST_MIDI = REPO / "tests" / "data" / "midi"
CACHE_ENV = "MUSICFW_CACHE_DIR"
#: the key under which the controller hands the session cache to its xdist workers
_WORKER_KEY = "musicfw_session_cache"
_PYTEST_OWN = "PYTEST_CURRENT_TEST"  # pytest's own, changed between setup, call and teardown


def pytest_configure(config) -> None:
    workerinput = getattr(config, "workerinput", None)  # set in xdist workers only
    if workerinput is not None:
        root = workerinput.get(_WORKER_KEY)
    elif os.environ.get(CACHE_ENV, "").strip():
        root = None  # the caller's own cache folder, kept
    else:
        root = tempfile.mkdtemp(prefix="musicfw-test-cache-")
        config._musicfw_owned_cache = root  # removed in pytest_unconfigure
    config._musicfw_session_cache = root
    if root:
        os.environ[CACHE_ENV] = root
    config._musicfw_threads_given = bool(os.environ.get("OMP_NUM_THREADS"))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist (controller): every worker uses the session's one cache folder."""
    node.workerinput[_WORKER_KEY] = getattr(node.config, "_musicfw_session_cache", None)


def pytest_unconfigure(config) -> None:
    root = getattr(config, "_musicfw_owned_cache", None)
    if root:
        if os.environ.get(CACHE_ENV) == root:
            del os.environ[CACHE_ENV]
        shutil.rmtree(root, ignore_errors=True)


def run_cli(*args: str, env: dict | None = None, cwd: str | Path | None = None, timeout: int = 600):
    """Run ``musicfw ARGS`` in a fresh interpreter; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "musicfw.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def shared_midi() -> Path:
    """The folder of real MIDI files (see tests/data/midi/README.md)."""
    assert (TEST_MIDI / "bad").is_dir(), f"the test MIDI corpus is missing: {TEST_MIDI}"
    return TEST_MIDI


@pytest.fixture(scope="session")
def corpus_cache(request, tmp_path_factory) -> Path:
    """One converted-corpus cache for the whole test session (conversion is the slow part):
    the session's cache folder, which all its xdist workers share; a fresh folder of this
    process when the caller brought their own ``MUSICFW_CACHE_DIR``."""
    root = getattr(request.config, "_musicfw_session_cache", None)
    return Path(root) if root else tmp_path_factory.mktemp("corpus-cache")


@pytest.fixture(autouse=True)
def _environment_restored():
    """Variables the code under test puts in ``os.environ`` (a run's ``MUSICFW_RUN_DIR``, the
    wandb logger's ``WANDB_*``) do not leak into later tests, whichever worker runs them."""
    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved) - {_PYTEST_OWN}:
        del os.environ[key]
    for key, value in saved.items():
        if key != _PYTEST_OWN and os.environ.get(key) != value:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _process_limits_restored():
    """The process-wide limits (a run's own, set when its folder's config is loaded; a
    command's) do not leak from one test into the next."""
    from musicfw.music import limits

    saved = limits._active, limits._run, limits._command
    yield
    limits._active, limits._run, limits._command = saved


def benchmark_module(name: str):
    """The module ``benchmarks/<name>.py`` (imported with benchmarks/ on the path only while it
    loads, so its own imports of sibling benchmarks resolve)."""
    import importlib

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def untrained_infill_run(root: Path, name: str, tokenizer_section: dict, infill: bool) -> Path:
    """A run folder (under ``root``) with an untrained tiny LSTM and its tokenizer, with the
    infill markers when ``infill``: enough for refusals, decoding checks and init_from."""
    import torch

    import musicfw
    from musicfw.api import build_from_section
    from musicfw.engine.infill import InfillTokenizer
    from musicfw.engine.rundir import RunFolder

    config = musicfw.load_config({
        "name": name, "seed": 0, "data": {"name": "midi_folder", "path": str(root)},
        "tokenizer": tokenizer_section,
        "model": {"name": "lstm", "hidden_size": 16, "num_layers": 1, "embed_dim": 8},
        "train": {"infill": {"enabled": infill}},
    })
    run = RunFolder.create(root, name)
    run.save_config(config)
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    if infill:
        tokenizer = InfillTokenizer(tokenizer)
    tokenizer.save(run.tokenizer_path)
    torch.manual_seed(0)
    model = build_from_section("models", config.model, tokenizer=tokenizer)
    run.checkpoints.mkdir()
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, run.checkpoints / "best.ckpt")
    return run.path
