"""The Transformer's one-pass prefill fills the (rolling) KV cache as a step per token does:
the same logits, and the same logits for the steps after it, to float tolerance (1e-5: a
batched product sums in another order than a step's matrix-vector one, so bit equality is
not possible); and seeded draws after a prompt are the same tokens."""

import numpy as np
import pytest
import torch

from plugins.models.transformer.model import TransformerModel


def _pair(position, C, T, after=6, batch=2, seed=0):
    torch.manual_seed(seed)
    m = TransformerModel(40, d_model=16, num_layers=2, num_heads=2, d_ff=32, max_context=C, position=position).eval()
    xs = torch.randint(0, 40, (batch, T))
    nxt = torch.randint(0, 40, (batch, after))
    with torch.no_grad():
        a = m.init_state(batch)
        _, a = m.step(None, a)
        slow = None
        for t in range(T):
            slow, a = m.step(xs[:, t], a)
        b = m.init_state(batch)
        _, b = m.step(None, b)
        fast, b = m.prefill(xs, b)
        assert (a.pos, a.n, a.start) == (b.pos, b.n, b.start)
        outs = [(slow, fast)]
        for t in range(after):  # the cache it left must serve the next steps too
            sa, a = m.step(nxt[:, t], a)
            sb, b = m.step(nxt[:, t], b)
            outs.append((sa, sb))
    return outs


@pytest.mark.parametrize("position", ["relative", "rope", "absolute"])
@pytest.mark.parametrize("C,T", [(32, 31), (16, 40)])
def test_prefill_equals_the_step_loop(position, C, T):
    # (32, 31): fills the window exactly; (16, 40): past it (the ring wraps or the
    # absolute window slides during the rest, which goes a step per token)
    for slow, fast in _pair(position, C, T):
        assert torch.allclose(slow, fast, atol=1e-5), (position, C, T, (slow - fast).abs().max())


def test_prefill_in_generate_gives_the_same_draws():
    import symusic

    from musicfw.api import build_model, build_sampler, build_tokenizer
    from musicfw.engine.generation import generate

    tok = build_tokenizer("remi")
    score = symusic.Score(480)
    track = symusic.Track()
    for i in range(24):
        track.notes.append(symusic.Note(i * 240, 240, 60 + (i * 5) % 12, 80))
    score.tracks.append(track)
    torch.manual_seed(1)
    model = build_model("transformer", tokenizer=tok, d_model=32, num_layers=2, num_heads=2, d_ff=64)
    draws = [generate(model, tok, build_sampler("temperature"), n=2, batch_size=2, max_tokens=30, prompt=score,
                      seed=7, prefill=p).tokens for p in (False, True)]
    assert [d.tolist() for d in draws[0]] == [d.tolist() for d in draws[1]]
    assert len(np.asarray(tok.encode(score))) > 30  # a real prompt, not an empty one


def test_prefill_is_one_pass_not_a_loop(monkeypatch):
    torch.manual_seed(0)
    m = TransformerModel(40, d_model=16, num_layers=1, num_heads=2, d_ff=32, max_context=64).eval()
    calls = []
    orig = TransformerModel.step
    monkeypatch.setattr(TransformerModel, "step", lambda self, x, s: calls.append(1) or orig(self, x, s))
    with torch.no_grad():
        s = m.init_state(1)
        s.pos = s.pos  # no step yet: prefill from an empty cache works too
        m.prefill(torch.randint(0, 40, (1, 50)), s)
    assert calls == []
