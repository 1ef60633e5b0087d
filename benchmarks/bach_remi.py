"""Bach chorales with REMI tokens: the LSTM against Markov chains of order 1 and 2.

All three models see the same deterministic split of music21's Bach chorales (the
``bach_chorales`` dataset, seed 0) and the same REMI tokens.  The Markov chains are fitted by
counting on the whole training pieces; the LSTM is trained with musicfw's ``fit`` (random
training windows, best checkpoint by validation NLL).  Held-out NLL is exact (whole pieces,
every token scored), reported per token, as perplexity, and per note (the summed NLL of the
test split divided by the number of notes its tokens decode to), so it can be compared with
other tokenizers.

    python benchmarks/bach_remi.py [key=value ...]     e.g. train.max_steps=600 model.hidden_size=256
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    import musicfw
    from musicfw.core.build import build_from_section
    from musicfw.core.data import build_datamodule
    from lightning_fabric.utilities.seed import seed_everything
    from musicfw.core.training import evaluate_nll, fit

    import torch

    # one thread: on a shared 2-core CPU two torch threads fighting other processes for the
    # cores spin on locks and run many times slower (measured here: 3 s/step instead of 0.1)
    torch.set_num_threads(int(__import__("os").environ.get("MUSICFW_BENCH_THREADS", "1")))
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

    model = build_from_section("models", config.model, tokenizer=tokenizer)
    run = out / "lstm"
    run.mkdir()
    m = config.model
    print(f"lstm {m.num_layers}x{m.hidden_size}: training up to {config.train.max_steps} steps -> {run}", flush=True)
    metrics = fit(model, dm, config.train, run, logger=config.logger, hyperparams=OmegaConf.to_container(config))
    test = evaluate_nll(model, dm.test_dataloader())
    rows.append((f"lstm {m.num_layers}x{m.hidden_size} ({metrics['global_step']} steps)", test, metrics["val_nll"], metrics["train_time_s"]))

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
