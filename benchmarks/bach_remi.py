"""Bach chorales with REMI tokens: the Transformer and the LSTM at an equal, counted training
budget, against Markov chains of order 1 and 2 (issue 33).

All models see the same split of music21's Bach chorales (the ``bach_chorales`` dataset, split
by tune -- the default -- with ``data.split_seed: 0`` whatever the training seed) and the same
REMI tokens.  The Markov chains are fitted by counting on the whole training pieces; the neural
models are trained with musicfw's ``fit`` (random training windows, the best of 5 validation
checkpoints, the last at the final step, is tested).  Held-out NLL is exact (whole pieces, every
token scored), reported per token, as perplexity, and per note (the summed NLL of the test split
divided by the number of notes its tokens decode to), so it can be compared with other
tokenizers.

**Equal budget** = the same number of floating-point operations counted on a training step
(forward + backward, ``FlopCounterMode``; benchmarks/equal_budget.py says how and why): the
LSTM baseline (1x256, 800 steps of 16 x 128 tokens) fixes the budget, and the Transformer trains
``round(800 x LSTM step FLOPs / its step FLOPs)`` steps (to a multiple of 5, so its 5th
validation falls on its last step).  No timing enters the step counts, so the same command
gives the same digits on any machine of this kind whatever its load: training is deterministic
for a seed (one torch thread; two runs of one seed gave the same digits).  Fit times are printed
too (wall clock, noisy on a shared machine): a counted FLOP of relative attention costs more
CPU seconds here than one of the fused LSTM kernel.

The Transformer's settings are ``examples/transformer_chorales.yaml`` (its ``model``, ``train``
and ``augment`` sections; ``train.max_steps`` is replaced by the budget, and the benchmark
checks that the YAML's own value equals it), so the example is what the README row measured.
Each model trains once per seed (``--seeds``, default 0,1,2: the windows, dropout and
initialisation change; the split does not); the summary gives the mean, the sample standard
deviation and the range (max - min) over the seeds, and the Transformer / LSTM ratio of the
means.  The models of one seed do not depend on each other (each starts from
``seed_everything(seed)``), so ``--no-transformer`` / ``--no-lstm`` runs give the same digits
as one run with both (handy for two processes in parallel).

    python benchmarks/bach_remi.py                       # 3 seeds, Markov + LSTM + Transformer
    python benchmarks/bach_remi.py --seeds 0 --tf model.dropout=0.0 --tf train.lr=0.002
    python benchmarks/bach_remi.py --no-lstm --no-markov --json tf.json   # Transformer only
    python benchmarks/bach_remi.py --budget-only          # the counted budget, no training
    python benchmarks/bach_remi.py [key=value ...]        # overrides of the LSTM baseline

Candidates measured for the Transformer (seeds, test NLL per token; the LSTM 1x256 baseline at
800 steps is in the README row) are listed in docs/models.md ("Transformer on the chorales").
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

from equal_budget import gflops, mean_spread, steps_for_budget, train_step_flops

REPO = Path(__file__).resolve().parents[1]
TRANSFORMER_YAML = REPO / "examples" / "transformer_chorales.yaml"

EXPERIMENT = {
    "name": "bach_remi_benchmark",
    "seed": 0,
    # split_seed fixed: every training seed is scored on the same test chorales
    "data": {"name": "bach_chorales", "split_seed": 0},
    "tokenizer": {"name": "remi"},
    "model": {"name": "lstm", "hidden_size": 256, "num_layers": 1, "embed_dim": 128, "dropout": 0.1},
    "train": {
        "batch_size": 16,
        "seq_len": 128,
        "lr": 0.003,
        "max_epochs": 1000,
        "max_steps": 800,
        "lr_schedule": "cosine",
        "warmup_steps": 50,
        "gradient_clip_val": 1.0,
        "check_val_every_n_epoch": 1,
        "checkpoint_every_n_steps": 400,
    },
    "evaluate": {"metrics": []},
    "logger": {"name": "none"},
}

VAL_POINTS = 5
SEEDS = (0, 1, 2)


def transformer_config(config, overrides: list[str], yaml: Path = TRANSFORMER_YAML):
    """The baseline's experiment with examples/transformer_chorales.yaml's model, train and
    augment sections (plus ``--tf`` overrides); the data and tokenizer stay the baseline's."""
    import musicfw

    example = OmegaConf.to_container(OmegaConf.load(yaml))
    base = OmegaConf.to_container(config)
    base["model"] = example["model"]
    base["train"] = {**example["train"], "max_epochs": 1000, "check_val_every_n_epoch": 1,
                     "checkpoint_every_n_steps": 400, "early_stopping_patience": 0}
    if example.get("augment") is not None:
        base["augment"] = example["augment"]
    return musicfw.load_config(base, overrides), int(example["train"]["max_steps"])


