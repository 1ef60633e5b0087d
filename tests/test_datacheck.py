"""Small held-out splits are warned about, with the keys to change (musicfw/engine/datacheck.py)."""

from __future__ import annotations

from pathlib import Path

from musicfw.engine.datacheck import small_split_warnings

FRACTIONS = {"name": "midi_folder", "train_fraction": 0.8, "valid_fraction": 0.1}


def test_a_thirteen_piece_folder_gets_a_larger_test_split_suggested():
    (warning,) = small_split_warnings({"train": 11, "valid": 1, "test": 1}, FRACTIONS, min_pieces=5)[1:]
    assert "the test split has only 1 piece (of 13)" in warning
    assert "reference OA/KL are None" in warning  # why the comparison summary shows None
    assert "data.train_fraction=0.5 data.valid_fraction=0.1" in warning  # 0.4 x 13 = 5 test pieces


def test_valid_split_suggestion_keeps_the_test_share():
    warnings = small_split_warnings({"train": 16, "valid": 2, "test": 6}, FRACTIONS)
    assert len(warnings) == 1 and "the valid split has only 2 pieces (of 24)" in warnings[0]
    assert "data.train_fraction=0.65 data.valid_fraction=0.25" in warnings[0]


def test_large_enough_or_deliberately_empty_splits_are_quiet():
    assert small_split_warnings({"train": 320, "valid": 40, "test": 41}, FRACTIONS) == []
    assert small_split_warnings({"train": 90, "valid": 0, "test": 10}, FRACTIONS) == []


def test_too_few_pieces_for_any_split_suggests_seeds_and_fixed_splits_say_so():
    (_, test) = small_split_warnings({"train": 5, "valid": 1, "test": 1}, FRACTIONS)
    assert "too few" in test and "seed=1, 2" in test
    (fixed,) = small_split_warnings({"train": 200, "valid": 30, "test": 3}, {"name": "piano_roll_benchmark"})
    assert "split is fixed" in fixed


def test_the_runner_prints_it(tmp_path, capsys):
    import musicfw

    folder = Path(__file__).parent / "data" / "midi" / "one_track"
    config = musicfw.load_config(
        {
            "name": "small", "output_dir": str(tmp_path),
            "data": {"name": "midi_folder", "path": str(folder)},
            "tokenizer": {"name": "remi"}, "model": {"name": "markov", "order": 1},
            "generate": {"n": 2, "max_tokens": 64, "render_audio": False},
            "evaluate": {"metrics": ["nll"]}, "logger": {"name": "none"},
        }
    )
    musicfw.run(config)
    err = capsys.readouterr().err
    assert "warning: the test split has only 1 piece (of 7)" in err
