"""The built-in samplers: what each one keeps, how it draws, how they chain, and seeding."""

from __future__ import annotations

import math

import pytest
import torch

import musicfw
from musicfw.core.errors import ConfigError, PluginError
from musicfw.engine.generation import build_sampler_chain
from musicfw.core.sampler import SamplerChain

torch.set_num_threads(1)

PROBS = torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]])
LOGITS = PROBS.log()


def frequencies(sampler, logits, draws=20000, seed=0, kind="categorical"):
    gen = torch.Generator().manual_seed(seed)
    ids = sampler(logits.expand(draws, -1), gen, kind)
    return torch.bincount(ids, minlength=logits.shape[-1]).float() / draws


def entropy(logits):
    p = torch.softmax(logits, -1)
    return float(-(p * p.clamp_min(1e-30).log()).sum())


def test_all_five_are_registered():
    names = musicfw.list_plugins()["samplers"]
    assert {"greedy", "temperature", "top_k", "top_p", "bernoulli"} <= set(names)


def test_greedy_is_the_argmax_and_frames_above_one_half():
    greedy = musicfw.build_sampler("greedy")
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    assert greedy(logits).tolist() == [1, 0]
    frames = greedy(torch.tensor([[0.3, -0.2, 0.0, 5.0]]), kind="multihot")
    assert frames.tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_temperature_divides_logits_and_changes_sharpness():
    cold = musicfw.build_sampler("temperature", temperature=0.5)
    hot = musicfw.build_sampler("temperature", temperature=2.0)
    assert torch.allclose(cold.process(LOGITS), LOGITS / 0.5)
    assert entropy(cold.process(LOGITS)) < entropy(LOGITS) < entropy(hot.process(LOGITS))
    # empirical frequencies follow softmax(logits / tau)
    expected = torch.softmax(LOGITS / 2.0, -1)[0]
    assert torch.allclose(frequencies(hot, LOGITS), expected, atol=0.015)
    plain = musicfw.build_sampler("temperature", temperature=1.0)
    assert torch.allclose(frequencies(plain, LOGITS), PROBS[0], atol=0.015)