def curve(run: Path) -> list[tuple[int, float]]:
    from musicfw.engine.loggers import read_history

    return [(int(r["step"]), float(r["val/nll"])) for r in read_history(run) if "val/nll" in r]


def _pop_flag(args: list[str], flag: str) -> bool:
    if flag in args:
        args.remove(flag)
        return True
    return False


def _pop_values(args: list[str], flag: str) -> list[str]:
    values = []
    while flag in args:
        i = args.index(flag)
        values.append(args[i + 1])
        del args[i : i + 2]
    return values


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--merge" in args:  # python benchmarks/bach_remi.py --merge a.json b.json ...
        report(merge(args[args.index("--merge") + 1 :]))
        return 0
    import os

    import torch

    # one thread: deterministic digits, and on a shared 2-core CPU two torch threads fighting
    # other processes for the cores spin on locks (measured here: 3 s/step instead of 0.1)
    torch.set_num_threads(int(os.environ.get("MUSICFW_BENCH_THREADS", "1")))
    import musicfw
    from lightning_fabric.utilities.seed import seed_everything

    from musicfw.core.build import build_from_section
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.training import evaluate_nll, fit

    with_tf = not _pop_flag(args, "--no-transformer")
    with_lstm = not _pop_flag(args, "--no-lstm")
    with_markov = not _pop_flag(args, "--no-markov")
    budget_only = _pop_flag(args, "--budget-only")
    tf_overrides = _pop_values(args, "--tf")
    json_out = (_pop_values(args, "--json") or [None])[-1]
    seeds = [int(s) for s in (_pop_values(args, "--seeds") or [",".join(map(str, SEEDS))])[-1].split(",")]
    config = musicfw.load_config(EXPERIMENT, args)
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    tf_config, yaml_steps = transformer_config(config, tf_overrides)

    # the budget: counted, from the models' shapes (their initial weights do not matter)
    with torch.random.fork_rng(devices=[]):
        lstm_flops = train_step_flops(build_from_section("models", config.model, tokenizer=tokenizer),
                                      int(config.train.batch_size), int(config.train.seq_len))
        tf_flops = train_step_flops(build_from_section("models", tf_config.model, tokenizer=tokenizer),
                                    int(tf_config.train.batch_size), int(tf_config.train.seq_len))
    lstm_steps = int(config.train.max_steps)
    budget = lstm_steps * lstm_flops
    tf_steps = steps_for_budget(budget, tf_flops, VAL_POINTS)
    tf_config.train.max_steps = tf_steps
    m, t = config.model, tf_config.model
    lstm_label = f"lstm {m.num_layers}x{m.hidden_size}"
    tf_label = f"transformer {t.num_layers}x{t.d_model} {t.position}"
    print(f"budget: {lstm_label} {gflops(lstm_flops)} per step x {lstm_steps} steps = {budget / 1e12:.3f} TFLOPs; "
          f"{tf_label} {gflops(tf_flops)} per step -> {tf_steps} steps ({tf_steps * tf_flops / budget:.4f} of the budget)",
          flush=True)
    if yaml_steps != tf_steps and not tf_overrides:
        print(f"NOTE: {TRANSFORMER_YAML.relative_to(REPO)} has train.max_steps {yaml_steps}, the budget gives {tf_steps}",
              flush=True)
    if budget_only:
        return 0

    out = Path(tempfile.mkdtemp(prefix="musicfw-bach-remi-"))
    fits = []
    if with_lstm:
        fits.append((lstm_label, config))
    if with_tf:
        fits.append((tf_label, tf_config))
    results: dict[str, list[dict]] = {}
    test_info = {}
    markov_rows = []
    for seed in seeds:
        for label, base_cfg in fits:
            cfg = OmegaConf.create(OmegaConf.to_container(base_cfg))
            cfg.seed = seed
            run = out / f"{label.split()[0]}-seed{seed}"
            run.mkdir()
            seed_everything(seed)
            dm = build_datamodule(cfg.data, tokenizer, train=cfg.train, augment=cfg.get("augment"), seed=seed,
                                  run_dir=run, progress=False)
            if not test_info:
                test_tokens = dm.tokens("test")
                test_info = {"pieces": len(test_tokens), "notes": sum(tokenizer.count_notes(x) for x in test_tokens),
                             "summary": dm.summary()}
                print(f"data: {test_info['summary']}", flush=True)
            if with_markov and not markov_rows:
                for order in (1, 2):
                    markov = musicfw.build_model("markov", tokenizer=tokenizer, order=order)
                    mrun = out / f"markov{order}"
                    mrun.mkdir()
                    metrics = fit(markov, dm, cfg.train, mrun, logger=cfg.logger)
                    test = evaluate_nll(markov, dm.test_dataloader())
                    markov_rows.append((f"markov order {order}", test, metrics))
                    print(f"markov {order}: test {test['nll_per_token']:.4f} nats/token", flush=True)
            model = build_from_section("models", cfg.model, tokenizer=tokenizer)
            # validate (and checkpoint the best) VAL_POINTS times, the last one at the final step
            cfg.train.limit_train_batches = float(math.ceil(int(cfg.train.max_steps) / VAL_POINTS))
            print(f"{label} seed {seed}: training {cfg.train.max_steps} steps -> {run}", flush=True)
            metrics = fit(model, dm, cfg.train, run, logger=cfg.logger, hyperparams=OmegaConf.to_container(cfg))
            test = evaluate_nll(model, dm.test_dataloader())
            row = {"seed": seed, "test_nll_per_token": test["nll_per_token"], "test_nll_sum": test["nll_sum"],
                   "n_targets": test["n_targets"], "test_nll_per_note": test["nll_sum"] / test_info["notes"],
                   "val_nll": metrics["val_nll"], "steps": metrics["global_step"],
                   "n_parameters": metrics["n_parameters"], "fit_time_s": metrics["train_time_s"],
                   "step_flops": lstm_flops if label == lstm_label else tf_flops, "curve": curve(run)}
            results.setdefault(label, []).append(row)
            print(f"{label} seed {seed}: test {row['test_nll_per_token']:.4f} nats/token, val {row['val_nll']:.4f}, "
                  f"{row['steps']} steps, {row['fit_time_s']:.0f} s", flush=True)

    data = {
        "seeds": seeds, "vocab_size": tokenizer.vocab_size, "test": {k: test_info[k] for k in ("pieces", "notes")},
        "budget_flops": budget, "lstm_label": lstm_label, "lstm_steps": lstm_steps, "lstm_step_flops": lstm_flops,
        "tf_label": tf_label, "tf_steps": tf_steps, "tf_step_flops": tf_flops, "tf_overrides": tf_overrides,
        "results": results, "markov": [{"name": n, "test": t, "val_nll": m["val_nll"], "fit_time_s": m["train_time_s"]}
                                       for n, t, m in markov_rows],
        "torch_threads": torch.get_num_threads(),
    }
    report(data)
    if json_out:
        Path(json_out).write_text(json.dumps(data, indent=1))
    return 0


