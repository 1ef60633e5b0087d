"""Joint frame heads of the lstm model (head: nade | autoregressive): exact likelihood, loss,
sampling through the sampler contract, config."""

from __future__ import annotations

import itertools
import math

import pytest

torch = pytest.importorskip("torch")

import musicfw  # noqa: E402
from musicfw.core.errors import ConfigError  # noqa: E402
from musicfw.core.sampler import Sampler, SamplerChain  # noqa: E402
from musicfw.plugins.models.lstm import LSTM, LSTMConfig  # noqa: E402
from musicfw.plugins.models.lstm.heads import JointFrameOutput, MADEHead, NADEHead  # noqa: E402
from musicfw.plugins.models.lstm.model import LSTMModel  # noqa: E402
from musicfw.plugins.samplers.basic import Bernoulli, Greedy  # noqa: E402

K = 6
JOINT = ["nade", "autoregressive"]
ALL_FRAMES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=K)))  # [64, K]


def _randomize(module: torch.nn.Module, scale: float = 0.7, seed: int = 0) -> None:
    """Large random weights: a head far from its (near-independent) initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def _head(kind: str, state_size: int = 5) -> torch.nn.Module:
    head = NADEHead(state_size, K, hidden=7) if kind == "nade" else MADEHead(state_size, K, hidden=9, layers=2)
    _randomize(head)
    return head


class _Forced:
    """A 'sampler' that returns the given frame's keys and records the conditional logits."""

    token_kinds = ("multihot",)
    needs_history = False

    def __init__(self, frame: torch.Tensor):
        self.frame, self.k, self.logits = frame, 0, []

    def __call__(self, logits, generator=None, kind=None, history=None):
        assert logits.shape == (self.frame.shape[0], 1) and kind == "multihot"
        self.logits.append(logits)
        x = self.frame[:, self.k : self.k + 1]
        self.k += 1
        return x


def _sequential_log_prob(head, s: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """log p(frame | s) from the key-by-key sampling path (independent of log_prob's one pass)."""
    forced = _Forced(frames)
    drawn = head.sample(s, lambda logit, k: forced(logit, None, "multihot"))
    assert torch.equal(drawn, frames)
    logits = torch.cat(forced.logits, dim=1)
    return -torch.nn.functional.binary_cross_entropy_with_logits(logits, frames, reduction="none").sum(-1)


@pytest.mark.parametrize("kind", JOINT)
def test_probabilities_of_all_frames_sum_to_one(kind):
    torch.manual_seed(1)
    head = _head(kind)
    for _ in range(3):
        s = torch.randn(1, 5)
        logp = head.log_prob(s.expand(len(ALL_FRAMES), -1), ALL_FRAMES)
        total = logp.double().exp().sum().item()
        assert total == pytest.approx(1.0, abs=1e-5)
        # a joint head, not a product of marginals: the frame probabilities do not factor
        probs = logp.exp().view([2] * K)
        marg = [probs.sum(dim=tuple(j for j in range(K) if j != i)) for i in range(K)]
        product = marg[0].view(2, 1, 1, 1, 1, 1)
        for i in range(1, K):
            product = product * marg[i].view([1] * i + [2] + [1] * (K - i - 1))
        assert (probs - product).abs().sum().item() > 0.02  # total variation x 2
        # the one-pass training computation equals the key-by-key sampling path
        seq = _sequential_log_prob(head, s.expand(len(ALL_FRAMES), -1), ALL_FRAMES)
        assert torch.allclose(logp, seq, atol=1e-5)


@pytest.mark.parametrize("kind", JOINT)
def test_conditional_of_key_k_ignores_keys_at_and_above_k(kind):
    head = _head(kind)
    s = torch.randn(1, 5)
    base = head.conditional_logits(s, ALL_FRAMES[:1])
    for k in range(K):
        v = ALL_FRAMES[:1].clone()
        v[0, k:] = 1.0
        changed = head.conditional_logits(s, v)
        assert torch.allclose(changed[0, : k + 1], base[0, : k + 1], atol=1e-6)


def _model(kind: str, seed: int = 0) -> LSTMModel:
    torch.manual_seed(seed)
    model = LSTMModel(K, "multihot", hidden_size=5, num_layers=1, embed_dim=4, head=kind, nade_hidden=7, ar_hidden=9)
    _randomize(model.head, seed=seed)
    return model.eval()


@pytest.mark.parametrize("kind", JOINT)
def test_loss_nll_is_the_enumerated_joint_nll_of_the_scored_frames(kind):
    model = _model(kind)
    g = torch.Generator().manual_seed(3)
    tokens = (torch.rand(2, 5, K, generator=g) < 0.4).float()
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[:, 0] = False  # the first frame is not scored (the benchmark protocol)
    mask[1, 3:] = False  # padding
    out = model.loss({"tokens": tokens, "mask": mask})
    assert int(out["n_targets"]) == 6

    expected = 0.0
    with torch.no_grad():
        state = model.init_state(2)
        x = None
        for t in range(5):
            output, state = model.step(x, state)
            assert isinstance(output, JointFrameOutput)
            for b in range(2):
                if not mask[b, t]:
                    continue
                s = output.hidden[b : b + 1].expand(len(ALL_FRAMES), -1)
                table = _sequential_log_prob(model.head, s, ALL_FRAMES).double().exp()
                assert table.sum().item() == pytest.approx(1.0, abs=1e-5)
                index = int((tokens[b, t] * 2 ** torch.arange(K - 1, -1, -1)).sum())
                assert torch.equal(ALL_FRAMES[index], tokens[b, t])
                expected -= math.log(table[index].item())
            x = tokens[:, t]
    assert float(out["nll_sum"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(expected / 6, rel=1e-5)
    out["loss"].backward()  # trainable end to end
    assert model.head.cond.weight.grad is not None and model.lstm.weight_ih_l0.grad is not None


@pytest.mark.parametrize("kind", JOINT)
def test_draw_samples_the_joint_distribution(kind):
    """20,000 frames from ``draw`` (the bernoulli sampler, key by key) against the 64 enumerated
    probabilities: Pearson chi-square over the cells with expected count >= 5 (the rest pooled).
    With df <= 63 the 99.9% quantile is at most 103.4 (a correct sampler fails 1 time in 1,000 at
    most; the seed is fixed, so the test is deterministic).  Drawing the keys independently from
    their exact marginals instead would score about 230 (nade) and 22,600 (autoregressive)
    in expectation here: the test has the power to see a sampler that ignores the keys drawn."""
    model = _model(kind, seed=2)
    n = 20_000
    with torch.no_grad():
        output, _ = model.step(None, model.init_state(1))
        s = output.hidden.expand(len(ALL_FRAMES), -1)
        probs = model.head.log_prob(s, ALL_FRAMES).double().exp()
        many = JointFrameOutput(output.hidden.expand(n, -1))
        frames = model.draw(many, Bernoulli(), torch.Generator().manual_seed(0))
    assert frames.shape == (n, K)
    idx = (frames * 2 ** torch.arange(K - 1, -1, -1)).sum(-1).long()
    counts = torch.bincount(idx, minlength=64).double()
    expected = probs * n
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum().view(1)])
    exp = torch.cat([expected[big], expected[~big].sum().view(1)])
    keep = exp > 0
    chi2 = (((obs - exp) ** 2)[keep] / exp[keep]).sum().item()
    assert int(big.sum()) >= 10  # a spread-out distribution, so the test has power
    assert chi2 < 103.4, chi2


class _Record(Sampler):
    """Draws every key 0 and records the (processed) conditional logits it was given."""

    name = "record"
    token_kinds = ("multihot",)

    def __init__(self):
        self.config, self.logits = None, []

    def draw(self, logits, generator=None, kind=None):
        self.check_kind(kind)
        self.logits.append(logits)
        return torch.zeros_like(logits)


def test_temperature_and_greedy_apply_to_every_conditional():
    model = _model("nade", seed=4)
    with torch.no_grad():
        output, _ = model.step(None, model.init_state(3))
        plain = _Record()
        model.draw(output, plain)
        cold = _Record()
        model.draw(output, SamplerChain([Bernoulli(Bernoulli.Config(temperature=0.5)), cold]))
        assert len(plain.logits) == len(cold.logits) == K
        for a, b in zip(plain.logits, cold.logits):
            assert a.shape == (3, 1)
            assert torch.allclose(b, a / 0.5)
        # greedy: each conditional thresholded at 1/2, given the keys chosen before it
        greedy = model.draw(output, Greedy())
        logits = model.head.conditional_logits(output.hidden, greedy)
        assert torch.equal(greedy, (logits > 0).float())
        # a temperature near 0 turns the bernoulli sampler into greedy
        near = model.draw(output, Bernoulli(Bernoulli.Config(temperature=1e-6)), torch.Generator().manual_seed(0))
        assert torch.equal(near, greedy)


def test_bernoulli_head_is_unchanged():
    torch.manual_seed(0)
    model = LSTMModel(K, "multihot", hidden_size=5, num_layers=1, embed_dim=4)
    assert isinstance(model.head, torch.nn.Linear)
    logits, _ = model.step(None, model.init_state(2))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, K)


