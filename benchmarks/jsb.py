"""The four polyphonic benchmarks with the published protocol: piano-roll LSTMs vs baselines.

Protocol (../shared/data/polyphonic/README.md): the fixed splits of Boulanger-Lewandowski et
al. (2012); predict frame t from frames < t; the first frame of each sequence is not scored;
NLL in nats per frame summed over the 88 keys; averaged over all scored test frames pooled
across the split.  Models:

* ``lstm`` + ``bernoulli`` head (independent keys): the model and train sections of
  examples/jsb_lstm.yaml; ``lstm`` + a joint head (``nade``: RNN-NADE, ``autoregressive``: a
  MADE over the keys; exact joint NLL per frame): examples/jsb_nade.yaml with ``model.head``
  set.  Overrides on the command line (e.g. ``model.hidden_size=128 train.max_epochs=50``)
  apply to every head.  Trained with musicfw's ``fit`` (Lightning; best checkpoint by
  validation NLL), one torch thread;
* ``markov-n``: frames as states (each distinct training frame a state, rare/unseen frames
  through the unknown-frame Bernoulli model), Witten-Bell smoothing, orders 1..3;
* ``bernoulli``: per-key independent Bernoulli without context (the published table's first
  row, 11.09 on JSB: checks that this protocol matches theirs).

    python benchmarks/jsb.py [--dataset nottingham] [--heads bernoulli,nade,autoregressive]
                             [--transpose N] [--json rows.json] [key=value ...]
    python benchmarks/jsb.py --merge a.json b.json ...   (one table from several runs)

Prints one table (test and valid NLL per frame, the nearest published number, training time
on this machine).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: the table in ../shared/data/polyphonic/README.md: Bai et al. 2018 (LSTM), Boulanger-Lewandowski
#: et al. 2012 (per-key Bernoulli, RNN-RBM, RNN-NADE)
PUBLISHED = {
    "jsb_chorales": {"lstm": 8.45, "bernoulli": 11.09, "rnn-rbm": 6.27, "rnn-nade": 5.19},
    "nottingham": {"lstm": 3.29, "bernoulli": 10.26, "rnn-rbm": 2.39, "rnn-nade": 2.31},
    "musedata": {"bernoulli": 11.51, "rnn-rbm": 6.01, "rnn-nade": 5.60},
    "piano_midi_de": {"bernoulli": 11.05, "rnn-rbm": 7.09, "rnn-nade": 7.05},
}
#: the published row each of our rows is compared with
COMPARE = {"bernoulli": ("bernoulli", "per-key Bernoulli"), "lstm-bernoulli": ("lstm", "LSTM"),
           "lstm-nade": ("rnn-nade", "RNN-NADE"), "lstm-autoregressive": ("rnn-nade", "RNN-NADE"),
           }
HEADS = ("bernoulli", "nade", "autoregressive")


def load_frames(dataset: str) -> dict[str, list[np.ndarray]]:
    import musicfw

    ds = musicfw.build_dataset("piano_roll_benchmark", dataset=dataset)
    return {split: [f.astype(np.float32) for f in ds.frames(split)] for split in ("train", "valid", "test")}


def transposer(frames: list[np.ndarray], semitones: int, seed: int):
    """Transposition augmentation of training pieces: each time a piece is drawn it moves by a
    shift drawn uniformly from those in ``[-semitones, semitones]`` that keep all its notes on
    the 88 keys (so no note is lost); 0 returns it unchanged.  The draws come from one generator
    seeded with ``seed``: the same run draws the same shifts.  Validation and test pieces are never
    moved (the published protocol scores the pieces as they are)."""
    rng = np.random.default_rng(seed)
    bounds = []
    for x in frames:
        keys = np.flatnonzero(x.any(axis=0))
        lo, hi = (int(keys[0]), int(keys[-1])) if len(keys) else (0, x.shape[1] - 1)
        bounds.append((max(-semitones, -lo), min(semitones, x.shape[1] - 1 - hi)))
    index = {id(x): i for i, x in enumerate(frames)}

    def shift(x: np.ndarray) -> np.ndarray:
        low, high = bounds[index[id(x)]]
        k = int(rng.integers(low, high + 1))
        return np.roll(x, k, axis=1) if k else x  # the bounds keep every note on the keys: nothing wraps

    return shift


def make_datamodule(frames: dict[str, list[np.ndarray]], batch_size: int, seed: int, transpose: int = 0):
    """Whole sequences, padded per batch; valid/test masks leave frame 0 unscored; training
    pieces transposed by up to ``transpose`` semitones (:func:`transposer`)."""
    import pytorch_lightning as pl
    import torch

    shift = transposer(frames["train"], transpose, seed) if transpose else None

    def collate(items, score_first):
        T = max(len(x) for x in items)
        K = items[0].shape[1]
        tokens = torch.zeros(len(items), T, K)
        mask = torch.zeros(len(items), T, dtype=torch.bool)
        for i, x in enumerate(items):
            if score_first and shift is not None:  # training batches only
                x = shift(x)
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
    from musicfw.engine.training import evaluate_nll
    from musicfw.plugins.models.markov.model import MarkovModel

    t0 = time.perf_counter()
    model = MarkovModel(88, "multihot", order=order).fit_sequences(frames["train"])
    fit_s = time.perf_counter() - t0
    dm = make_datamodule(frames, 64, 0)
    test = evaluate_nll(model, dm.test_dataloader())["nll_per_token"]
    valid = evaluate_nll(model, dm.val_dataloader())["nll_per_token"]
    return test, valid, fit_s


def lstm_run(frames, config, out_dir: Path, transpose: int = 0, init: str | None = None) -> dict:
    import torch

    import musicfw
    from musicfw.engine.config import plugin_params
    from lightning_fabric.utilities.seed import seed_everything
    from musicfw.engine.training import fit

    seed_everything(int(config.seed))
    tokenizer = musicfw.build_tokenizer("pianoroll", **plugin_params(config.tokenizer))
    model = musicfw.build_model("lstm", tokenizer=tokenizer, **plugin_params(config.model))
    if init:  # continue from a checkpoint of this benchmark (same model section): its weights only
        from musicfw.engine.training import load_checkpoint

        load_checkpoint(model, init)
    dm = make_datamodule(frames, int(config.train.batch_size), int(config.seed), transpose)
    # one thread by default: on a shared 2-core CPU, two torch threads competing with other
    # processes spin on locks and run many times slower
    torch.set_num_threads(int(__import__("os").environ.get("MUSICFW_BENCH_THREADS", "1")))
    return fit(model, dm, config.train, out_dir, logger=config.get("logger"))


def print_table(rows: list[dict]) -> None:
    """Markdown table: one row per (dataset, model), the published number beside it."""
    print("test NLL in nats per frame (first frame unscored; uniform = 88 ln 2 = 61.00); "
          "time = training (or counting) time on this machine")
    print("| dataset | model | test NLL | valid NLL | published (row) | ratio to published | time (s) | note |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        key, label = COMPARE.get(r["key"], (None, ""))
        pub = PUBLISHED[r["dataset"]].get(key) if key else None
        pub_s = f"{pub:.2f} ({label})" if pub is not None else ""
        ratio = f"{r['test'] / pub:.2f}" if pub is not None else ""
        print(f"| {r['dataset']} | {r['model']} | {r['test']:.2f} | {r['valid']:.2f} | {pub_s} | {ratio} | "
              f"{r['seconds']:.1f} | {r.get('note', '')} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="jsb_chorales", choices=sorted(PUBLISHED))
    parser.add_argument("--config", default=str(REPO / "examples" / "jsb_lstm.yaml"),
                        help="YAML of the bernoulli-head LSTM")
    parser.add_argument("--joint-config", default=str(REPO / "examples" / "jsb_nade.yaml"),
                        help="YAML of the joint-head LSTMs (model.head is set per head)")
    parser.add_argument("--heads", default=",".join(HEADS), help="LSTM heads to train, comma-separated ('' for none)")
    parser.add_argument("--skip-lstm", action="store_true", help="same as --heads ''")
    parser.add_argument("--markov-orders", default="1,2,3")
    parser.add_argument("--out", default=None, help="parent folder of the LSTM runs (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--note", default="", help="a note on every LSTM row (e.g. 'reduced budget: 5 epochs')")
    parser.add_argument("--transpose", type=int, default=0, metavar="N",
                        help="transpose each training piece by a random shift in [-N, N] semitones each time it "
                        "is drawn (notes kept on the 88 keys; valid/test never moved)")
    parser.add_argument("--init", default=None, metavar="CKPT",
                        help="start the LSTM from this checkpoint of an earlier run of this benchmark (weights only; "
                        "the optimizer and schedule start afresh): e.g. an unaugmented converged run, then --transpose")
    parser.add_argument("--merge", nargs="+", default=None, help="print one table from --json files and exit")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the YAML")
    args = parser.parse_args(argv)

    import json

    if args.merge:
        rows = [r for path in args.merge for r in json.loads(Path(path).read_text())]
        print_table(rows)
        return 0
    heads = [] if args.skip_lstm else [h for h in args.heads.split(",") if h]
    unknown = set(heads) - set(HEADS)
    if unknown:
        parser.error(f"--heads: unknown {sorted(unknown)}; choose among {', '.join(HEADS)}")

    import musicfw

    frames = load_frames(args.dataset)
    n_frames = {s: sum(len(x) for x in v) for s, v in frames.items()}
    print(f"{args.dataset}: sequences {', '.join(f'{s} {len(v)}' for s, v in frames.items())}; "
          f"frames {', '.join(f'{s} {n}' for s, n in n_frames.items())}", flush=True)
    rows = []

    def add(key, model, test, valid, secs, note=""):
        rows.append({"dataset": args.dataset, "key": key, "model": model, "test": test, "valid": valid,
                     "seconds": secs, "note": note})
        if args.json:  # after every row: a long run that is stopped keeps what it measured
            Path(args.json).write_text(json.dumps(rows, indent=1))

    test, valid = bernoulli_baseline(frames)
    add("bernoulli", "per-key Bernoulli (no context)", test, valid, 0.0)
    for order in [int(o) for o in args.markov_orders.split(",") if o]:
        test, valid, secs = markov_baseline(frames, order)
        add(f"markov-{order}", f"markov order {order} (frames as states)", test, valid, secs)
        print(f"markov order {order}: test {test:.3f} valid {valid:.3f} ({secs:.2f} s)", flush=True)
    parent = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="musicfw-jsb-"))
    for head in heads:
        path = args.config if head == "bernoulli" else args.joint_config
        config = musicfw.load_config(path, [f"data.dataset={args.dataset}", f"model.head={head}", *args.overrides])
        out = parent / f"{args.dataset}-{head}"
        out.mkdir(parents=True, exist_ok=True)
        m = config.model
        print(f"lstm {m.num_layers}x{m.hidden_size} + {head} head ({Path(path).name}) -> {out}", flush=True)
        metrics = lstm_run(frames, config, out, args.transpose, args.init)
        print(f"lstm + {head}: test {metrics['test_nll']:.3f} valid {metrics['val_nll']:.3f} "
              f"({metrics['train_time_s']:.0f} s, {metrics['epochs']} epochs)", flush=True)
        aug = f", transposed up to +-{args.transpose}" if args.transpose else ""
        aug += f", from {Path(args.init).name}" if args.init else ""
        add(f"lstm-{head}", f"lstm {m.num_layers}x{m.hidden_size} + {head} head ({metrics['epochs']} epochs{aug})",
            metrics["test_nll"], metrics["val_nll"], metrics["train_time_s"], args.note)
    print()
    print(f"{args.dataset}: " + ", ".join(f"{s} {len(v)} sequences" for s, v in frames.items()))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
