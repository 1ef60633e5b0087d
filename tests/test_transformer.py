"""The ``transformer`` model plugin: KV-cached ``step`` against the full forward pass (every
position, every position mode, with and without the sliding window), the skewed relative
attention against the naive formulation, the optimizer hook, and bad configs."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

import musicfw  # noqa: E402
from musicfw.core.errors import ConfigError  # noqa: E402

from conftest import REPO, TEST_MIDI, run_cli  # noqa: E402

POSITIONS = ("relative", "rope", "absolute")


class _Vocab:
    """The tokenizer context a model needs: a vocabulary size and a token kind."""

    def __init__(self, size: int, kind: str = "categorical"):
        self.vocab_size, self.kind = size, kind


def tiny(position: str, kind: str = "categorical", max_context: int = 8, vocab: int = 13, **kw):
    torch.manual_seed(0)
    params = dict(d_model=16, num_layers=2, num_heads=2, d_ff=32, dropout=0.0, max_context=max_context, position=position)
    params.update(kw)
    return musicfw.build_model("transformer", tokenizer=_Vocab(vocab, kind), **params).eval().double()


def stepped(model, tokens):
    """Logits of every position from ``step`` (the generation path), [B, T, V]."""
    state = model.init_state(tokens.shape[0])
    outs = []
    x = None
    for t in range(tokens.shape[1]):
        logits, state = model.step(x, state)
        outs.append(logits)
        x = tokens[:, t]
    return torch.stack(outs, 1)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("length", [7, 8, 37])  # inside the window, exactly full, sliding 4x over
def test_step_equals_forward_at_every_position(position, length):
    model = tiny(position)
    tokens = torch.randint(0, 13, (3, length), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(tokens)
        inc = stepped(model, tokens)
    assert full.shape == inc.shape == (3, length, 13)
    torch.testing.assert_close(inc, full, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("position", ("relative", "rope"))
def test_past_the_window_each_layer_sees_only_its_last_max_context_positions(position):
    """Past max_context the rolling cache is sliding-window attention: with ONE layer the
    logits at t are exactly a fresh forward pass over the last C tokens; a token older than
    the window cannot change them."""
    C = 8
    model = tiny(position, num_layers=1, max_context=C)
    tokens = torch.randint(0, 13, (2, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        inc = stepped(model, tokens)
        for t in range(C, 30):
            # inputs at positions t-C+1 .. t are tokens t-C .. t-1; a window forward over
            # tokens[t-C : t+1] has inputs start, tokens[t-C] .. tokens[t-1]: drop its first
            window = model(tokens[:, t - C : t + 1])[:, -1]
            torch.testing.assert_close(inc[:, t], window, rtol=1e-9, atol=1e-9)
        other = tokens.clone()
        other[:, 0] = (other[:, 0] + 1) % 13  # input at position 1 only
        changed = stepped(model, other)
    assert not torch.allclose(changed[:, 1], inc[:, 1])
    torch.testing.assert_close(changed[:, C + 1 :], inc[:, C + 1 :], rtol=1e-9, atol=1e-9)


def test_absolute_positions_recompute_the_kept_half_once_per_slide():
    """absolute: when the window is full the last C//2 inputs are re-encoded at positions
    0 .. C//2-1 (a fresh forward over them), then decoding continues from there."""
    C = 8
    model = tiny("absolute", max_context=C)
    tokens = torch.randint(0, 13, (2, 21), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        inc = stepped(model, tokens)
        # the token at position t = 13: slides happened at t = 8 (window from 4) and t = 12
        # (window from 8): it is predicted from inputs 8..13, i.e. tokens 7..12
        window = model._run(model._embed(tokens[:, 7:13]))[0][:, -1]  # a fresh pass, positions 0..5
    torch.testing.assert_close(inc[:, 13], window, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("position", POSITIONS)
def test_frames_step_equals_forward(position):
    model = tiny(position, kind="multihot", vocab=10)
    frames = (torch.rand(2, 20, generator=torch.Generator().manual_seed(4))[..., None] > torch.rand(10)).double()
    with torch.no_grad():
        torch.testing.assert_close(stepped(model, frames), model(frames), rtol=1e-9, atol=1e-9)
    out = model.loss({"tokens": frames, "mask": torch.ones(2, 20, dtype=torch.bool)})
    # Bernoulli NLL summed over the 10 keys of each frame, 40 scored frames
    assert int(out["n_targets"]) == 40
    logits = model(frames)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, frames, reduction="sum")
    torch.testing.assert_close(out["nll_sum"].double(), expected, rtol=1e-5, atol=1e-4)


def test_skewed_relative_logits_equal_the_naive_gather():
    from musicfw.plugins.models.transformer.model import relative_logits_naive

    model = tiny("relative", max_context=16)
    block = model.blocks[0]
    q = torch.randn(2, 2, 11, 8, dtype=torch.double)
    skewed = block.relative_bias(q)
    naive = relative_logits_naive(q, block.rel.detach())
    causal = torch.ones(11, 11, dtype=torch.bool).tril()
    torch.testing.assert_close(skewed[..., causal], naive[..., causal])


def test_relative_attention_uses_the_distance():
    """The relative table matters: two identical inputs at different distances from the
    query get different attention logits (a bug that indexed E_r by the key's absolute
    position or ignored it would pass the step/forward test but not this one)."""
    model = tiny("relative", max_context=16)
    block = model.blocks[0]
    q = torch.randn(1, 2, 5, 8, dtype=torch.double)
    bias = block.relative_bias(q)
    table = block.rel.detach()
    for i in range(5):
        for j in range(i + 1):
            torch.testing.assert_close(bias[0, :, i, j], (q[0, :, i] * table[:, i - j]).sum(-1))


@pytest.mark.parametrize("steps", [5, 8, 9, 19])  # before, at and past the ring's wrap (C = 8)
def test_step_bias_puts_each_slots_distance_in_place(steps):
    """The KV cache's relative bias (a flip, rolled once the ring wraps) equals the gather of
    each slot's own distance, ``q . E[(r - s) mod C]`` for slot s (r: the newest slot), bit
    for bit, so generated tokens do not change with the layout."""
    import math

    C = 8
    model = tiny("relative", max_context=C)
    state = model.init_state(3)
    x = None
    with torch.no_grad():
        for t in range(steps):
            _, state = model.step(x, state)
            x = torch.full((3,), t % 13)
    block = model.blocks[0]
    q = torch.randn(3, 2, 1, 8, dtype=torch.double)
    n, r = state.n, (state.pos - 1) % C
    dist = torch.remainder(r - torch.arange(n), C)
    expected = torch.stack([(q[:, :, 0] * block.rel.detach()[:, d]).sum(-1) for d in dist.tolist()], -1)
    got = block.step_bias(q, state)
    assert got.shape == (3, 2, 1, n)
    torch.testing.assert_close(got[:, :, 0], expected / math.sqrt(8), rtol=1e-12, atol=1e-12)
    gathered = q_times_table_of(block, q, n)[..., dist] / math.sqrt(8)
    assert torch.equal(got, gathered)  # the old gather: the same values, bit for bit


def q_times_table_of(block, q, n):
    from musicfw.plugins.models.transformer.model import q_times_table

    return q_times_table(q, block.rel.detach()[:, :n])


@pytest.mark.parametrize("position", POSITIONS)
def test_the_cache_holds_the_forward_passs_keys_transposed_and_its_values(position):
    """The KV cache layout (keys transposed, [B, H, Dh, slots], for the fast q K^T read;
    values [B, H, slots, Dh]): after T steps its filled slots hold exactly the keys and values
    that the full forward pass computes for those T positions."""
    T = 6
    model = tiny(position)
    tokens = torch.randint(0, 13, (2, T), generator=torch.Generator().manual_seed(4))
    state = model.init_state(2)
    x = None
    with torch.no_grad():
        for t in range(T):
            _, state = model.step(x, state)
            x = tokens[:, t]
        _, kvs = model._run(model._inputs(tokens), collect=True)
    for layer, (k, v) in enumerate(kvs):
        assert state.k[layer].shape[:3] == (2, 2, 8) and state.v[layer].shape[-1] == 8
        torch.testing.assert_close(state.k[layer][..., :T], k.transpose(-1, -2), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(state.v[layer][:, :, :T], v, rtol=1e-12, atol=1e-12)


def test_training_windows_longer_than_the_context_are_refused():
    model = tiny("relative", max_context=8).train()
    tokens = torch.zeros(1, 9, dtype=torch.long)
    with pytest.raises(ConfigError, match="max_context"):
        model.loss({"tokens": tokens, "mask": torch.ones(1, 9, dtype=torch.bool)})
    model.eval()  # evaluation scores long pieces with the sliding window
    assert int(model.loss({"tokens": tokens, "mask": torch.ones(1, 9, dtype=torch.bool)})["n_targets"]) == 9


def test_optimizer_decays_matrices_only_with_warmup_and_cosine():
    from musicfw.engine.config import TrainSection

    model = tiny("relative").float()
    train = TrainSection(lr=1e-3, weight_decay=0.1, lr_schedule="cosine", warmup_steps=10)
    conf = model.configure_optimizers(train, 100)
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert isinstance(opt, torch.optim.AdamW)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.ndim >= 2), name
    assert any(p is model.blocks[0].rel for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"])
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-4)  # warm-up: 1/10 of the lr at the first step
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs[9] == pytest.approx(1e-3) and lrs[-1] < 1e-5  # then cosine down to ~0


def test_a_tiny_transformer_learns_a_copy_task():
    """Training works end to end through the loss: a 2-layer model learns sequences that
    repeat with period 5 (the second half is predictable only through attention)."""
    torch.manual_seed(0)
    model = musicfw.build_model(
        "transformer", tokenizer=_Vocab(12), d_model=32, num_layers=2, num_heads=4, d_ff=64,
        dropout=0.0, max_context=32,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    mask = torch.zeros(32, 30, dtype=torch.bool)
    mask[:, 10:] = True
    for _ in range(150):
        base = torch.randint(0, 12, (32, 5))
        tokens = base.repeat(1, 6)
        loss = model.loss({"tokens": tokens, "mask": mask})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2  # chance is log(12) = 2.48


@pytest.mark.parametrize(
    "params, message",
    [
        ({"num_heads": 3}, "num_heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.5}, "dropout"),
        ({"max_context": 0}, "max_context"),
        ({"position": "rope", "d_model": 12, "num_heads": 4}, "even head size"),
    ],
)
def test_bad_model_values_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        musicfw.build_model("transformer", tokenizer=_Vocab(10), **params)


TINY = [
    "data.max_count=12",
    "train.batch_size=4",
    "train.seq_len=32",
    "train.max_steps=2",
    "train.max_epochs=1",
    "model.d_model=16",
    "model.num_layers=1",
    "model.num_heads=2",
    "model.d_ff=32",
    "model.max_context=64",
    "generate.n=2",
    "generate.max_tokens=40",
    "generate.render_audio=false",
    "evaluate.max_reference=8",
    "logger.name=none",
]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["model.num_heads=3"], "num_heads"),
        (["model.dropout=1.5"], "dropout"),
        (["model.dropout=-0.1"], "dropout"),
        (["train.seq_len=128"], "max_context"),
        ([f"generate.prompt={TEST_MIDI / 'one_track'}/PLACEHOLDER", "model.max_context=16", "train.seq_len=16"], "prompt"),
    ],
)
def test_bad_input_through_the_cli_is_one_error_exit_2_and_no_run_folder(extra, message, tmp_path, corpus_cache):
    if "PLACEHOLDER" in extra[0]:
        prompt = sorted((TEST_MIDI / "one_track").glob("*.mid"))[0]
        extra = [f"generate.prompt={prompt}", *extra[1:]]
    out = tmp_path / "runs"
    result = run_cli(
        "run", "examples/transformer_chorales.yaml", f"output_dir={out}", *TINY, *extra,
        cwd=REPO, env={"MUSICFW_CACHE_DIR": str(corpus_cache)},
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
