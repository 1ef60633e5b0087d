"""DDP on N CPU processes next to one process: step time and tokens/s at the same global batch.

Both sides are ``musicfw run`` on the same experiment (the quickstart's LSTM on the Bach
chorales by default), validation, generation and evaluation off, one torch thread per process:

* one process, ``train.batch_size = B``;
* ``train.devices = N``, ``train.strategy = ddp`` (gloo on CPU), ``train.batch_size = B / N``.

The union of the N processes' batches is the one-process batch (docs/scaling.md), so both do
the same work per optimizer step; the DDP side adds the gradient all-reduce and runs the N
shares in parallel.  Time per step is ``train_time_s / global_step`` from the run's
metrics.json (Lightning's loop, from the first step to the last, checkpoints included);
tokens/s counts ``B x seq_len`` tokens per step.  Runs alternate (1, N, 1, N, ...) and the best
of each is reported: other processes on a shared machine only ever add time.

    python benchmarks/ddp.py [--devices 2] [--steps 40] [--batch-size 16] [--seq-len 256] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(args, out: Path, devices: int) -> dict:
    overrides = [
        f"output_dir={out}",
        f"train.max_steps={args.steps}",
        "train.max_epochs=1000",
        f"train.seq_len={args.seq_len}",
        f"train.batch_size={args.batch_size // devices}",
        "train.limit_val_batches=0",
        "train.early_stopping_patience=0",
        f"train.checkpoint_every_n_steps={args.steps}",
        "train.accelerator=cpu",
        f"train.devices={devices}",
        "generate.n=1",
        "generate.max_tokens=8",
        "generate.render_audio=false",
        "evaluate.enabled=false",
        "logger.name=none",
        *args.overrides,
    ]
    if devices > 1:
        overrides.append("train.strategy=ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "musicfw.cli", "run", args.experiment, *overrides],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        sys.exit(result.stderr[-3000:])
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    training = json.loads((run_dir / "metrics.json").read_text())["training"]
    seconds = float(training["train_time_s"])
    steps = int(training["global_step"])
    return {"step_s": seconds / steps, "tokens_per_s": steps * args.batch_size * args.seq_len / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="examples/quickstart.yaml")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16, help="the global batch")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="more config overrides for both sides")
    args = parser.parse_args()
    if args.batch_size % args.devices:
        parser.error("--batch-size must be a multiple of --devices")
    best: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for devices in (1, args.devices):
                res = run(args, Path(tmp) / f"{devices}-{r}", devices)
                if devices not in best or res["step_s"] < best[devices]["step_s"]:
                    best[devices] = res
    one, many = best[1], best[args.devices]
    print(f"{args.experiment}, global batch {args.batch_size} x {args.seq_len} tokens, {args.steps} steps, "
          f"1 torch thread per process, best of {args.repeats}")
    print(f"{'processes':>10} {'step (s)':>10} {'tokens/s':>10}")
    print(f"{1:>10} {one['step_s']:>10.3f} {one['tokens_per_s']:>10.0f}")
    print(f"{args.devices:>10} {many['step_s']:>10.3f} {many['tokens_per_s']:>10.0f}")
    print(f"speed-up (tokens/s, {args.devices} processes / 1): {many['tokens_per_s'] / one['tokens_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