def test_top_k_keeps_the_k_best_and_ties():
    top2 = musicfw.build_sampler("top_k", k=2)
    kept = torch.isfinite(top2.process(LOGITS))[0]
    assert kept.tolist() == [True, True, False, False, False]
    freq = frequencies(top2, LOGITS)
    assert freq[2:].sum() == 0
    assert math.isclose(float(freq[0]), 2 / 3, abs_tol=0.02)
    tie = torch.tensor([[1.0, 0.5, 0.5, 0.1]])
    assert torch.isfinite(top2.process(tie)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(musicfw.build_sampler("top_k", k=99).process(LOGITS)).all()


@pytest.mark.parametrize(
    "p, kept",
    [
        (0.5, [True, False, False, False, False]),  # the top token alone reaches 0.5
        (0.6, [True, True, False, False, False]),
        (0.9, [True, True, True, False, False]),  # 0.5 + 0.25 + 0.15 = 0.90
        (0.95, [True, True, True, True, False]),
        (1.0, [True] * 5),
        (0.01, [True, False, False, False, False]),  # the most likely token is always kept
    ],
)
def test_top_p_keeps_the_smallest_nucleus(p, kept):
    sampler = musicfw.build_sampler("top_p", p=p)
    assert torch.isfinite(sampler.process(LOGITS))[0].tolist() == kept


def test_top_p_renormalizes_inside_the_nucleus():
    sampler = musicfw.build_sampler("top_p", p=0.9)
    freq = frequencies(sampler, LOGITS)
    assert freq[3:].sum() == 0
    assert torch.allclose(freq[:3], PROBS[0, :3] / 0.9, atol=0.015)


def test_bernoulli_draws_each_key_with_sigmoid_of_logit_over_tau():
    logits = torch.tensor([[-2.0, 0.0, 1.0, 3.0]])
    for tau in (1.0, 2.0):
        sampler = musicfw.build_sampler("bernoulli", temperature=tau)
        gen = torch.Generator().manual_seed(1)
        frames = sampler(logits.expand(20000, -1), gen, "multihot")
        assert set(frames.unique().tolist()) <= {0.0, 1.0}
        assert torch.allclose(frames.mean(0), torch.sigmoid(logits[0] / tau), atol=0.015)


def test_kind_mismatch_is_refused():
    with pytest.raises(ValueError, match="bernoulli"):
        musicfw.build_sampler("top_p")(LOGITS, kind="multihot")
    with pytest.raises(ValueError, match="categorical"):
        musicfw.build_sampler("bernoulli")(LOGITS, kind="categorical")


def test_chain_from_yaml_list_applies_every_process_then_the_last_draw():
    chain = build_sampler_chain(
        [{"name": "temperature", "temperature": 2.0}, {"name": "top_p", "p": 0.8}]
    )
    assert isinstance(chain, SamplerChain)
    # after tau = 2 the distribution is flatter, so the 0.8 nucleus needs more tokens
    flat = torch.softmax(LOGITS / 2.0, -1)[0]
    cum = torch.cumsum(flat, 0) - flat
    expected = (cum < 0.8).tolist()
    assert torch.isfinite(chain.process(LOGITS))[0].tolist() == expected
    assert expected != torch.isfinite(musicfw.build_sampler("top_p", p=0.8).process(LOGITS))[0].tolist()
    assert "Temperature" in repr(chain) and "TopP" in repr(chain)
    frames = build_sampler_chain([{"name": "temperature", "temperature": 0.5}, {"name": "bernoulli"}])
    assert frames.token_kinds == ("multihot",)


def test_build_sampler_chain_accepts_one_section_a_name_and_a_one_item_list():
    assert build_sampler_chain({"name": "top_k", "k": 3}).config.k == 3
    assert build_sampler_chain("greedy").name == "greedy"
    assert build_sampler_chain([{"name": "top_p", "p": 0.5}]).config.p == 0.5
    assert build_sampler_chain(None).name == "top_p"  # the default sampler


def test_build_sampler_chain_reports_mistakes_with_their_key():
    with pytest.raises(ConfigError, match=r"sampler\[1\]\.kk"):
        build_sampler_chain([{"name": "temperature"}, {"name": "top_k", "kk": 3}])
    with pytest.raises(ConfigError, match=r"sampler\.temperature must be a finite number > 0"):
        build_sampler_chain({"name": "temperature", "temperature": 0})
    with pytest.raises(ConfigError, match=r"sampler\[0\]\.p must be in \(0, 1\], got 1\.5"):
        build_sampler_chain([{"name": "top_p", "p": 1.5}])
    with pytest.raises(PluginError, match="Unknown sampler 'nucleus'"):
        build_sampler_chain({"name": "nucleus"})
    with pytest.raises(ConfigError, match="empty"):
        build_sampler_chain([])


def test_bad_values_from_the_python_api_are_config_errors():
    for name, params in (("temperature", {"temperature": -1.0}), ("top_k", {"k": 0}), ("top_p", {"p": 0.0}), ("bernoulli", {"temperature": 0.0})):
        with pytest.raises(ConfigError):
            musicfw.build_sampler(name, **params)


def test_seeded_draws_are_reproducible():
    chain = build_sampler_chain([{"name": "temperature", "temperature": 1.3}, {"name": "top_k", "k": 4}])
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(3))
    a = chain(logits, torch.Generator().manual_seed(7))
    b = chain(logits, torch.Generator().manual_seed(7))
    c = chain(logits, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_masked_logits_are_never_drawn():
    logits = torch.zeros(1000, 6)
    logits[:, [1, 4]] = float("-inf")
    gen = torch.Generator().manual_seed(0)
    for sampler in (
        build_sampler_chain("temperature"),
        build_sampler_chain({"name": "top_k", "k": 5}),
        build_sampler_chain({"name": "top_p", "p": 0.99}),
        build_sampler_chain([{"name": "temperature", "temperature": 3.0}, {"name": "top_p", "p": 0.5}]),
    ):
        ids = sampler(logits, gen)
        assert not torch.isin(ids, torch.tensor([1, 4])).any()


# --- samplers that read the history ----------------------------------------------------------


def test_repetition_penalty_matches_the_ctrl_rule():
    sampler = musicfw.build_sampler("repetition_penalty", penalty=2.0)
    assert sampler.needs_history
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [1.0, 1.0, 1.0, 1.0]])
    history = torch.tensor([[0, 1, 1], [3, 3, 3]])
    out = sampler.process(logits, history)
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0], [1.0, 1.0, 1.0, 0.5]]
    window = musicfw.build_sampler("repetition_penalty", penalty=2.0, window=1)
    assert window.process(logits, history).tolist()[0] == [2.0, -2.0, 0.5, 3.0]  # only the last id counts
    with pytest.raises(ValueError, match="needs the generated history"):
        sampler(logits)


def test_a_history_sampler_works_anywhere_in_a_chain():
    """The chain hands the history to every member that asks, first or last."""
    from musicfw.core.sampler import SamplerChain

    logits = torch.tensor([[5.0, 4.0, 0.0]])
    history = torch.tensor([[0, 0]])
    first = SamplerChain([musicfw.build_sampler("repetition_penalty", penalty=10.0), musicfw.build_sampler("top_k", k=1)])
    last = SamplerChain([musicfw.build_sampler("temperature", temperature=1.0), musicfw.build_sampler("repetition_penalty", penalty=10.0)])
    assert first.needs_history and last.needs_history
    assert first(logits, history=history).tolist() == [1]  # id 0 was penalized, then top-1
    assert torch.isfinite(last.process(logits, history)).all()
    assert last.process(logits, history)[0, 0] == pytest.approx(0.5)


def test_generation_gives_the_history_to_the_sampler():
    """In the real loop: with a strong penalty a sequence avoids repeating its ids."""
    from musicfw.engine.generation import generate

    tok = musicfw.build_tokenizer("melody")
    torch.manual_seed(0)
    model = musicfw.build_model("lstm", tokenizer=tok, hidden_size=16, num_layers=1, embed_dim=8)
    plain = generate(model, tok, musicfw.build_sampler("greedy"), n=2, max_tokens=40, seed=0)
    chain = build_sampler_chain([{"name": "repetition_penalty", "penalty": 1e6}, {"name": "greedy"}])
    penalized = generate(model, tok, chain, n=2, max_tokens=40, seed=0)
    # greedy from an untrained LSTM repeats one id; with the penalty no id repeats until all are used
    assert len(set(plain.tokens[0].tolist())) < 10
    assert len(set(penalized.tokens[0].tolist())) == 40
