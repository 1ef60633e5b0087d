"""benchmarks/equal_budget.py: model comparisons at an equal budget of counted FLOPs (issue 33).
The count is deterministic, counts the LSTM's recurrence (the fused CPU kernel has no counter
formula), leaves the model and the random state alone, and the step counts it gives spend the
same budget within a step; examples/transformer_chorales.yaml trains for the budget
benchmarks/bach_remi.py gives it."""

from __future__ import annotations

import pytest
import torch

import musicfw

from conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():
    return benchmark_module("equal_budget"), benchmark_module("bach_remi")


class Vocab:
    vocab_size = 40
    kind = "categorical"


def _models():
    torch.manual_seed(0)
    lstm = musicfw.build_model("lstm", tokenizer=Vocab(), hidden_size=16, num_layers=1, embed_dim=8, dropout=0.1)
    tf = musicfw.build_model("transformer", tokenizer=Vocab(), d_model=16, num_layers=2, num_heads=2, d_ff=32,
                             dropout=0.1, max_context=16, position="relative")
    return lstm, tf


def test_the_count_is_deterministic_counts_the_recurrence_and_touches_nothing(bench):
    equal_budget, _ = bench
    lstm, tf = _models()
    B, T, H, E, V = 2, 16, 16, 8, 40
    rng = torch.get_rng_state()
    weights = {k: v.clone() for k, v in tf.state_dict().items()}
    counts = [(equal_budget.train_step_flops(lstm, B, T), equal_budget.train_step_flops(tf, B, T)) for _ in range(2)]
    assert counts[0] == counts[1] and all(c > 0 for c in counts[0])
    assert torch.equal(torch.get_rng_state(), rng)  # dropout in the counted step drew nothing of ours
    assert all(p.grad is None for p in tf.parameters()) and all(p.grad is None for p in lstm.parameters())
    assert all(torch.equal(v, weights[k]) for k, v in tf.state_dict().items())
    # forward + backward ~ 3 x the forward's 2 x B x T x (4H(E + H) + H V): the LSTM's own
    # products are counted, not only its output layer (the fused oneDNN kernel is not counted)
    analytic = 3 * 2 * B * T * (4 * H * (E + H) + H * V)
    assert counts[0][0] == pytest.approx(analytic, rel=0.05)
    head_only = 3 * 2 * B * T * H * V
    assert counts[0][0] > 3 * head_only


def test_equal_budget_step_counts_spend_the_same_flops(bench):
    equal_budget, _ = bench
    lstm, tf = _models()
    lstm_flops = equal_budget.train_step_flops(lstm, 2, 16)
    tf_flops = equal_budget.train_step_flops(tf, 2, 16)
    assert lstm_flops != tf_flops
    budget = 800 * lstm_flops
    steps = equal_budget.steps_for_budget(budget, tf_flops)
    assert abs(steps * tf_flops - budget) <= tf_flops / 2  # within half a step
    by5 = equal_budget.steps_for_budget(budget, tf_flops, multiple=5)
    assert by5 % 5 == 0 and abs(by5 * tf_flops - budget) <= 2.5 * tf_flops
    assert equal_budget.steps_for_budget(budget, lstm_flops) == 800
    with pytest.raises(ValueError):
        equal_budget.steps_for_budget(budget, 0)
    s = equal_budget.mean_spread([0.9, 0.92, 0.91])
    assert s["mean"] == pytest.approx(0.91) and s["range"] == pytest.approx(0.02) and s["std"] == pytest.approx(0.01)


def test_the_example_yaml_trains_for_the_benchmarks_budget(bench):
    """examples/transformer_chorales.yaml is what the README's Transformer row measured: its
    max_steps is the budget benchmarks/bach_remi.py computes for it (800 steps of the 1x256 LSTM)."""
    equal_budget, bach_remi = bench
    from musicfw.core.build import build_from_section

    config = musicfw.load_config(bach_remi.EXPERIMENT, [])
    tf_config, yaml_steps = bach_remi.transformer_config(config, [])
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    lstm = build_from_section("models", config.model, tokenizer=tokenizer)
    tf = build_from_section("models", tf_config.model, tokenizer=tokenizer)
    budget = int(config.train.max_steps) * equal_budget.train_step_flops(lstm, config.train.batch_size, config.train.seq_len)
    steps = equal_budget.steps_for_budget(
        budget, equal_budget.train_step_flops(tf, tf_config.train.batch_size, tf_config.train.seq_len), bach_remi.VAL_POINTS)
    assert yaml_steps == steps
    assert int(tf_config.model.max_context) >= int(tf_config.train.seq_len)
