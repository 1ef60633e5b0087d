"""The token budget of a generated sample, and which limit stopped each one.

A sample stops at the first of ``generate.max_tokens`` new tokens, ``max_bars`` bars or
``max_seconds`` seconds of new music (and an end token).  A token budget of 512 is right for
nothing in particular: 512 REMI tokens of a chorale are ~8 s, 512 MIDI-like tokens of piano
~5 s, 512 melody steps 32 bars.  So when a time or bar limit is given and ``max_tokens`` is not
(it is empty by default), the budget is **sized from the training data**:

    budget = ceil(MARGIN x max(rate over the train split, 90th percentile of the pieces' rates) x limit)

where the rate is tokens per second (for ``max_seconds``) or tokens per bar (for ``max_bars``,
bars counted by symusic's ``Score.get_downbeats``), measured on the tokenized train split in the
data stage and saved in the run folder as ``token_rates.json`` (so ``musicfw generate --run``
sizes its budget the same way).  With both limits the smaller budget is used (the sample stops
at whichever comes first).  ``MARGIN`` = 2: generated music may be denser than the average
training piece; the time/bar limit still stops the sample, the budget only bounds a run-away
one.  Without any limit the budget is :data:`DEFAULT_MAX_TOKENS`.

:func:`stop_summary` turns a generation's stop reasons into one line (``stopped by: max_seconds
6, max_tokens 2``), with a hint when the token budget cut samples short of a time/bar limit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

DEFAULT_MAX_TOKENS = 512
MARGIN = 2.0
#: a budget never exceeds this (bounds the generation buffers)
MAX_BUDGET = 100_000
RATES_FILE = "token_rates.json"


def measure_token_rates(datamodule: Any, split: str = "train", max_pieces: int = 1000) -> dict[str, Any]:
    """Tokens per second and per bar of ``split`` (its first ``max_pieces`` pieces): the
    overall rate and the 90th percentile of the per-piece rates."""
    pieces = datamodule.pieces(split)[:max_pieces]
    tokens = datamodule.tokens(split)[:max_pieces]
    lengths = np.array([len(t) for t in tokens], dtype=np.float64)
    seconds = np.array([_seconds(p.score) for p in pieces], dtype=np.float64)
    bars = np.array([_bars(p.score) for p in pieces], dtype=np.float64)
    out: dict[str, Any] = {"split": split, "pieces": len(pieces)}
    for unit, amount in (("second", seconds), ("bar", bars)):
        ok = amount > 0
        if not ok.any():
            out[f"tokens_per_{unit}"] = None
            out[f"tokens_per_{unit}_p90"] = None
            continue
        out[f"tokens_per_{unit}"] = float(lengths[ok].sum() / amount[ok].sum())
        out[f"tokens_per_{unit}_p90"] = float(np.percentile(lengths[ok] / amount[ok], 90))
    return out


def _seconds(score: Any) -> float:
    try:
        return float(score.to("second").end())
    except Exception:  # no tempo: 120 qpm
        return float(score.end()) / max(int(score.ticks_per_quarter), 1) * 0.5


def _bars(score: Any) -> float:
    end = int(score.end())
    if end <= 0:
        return 0.0
    try:
        downbeats = np.asarray(score.get_downbeats(), dtype=np.int64)
    except Exception:
        downbeats = np.zeros(0, dtype=np.int64)
    if len(downbeats) == 0:  # 4/4
        return end / (4.0 * max(int(score.ticks_per_quarter), 1))
    return float(len(downbeats))


def save_rates(run_dir: str | Path, rates: dict[str, Any]) -> Path:
    path = Path(run_dir) / RATES_FILE
    path.write_text(json.dumps(rates, indent=1) + "\n")
    return path


#: a rates file is a few hundred bytes; anything larger is not ours
MAX_RATES_BYTES = 1 << 20


def load_rates(run_dir: str | Path) -> dict[str, Any] | None:
    """The token rates recorded in ``run_dir`` (a run or an exported model folder, which may
    come from a stranger): only finite positive numbers are kept; an unreadable, oversized
    or deeply nested file counts as none."""
    path = Path(run_dir) / RATES_FILE
    try:
        if path.stat().st_size > MAX_RATES_BYTES:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    return {k: v for k, v in data.items()
            if not (isinstance(v, bool) or (isinstance(v, (int, float)) and not (math.isfinite(v) and v > 0)))}


def token_budget(
    max_tokens: int | None,
    max_bars: float | None,
    max_seconds: float | None,
    rates: dict[str, Any] | None,
) -> tuple[int, str]:
    """``(budget, how it was chosen)`` for one sample (see the module docstring)."""
    if max_tokens is not None:
        return int(max_tokens), "generate.max_tokens"
    if max_bars is None and max_seconds is None:
        return DEFAULT_MAX_TOKENS, f"default ({DEFAULT_MAX_TOKENS}; no max_bars/max_seconds)"
    candidates = []
    for limit, unit, key in ((max_seconds, "second", "max_seconds"), (max_bars, "bar", "max_bars")):
        if limit is None:
            continue
        rate = (rates or {}).get(f"tokens_per_{unit}")
        p90 = (rates or {}).get(f"tokens_per_{unit}_p90")
        if not rate:
            continue
        per = max(float(rate), float(p90 or 0.0))
        budget = int(math.ceil(MARGIN * per * float(limit)))
        candidates.append((budget, f"{key} {limit:g} x {per:.1f} tokens/{unit} of the training data x {MARGIN:g}"))
    if not candidates:
        return DEFAULT_MAX_TOKENS, (
            f"default ({DEFAULT_MAX_TOKENS}): no token rate of the training data is known "
            f"(no {RATES_FILE} in the run folder); set generate.max_tokens"
        )
    budget, how = min(candidates)
    if budget > MAX_BUDGET:
        return MAX_BUDGET, f"{how}, capped at {MAX_BUDGET:,}"
    return max(budget, 1), how


def stop_summary(
    stop_reasons: Sequence[str], max_bars: float | None = None, max_seconds: float | None = None, budget: int | None = None
) -> str:
    """One line: how many samples each limit stopped, and a hint when the token budget cut
    samples short of the time/bar limit that was asked for."""
    counts: dict[str, int] = {}
    for reason in stop_reasons:
        counts[reason] = counts.get(reason, 0) + 1
    line = "stopped by: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    short = counts.get("max_tokens", 0)
    asked = [f"max_{u}={v:g}" for u, v in (("bars", max_bars), ("seconds", max_seconds)) if v is not None]
    if short and asked:
        line += (
            f" ({short} of {len(stop_reasons)} ran out of tokens (max_tokens={budget}) before "
            f"{' / '.join(asked)}: raise generate.max_tokens, or leave it empty to size it from the limit)"
        )
    return line
