"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def run_cli(*args: str, env: dict | None = None, cwd: str | Path | None = None, timeout: int = 600):
    """Run ``musicfw ARGS`` in a fresh interpreter; returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "musicfw.core.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture
def shared_midi() -> Path:
    path = SHARED / "midi"
    if not path.is_dir():
        pytest.skip(f"the external MIDI corpus is not at {path}")
    return path


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory) -> Path:
    """One converted-corpus cache for the whole test session (conversion is the slow part)."""
    return tmp_path_factory.mktemp("corpus-cache")
