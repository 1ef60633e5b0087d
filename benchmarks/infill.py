"""Bar infilling on the held-out Bach chorales (issue 26, parts 1 and 4).

For every chorale of the held-out split (``--split``, default test; the bach_chorales default
split is by tune) with enough bars, the ``--bars`` bars in its middle are the gap.  The same
model (trained with ``train.infill``, e.g. examples/infill_chorales.yaml) scores the gap twice
(musicfw.engine.infill.span_nll):

* **both sides**: the model's infilling layout (``train.infill.layout``): spm ``Fill*k right
  Sep left Sep bar bar R``, the filled bars' tokens after the first one's opener, the second
  bar's opener and ``R`` (the right context's opener: where each filled bar ends, the plain
  sequence's very decisions); mmm ``left Fill*k right Sep bar End bar End``, the filled bars'
  tokens and their End markers;
* **left only**: the plain sequence (plain continuation NLL): the gap's tokens after its first
  ``Bar`` and the ``Bar`` after the gap (where each gap bar ends).

Both score the same decisions, per token of the gap.  The "notes" line scores only the tokens
that are neither bar openers nor End markers: exactly the same tokens in both layouts.  The
"as decoded" line scores the same decisions with the structure the decoders enforce (token by
token through ``init_state``/``step``): in the plain sequence no marker; in the filled bars
(mmm) a bar opener only right after ``Sep``/``End``, elsewhere no bar opener and no
``Fill``/``Sep``; (spm) no marker, as in the plain sequence.
It is the NLL of what ``musicfw infill`` and plain generation actually sample from (before
the tokenizer's own grammar and the sampler), and it does not charge the infilling layout for
the probability the model still gives a plain ``Bar`` where a filled bar must end.

Both see the same left context (``--left-bars`` bars before the gap); "both" also sees
``--right-bars`` bars after it.  Where that layout is longer than the model's context, both
read fewer bars, the farthest from the gap dropped first (as ``musicfw infill`` reads a song;
counted in the header line).  Target (issue 26): both-sides NLL <= 0.9 x left-only NLL.

Then each gap is filled once (constrained decoding: exactly k complete bars) and the filled
bars are compared with the original bars by the Yang & Lerch set comparison
(musicfw/music/setcompare.py through the ``yang_lerch`` metric): per feature the overlapping
area (OA) and KL divergence of the inter-set distances (filled vs original) against the
original bars' intra-set distances; the same comparison of bars drawn by plain continuation
(left only, k bars) is printed beside it.

Usage::

    python benchmarks/infill.py --run runs/infill_chorales-<timestamp>
    python benchmarks/infill.py --train            # trains examples/infill_chorales.yaml first

Prints a table; ``--json PATH`` writes the numbers.  Deterministic for a seed (``--seed``,
default 0) and one torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _clip_bars(score, start: int, end: int):
    """The notes of ``score`` starting in ticks [start, end), moved to start at 0."""
    out = score.clip(start, end, clip_end=False)
    return out.shift_time(-start) if start else out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=None, help="a run folder trained with train.infill")
    p.add_argument("--train", action="store_true", help="train examples/infill_chorales.yaml first")
    p.add_argument("--set", action="append", default=[], help="an override for --train (key=value)")
    p.add_argument("--split", default="test")
    p.add_argument("--bars", type=int, default=2, help="bars in each gap")
    p.add_argument("--left-bars", type=int, default=3)
    p.add_argument("--right-bars", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pieces", type=int, default=0, help="at most this many pieces (0: all)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    import musicfw
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.evaluation import build_metrics, evaluate_sets
    from musicfw.engine.generation import build_sampler_chain
    from musicfw.engine.infill import bar_bounds, bar_ticks, fill_tokens, gap_nll
    from musicfw.engine.rundir import load_run_config
    from musicfw.engine.training import load_model

    t0 = time.perf_counter()
    registries = musicfw.get_registries()
    train_s = None
    if args.train:
        cfg = musicfw.load_config(REPO / "examples" / "infill_chorales.yaml", ["generate.render_audio=false", *args.set])
        t = time.perf_counter()
        run_dir = musicfw.run(cfg).run_dir
        train_s = time.perf_counter() - t
    elif args.run:
        run_dir = Path(args.run)
    else:
        p.error("give --run RUN_DIR or --train")
    config = load_run_config(run_dir, registries=registries)
    model, tokenizer = load_model(run_dir, registries=registries, config=config)
    dm = build_datamodule(config.data, tokenizer, train=config.train, seed=int(config.seed), progress=False,
                          registries=registries)
    pieces = dm.tokens(args.split)
    sampler = build_sampler_chain(config.sampler, registries=registries)
    k, L, R = args.bars, args.left_bars, args.right_bars
    if args.max_pieces:
        pieces = pieces[: args.max_pieces]
    nll = gap_nll(model, tokenizer, pieces, k=k, left_bars=L, right_bars=R)
    decoded = as_decoded_nll(model, tokenizer, pieces, nll["per_piece"], k)
    used, n_tokens, per_piece = nll["pieces"], nll["gap_tokens"], nll["per_piece"]
    filled, original, continued = [], [], []
    for row in per_piece:
        i = row["piece"]
        tokens = pieces[i]
        bounds = bar_bounds(tokens, tokenizer.is_bar)
        lo, hi = row["window"]
        window = np.asarray(tokens[bounds[lo] : bounds[hi]], dtype=np.int64)
        f = row["gap"][0] - 1 - lo
        # fill the gap once (both sides), and continue from the left side only
        res = fill_tokens(model, tokenizer, sampler, window, f, k, n=1, seed=args.seed + i)
        wb = bar_bounds(window, tokenizer.is_bar)
        grid = tokenizer.decode(window)
        g = bar_ticks(grid, len(wb) - 1)
        original.append((f"orig{i}", _clip_bars(grid, int(g[f]), int(g[f + k]))))
        dec = tokenizer.decode(res.sequences[0])
        d = bar_ticks(dec, len(wb) - 1)
        filled.append((f"fill{i}", _clip_bars(dec, int(d[f]), int(d[f + k]))))
        # plain continuation of the left context: the window up to the gap, then k bars
        gen = musicfw_continue(model, tokenizer, sampler, window[: wb[f]], k, seed=args.seed + i)
        dc = tokenizer.decode(gen)
        c = bar_ticks(dc, f + k)
        continued.append((f"cont{i}", _clip_bars(dc, int(c[f]), int(c[f + k]))))
    metrics = build_metrics([{"name": "yang_lerch"}], registries=registries)
    yl_fill = evaluate_sets(filled, original, metrics)["comparison"]
    yl_cont = evaluate_sets(continued, original, metrics)["comparison"]
    ratio = nll["ratio_both_over_left"]
    result = {
        "run": str(run_dir),
        "seed": args.seed,
        "split": args.split,
        "pieces": used,
        "gap_bars": k,
        "left_bars": L,
        "right_bars": R,
        "context_trimmed": nll["context_trimmed"],
        "gap_tokens": n_tokens,
        "nll_both_per_token": nll["nll_both_per_token"],
        "nll_left_per_token": nll["nll_left_per_token"],
        "ratio_both_over_left": ratio,
        "note_tokens": nll["note_tokens"],
        "nll_both_notes_per_token": nll["nll_both_notes_per_token"],
        "nll_left_notes_per_token": nll["nll_left_notes_per_token"],
        "ratio_notes_both_over_left": nll["ratio_notes_both_over_left"],
        "as_decoded": decoded,
        "target_ratio": 0.9,
        "target_met": bool(ratio <= 0.9),
        "yang_lerch_filled_vs_original": yl_fill["summary"],
        "yang_lerch_continued_vs_original": yl_cont["summary"],
        "yang_lerch_features": {name: {"oa_filled": yl_fill["features"][name]["oa_generated"],
                                       "oa_continued": yl_cont["features"].get(name, {}).get("oa_generated")}
                                for name in yl_fill["features"]},
        "train_seconds": train_s,
        "seconds": time.perf_counter() - t0,
        "per_piece": per_piece,
    }
    print(f"run {run_dir}  split {args.split}  pieces {used}  gap {k} bars ({n_tokens} tokens), "
          f"context {L} bars left / {R} right, seed {args.seed}"
          + (f" ({nll['context_trimmed']} pieces with fewer bars: the model's context)" if nll["context_trimmed"] else ""))
    print(f"{'':34s}{'NLL/token':>10s}")
    print(f"{'gap given both sides (infill)':34s}{result['nll_both_per_token']:10.4f}")
    print(f"{'gap given left side only':34s}{result['nll_left_per_token']:10.4f}")
    print(f"{'ratio both / left (target <= 0.9)':34s}{ratio:10.4f}  {'met' if ratio <= 0.9 else 'MISSED'}")
    print(f"{'notes only: both / left':34s}{nll['nll_both_notes_per_token']:10.4f} / "
          f"{nll['nll_left_notes_per_token']:.4f} = {nll['ratio_notes_both_over_left']:.4f} ({nll['note_tokens']} tokens)")
    print(f"{'as decoded: both / left':34s}{decoded['nll_both_per_token']:10.4f} / "
          f"{decoded['nll_left_per_token']:.4f} = {decoded['ratio_both_over_left']:.4f}")
    s1, s2 = yl_fill["summary"], yl_cont["summary"]
    print("Yang & Lerch vs the original bars   mean OA (higher: closer)   mean KL (lower: closer)")
    print(f"  filled (both sides)               {s1['mean_oa_generated']:.4f}                    {s1['mean_kl_generated']:.4f}")
    print(f"  continued (left only)             {s2['mean_oa_generated']:.4f}                    {s2['mean_kl_generated']:.4f}")
    print(f"{result['seconds']:.0f} s" + (f" (training {train_s:.0f} s)" if train_s else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


def as_decoded_nll(model, tokenizer, pieces, per_piece, k: int) -> dict:
    """The gap NLL of :func:`musicfw.engine.infill.span_nll` (the same scored positions) with
    the decoders' structure applied to each step's distribution (see the module docstring)."""
    import torch

    from musicfw.engine.infill import bar_bounds, layout

    ids, V0, is_bar = tokenizer.ids, tokenizer.base_vocab_size, torch.from_numpy(tokenizer.is_bar)
    plain_ok = torch.zeros(tokenizer.vocab_size, dtype=torch.bool)
    plain_ok[:V0] = True
    open_ok = torch.zeros_like(plain_ok)
    open_ok[:V0] = is_bar
    inside_ok = plain_ok.clone()
    inside_ok[:V0] &= ~is_bar
    inside_ok[ids.end] = True

    def score(seq, allowed_at):
        total = 0.0
        with torch.no_grad():
            state = model.init_state(1)
            logits, state = model.step(None, state)
            for t, tok in enumerate(seq.tolist()):
                allowed = allowed_at(t)
                if allowed is not None:
                    lp = torch.log_softmax(logits[0].float().masked_fill(~allowed, float("-inf")), -1)
                    total -= float(lp[tok])
                logits, state = model.step(torch.tensor([tok]), state)
        return total

    both = left = 0.0
    n = 0
    for row in per_piece:
        tokens = pieces[row["piece"]]
        bounds = bar_bounds(tokens, tokenizer.is_bar)
        lo, hi = row["window"]
        w = np.asarray(tokens[bounds[lo] : bounds[hi]], dtype=np.int64)
        wb = bar_bounds(w, tokenizer.is_bar)
        f = row["gap"][0] - 1 - lo
        s, e = int(wb[f]), int(wb[f + k])
        seq, head = layout(w, wb, f, k, ids, tokenizer.layout)
        if tokenizer.layout == "spm":  # the bars in plain order after the left context, no marker
            both += score(seq, lambda t: None if t < head else plain_ok)
        else:
            both += score(seq, lambda t: None if t < head else (open_ok if t == head or seq[t - 1] == ids.end else inside_ok))
        plain = w[: min(e + 1, len(w))]
        left += score(plain, lambda t: plain_ok if t > s else None)
        n += e - s
    return {"nll_both_per_token": both / max(n, 1), "nll_left_per_token": left / max(n, 1),
            "ratio_both_over_left": both / left if left else float("nan")}


def musicfw_continue(model, tokenizer, sampler, prompt: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Plain continuation of ``prompt`` by ``k`` bars (the engine's generation loop,
    constrained, markers off): the prompt followed by the new tokens."""
    import torch

    from musicfw.engine.generation import _generate_batch

    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        seqs, _, _ = _generate_batch(model, tokenizer, sampler, "categorical", 1, 1024, k, None,
                                     np.asarray(prompt, dtype=np.int64), True, None, gen, None)
    return np.asarray(seqs[0], dtype=np.int64)


if __name__ == "__main__":
    sys.exit(main())
