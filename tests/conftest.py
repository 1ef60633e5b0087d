"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real MIDI files (one_track/, multitrack/, bad/) shipped with the tests: see data/midi/README.md.
TEST_MIDI = REPO / "tests" / "data" / "midi"


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
def corpus_cache(tmp_path_factory) -> Path:
    """One converted-corpus cache for the whole test session (conversion is the slow part)."""
    return tmp_path_factory.mktemp("corpus-cache")


@pytest.fixture(autouse=True)
def _process_limits_restored():
    """The process-wide limits (a run's own, set when its folder's config is loaded; a
    command's) do not leak from one test into the next."""
    from musicfw.music import limits

    saved = limits._active, limits._run, limits._command
    yield
    limits._active, limits._run, limits._command = saved
