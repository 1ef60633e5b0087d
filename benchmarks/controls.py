"""Control adherence (issue 26, parts 3-4): ask for a level, measure what comes out.

Two models, by default LSTMs of the quickstart's size (examples/quickstart.yaml: 1 x 256, 16 x 128-token batches;
``--model transformer``: examples/transformer_chorales.yaml's 2 x 128 Transformer;
``--steps`` steps, the quickstart's 1,200 by default) are trained on the Bach chorales
(``bach_chorales``, its default split by tune, seed 0) with REMI tokens:

* **controlled**: ``tokenizer.controls: [density, polyphony, pitch_range, duration]`` with
  ``control_levels`` levels and ``control_binning: fit``: ``musicfw run`` fits each attribute's
  boundaries to the quantiles of the training split's bars (``REMI.fit``), so every level holds
  about as many training bars, and stores them in the run's tokenizer.json;
* **uncontrolled**: plain REMI, same model, same steps, same seed.

Each generated bar's attribute is measured from its decoded notes (:meth:`REMI.measure_controls`,
with the controlled run's stored boundaries, the ones that wrote its training tokens) and
compared with the request: the share of bars at exactly the requested level, within one level,
and Spearman's rank correlation of requested and measured levels over all bars.  Two kinds of
request (temperature 1.0 then top-p 0.95, the quickstart's sampler):

* **each level alone**: for each attribute and each level, ``--samples`` pieces of ``--bars``
  bars with only that attribute requested, the same level in every bar (the controlled model is
  forced, its other attributes are its own choice; the uncontrolled one cannot be forced and is
  sampled as it is);
* **held-out pieces**: the levels of the first ``--bars`` bars of every test-split piece, all
  four attributes forced bar by bar -- what the ``control_adherence`` metric of a run measures
  (plugins/metrics/controls.py); next to it the same controlled model left to choose its own
  control tokens, and the uncontrolled model.

    python benchmarks/controls.py [--levels 4] [--steps 1200] [--samples 4] [--bars 8] [--seed 0] [--model lstm|transformer]
                                  [--transpose -5 6]

``--controlled-run`` / ``--uncontrolled-run`` measure already trained runs (of this script,
``--keep DIR``) instead of training.  Targets (issue 26): density and pitch range exact >= 60 %,
within one >= 90 %, rank correlation >= 0.8, each well above the uncontrolled model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ATTRIBUTES = ("density", "polyphony", "pitch_range", "duration")
TARGETS = {"density": (0.6, 0.9, 0.8), "pitch_range": (0.6, 0.9, 0.8)}


#: the two model families measured: the quickstart's LSTM, and the Transformer of
#: examples/transformer_chorales.yaml (2 x 128, relative attention, no dropout; issue 33's winner)
MODELS = {
    "lstm": {"name": "lstm", "hidden_size": 256, "num_layers": 1, "embed_dim": 128, "dropout": 0.1},
    "transformer": {"name": "transformer", "d_model": 128, "num_layers": 2, "num_heads": 4, "d_ff": 512,
                    "dropout": 0.0, "max_context": 128, "position": "relative"},
}


def experiment(tokenizer: dict, steps: int, seed: int, out: str, model: str = "lstm",
               transpose: list[int] | None = None) -> dict:
    return {
        "name": "controls_benchmark",
        "seed": seed,
        "output_dir": out,
        "data": {"name": "bach_chorales"},
        "tokenizer": tokenizer,
        "model": dict(MODELS[model]),
        **({"augment": {"transpose": list(transpose)}} if transpose else {}),
        "train": {"batch_size": 16, "seq_len": 128, "lr": 0.003, "lr_schedule": "cosine", "warmup_steps": 50,
                  "max_epochs": 1000, "max_steps": steps, "early_stopping_patience": 0,
                  **({"weight_decay": 0.01, "gradient_clip_val": 1.0} if model == "transformer" else {})},
        "sampler": [{"name": "temperature", "temperature": 1.0}, {"name": "top_p", "p": 0.95}],
        "generate": {"n": 1, "max_bars": 2, "max_tokens": 400, "render_audio": False},
        "evaluate": {"enabled": False},
        "logger": {"name": "none"},
    }


class HeldOut:
    """The test split's token sequences, as a run's data module gives them to a metric."""

    def __init__(self, tokens: list):
        self._tokens = tokens

    def tokens(self, split: str) -> list:
        return list(self._tokens)


def held_out(tokenizer, seed: int) -> HeldOut:
    import musicfw

    data = musicfw.load_data("bach_chorales", seed=seed, progress=False)
    return HeldOut([tokenizer.encode(p.score) for p in sorted(data.pieces("test"), key=lambda p: p.id)])


def held_out_adherence(model, gen_tok, tok, data: HeldOut, bars: int, seed: int, force: bool) -> dict:
    """The control_adherence metric's numbers (every test piece's first ``bars`` bars
    requested): forced for the controlled model (with its free generation beside), free for the
    uncontrolled one (its tokenizer ``gen_tok``; its bars measured with the controlled run's
    tokenizer ``tok``)."""
    import musicfw
    from musicfw.plugins.metrics.controls import _collect, _token_budget, scores

    pieces = len(data.tokens("test"))
    metric = musicfw.build_metric("control_adherence", pieces=pieces, bars=bars, seed=seed)
    if force:
        return metric.evaluate(model, data, tok)
    # the uncontrolled model: the same requests, its free bars (what the metric does without forcing)
    from musicfw.engine.generation import build_sampler_chain, generate

    controls = tok.controls
    plans, budgets = [], []
    for tokens in data.tokens("test"):
        stated = tok.measure_controls(tokens)["tokens"]
        plans.append(np.stack([stated[a] for a in controls], axis=1)[:bars])
        budgets.append(_token_budget(tokens, tok, len(plans[-1])))
    sampler = build_sampler_chain([{"name": "temperature", "temperature": 1.0}, {"name": "top_p", "p": 0.95}])
    res = generate(model, gen_tok, sampler, n=pieces, batch_size=pieces, max_tokens=max(budgets),
                   max_bars=bars, seed=seed)
    pairs = {a: ([], []) for a in controls}
    for j, plan in enumerate(plans):
        _collect(pairs, tok, controls, plan, res.tokens[j], res.stop_reasons[j])
    out = {"bars": len(pairs[controls[0]][0])}
    for a in controls:
        for key, value in scores(*pairs[a]).items():
            out[f"{a}_{key}"] = value
    return out


def adherence(model, tok, sampler, attribute: str, levels: int, n: int, bars: int, seed: int,
              force: bool, bins_tok) -> tuple[np.ndarray, np.ndarray]:
    """(requested, measured) level per generated bar, every level requested ``n`` times."""
    from musicfw.engine.generation import generate

    req, got = [], []
    for level in range(levels):
        res = generate(model, tok, sampler, n=n, batch_size=n, max_tokens=bars * 160, max_bars=bars,
                       seed=seed + 1000 * level + 17 * ATTRIBUTES.index(attribute),
                       controls={attribute: level} if force else None)
        for seq in res.tokens:
            measured = bins_tok.measure_controls(np.asarray(seq))["levels"][attribute]
            # only whole bars: the ones another Bar closes, and the last when max_bars stopped it
            measured = measured[:bars]
            req.extend([level] * len(measured))
            got.extend(measured.tolist())
    return np.array(req), np.array(got)


def scores(req: np.ndarray, got: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    rho = spearmanr(req, got).statistic if len(set(got.tolist())) > 1 else 0.0
    return {"bars": int(len(req)), "exact": float(np.mean(req == got)),
            "within_one": float(np.mean(np.abs(req - got) <= 1)), "spearman": float(rho)}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--samples", type=int, default=4, help="pieces per attribute and level")
    ap.add_argument("--bars", type=int, default=8, help="bars per piece")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", choices=sorted(MODELS), default="lstm",
                    help="the model both runs train (lstm: the quickstart's 1x256; transformer: "
                    "examples/transformer_chorales.yaml's 2x128)")
    ap.add_argument("--transpose", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                    help="train both models with random transposition in [LO, HI] semitones (augment.transpose; "
                    "it leaves every control level as it is)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep the run folders in DIR (default: a temporary folder)")
    ap.add_argument("--controlled-run", default=None, metavar="RUN_DIR",
                    help="measure this already trained controlled run instead of training one (its tokenizer.json "
                    "holds its levels and boundaries; --levels and --steps are then not used for it)")
    ap.add_argument("--uncontrolled-run", default=None, metavar="RUN_DIR",
                    help="measure this already trained uncontrolled run instead of training one; "
                    "its plain REMI tokens do not depend on --levels")
    args = ap.parse_args(argv)

    import torch

    import musicfw
    from musicfw.engine.generation import build_sampler_chain
    from musicfw.engine.training import load_model

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    tokenizers = {
        "controlled": {"name": "remi", "controls": list(ATTRIBUTES), "control_levels": args.levels, "control_binning": "fit"},
        "uncontrolled": {"name": "remi"},
    }
    given = {"controlled": args.controlled_run, "uncontrolled": args.uncontrolled_run}
    results: dict = {}
    models: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or tmp
        for label, section in tokenizers.items():
            t = time.perf_counter()
            if given[label]:
                run_dir, fit_s = Path(given[label]), None
            else:
                run_dir = musicfw.run(experiment(section, args.steps, args.seed, out, args.model,
                                                 args.transpose)).run_dir
                fit_s = time.perf_counter() - t
            model, tok = load_model(run_dir)
            models[label] = (model, tok)
            results[label] = {"train_seconds": fit_s, "run": str(run_dir)}
        # measuring: the controlled run's tokenizer (its fitted boundaries) for both models' bars
        measure = models["controlled"][1]
        levels = int(measure.config.control_levels)
        bins = {a: list(measure.control_bins[a]) for a in ATTRIBUTES}
        print(f"boundaries ({levels} levels, fitted to the training split by the controlled run):")
        for a, b in bins.items():
            print(f"  {a:12s} {', '.join(f'{x:g}' for x in b)}")
        sampler = build_sampler_chain(experiment(tokenizers["uncontrolled"], 1, 0, tmp)["sampler"])
        data = held_out(measure, args.seed)
        for label, (model, tok) in models.items():
            t = time.perf_counter()
            for a in ATTRIBUTES:
                req, got = adherence(model, tok, sampler, a, levels, args.samples, args.bars, args.seed,
                                     force=label == "controlled", bins_tok=measure)
                results[label][a] = scores(req, got)
                print(f"  {label} {a}: {results[label][a]}", flush=True)
            results[label]["held_out"] = held_out_adherence(model, tok, measure, data, args.bars, args.seed,
                                                           force=label == "controlled")
            print(f"  {label} held-out requests: {results[label]['held_out']}", flush=True)
            print(f"{label}: measured in {time.perf_counter() - t:.0f} s ({results[label]['run']})", flush=True)

    print()
    print(f"control adherence, each level alone: {levels} levels, {args.samples} pieces x {args.bars} bars per level "
          f"(seed {args.seed})")
    header = f"{'attribute':12s} {'model':24s} {'bars':>5s} {'exact':>7s} {'within 1':>9s} {'spearman':>9s}  target"
    print(header)
    for a in ATTRIBUTES:
        for label in tokenizers:
            print(_row(a, label, results[label][a], label == "controlled"))
    held = results["controlled"]["held_out"]
    print()
    print(f"control adherence, held-out requests: the first {args.bars} bars of {held.get('pieces')} test pieces, "
          f"all four attributes forced bar by bar (seed {args.seed})")
    print(header)
    for a in ATTRIBUTES:
        for label, source, prefix in (("controlled", held, ""), ("controlled, not forced", held, "uncontrolled_"),
                                      ("uncontrolled", results["uncontrolled"]["held_out"], "")):
            s = {"bars": source.get(f"{prefix}bars"), **{k: source.get(f"{prefix}{a}_{k}") for k in ("exact", "within_one", "spearman")}}
            print(_row(a, label, s, label == "controlled"))
    print(f"total {time.perf_counter() - t0:.0f} s wall")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "bins": bins, "results": results}, indent=1) + "\n")
    return 0


def _row(a: str, label: str, s: dict, check: bool) -> str:
    target = ""
    if check and a in TARGETS:
        te, tw, tr = TARGETS[a]
        ok = (s["exact"] or 0) >= te and (s["within_one"] or 0) >= tw and (s["spearman"] or 0) >= tr
        target = f">= {te:.0%} / {tw:.0%} / {tr}: " + ("met" if ok else "MISSED")
    return (f"{a:12s} {label:24s} {s['bars'] or 0:5d} {_pct(s['exact']):>7s} {_pct(s['within_one']):>9s} "
            f"{_num(s['spearman']):>9s}  {target}")


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
