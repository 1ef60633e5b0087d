"""MusicVAE unit tests on synthetic tensors (no corpus, no tokenizer files needed)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from musicfw.core.errors import ConfigError, PluginError  # noqa: E402
from musicfw.plugins.models.musicvae import MusicVAE, MusicVAEConfig  # noqa: E402
from musicfw.plugins.models.musicvae.model import (  # noqa: E402
    MusicVAEModel,
    _lengths,
    evaluate_vae,
    slerp,
)

torch.set_num_threads(1)

V = 130


class FakeTokenizer:
    name = "fake"
    kind = "categorical"
    vocab_size = V


def small(decoder: str = "flat", **kw) -> MusicVAEModel:
    cfg = MusicVAEConfig(
        decoder=decoder, z_size=8, enc_rnn_size=[16], dec_rnn_size=[16, 12], steps_per_bar=4,
        max_seq_len=12, **kw,
    )
    torch.manual_seed(0)
    return MusicVAE.from_config(cfg, tokenizer=FakeTokenizer())


def batch(b: int = 3, t: int = 12, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"tokens": torch.randint(0, V, (b, t), generator=g), "mask": torch.ones(b, t, dtype=torch.bool)}


# -- configuration ------------------------------------------------------------------------


def test_config_is_an_omegaconf_schema_and_defaults_match_cat_mel_2bar_small():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(MusicVAEConfig), {"dec_rnn_size": [64]}))
    assert cfg.dec_rnn_size == [64]
    d = MusicVAEConfig()
    assert (d.z_size, d.enc_rnn_size, d.dec_rnn_size) == (256, [512], [256, 256])
    assert (d.free_bits, d.max_beta, d.beta_rate) == (0.0, 0.2, 0.99999)
    assert (d.sampling_schedule, d.sampling_rate) == ("inverse_sigmoid", 1000.0)


@pytest.mark.parametrize(
    "change",
    [
        {"sampling_schedule": "inverse_sigmoid", "sampling_rate": 0.5},
        {"sampling_schedule": "constant", "sampling_rate": 1.5},
        {"sampling_schedule": "exponential", "sampling_rate": 1.0},
        {"dec_rnn_size": []},
        {"beta_rate": 1.5},
        {"dropout_keep_prob": 0.0},
    ],
)
def test_bad_hyperparameters_are_user_errors(change):
    import musicfw

    with pytest.raises(ConfigError):  # through the validated API: declared bounds and cross-field checks
        musicfw.build_model("musicvae", tokenizer=FakeTokenizer(), **change)
    if "sampling_rate" in change:  # a check across fields also holds for a Config built by hand
        with pytest.raises(ConfigError):
            MusicVAE.from_config(replace(MusicVAEConfig(), **change), tokenizer=FakeTokenizer())


def test_needs_a_categorical_tokenizer():
    class Roll(FakeTokenizer):
        kind = "multihot"

    with pytest.raises(PluginError, match="categorical"):
        MusicVAE.from_config(MusicVAEConfig(), tokenizer=Roll())
    with pytest.raises(ConfigError, match="drum_roll"):
        MusicVAE.from_config(MusicVAEConfig(encoder_input="drum_roll"), tokenizer=FakeTokenizer())


def test_registration_module_is_cheap():
    import subprocess
    import sys

    code = (
        "import sys; import musicfw.plugins.models.musicvae as m; "
        "assert 'torch' not in sys.modules, 'torch imported at registration'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- encoder -------------------------------------------------------------------------------


def test_encoder_architecture_and_posterior():
    m = small()
    assert m.encoder.bidirectional and m.encoder.layers[0].input_size == V
    b = batch()
    mu, sigma = m.encode(b["tokens"])
    assert mu.shape == sigma.shape == (3, 8)
    assert bool((sigma > 0).all())
    # sigma = softplus(dense(h)), mu = dense(h) with h = [h_fw_final, h_bw_final]
    _, state = m.encoder(torch.nn.functional.one_hot(b["tokens"], V).float())
    h = torch.cat([state[-1][0][0], state[-1][0][1]], dim=-1)
    torch.testing.assert_close(mu, m.mu(h))
    torch.testing.assert_close(sigma, torch.nn.functional.softplus(m.sigma(h)))


def test_encoder_respects_the_mask_length():
    m = small()
    b = batch()
    mask = b["mask"].clone()
    mask[0, 7:] = False
    mu, _ = m.encode(b["tokens"], mask)
    mu0, _ = m.encode(b["tokens"][:1, :7])
    torch.testing.assert_close(mu[0], mu0[0])
    full, _ = m.encode(b["tokens"][1:])
    torch.testing.assert_close(mu[1:], full)
    assert _lengths(mask).tolist() == [7, 12, 12]


def test_drum_roll_encoder_input_is_bits_plus_empty_flag():
    class Drums(FakeTokenizer):
        vocab_size = 512

    m = MusicVAE.from_config(
        replace(MusicVAEConfig(), encoder_input="drum_roll", z_size=4, enc_rnn_size=[8], dec_rnn_size=[8]),
        tokenizer=Drums(),
    )
    x = m._encoder_input(torch.tensor([[0, 1, 5, 511]]))
    assert x.shape == (1, 4, 10)
    assert x[0, 0].tolist() == [0] * 9 + [1]
    assert x[0, 2].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert x[0, 3].tolist() == [1] * 9 + [0]


# -- loss ----------------------------------------------------------------------------------


def test_kl_and_loss_match_the_magenta_formula():
    m = small(free_bits=1.0, max_beta=0.5, beta_rate=0.99)
    m.train()
    m.on_train_step(10)
    b = batch()
    torch.manual_seed(3)
    out = m.loss(b)
    # the same draw of eps again: recompute every term by hand
    torch.manual_seed(3)
    mu, sigma = m.encode(b["tokens"])
    eps = torch.randn_like(mu)
    q = torch.distributions.Normal(mu, sigma)
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(sigma))
    kl = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(out["kl"], kl.mean())
    beta = (1 - 0.99**10) * 0.5
    assert float(out["beta"]) == pytest.approx(beta)
    prob = m.sampling_probability()
    assert prob == pytest.approx(1 - 1000 / (1000 + math.exp(10 / 1000)))
    kl_cost = torch.clamp(kl - 1.0 * math.log(2), min=0).mean()
    torch.testing.assert_close(out["kl_cost"], kl_cost)
    torch.testing.assert_close(out["loss"], out["recon_nll"] + beta * kl_cost)
    torch.testing.assert_close(out["nll_sum"], (out["recon_nll"] + out["kl"]) * 3)
    assert int(out["n_targets"]) == 36
    _ = eps


def test_free_bits_switch_off_the_kl_cost_and_beta_starts_at_zero():
    m = small(free_bits=1e6)
    m.train()
    out = m.loss(batch())
    assert float(out["kl_cost"]) == 0.0
    torch.testing.assert_close(out["loss"], out["recon_nll"])
    m.on_train_step(0)
    assert m.beta() == 0.0
    assert m.beta(10**9) == pytest.approx(0.2)


def test_masked_positions_are_not_scored():
    m = small(sampling_schedule="constant", sampling_rate=0.0)
    m.eval()
    b = batch()
    b["mask"][:, 6:] = False
    torch.manual_seed(0)
    out = m.loss(b)
    b2 = {"tokens": b["tokens"].clone(), "mask": b["mask"]}
    b2["tokens"][:, 6:] = 0
    torch.manual_seed(0)
    out2 = m.loss(b2)
    assert int(out["n_targets"]) == 18
    torch.testing.assert_close(out["recon_nll"], out2["recon_nll"])


def test_sampling_schedules():
    m = small(sampling_schedule="inverse_sigmoid", sampling_rate=1000)
    assert m.sampling_probability(0) == pytest.approx(1 - 1000 / 1001)
    assert m.sampling_probability(int(1000 * math.log(1000))) == pytest.approx(0.5, abs=1e-3)
    assert m.sampling_probability(10**7) == pytest.approx(1.0)
    m = small(sampling_schedule="exponential", sampling_rate=0.9)
    assert m.sampling_probability(2) == pytest.approx(1 - 0.81)
    m = small(sampling_schedule="constant", sampling_rate=0.0)
    assert m.sampling_probability(10**6) == 0.0


def test_eval_loss_is_teacher_forced_and_training_loss_samples():
    m = small(sampling_schedule="constant", sampling_rate=1.0)
    b = batch()
    m.eval()
    torch.manual_seed(0)
    ev = m.loss(b)
    assert float(ev["sampling_probability"]) == 0.0
    m.train()
    torch.manual_seed(0)
    tr = m.loss(b)
    assert float(tr["sampling_probability"]) == 1.0
    assert not torch.allclose(ev["recon_nll"], tr["recon_nll"])


def test_scheduled_sampling_feeds_the_models_own_samples():
    m = small()
    m.eval()
    b = batch(b=2, t=6)
    z = torch.randn(2, 8)
    x_in = torch.cat([torch.full((2, 1), -1), b["tokens"][:, :-1]], dim=1)
    got = m.decoder(x_in, z, 1.0, torch.Generator().manual_seed(5))
    # by hand: every input after the first is a sample from the previous step's softmax
    g = torch.Generator().manual_seed(5)
    torch.rand(2, 6, generator=g)  # the selection draw (all True at p = 1)
    state = m.state_from_z(z)
    logits, state = m.step(None, state)
    want = [logits]
    for _ in range(5):
        x = torch.multinomial(torch.softmax(logits, -1), 1, generator=g).squeeze(-1)
        logits, state = m.step(x, state)
        want.append(logits)
    torch.testing.assert_close(got, torch.stack(want, 1))
    # p = 0 is pure teacher forcing
    torch.testing.assert_close(m.decoder(x_in, z, 0.0), m.decode_logits(b["tokens"], z))


# -- decoders ------------------------------------------------------------------------------


@pytest.mark.parametrize("decoder", ["flat", "hierarchical"])
@pytest.mark.parametrize("t", [12, 10])
def test_step_protocol_matches_the_teacher_forced_pass(decoder, t):
    m = small(decoder)
    m.eval()
    b = batch(t=t)
    z = torch.randn(3, 8)
    full = m.decode_logits(b["tokens"], z)
    state, x, steps = m.state_from_z(z), None, []
    for i in range(t):
        logits, state = m.step(x, state)
        steps.append(logits)
        x = b["tokens"][:, i]
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    # init_state draws z from the prior
    st = m.init_state(4)
    assert st["z"].shape == (4, 8)
    logits, st = m.step(None, st)
    assert logits.shape == (4, V)


def test_flat_decoder_initial_state_and_inputs():
    m = small("flat")
    z = torch.randn(2, 8)
    state = m.decoder.initial_state(z)
    flat = torch.tanh(m.decoder.initial_state.dense(z))
    # Magenta's flattened order: (c0, h0, c1, h1)
    torch.testing.assert_close(state[0][1][0], flat[:, :16])
    torch.testing.assert_close(state[0][0][0], flat[:, 16:32])
    torch.testing.assert_close(state[1][0][0], flat[:, 32 + 12 :])
    assert m.decoder.rnn.layers[0].input_size == V + 8  # one-hot previous token + z
    assert not hasattr(m, "conductor")


def test_hierarchical_decoder_structure():
    m = small("hierarchical")
    m.eval()
    assert m.conductor.layers[0].input_size == 1  # zero inputs
    assert m.decoder.rnn.layers[0].input_size == V + 12  # token + conductor output, no z
    b = batch()
    z = torch.randn(3, 8)
    base = m.decode_logits(b["tokens"], z)
    # the bar decoder is reset every bar: tokens of bar 0 other than its last one (which is
    # bar 1's first input) do not reach bar 1
    changed = b["tokens"].clone()
    changed[:, :3] = (changed[:, :3] + 1) % V
    other = m.decode_logits(changed, z)
    torch.testing.assert_close(other[:, 4:], base[:, 4:])
    assert not torch.allclose(other[:, 1:4], base[:, 1:4])
    changed[:, 3] = (changed[:, 3] + 1) % V
    assert not torch.allclose(m.decode_logits(changed, z)[:, 4], base[:, 4])
    # a flat decoder carries the change on
    f = small("flat")
    f.eval()
    assert not torch.allclose(f.decode_logits(changed, z)[:, 8:], f.decode_logits(b["tokens"], z)[:, 8:])


def test_slerp():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    # on the arc: the angle is halved
    assert float(mid[0]) == pytest.approx(float(mid[1]) / 2, rel=1e-5)
    torch.testing.assert_close(slerp(a, 2 * a, 0.5), 1.5 * a)  # parallel: linear


def test_training_overfits_and_interpolation_endpoints_reconstruct():
    torch.manual_seed(0)
    cfg = MusicVAEConfig(
        z_size=16, enc_rnn_size=[32], dec_rnn_size=[48], max_seq_len=12, max_beta=0.0,
        sampling_schedule="constant", sampling_rate=0.0,
    )
    m = MusicVAE.from_config(cfg, tokenizer=FakeTokenizer())
    data = batch(b=6, t=12, seed=7)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    for step in range(300):
        m.on_train_step(step)
        opt.zero_grad()
        out = m.loss(data)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    metrics = evaluate_vae(m, [data])
    assert metrics["teacher_forced_accuracy"] > 0.9, metrics
    assert metrics["greedy_accuracy"] > 0.8, metrics
    assert 0 <= metrics["sampled_accuracy"] <= 1
    assert metrics["elbo"] < 0 and metrics["kl"] > 0
    path = m.interpolate(data["tokens"][0], data["tokens"][1], steps=5)
    assert path.shape == (5, 12)
    assert float((path[0] == data["tokens"][0]).float().mean()) > 0.8
    assert float((path[-1] == data["tokens"][1]).float().mean()) > 0.8


def test_sample_is_reproducible_and_in_range():
    m = small("hierarchical")
    m.eval()
    a = m.sample(3, temperature=1.0, generator=torch.Generator().manual_seed(1))
    b = m.sample(3, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 12) and torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) < V
    greedy = m.decode(torch.zeros(2, 8), length=5, temperature=0)
    assert torch.equal(greedy[0], greedy[1])


def test_long_sequences_are_scored_as_segments():
    from musicfw.plugins.models.musicvae.model import segments

    m = small(sampling_schedule="constant", sampling_rate=0.0)  # max_seq_len 12
    m.eval()
    long = batch(b=2, t=30, seed=4)
    long["mask"][1, 20:] = False
    toks, mask = segments(long["tokens"], long["mask"], 12)
    # 2 x 3 segments, minus row 1's last one (positions 24..29 all unscored)
    assert toks.shape == (5, 12) and int(mask.sum()) == 30 + 20
    torch.manual_seed(0)
    whole = m.loss(long)
    torch.manual_seed(0)
    parts = m.loss({"tokens": toks, "mask": mask})
    assert int(whole["n_targets"]) == 50
    torch.testing.assert_close(whole["nll_sum"], parts["nll_sum"])


def test_built_through_the_registry_with_the_melody_tokenizer():
    import musicfw

    if "musicvae" not in musicfw.list_plugins()["models"]:
        pytest.fail("musicvae is not registered in plugins/models/__init__.py")
    if "melody" not in musicfw.list_plugins()["tokenizers"]:
        pytest.skip("the melody tokenizer plugin is not installed")
    tok = musicfw.build_tokenizer("melody", min_pitch=21, max_pitch=108)
    m = musicfw.build_model(
        "musicvae", tokenizer=tok, z_size=4, enc_rnn_size=[8], dec_rnn_size=[8, 8],
        decoder="hierarchical", max_seq_len=32,
    )
    assert m.vocab_size == tok.vocab_size == 90
    tokens = m.sample(2, length=32, generator=torch.Generator().manual_seed(0))
    score = tok.decode(tokens[0].numpy())
    assert score is not None
    with pytest.raises(ConfigError):
        musicfw.build_model("musicvae", tokenizer=tok, sampling_schedule="nope")
