"""The token budget sized from a time/bar limit (musicfw/engine/budget.py) and the stop-reason summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicfw.engine.budget import DEFAULT_MAX_TOKENS, measure_token_rates, token_budget, stop_summary

RATES = {"tokens_per_second": 20.0, "tokens_per_second_p90": 25.0, "tokens_per_bar": 40.0, "tokens_per_bar_p90": 30.0}


def test_an_explicit_max_tokens_wins():
    assert token_budget(100, 8, 15.0, RATES) == (100, "generate.max_tokens")


def test_no_limit_keeps_the_default():
    assert token_budget(None, None, None, RATES)[0] == DEFAULT_MAX_TOKENS


def test_a_time_limit_sizes_the_budget_from_the_data_rate():
    budget, how = token_budget(None, None, 15.0, RATES)
    assert budget == 750  # 2 x max(20, 25) tokens/s x 15 s: the 15 s are reached, not cut at 512
    assert "max_seconds 15" in how and "25.0 tokens/second" in how


def test_with_both_limits_the_smaller_budget_is_used():
    budget, how = token_budget(None, 4, 15.0, RATES)
    assert budget == 320 and "max_bars 4" in how  # 2 x 40 tokens/bar x 4 bars < 750


def test_without_rates_the_default_is_used_and_said():
    budget, how = token_budget(None, None, 15.0, None)
    assert budget == DEFAULT_MAX_TOKENS and "generate.max_tokens" in how


def test_stop_summary_names_the_limits_and_hints_when_tokens_ran_out():
    line = stop_summary(["max_seconds", "max_tokens", "max_seconds"], None, 15.0, 512)
    assert line.startswith("stopped by: max_seconds 2, max_tokens 1")
    assert "1 of 3 ran out of tokens (max_tokens=512) before max_seconds=15" in line
    assert "ran out" not in stop_summary(["max_tokens"], None, None, 512)


def test_rates_are_measured_on_the_train_split():
    import musicfw
    from musicfw.engine.data import MusicDataModule

    folder = Path(__file__).parent / "data" / "midi" / "one_track"
    tokenizer = musicfw.build_tokenizer("remi")
    dataset = musicfw.build_dataset("midi_folder", path=str(folder), train_fraction=0.6, valid_fraction=0.2)
    data = MusicDataModule(dataset, tokenizer, seed=0, batch_size=2, seq_len=64, progress=False).prepare()
    rates = measure_token_rates(data)
    pieces, tokens = data.pieces("train"), data.tokens("train")
    seconds = sum(p.score.to("second").end() for p in pieces)
    assert rates["pieces"] == len(pieces) > 0
    assert rates["tokens_per_second"] == pytest.approx(sum(len(t) for t in tokens) / seconds)
    assert rates["tokens_per_second_p90"] >= min(len(t) / p.score.to("second").end() for t, p in zip(tokens, pieces))
    assert rates["tokens_per_bar"] > 1
