"""``control_adherence``: how closely a model with attribute controls follows them.

A metric of kind ``likelihood`` (``evaluate(model, datamodule, tokenizer)``), in the default
``evaluate.metrics``: for a run whose tokenizer has attribute controls (REMI ``controls``,
docs/tokenizers.md) it asks the trained model for what real music is like and measures what
comes out; for any other run it measures nothing and writes nothing.

The requests are real: the first ``pieces`` pieces of the held-out ``split`` (in the data
module's order), the levels their first ``bars`` bars have (the control tokens of their
encoding).  For each such piece the model generates that many bars from scratch with those
levels forced bar by bar (``generate(controls=[...])``, the other tokens sampled with
``temperature`` then ``top_p``); each generated bar's attributes are measured from its decoded
notes with the tokenizer's own boundaries (``measure_controls``) and compared with the request:
per attribute, the share of bars at exactly the requested level, within one level, and
Spearman's rank correlation of requested and measured levels (``scipy.stats.spearmanr``; None
when either side is constant).  The same numbers for the **uncontrolled** generation -- the
same model, sampler and budget, the control tokens left to the model -- against the same
requests say how much of the agreement the controls bring.  ``benchmarks/controls.py`` also
requests each level alone.

The numbers go into ``metrics.json`` under ``likelihood.control_adherence`` as flat keys
(``density_exact``, ``density_within_one``, ``density_spearman``, then ``uncontrolled_...``),
and report.html shows a table and an "In short" line.  torch loads inside ``evaluate``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from musicfw.core.metric import Metric
from musicfw.core.params import bounded, choice

#: most bars a generated piece gets per requested bar's tokens (the token budget of a bar is
#: this times the held-out bar's tokens, plus slack), so a model that writes dense bars is not
#: cut off while a runaway one is
TOKEN_SLACK = 2.0


class ControlAdherence(Metric):
    """Requested vs measured attribute-control levels of generated bars, controlled and not."""

    name = "control_adherence"
    kind = "likelihood"

    @dataclass
    class Config:
        split: str = choice("test", ("test", "valid"), "held-out split whose pieces' bar levels are requested")
        pieces: int = bounded(8, ge=1, le=1000, help="held-out pieces whose levels are requested (one generated piece each)")
        bars: int = bounded(8, ge=1, le=256, help="bars requested per piece (its first bars; fewer when it is shorter)")
        temperature: float = bounded(1.0, gt=0, le=100, help="sampling temperature of the generated bars")
        top_p: float = bounded(0.95, gt=0, le=1, help="then nucleus sampling with this p (1: off)")
        seed: int = field(default=0, metadata={"help": "seed of the draws (piece i: seed + i; uncontrolled: seed)"})

    def evaluate(self, model: Any, datamodule: Any, tokenizer: Any = None) -> dict[str, Any] | None:
        """None when ``tokenizer`` has no controls (nothing to measure); otherwise the numbers
        described in the module docstring."""
        controls = tuple(getattr(tokenizer, "controls", ()) or ()) if tokenizer is not None else ()
        measurer = getattr(tokenizer, "base", tokenizer)
        # per-bar controls only (REMI): the tracks tokenizer's per-voice controls are forced by
        # harmonisation and measured by benchmarks/harmonize.py --controls
        if not controls or not callable(getattr(measurer, "measure_controls", None)):
            return None
        from musicfw.engine.generation import build_sampler_chain, generate

        t0 = time.perf_counter()
        c = self.config
        # the tokenizer that measures bars (above): an infilling run's tokenizer wraps the REMI one
        held_out = datamodule.tokens(c.split)[: int(c.pieces)]
        if not held_out:
            return {"split": c.split, "pieces": 0, "note": f"the {c.split!r} split is empty: nothing requested"}
        chain = [{"name": "temperature", "temperature": float(c.temperature)}]
        if float(c.top_p) < 1:
            chain.append({"name": "top_p", "p": float(c.top_p)})
        sampler = build_sampler_chain(chain)
        plans, budgets = [], []
        for tokens in held_out:
            stated = measurer.measure_controls(tokens)["tokens"]
            plan = np.stack([stated[a] for a in controls], axis=1)[: int(c.bars)]
            plan = plan[(plan >= 0).all(axis=1)]  # bars with every control token (all of them in an encoding)
            plans.append(plan)
            budgets.append(_token_budget(tokens, measurer, len(plan)))
        pairs = {a: ([], []) for a in controls}
        free_pairs = {a: ([], []) for a in controls}
        used = [i for i, plan in enumerate(plans) if len(plan)]
        for i in used:
            plan = plans[i]
            request = [{a: int(plan[b, k]) for k, a in enumerate(controls)} for b in range(len(plan))]
            res = generate(model, tokenizer, sampler, n=1, batch_size=1, max_tokens=budgets[i], max_bars=len(plan),
                           seed=int(c.seed) + i, controls=request)
            _collect(pairs, measurer, controls, plan, res.tokens[0], res.stop_reasons[0])
        if used:
            longest = max(len(plans[i]) for i in used)
            res = generate(model, tokenizer, sampler, n=len(used), batch_size=len(used), max_tokens=max(budgets[i] for i in used),
                           max_bars=longest, seed=int(c.seed))
            for j, i in enumerate(used):
                _collect(free_pairs, measurer, controls, plans[i], res.tokens[j], res.stop_reasons[j])
        out: dict[str, Any] = {
            "split": c.split,
            "pieces": len(used),
            "levels": int(measurer.config.control_levels),
            "sampler": describe_sampler(c),
            "seed": int(c.seed),
            "bars": len(pairs[controls[0]][0]),
            "uncontrolled_bars": len(free_pairs[controls[0]][0]),
        }
        for label, source in (("", pairs), ("uncontrolled_", free_pairs)):
            for a in controls:
                for key, value in scores(*source[a]).items():
                    out[f"{label}{a}_{key}"] = value
        out["seconds"] = round(time.perf_counter() - t0, 1)
        return out

    def __repr__(self) -> str:
        return f"ControlAdherence({self.config})"


def describe_sampler(c: Any) -> str:
    text = f"temperature {float(c.temperature):g}"
    return text + (f", top_p {float(c.top_p):g}" if float(c.top_p) < 1 else "")


def _token_budget(tokens: np.ndarray, tokenizer: Any, n_bars: int) -> int:
    """Tokens a generated piece may use for ``n_bars`` bars: :data:`TOKEN_SLACK` times what
    the held-out piece's first ``n_bars`` bars took, plus 32."""
    tokens = np.asarray(tokens, dtype=np.int64)
    bars = np.flatnonzero(np.asarray(tokenizer.token_types)[tokens] == "Bar")
    end = int(bars[n_bars]) if len(bars) > n_bars else len(tokens)
    return int(TOKEN_SLACK * end) + 32


