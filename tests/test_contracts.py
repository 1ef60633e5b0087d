"""The model contract's optional hooks, as core reads them: max_context (sliding-window
scoring), configure_optimizers, on_train_step, draw, and the check that a model speaks it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import musicfw
from musicfw.core.errors import PluginError
from musicfw.core.model import Model, check_model
from musicfw.engine.training import evaluate_nll
from musicfw.engine.windows import scored_loss, window_starts


class Bigram(Model, torch.nn.Module):
    """p(x_t | x_{t-1}): its NLL does not depend on how much context precedes a position."""

    def __init__(self, V=7, max_context=None):
        super().__init__()
        torch.manual_seed(0)
        self.V = V
        self.max_context = max_context
        self.table = torch.nn.Parameter(torch.randn(V + 1, V))
        self.seen_lengths: list[int] = []

    def loss(self, batch):
        tokens, mask = batch["tokens"], batch["mask"]
        self.seen_lengths.append(int(tokens.shape[1]))
        prev = torch.cat([torch.full_like(tokens[:, :1], self.V), tokens[:, :-1]], 1)
        nll = F.cross_entropy(self.table[prev].transpose(1, 2), tokens, reduction="none") * mask
        return {"loss": nll.sum() / mask.sum(), "nll_sum": nll.sum().detach(), "n_targets": mask.sum()}


def test_windows_cover_every_position_once():
    for length, context, stride in [(10, 4, 2), (10, 4, 4), (9, 4, 1), (3, 4, 2), (100, 16, 5)]:
        scored = []
        for start, end, first in window_starts(length, context, stride):
            assert end - start <= context and first >= start
            scored.extend(range(first, end))
        assert scored == list(range(length)), (length, context, stride)


def test_sliding_window_scoring_equals_the_full_loss_for_a_bigram():
    tokens = torch.randint(0, 7, (3, 50), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[2, 40:] = False  # padding stays unscored
    batch = {"tokens": tokens, "mask": mask}
    full = Bigram().loss(batch)
    windowed_model = Bigram(max_context=16)
    windowed = scored_loss(windowed_model, batch, stride=5)
    assert max(windowed_model.seen_lengths) == 16  # never longer than the context
    assert int(windowed["n_targets"]) == int(full["n_targets"]) == 140
    assert float(windowed["nll_sum"]) == pytest.approx(float(full["nll_sum"]), rel=1e-6)
    result = evaluate_nll(Bigram(max_context=16), [batch])
    assert result["n_targets"] == 140 and result["nll_sum"] == pytest.approx(float(full["nll_sum"]), rel=1e-6)


def test_fit_refuses_training_windows_longer_than_the_context(tmp_path):
    from musicfw.core.errors import ConfigError
    from musicfw.engine.training import fit

    with pytest.raises(ConfigError, match=r"train.seq_len=64 is longer than the model's context \(max_context=16\)"):
        fit(Bigram(max_context=16), None, {"seq_len": 64}, tmp_path, logger={"name": "none"})


def test_the_lightning_module_asks_the_model_for_its_optimizer():
    from omegaconf import OmegaConf

    from musicfw.engine.config import TrainSection
    from musicfw.engine.lightning import MusicLightningModule

    class OwnOptimizer(Bigram):
        def configure_optimizers(self, train, total_steps):
            self.asked = (train.lr, total_steps)
            return torch.optim.SGD(self.parameters(), lr=train.lr)

    model = OwnOptimizer()
    module = MusicLightningModule(model, OmegaConf.structured(TrainSection(lr=0.25)))

    class FakeTrainer:
        estimated_stepping_batches = 123

    module._trainer = FakeTrainer()  # what Lightning sets before calling configure_optimizers
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and model.asked == (0.25, 123)
    default = MusicLightningModule(Bigram(), OmegaConf.structured(TrainSection(lr=0.5, weight_decay=0.1)))
    default._trainer = FakeTrainer()
    adamw = default.configure_optimizers()
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.1


def test_a_model_that_does_not_speak_the_contract_is_named():
    class Plain(torch.nn.Module):
        pass

    with pytest.raises(PluginError, match=r"does not subclass musicfw.core.model.Model"):
        check_model(Plain(), "model 'plain'")
    assert check_model(Bigram()) is not None


def test_draw_hook_decides_the_next_token():
    """A model that overrides draw (a joint head would) is asked for every token."""
    from musicfw.engine.generation import generate

    tok = musicfw.build_tokenizer("melody")

    class AlwaysTwo(Bigram):
        def __init__(self):
            super().__init__(V=tok.vocab_size)

        def init_state(self, batch_size, device=None):
            return batch_size

        def step(self, x, state):
            return torch.zeros(state, self.V), state

        def draw(self, output, sampler, generator=None, history=None):
            return torch.full((output.shape[0],), 2, dtype=torch.long)

    result = generate(AlwaysTwo(), tok, musicfw.build_sampler("temperature"), n=2, max_tokens=5, seed=0)
    assert all(t.tolist() == [2] * 5 for t in result.tokens)
