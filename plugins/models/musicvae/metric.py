"""``musicvae_reconstruction``: MusicVAE's held-out metrics (the paper's Table 1) in every run.

A metric of kind ``likelihood`` (``evaluate(model, datamodule, tokenizer) -> dict``), so
``musicfw run`` puts its numbers into ``metrics.json`` under ``likelihood`` and the report shows
them: teacher-forced, sampled and greedy reconstruction accuracy per step, ELBO per window, KL
in nats and bits, on the bar-aligned ``max_seq_len`` windows of the held-out split (the same
windows and scoring as ``benchmarks/musicvae.py``, through
:func:`.tools.reconstruction_metrics`).  torch loads inside ``evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from musicfw.core.params import bounded, choice


class MusicVAEReconstruction:
    """MusicVAE held-out reconstruction accuracy (teacher-forced, sampled, greedy), ELBO and KL."""

    name = "musicvae_reconstruction"
    kind = "likelihood"

    @dataclass
    class Config:
        split: str = choice("test", ("test", "valid"), "held-out split whose windows are scored")
        max_windows: int = bounded(500, ge=0, help="score a random subset of this many windows (0: all)")
        temperature: float = bounded(1.0, gt=0, help="softmax temperature of the sampled reconstruction")
        seed: int = field(default=0, metadata={"help": "seed of z ~ q(z|x) and of the sampled decoding"})

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "MusicVAEReconstruction":
        return cls(config)

    def evaluate(self, model: Any, datamodule: Any, tokenizer: Any = None) -> dict[str, Any]:
        from musicfw.core.errors import ConfigError

        from .tools import reconstruction_metrics

        if not callable(getattr(model, "encode", None)) or not hasattr(getattr(model, "config", None), "max_seq_len"):
            raise ConfigError(
                f"evaluate.metrics: musicvae_reconstruction measures a MusicVAE, but this run's model is "
                f"{type(model).__name__}; remove the metric from evaluate.metrics."
            )
        c = self.config
        result = reconstruction_metrics(
            model, tokenizer, datamodule.tokens(c.split), c.max_windows, seed=c.seed, temperature=c.temperature
        )
        return {"split": c.split, **result}

    def __repr__(self) -> str:
        return f"MusicVAEReconstruction({self.config})"


def report_sections(report: Any) -> list[Any]:
    """report.html's "In short" line for each ``likelihood`` entry of metrics.json with this
    metric's reconstruction accuracy, at order 20 in metrics.json's order."""
    from musicfw.core.report import ReportSection
    from musicfw.engine.report import fmt

    out = []
    for i, (name, lik) in enumerate(((report.metrics or {}).get("likelihood") or {}).items()):
        if not isinstance(lik, dict) or "teacher_forced_accuracy" not in lik:
            continue
        split, n = lik.get("split", "held-out"), lik.get("n_sequences") or lik.get("n_windows")
        out.append(
            ReportSection(
                f"likelihood-{name}",
                summary=[
                    f"Reconstruction of {n} {split}-split windows ({name}): accuracy per step "
                    f"{fmt(lik.get('teacher_forced_accuracy'))} teacher-forced, {fmt(lik.get('sampled_accuracy'))} "
                    f"sampled; ELBO {fmt(lik.get('elbo'))} nats, KL {fmt(lik.get('kl'))} nats "
                    f"({fmt(lik.get('kl_bits'))} bits) per window."
                ],
                order=20 + i / 1000,
            )
        )
    return out
