"""Lightning training throughput against a bare PyTorch loop: same model, data, optimizer.

Both sides train the musicfw ``lstm`` on the same random-token batches (a REMI-sized
vocabulary) for the same number of steps, with AdamW and gradient-norm clipping.  The
Lightning side is musicfw's own ``fit`` (the LightningModule, its logging, the history file
and the last-checkpoint callback; validation off); the bare side is a plain loop calling
``model.loss``.  Runs alternate (L, B, L, B, ...); the table reports the best (minimum) time of
each, as ``timeit`` does, because other processes on a shared CPU only ever add time (the
median is printed too).  One torch thread by default, so that contention does not turn into
thread oversubscription.

    python benchmarks/training.py [--steps 60] [--repeats 3] [--batch-size 32] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_batches(n: int, batch_size: int, seq_len: int, vocab: int, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return [
        {
            "tokens": torch.randint(0, vocab, (batch_size, seq_len), generator=gen),
            "mask": torch.ones(batch_size, seq_len, dtype=torch.bool),
        }
        for _ in range(n)
    ]


def build_model(args):
    import torch

    from musicfw.plugins.models.lstm.model import LSTMModel

    torch.manual_seed(0)
    return LSTMModel(args.vocab, "categorical", hidden_size=args.hidden, num_layers=args.layers, embed_dim=args.embed)


def run_bare(args, batches) -> float:
    import torch

    model = build_model(args)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for batch in batches:
        out = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return time.perf_counter() - t0


def run_lightning(args, batches) -> float:
    import pytorch_lightning as pl
    import torch
    from omegaconf import OmegaConf

    from musicfw.engine.training import fit

    class Data(pl.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)

    config = OmegaConf.create(
        {
            "train": {
                "max_epochs": 1,
                "lr": 1e-3,
                "gradient_clip_val": 1.0,
                "limit_val_batches": 0,
                "checkpoint_every_n_steps": 0,
            },
            "logger": {"name": "none", "log_every_n_steps": 10},
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        metrics = fit(build_model(args), Data(), config.train, Path(tmp), logger=config.logger)
    assert metrics["global_step"] == len(batches)
    return metrics["train_time_s"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--embed", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    batches = make_batches(args.steps, args.batch_size, args.seq_len, args.vocab)
    tokens = args.steps * args.batch_size * args.seq_len
    run_bare(args, batches[:3])  # warm up the allocator and kernels once
    times = {"lightning": [], "bare": []}
    for r in range(args.repeats):
        times["lightning"].append(run_lightning(args, batches))
        times["bare"].append(run_bare(args, batches))
        print(f"repeat {r + 1}: lightning {times['lightning'][-1]:.2f} s, bare {times['bare'][-1]:.2f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    print()
    print(
        f"lstm {args.layers}x{args.hidden}, vocab {args.vocab}, batch {args.batch_size} x {args.seq_len} tokens, "
        f"{args.steps} steps, {args.repeats} alternating repeats (torch threads {torch.get_num_threads()})"
    )
    print("| loop | best time (s) | tokens/s | vs bare | median time (s) | vs bare |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in ("bare", "lightning"):
        print(
            f"| {name} | {best[name]:.2f} | {tokens / best[name]:,.0f} | {best[name] / best['bare']:.3f}x "
            f"| {med[name]:.2f} | {med[name] / med['bare']:.3f}x |"
        )
    overhead = best["lightning"] / best["bare"] - 1
    print(f"\nLightning overhead (best of {args.repeats}): {overhead * 100:+.1f}% (target: at most +5%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
