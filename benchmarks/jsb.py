"""JSB Chorales (and Nottingham) with the published protocol: piano-roll LSTM vs baselines.

Protocol (../shared/data/polyphonic/README.md): the fixed splits of Boulanger-Lewandowski et
al. (2012); predict frame t from frames < t; the first frame of each sequence is not scored;
NLL in nats per frame summed over the 88 keys; averaged over all scored test frames pooled
across the split.  Models:

* ``lstm``: the model and train sections of examples/jsb_lstm.yaml (overrides on the command
  line, e.g. ``model.hidden_size=128 train.max_epochs=50``), trained with musicfw's
  ``fit`` (Lightning; best checkpoint by validation NLL);
* ``markov-n``: frames as states (each distinct training frame a state, rare/unseen frames
  through the unknown-frame Bernoulli model), Witten-Bell smoothing, orders 1..3;
* ``bernoulli``: per-key independent Bernoulli without context (the published table's first
  row, 11.09 on JSB: checks that this protocol matches theirs).

    python benchmarks/jsb.py [--dataset nottingham] [--skip-lstm] [key=value ...]

Prints one table (test and valid NLL per frame, the published number, time).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = {  # Bai et al. 2018 (LSTM), Boulanger-Lewandowski 2012 (per-key Bernoulli row)
    "jsb_chorales": {"lstm": 8.45, "bernoulli": 11.09},
    "nottingham": {"lstm": 3.29, "bernoulli": 10.26},
    "musedata": {"bernoulli": 11.51},
    "piano_midi_de": {"bernoulli": 11.05},
}


def load_frames(dataset: str) -> dict[str, list[np.ndarray]]:
    import musicfw

    ds = musicfw.build_dataset("piano_roll_benchmark", dataset=dataset)
    return {split: [f.astype(np.float32) for f in ds.frames(split)] for split in ("train", "valid", "test")}


def make_datamodule(frames: dict[str, list[np.ndarray]], batch_size: int, seed: int):
    """Whole sequences, padded per batch; valid/test masks leave frame 0 unscored."""
    import pytorch_lightning as pl
    import torch

    def collate(items, score_first):
        T = max(len(x) for x in items)
        K = items[0].shape[1]
        tokens = torch.zeros(len(items), T, K)
        mask = torch.zeros(len(items), T, dtype=torch.bool)
        for i, x in enumerate(items):
            tokens[i, : len(x)] = torch.from_numpy(x)
            mask[i, : len(x)] = True
        if not score_first:
            mask[:, 0] = False
        return {"tokens": tokens, "mask": mask}

    class PianoRollData(pl.LightningDataModule):
        def _loader(self, split, shuffle):
            gen = torch.Generator().manual_seed(seed)
            return torch.utils.data.DataLoader(
                frames[split],
                batch_size=batch_size if shuffle else 64,
                shuffle=shuffle,
                generator=gen,
                collate_fn=lambda items: collate(items, score_first=shuffle),
            )

        def train_dataloader(self):
            return self._loader("train", True)

        def val_dataloader(self):
            return self._loader("valid", False)

        def test_dataloader(self):
            return self._loader("test", False)

    return PianoRollData()


def bernoulli_baseline(frames) -> tuple[float, float]:
    train = np.concatenate(frames["train"])
    q = np.clip(train.mean(axis=0), 1e-6, 1 - 1e-6)
    out = []
    for split in ("test", "valid"):
        x = np.concatenate([s[1:] for s in frames[split]])  # first frame unscored
        nll = -(x * np.log(q) + (1 - x) * np.log1p(-q)).sum(axis=1)
        out.append(float(nll.mean()))
    return out[0], out[1]


def markov_baseline(frames, order: int) -> tuple[float, float, float]:
    from musicfw.core.training import evaluate_nll
    from musicfw.plugins.models.markov.model import MarkovModel

    t0 = time.perf_counter()
    model = MarkovModel(88, "multihot", order=order).fit_sequences(frames["train"])
    fit_s = time.perf_counter() - t0
    dm = make_datamodule(frames, 64, 0)
    test = evaluate_nll(model, dm.test_dataloader())["nll_per_token"]
    valid = evaluate_nll(model, dm.val_dataloader())["nll_per_token"]
    return test, valid, fit_s


def lstm_run(frames, config, out_dir: Path) -> dict:
    import torch

    import musicfw
    from musicfw.core.config import plugin_params
    from lightning_fabric.utilities.seed import seed_everything
    from musicfw.core.training import fit

    seed_everything(int(config.seed))
    tokenizer = musicfw.build_tokenizer("pianoroll", **plugin_params(config.tokenizer))
    model = musicfw.build_model("lstm", tokenizer=tokenizer, **plugin_params(config.model))
    dm = make_datamodule(frames, int(config.train.batch_size), int(config.seed))
    # one thread by default: on a shared 2-core CPU, two torch threads competing with other
    # processes spin on locks and run many times slower
    torch.set_num_threads(int(__import__("os").environ.get("MUSICFW_BENCH_THREADS", "1")))
    return fit(model, dm, config.train, out_dir, logger=config.get("logger"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="jsb_chorales", choices=sorted(PUBLISHED))
    parser.add_argument("--config", default=str(REPO / "examples" / "jsb_lstm.yaml"))
    parser.add_argument("--skip-lstm", action="store_true")
    parser.add_argument("--markov-orders", default="1,2,3")
    parser.add_argument("--out", default=None, help="run folder for the LSTM (default: a temp dir)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the YAML")
    args = parser.parse_args(argv)

    import musicfw

    config = musicfw.load_config(args.config, [f"data.dataset={args.dataset}", *args.overrides])
    frames = load_frames(args.dataset)
    n_frames = {s: sum(len(x) for x in v) for s, v in frames.items()}
    print(f"{args.dataset}: sequences {', '.join(f'{s} {len(v)}' for s, v in frames.items())}; "
          f"frames {', '.join(f'{s} {n}' for s, n in n_frames.items())}", flush=True)
    published = PUBLISHED[args.dataset]
    rows = []
    test, valid = bernoulli_baseline(frames)
    rows.append(("per-key Bernoulli (no context)", test, valid, published.get("bernoulli"), 0.0))
    for order in [int(o) for o in args.markov_orders.split(",") if o]:
        test, valid, secs = markov_baseline(frames, order)
        rows.append((f"markov order {order} (frames as states)", test, valid, None, secs))
        print(f"markov order {order}: test {test:.3f} valid {valid:.3f} ({secs:.2f} s)", flush=True)
    if not args.skip_lstm:
        out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="musicfw-jsb-"))
        out.mkdir(parents=True, exist_ok=True)
        m = config.model
        print(f"lstm {m.num_layers}x{m.hidden_size} -> {out}", flush=True)
        metrics = lstm_run(frames, config, out)
        rows.append(
            (
                f"lstm {m.num_layers}x{m.hidden_size} (musicfw, {metrics['epochs']} epochs)",
                metrics["test_nll"],
                metrics["val_nll"],
                published.get("lstm"),
                metrics["train_time_s"],
            )
        )
    print()
    print(f"{args.dataset}: test NLL in nats per frame (first frame unscored; uniform = 88 ln 2 = 61.00)")
    print(f"| model | test NLL | valid NLL | published | time (s) |")
    print(f"| --- | --- | --- | --- | --- |")
    for name, test, valid, pub, secs in rows:
        pub_s = f"{pub:.2f}" if pub is not None else ""
        print(f"| {name} | {test:.2f} | {valid:.2f} | {pub_s} | {secs:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
