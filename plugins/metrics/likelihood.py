"""Exact held-out likelihood: NLL and perplexity per token, NLL per note and per second.

A model whose loss is a bound on the NLL (``Model.loss_is_bound``: MusicVAE's negative ELBO)
gets the same sums without a perplexity, and a ``bound`` note saying so.

Per token numbers depend on the tokenizer (REMI spends several tokens per note, a piano
roll one frame per time step), so the same summed NLL is also divided by the number of notes
the held-out token sequences stand for (``tokenizer.count_notes``) and by their duration in
seconds: those two can be compared between runs with different tokenizers.

torch is imported inside :meth:`NLL.evaluate`; this module stays cheap to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicfw.core.metric import Metric
from musicfw.core.params import bounded


def _model_device(model: Any) -> Any:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return None


def _piece_tokens(tokens: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """The real (unpadded) token sequence of each row: up to its last scored position."""
    out = []
    for row, m in zip(tokens, mask):
        idx = np.flatnonzero(m)
        if len(idx):
            out.append(row[: idx[-1] + 1])
    return out


def _count_notes_and_seconds(tokenizer: Any, seq: np.ndarray) -> tuple[int, float]:
    from musicfw.core.tokenizer import Tokenizer

    score = tokenizer.decode(seq)
    if type(tokenizer).count_notes is Tokenizer.count_notes:  # the default decodes too
        notes = int(sum(len(track.notes) for track in score.tracks))
    else:
        notes = int(tokenizer.count_notes(seq))
    seconds = float(score.to("second").end()) if notes else 0.0
    return notes, seconds


def _safe_div(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


class NLL(Metric):
    """Exact held-out NLL (nats) and perplexity per token, plus NLL per note and per second."""

    name = "nll"
    kind = "likelihood"

    @dataclass
    class Config:
        split: str = field(
            default="test",
            metadata={"choices": ("test", "valid"), "help": "held-out split whose likelihood is measured"},
        )
        max_batches: int = bounded(0, ge=0, help="stop after this many batches; 0 = the whole split")
        per_note: bool = field(
            default=True,
            metadata={"help": "also NLL per note and per second (decodes every held-out sequence)"},
        )

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> "NLL":
        return cls(config)

    def evaluate(self, model: Any, datamodule: Any, tokenizer: Any = None) -> dict[str, Any]:
        """Sum ``nll_sum`` and ``n_targets`` over the held-out split (in sliding windows for a
        model whose ``max_context`` is shorter than a piece: :mod:`musicfw.engine.windows`)."""
        import torch

        from musicfw.engine.windows import scored_loss

        split = self.config.split
        loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
        device = _model_device(model)
        was_training = bool(model.training)
        model.eval()
        nll_sum, n_targets, n_seq, n_notes, seconds = 0.0, 0, 0, 0, 0.0
        multihot = tokenizer is not None and tokenizer.kind == "multihot"
        try:
            with torch.no_grad():
                for i, batch in enumerate(loader):
                    if self.config.max_batches and i >= self.config.max_batches:
                        break
                    if device is not None:
                        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                    out = scored_loss(model, batch)
                    nll_sum += float(out["nll_sum"])
                    n_targets += int(out["n_targets"])
                    seqs = _piece_tokens(batch["tokens"].cpu().numpy(), batch["mask"].cpu().numpy())
                    n_seq += len(seqs)
                    if tokenizer is None or not self.config.per_note:
                        continue
                    for seq in seqs:
                        seq = (seq > 0.5).astype(np.uint8) if multihot else seq.astype(np.int64)
                        notes, secs = _count_notes_and_seconds(tokenizer, seq)
                        n_notes += notes
                        seconds += secs
        finally:
            model.train(was_training)
        per_token = _safe_div(nll_sum, n_targets)
        result: dict[str, Any] = {
            "split": split,
            "n_sequences": n_seq,
            "n_targets": n_targets,
            "nll_sum": nll_sum,
            "nll_per_token": per_token,
            "perplexity": _exp(per_token),
            "bits_per_token": per_token / math.log(2) if per_token is not None else None,
        }
        if getattr(model, "loss_is_bound", False):  # declared by musicfw.core.model.Model
            # a bound (e.g. a VAE's negative ELBO): exp() of it is no perplexity
            del result["perplexity"]
            result["bound"] = "nll_sum is the model's bound on the NLL (negative ELBO), not the exact NLL"
        if tokenizer is not None and self.config.per_note:
            result.update(
                {
                    "n_notes": n_notes,
                    "nll_per_note": _safe_div(nll_sum, n_notes),
                    "seconds": seconds,
                    "nll_per_second": _safe_div(nll_sum, seconds),
                }
            )
        return result

    def __repr__(self) -> str:
        return f"NLL({self.config})"


def _exp(x: float | None) -> float | None:
    if x is None:
        return None
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def report_sections(report: Any) -> list[Any]:
    """report.html's "In short" line for each ``likelihood`` entry of metrics.json that
    reports ``nll_per_token`` (this metric's format), at order 20 in metrics.json's order."""
    from musicfw.core.report import ReportSection
    from musicfw.engine.report import fmt

    out = []
    for i, (name, lik) in enumerate(((report.metrics or {}).get("likelihood") or {}).items()):
        if not isinstance(lik, dict) or "nll_per_token" not in lik:
            continue
        split, n = lik.get("split", "held-out"), lik.get("n_sequences") or lik.get("n_windows")
        kind = "negative ELBO (a bound on the NLL)" if lik.get("bound") else "NLL"
        text = f"Held-out {kind} on {n} {split}-split pieces: {fmt(lik.get('nll_per_token'))} nats per token"
        if lik.get("perplexity") is not None:
            text += f" (perplexity {fmt(lik.get('perplexity'))})"
        if lik.get("nll_per_note") is not None:
            text += f", {fmt(lik.get('nll_per_note'))} nats per note"
        out.append(ReportSection(f"likelihood-{name}", summary=[text + " (lower is better)."], order=20 + i / 1000))
    return out
