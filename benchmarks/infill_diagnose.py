"""Why the right context does or does not help an infilling run (issue 26): four diagnostics
of the held-out gaps of benchmarks/infill.py (test split, 2-bar gaps in the middle of each
piece, 3 bars of left and 2 of right context), printed for one run::

    python benchmarks/infill_diagnose.py RUN_DIR

1. **per gap bar**: the notes-only NLL (no ``Bar``/``End`` tokens) of the first and of the
   second gap bar, both sides / left only;
2. **shorter context**: the measure with 2 bars of left context (2 and 1 of right), so that
   the MMM layout fits a bounded model context; and how many layouts exceed it at 3 + 2;
3. **at a filled bar's end**: the probability the model gives ``End``, a plain bar opener and
   ``Fill``/``Sep`` where each filled bar of the first 20 test gaps ends (means; the right
   token is ``End`` in the mmm layout, in spm the next bar's opener and ``End`` after the last);
4. **whose right context**: the gaps' notes-only NLL in the run's layout with their own right
   context, with the next test gap's right context instead, and with none: whether the model
   reads the right context at all (a model that ignores it scores the three alike).

A layout longer than the model's context is read as benchmarks/infill.py's measure and the
decoder read it: the context bars farthest from the gap are dropped (``fitting_bars``), never
the front of the layout, where spm keeps the markers and the right context (item 4: when
another gap's right context makes the layout too long, its farthest bars go).

Deterministic (no sampling); one torch thread.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import musicfw
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.infill import bar_bounds, fitting_bars, gap_nll, layout
    from musicfw.engine.rundir import load_run_config
    from musicfw.engine.training import load_model
    from musicfw.engine.windows import scored_loss

    registries = musicfw.get_registries()
    config = load_run_config(args.run, registries=registries)
    model, tok = load_model(args.run, registries=registries, config=config)
    dm = build_datamodule(config.data, tok, train=config.train, seed=int(config.seed), progress=False,
                          registries=registries)
    pieces = dm.tokens("test")
    ids, V0 = tok.ids, tok.base_vocab_size
    is_bar_t = torch.from_numpy(tok.is_bar)

    def nll(seq, mask):
        batch = {"tokens": torch.from_numpy(seq).long()[None], "mask": torch.from_numpy(mask)[None]}
        with torch.no_grad():
            return float(scored_loss(model, batch)["nll_sum"])

    ctx = model.max_context

    def test_gaps():
        """(piece index, tokens, bar bounds, the gap's first bar, the window's first bar and
        end): 2-bar gaps in the middle, 3 bars left and 2 right, as benchmarks/infill.py; a
        layout longer than the model's context loses the bars farthest from the gap first (as
        benchmarks/infill.py's measure and the decoder read it, never the front of the layout)."""
        for i, tokens in enumerate(pieces):
            b = bar_bounds(tokens, tok.is_bar)
            nb = len(b) - 1
            if nb >= 4:
                first = max(1, nb // 2 - 1)
                lo, hi = max(0, first - 3), min(nb, first + 4)
                fit = fitting_bars(np.asarray(tokens, dtype=np.int64), b, first, 2, ids, tok.layout, ctx, lo, hi)
                yield (i, tokens, b, first, *fit, (lo, hi))

    sums = np.zeros((2, 2))  # [bar, both/left]
    longer = 0
    at_end = {"End": [], "a bar opener": [], "Fill/Sep": []}
    for i, tokens, b, first, lo, hi, full in test_gaps():
        longer += (lo, hi) != full
        w = np.asarray(tokens[b[lo] : b[hi]], dtype=np.int64)
        wb = bar_bounds(w, tok.is_bar)
        f = first - lo
        seq, head = layout(w, wb, f, 2, ids, tok.layout)
        seq_bar = np.zeros(len(seq), dtype=bool)
        plain = seq < V0
        seq_bar[plain] = tok.is_bar[seq[plain]]
        # where each filled bar starts (its opener) and the token that ends it (End in mmm; in spm
        # the next bar's opener, End after the last)
        start = head - 1 if tok.layout == "spm" else head
        opens = start + np.flatnonzero(seq_bar[start:])
        ends = np.flatnonzero(seq == ids.end) if tok.layout == "mmm" else np.append(opens[1:], len(seq) - 1)
        for j in range(2):
            m = np.zeros(len(seq), dtype=bool)
            m[opens[j] : ends[j]] = True
            sums[j, 0] += nll(seq, m & ~seq_bar & (seq != ids.end))
            s, e = int(wb[f + j]), int(wb[f + j + 1])
            left = w[: e + 1]
            m = np.zeros(len(left), dtype=bool)
            m[s:e] = ~tok.is_bar[left[s:e]]
            sums[j, 1] += nll(left, m)
        if i < 20 and hasattr(model, "forward"):
            with torch.no_grad():
                prob = torch.softmax(model(torch.from_numpy(seq)[None])[0], -1)
            for pos in ends:
                at_end["End"].append(float(prob[pos, ids.end]))
                at_end["a bar opener"].append(float(prob[pos, :V0][is_bar_t].sum()))
                at_end["Fill/Sep"].append(float(prob[pos, ids.fill] + prob[pos, ids.sep]))
    print(f"{args.run}")
    for j in range(2):
        print(f"gap bar {j + 1}, notes only: both {sums[j, 0]:.1f} / left {sums[j, 1]:.1f} nats = {sums[j, 0] / sums[j, 1]:.4f}")
    print(f"layouts longer than the model's context ({ctx}), read with the farthest bars dropped: {longer}")
    for L, R in ((2, 2), (2, 1)):
        g = gap_nll(model, tok, pieces, k=2, left_bars=L, right_bars=R)
        print(f"left {L} / right {R} bars: ratio {g['ratio_both_over_left']:.4f}, notes only {g['ratio_notes_both_over_left']:.4f}")
    own = other = none = 0.0
    gaps = []
    for _, tokens, b, first, lo, hi, _ in test_gaps():
        gaps.append((tokens[b[lo] : b[first]], tokens[b[first] : b[first + 2]], tokens[b[first + 2] : b[hi]]))
    cut = 0

    def notes_nll(left, gap, right):
        nonlocal cut
        while True:
            w = np.concatenate([left, gap, right]).astype(np.int64)
            wb = bar_bounds(w, tok.is_bar)
            f = int(np.searchsorted(wb, len(left)))
            seq, head = layout(w, wb, f, 2, ids, tok.layout)
            if ctx is None or len(seq) <= int(ctx) or len(wb) - 1 <= f + 2:
                break
            # another gap's right context can be longer than the own one: its last bar goes
            right, cut = right[: int(wb[-2]) - len(left) - len(gap)], cut + 1
        bar = np.zeros(len(seq), dtype=bool)
        bar[seq < V0] = tok.is_bar[seq[seq < V0]]
        m = np.zeros(len(seq), dtype=bool)
        m[head:] = True
        return nll(seq, m & ~bar & (seq != ids.end))

    for j, (left, gap, right) in enumerate(gaps):
        own += notes_nll(left, gap, right)
        other += notes_nll(left, gap, gaps[(j + 1) % len(gaps)][2])
        none += notes_nll(left, gap, right[:0])
    print(f"gap notes NLL ({len(gaps)} gaps): own right context {own:.1f} nats, the next gap's {other:.1f} "
          f"({other / own:.4f}x), none {none:.1f} ({none / own:.4f}x); right-context bars dropped to fit: {cut}")
    if at_end["End"]:
        print(f"at a filled bar's end ({tok.layout}; first 20 test gaps, mean probability): "
              + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in at_end.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