def merge(paths: list[str]) -> dict:
    """One report from several ``--json`` files of the same budget (e.g. one process per seed
    or per model): their rows per model, in seed order."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    data = dict(parts[0])
    for key in ("budget_flops", "tf_steps", "lstm_steps"):
        if len({p[key] for p in parts}) != 1:
            raise SystemExit(f"--merge: the files disagree on {key}: {[p[key] for p in parts]}")
    data["results"] = {}
    data["markov"] = next((p["markov"] for p in parts if p["markov"]), [])
    for p in parts:
        for label, rows in p["results"].items():
            data["results"].setdefault(label, []).extend(rows)
    for rows in data["results"].values():
        rows.sort(key=lambda r: r["seed"])
    data["seeds"] = sorted({r["seed"] for rows in data["results"].values() for r in rows})
    return data


def report(data: dict) -> None:
    results, notes = data["results"], data["test"]["notes"]
    lstm_label, tf_label = data["lstm_label"], data["tf_label"]
    n_targets = next((rows[0]["n_targets"] for rows in results.values() if rows), None)
    print()
    print(f"Bach chorales, REMI (vocab {data['vocab_size']}), split by tune; test split: {data['test']['pieces']} pieces, "
          f"{n_targets} tokens, {notes} notes")
    print(f"equal budget: {data['budget_flops'] / 1e12:.3f} TFLOPs counted ({lstm_label}: {data['lstm_steps']} steps x "
          f"{gflops(data['lstm_step_flops'])}; {tf_label}: {data['tf_steps']} steps x {gflops(data['tf_step_flops'])})")
    print("| model | seed | steps | params (M) | test NLL/token | test perplexity | test NLL/note | valid NLL/token | fit time (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in data["markov"]:
        test = m["test"]
        print(f"| {m['name']} | - | - | - | {test['nll_per_token']:.4f} | {math.exp(test['nll_per_token']):.3f} | "
              f"{test['nll_sum'] / notes:.3f} | {m['val_nll']:.4f} | {m['fit_time_s']:.1f} |")
    for label, rows in results.items():
        for r in rows:
            print(f"| {label} | {r['seed']} | {r['steps']} | {r['n_parameters'] / 1e6:.2f} | {r['test_nll_per_token']:.4f} | "
                  f"{math.exp(r['test_nll_per_token']):.3f} | {r['test_nll_per_note']:.3f} | {r['val_nll']:.4f} | "
                  f"{r['fit_time_s']:.1f} |")
    summary = {}
    print(f"\nover seeds {data['seeds']}: test NLL per token, mean / sample std / range (max - min)")
    for label, rows in results.items():
        s = mean_spread([r["test_nll_per_token"] for r in rows])
        note = mean_spread([r["test_nll_per_note"] for r in rows])
        summary[label] = s
        print(f"  {label}: {s['mean']:.4f} / {s['std']:.4f} / {s['range']:.4f}  (per note {note['mean']:.3f}; "
              f"perplexity {math.exp(s['mean']):.3f}; {s['n']} seeds)")
    if lstm_label in summary and tf_label in summary:
        a, b = summary[lstm_label], summary[tf_label]
        gap, spread = a["mean"] - b["mean"], max(a["range"], b["range"])
        print(f"\ntransformer / LSTM test NLL per token (means): {b['mean'] / a['mean']:.4f} at equal counted FLOPs; "
              f"gap {gap:.4f} nats/token, largest seed range {spread:.4f}: "
              f"{'gap larger than the spread' if abs(gap) > spread else 'gap NOT larger than the spread'}")
    print("\nlearning curves: validation NLL per token at each validation (step: nll)")
    for label, rows in results.items():
        for r in rows:
            print(f"  {label} seed {r['seed']}: " + ", ".join(f"{st}: {v:.3f}" for st, v in r["curve"]))


if __name__ == "__main__":
    sys.exit(main())
