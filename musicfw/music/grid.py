"""The time grid the tokenizers and the chord recogniser quantize to (numpy only).

* :func:`to_steps`: ticks -> steps of ``1/steps_per_quarter`` quarter, rounded half up (every
  grid tokenizer and the chord recogniser round the same way);
* :func:`time_signature_table` and :func:`bar_grid`: the bars of a piece on that grid, from its
  time signatures (REMI's bar lines; the chord recogniser's segments start on them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

def to_steps(ticks: Any, tpq: int, steps_per_quarter: int) -> np.ndarray:
    """Ticks -> grid steps (``steps_per_quarter`` per quarter note), rounded half up, int64."""
    tpq = int(tpq)
    return (2 * np.asarray(ticks, dtype=np.int64) * int(steps_per_quarter) + tpq) // (2 * tpq)


def time_signature_table(steps_per_quarter: int, max_bar_quarters: int) -> list[tuple[int, int]]:
    """The time signatures ``n/d`` a grid can hold: ``d`` in 2, 4, 8, 16, a bar of whole steps,
    at most ``max_bar_quarters`` quarters long; in (denominator, numerator) order."""
    return [
        (n, d)
        for d in (2, 4, 8, 16)
        for n in range(1, max_bar_quarters * d // 4 + 1)
        if (n * 4 * steps_per_quarter) % d == 0
    ]


def bar_lengths(table: list[tuple[int, int]], steps_per_quarter: int) -> np.ndarray:
    """Bar length in steps of each signature of ``table``, then one more slot: 4/4, the bar of a
    piece (or a stretch of it) whose signature is not in the table."""
    return np.array([n * 4 * steps_per_quarter // d for n, d in table] + [4 * steps_per_quarter], dtype=np.int64)


def bar_grid(
    score: Any, steps_per_quarter: int, table: list[tuple[int, int]], last_step: int
) -> tuple[np.ndarray, np.ndarray]:
    """(bar starts in steps, slot per bar) covering steps ``0..last_step`` of ``score``.

    A slot indexes ``table`` (``len(table)``: the implicit 4/4 of :func:`bar_lengths`).  A
    time-signature change takes effect at the first bar line at or after it; a signature not in
    ``table`` counts as 4/4 (as does every bar when ``table`` is empty).  One Python iteration
    per signature change."""
    index = {t: i for i, t in enumerate(table)}
    default = index.get((4, 4), len(table))
    lengths = bar_lengths(table, steps_per_quarter)
    segs: list[list[int]] = [[0, default]]  # [start, slot]
    if table:
        tsa = score.time_signatures.numpy()
        t_pos = to_steps(tsa["time"], int(score.ticks_per_quarter), steps_per_quarter)
        for t, n, d in zip(t_pos.tolist(), tsa["numerator"].tolist(), tsa["denominator"].tolist()):
            slot = index.get((n, d), default)
            start, cur = segs[-1]
            length = int(lengths[cur])
            t_snap = start + -(-(max(t, start) - start) // length) * length
            if t_snap > last_step:
                break
            if t_snap == start:
                segs[-1][1] = slot
            elif slot != cur:
                segs.append([t_snap, slot])
    starts, slots = [], []
    for i, (start, slot) in enumerate(segs):
        stop = segs[i + 1][0] if i + 1 < len(segs) else last_step + 1
        b = np.arange(start, stop, int(lengths[slot]), dtype=np.int64)
        starts.append(b)
        slots.append(np.full(len(b), slot, dtype=np.int64))
    return np.concatenate(starts), np.concatenate(slots)
