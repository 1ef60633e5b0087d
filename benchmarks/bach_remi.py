"""Bach chorales with REMI tokens: the Transformer and the LSTM against Markov chains of order 1 and 2.

All three models see the same deterministic split of music21's Bach chorales (the
``bach_chorales`` dataset, seed 0) and the same REMI tokens.  The Markov chains are fitted by
counting on the whole training pieces; the LSTM is trained with musicfw's ``fit`` (random
training windows, best checkpoint by validation NLL).  Held-out NLL is exact (whole pieces,
every token scored), reported per token, as perplexity, and per note (the summed NLL of the
test split divided by the number of notes its tokens decode to), so it can be compared with
other tokenizers.

The Transformer (``transformer``, relative attention, the small CPU preset of
examples/transformer_chorales.yaml) gets the same training budget as the LSTM in CPU time:
both models' time per training step is probed on the same training batches, back to back, in
this run (``time.process_time``, one torch thread, so other jobs on a shared machine slow the
wall clock but not the count), and the Transformer trains for
``LSTM steps x LSTM step time / Transformer step time`` steps (its cosine schedule then ends
where its budget does).  The validation
NLL at 5 points (the learning curve; each model's epoch is a fifth of its steps, so the last
point is its final step and the best of the 5 checkpoints is tested) is printed for both.  Fit times are wall-clock
seconds of training only (noisy on a shared machine).

    python benchmarks/bach_remi.py [key=value ...]     e.g. train.max_steps=600 model.hidden_size=256
    python benchmarks/bach_remi.py --tf model.num_layers=2 --tf train.lr=0.002   (Transformer only)
    python benchmarks/bach_remi.py --no-transformer
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

EXPERIMENT = {
    "name": "bach_remi_benchmark",
    "seed": 0,
    "data": {"name": "bach_chorales"},
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

#: the Transformer's section (examples/transformer_chorales.yaml's preset) and its own train
#: settings (the rest of ``train`` is the LSTM's: batch size, windows, clipping, validation)
#: max_context = train.seq_len: held-out pieces are scored with the context the model was
#: trained on (a sliding window of 128).  With max_context 512 the 4x128 model's validation NLL
#: was 1.64 while its training loss was 1.32, and the same weights (step 141) scored 1.611
#: nats/token on the test chorales with a 512 window but 1.422 with a 128 one: relative
#: distances beyond the training windows are never trained
TRANSFORMER = {
    "model": {"name": "transformer", "d_model": 128, "num_layers": 4, "num_heads": 4, "d_ff": 512,
              "dropout": 0.1, "max_context": 128, "position": "relative"},
    "train": {"lr": 0.002, "warmup_steps": 50, "weight_decay": 0.01},
}


VAL_POINTS = 5


def step_seconds(model, dm, config, n: int = 12) -> float:
    """Median CPU seconds of one training step (forward, backward, AdamW) on real training
    batches (the first 2 are warm-up)."""
    import torch

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=float(config.train.lr))
    loader = iter(dm.train_dataloader())
    times = []
    for _ in range(n + 2):
        batch = next(loader)
        t0 = time.process_time()
        loss = model.loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.process_time() - t0)
    return sorted(times[2:])[n // 2]


def curve(run: Path) -> list[tuple[int, float]]:
    from musicfw.engine.loggers import read_history

    return [(int(r["step"]), float(r["val/nll"])) for r in read_history(run) if "val/nll" in r]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    import musicfw
    from lightning_fabric.utilities.seed import seed_everything

    from musicfw.core.build import build_from_section
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.training import evaluate_nll, fit

    import torch

    # one thread: on a shared 2-core CPU two torch threads fighting other processes for the
    # cores spin on locks and run many times slower (measured here: 3 s/step instead of 0.1)
    torch.set_num_threads(int(__import__("os").environ.get("MUSICFW_BENCH_THREADS", "1")))
    args = list(argv)
    with_tf = "--no-transformer" not in args
    tf_overrides = [args[i + 1] for i, a in enumerate(args) if a == "--tf"]
    argv = [a for i, a in enumerate(args) if a not in ("--tf", "--no-transformer") and (i == 0 or args[i - 1] != "--tf")]
    config = musicfw.load_config(EXPERIMENT, argv)
    seed_everything(int(config.seed))
    out = Path(tempfile.mkdtemp(prefix="musicfw-bach-remi-"))
    tokenizer = build_from_section("tokenizers", config.tokenizer)
    t0 = time.perf_counter()
    dm = build_datamodule(
        config.data, tokenizer, train=config.train, augment=config.get("augment"), seed=int(config.seed),
        run_dir=out, progress=False,
    )
    print(f"data: {dm.summary()} ({time.perf_counter() - t0:.1f} s)", flush=True)
    test_tokens = dm.tokens("test")
    n_notes = sum(tokenizer.count_notes(t) for t in test_tokens)

    rows = []
    for order in (1, 2):
        model = musicfw.build_model("markov", tokenizer=tokenizer, order=order)
        run = out / f"markov{order}"
        run.mkdir()
        markov_config = OmegaConf.to_container(config)
        markov_config["model"] = {"name": "markov", "order": order}
        metrics = fit(model, dm, config.train, run, logger=config.logger, hyperparams=markov_config)
        test = evaluate_nll(model, dm.test_dataloader())
        rows.append((f"markov order {order}", test, metrics["val_nll"], metrics["train_time_s"]))
        print(f"markov {order}: test {test['nll_per_token']:.4f} nats/token", flush=True)

    import copy

    tf_config = None
    if with_tf:
        base = OmegaConf.to_container(config)
        base["model"] = copy.deepcopy(TRANSFORMER["model"])
        base["train"].update(TRANSFORMER["train"])
        tf_config = musicfw.load_config(base, tf_overrides)

    lstm = build_from_section("models", config.model, tokenizer=tokenizer)
    m = config.model
    lstm_label = f"lstm {m.num_layers}x{m.hidden_size}"
    curves = {}
    if with_tf:
        import random

        import numpy as np

        # the probes draw random numbers (training windows, dropout): the LSTM then trains from
        # the random state it has without them, so its row is the same with or without the
        # Transformer (python benchmarks/bach_remi.py --no-transformer)
        saved = (torch.get_rng_state(), np.random.get_state(), random.getstate())
        torch.manual_seed(0)
        tf = build_from_section("models", tf_config.model, tokenizer=tokenizer)
        probe_lstm = step_seconds(copy.deepcopy(lstm), dm, config)
        probe_tf = step_seconds(copy.deepcopy(tf), dm, tf_config)
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
        lstm_steps = int(config.train.max_steps)
        # a multiple of VAL_POINTS, so that the last validation falls on the final step
        tf_steps = VAL_POINTS * max(1, round(lstm_steps * probe_lstm / probe_tf / VAL_POINTS))
        tf_config.train.max_steps = tf_steps
        print(f"CPU seconds per training step: {lstm_label} {probe_lstm:.3f}, transformer {probe_tf:.3f} "
              f"-> transformer budget {tf_steps} steps (= {lstm_steps} LSTM steps)", flush=True)

    fits = [(lstm_label, lstm, config)]
    if with_tf:
        t = tf_config.model
        fits.append((f"transformer {t.num_layers}x{t.d_model} {t.position}", tf, tf_config))
    for label, model, cfg in fits:
        # validate (and checkpoint the best) VAL_POINTS times, the last one at the final step:
        # otherwise a budget that ends mid-epoch is judged by an earlier epoch's weights (the
        # LSTM's 800 / 5 = 160 is longer than a whole epoch, 141 batches: its recipe is unchanged)
        cfg.train.limit_train_batches = float(math.ceil(int(cfg.train.max_steps) / VAL_POINTS))
        run = out / label.split()[0]
        run.mkdir()
        print(f"{label}: training up to {cfg.train.max_steps} steps -> {run}", flush=True)
        metrics = fit(model, dm, cfg.train, run, logger=cfg.logger, hyperparams=OmegaConf.to_container(cfg))
        test = evaluate_nll(model, dm.test_dataloader())
        name = f"{label} ({metrics['global_step']} steps, {metrics['n_parameters'] / 1e6:.2f} M params)"
        rows.append((name, test, metrics["val_nll"], metrics["train_time_s"]))
        curves[label] = curve(run)
        print(f"{label}: test {test['nll_per_token']:.4f} nats/token", flush=True)

    print()
    print(f"Bach chorales, REMI (vocab {tokenizer.vocab_size}); test split: {len(test_tokens)} pieces, "
          f"{rows[0][1]['n_targets']} tokens, {n_notes} notes")
    print("| model | test NLL/token | test perplexity | test NLL/note | valid NLL/token | fit time (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, test, val, secs in rows:
        print(
            f"| {name} | {test['nll_per_token']:.4f} | {math.exp(test['nll_per_token']):.3f} | "
            f"{test['nll_sum'] / n_notes:.3f} | {val:.4f} | {secs:.1f} |"
        )
    if len(rows) >= 4:
        lstm_nll, tf_nll = rows[2][1]["nll_per_token"], rows[3][1]["nll_per_token"]
        print(f"\ntransformer / LSTM test NLL per token: {tf_nll / lstm_nll:.3f} (same CPU-time budget)")
    print("\nlearning curves: validation NLL per token after each epoch (step: nll)")
    for label, points in curves.items():
        print(f"  {label}: " + ", ".join(f"{st}: {v:.3f}" for st, v in points))
    return 0


if __name__ == "__main__":
    sys.exit(main())