class _Tok:
    def __init__(self, kind):
        self.kind, self.vocab_size, self.name = kind, 12, "toy"


def test_config_rejects_a_joint_head_on_token_ids_and_unknown_heads():
    with pytest.raises(ConfigError, match="multi-hot"):
        LSTM.from_config(LSTMConfig(head="nade", hidden_size=4, embed_dim=4, num_layers=1), tokenizer=_Tok("categorical"))
    # single-field values are checked by core against the Config's declarations (musicfw.build)
    with pytest.raises(ConfigError, match="model.head"):
        musicfw.build_model("lstm", tokenizer=_Tok("multihot"), head="rbm", hidden_size=4, embed_dim=4, num_layers=1)
    with pytest.raises(ConfigError, match="nade_hidden"):
        musicfw.build_model("lstm", tokenizer=_Tok("multihot"), head="nade", nade_hidden=0)
    model = LSTM.from_config(LSTMConfig(head="autoregressive", hidden_size=4, embed_dim=4, num_layers=1),
                             tokenizer=_Tok("multihot"))
    assert isinstance(model.head, MADEHead)


def test_yaml_head_choice_is_validated(tmp_path):
    import musicfw

    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: x\ndata: {name: piano_roll_benchmark, dataset: jsb_chorales}\ntokenizer: {name: pianoroll}\n"
        "model: {name: lstm, head: made}\n"
    )
    with pytest.raises(ConfigError, match="nade"):
        musicfw.load_config(str(path))


def test_nade_chunked_computation_matches_one_pass(monkeypatch):
    head = _head("nade")
    s, v = torch.randn(50, 5, requires_grad=True), (torch.rand(50, K) < 0.5).float()
    whole = head.log_prob(s, v)
    (g_whole,) = torch.autograd.grad(whole.sum(), s)
    monkeypatch.setattr(NADEHead, "CHUNK", 16)
    chunked = head.log_prob(s, v)
    (g_chunked,) = torch.autograd.grad(chunked.sum(), s)
    assert torch.allclose(whole, chunked, atol=1e-6) and torch.allclose(g_whole, g_chunked, atol=1e-6)