def _collect(pairs: dict, tokenizer: Any, controls: tuple, plan: np.ndarray, seq: np.ndarray, reason: str) -> None:
    """(requested, measured) levels of a generated piece's whole bars: all of them when
    ``max_bars`` stopped it, else all but the last (cut off by the token budget)."""
    levels = tokenizer.measure_controls(np.asarray(seq))["levels"]
    n = min(len(plan), len(levels[controls[0]]))
    if reason != "max_bars" and n == len(levels[controls[0]]):
        n -= 1
    for k, a in enumerate(controls):
        pairs[a][0].extend(plan[:n, k].tolist())
        pairs[a][1].extend(levels[a][:n].tolist())


def scores(requested: list | np.ndarray, measured: list | np.ndarray) -> dict[str, Any]:
    """``{"exact", "within_one", "spearman"}`` of paired levels (None where undefined: no
    bars, or a constant side for the rank correlation)."""
    req, got = np.asarray(requested, dtype=np.int64), np.asarray(measured, dtype=np.int64)
    if len(req) == 0:
        return {"exact": None, "within_one": None, "spearman": None}
    rho = None
    if len(np.unique(req)) > 1 and len(np.unique(got)) > 1:
        from scipy.stats import spearmanr

        value = float(spearmanr(req, got).statistic)
        rho = None if math.isnan(value) else value
    return {"exact": float(np.mean(req == got)), "within_one": float(np.mean(np.abs(req - got) <= 1)), "spearman": rho}


def report_sections(report: Any) -> list[Any]:
    """report.html's control-adherence table (controlled next to uncontrolled, per attribute)
    and its "In short" line, for each likelihood entry in this metric's format."""
    from musicfw.core.report import ReportSection
    from musicfw.engine.report import fmt, table

    out = []
    for i, (name, lik) in enumerate(((report.metrics or {}).get("likelihood") or {}).items()):
        if not isinstance(lik, dict) or "uncontrolled_bars" not in lik:
            continue
        attrs = [k[: -len("_exact")] for k in lik if k.endswith("_exact") and not k.startswith("uncontrolled_")]
        rows = [["attribute", "exact level", "within one level", "Spearman", "uncontrolled: exact", "within one", "Spearman"]]
        for a in attrs:
            rows.append([a] + [_pct(lik.get(f"{p}{a}_exact")) if m == "exact" else
                               _pct(lik.get(f"{p}{a}_within_one")) if m == "within_one" else fmt(lik.get(f"{p}{a}_spearman"))
                               for p in ("", "uncontrolled_") for m in ("exact", "within_one", "spearman")])
        html = (
            f"<p>The first {lik.get('bars')} bars' worth of control levels of {lik.get('pieces')} {lik.get('split')}-split "
            f"pieces requested from the model ({lik.get('levels')} levels; {lik.get('sampler')}; seed {lik.get('seed')}), "
            "each generated bar measured from its notes; the uncontrolled column is the same model left to choose "
            f"its own control tokens, against the same requests ({lik.get('uncontrolled_bars')} bars).</p>" + table(rows)
        )
        parts = [f"{a} {_pct(lik.get(f'{a}_exact'))} (uncontrolled {_pct(lik.get(f'uncontrolled_{a}_exact'))})" for a in attrs]
        line = f"Control adherence ({name}): bars at the requested level: " + ", ".join(parts) + "."
        out.append(ReportSection(f"controls-{name}", "Control adherence", html, summary=[line], order=52 + i / 1000,
                                 nav="controls"))
    return out


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"
