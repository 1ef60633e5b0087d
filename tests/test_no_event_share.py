"""scripts/no_event_share.py: the "always predict no event" baseline quoted beside the
MusicVAE accuracies in the README (chords and 16-bar rows)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "no_event_share.py"


def _script():
    spec = importlib.util.spec_from_file_location("no_event_share", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_event_share_of_melody_ids():
    share = _script().no_event_share
    # 0 = no event, 1 = note-off, >= 2 note-on: 5 of 8 steps are no event
    assert share(np.array([[2, 0, 0, 1], [0, 5, 0, 0]])) == pytest.approx(5 / 8)


def test_no_event_share_reads_the_melody_part_of_chord_ids():
    share = _script().no_event_share
    n_melody = 90
    melody = np.array([[0, 3, 0, 1]])
    chords = np.array([[4, 4, 7, 7]])
    # chord * n_melody + melody: the chord ids alone are never 0, the melody is no-event on 2 of 4
    assert share(chords * n_melody + melody, n_melody) == pytest.approx(0.5)
    assert share(chords * n_melody + melody) == 0.0  # read as plain ids, nothing is 0
    with pytest.raises(ValueError):
        share(np.zeros((0, 4), dtype=np.int64))
