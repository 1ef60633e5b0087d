"""The "always predict no event" baseline of a MusicVAE run's held-out accuracy: the share of
the scored 16th-note steps whose true melody token is "no event" (id 0), on the same test
windows ``benchmarks/musicvae.py`` scores (every bar-aligned window of ``max_seq_len`` steps
with an onset, deduplicated, a random subset of ``--max-windows`` drawn as
``reconstruction_metrics`` draws it).  A decoder whose accuracy is near this share has learnt
little beyond staying silent.

    python scripts/no_event_share.py examples/chords_musicvae.yaml --max-windows 1000
    python scripts/no_event_share.py examples/musicvae_melody_16bar.yaml --max-windows 500
    python scripts/no_event_share.py RUN_DIR --max-windows 1000
    python scripts/no_event_share.py examples/chords_musicvae.yaml --set data.split_by=piece

SOURCE: an experiment YAML (with ``--set key=value`` overrides) or a run folder (its saved
config), with a melody or melody_chords tokenizer and a MusicVAE model section (its
``max_seq_len`` is the window length).  Only the data and tokenizer are built; no model is
loaded or trained.  Prints the share, the number of windows and the sha256 of the test split's
tokens (the ``data_sha256`` of the benchmark's JSON: equal digits mean the same test data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def no_event_share(windows: np.ndarray, n_melody: int = 0) -> float:
    """Share of the steps of ``windows`` ([N, T] ids) whose melody id is 0 ("no event");
    ``n_melody``: the melody class count of a tokenizer with chords in its ids (id % n_melody
    is the melody), 0 for plain melody ids."""
    ids = np.asarray(windows, dtype=np.int64)
    if ids.size == 0:
        raise ValueError("no windows to score")
    melody = ids % n_melody if n_melody else ids
    return float((melody == 0).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="an experiment YAML or a MusicVAE run folder")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="experiment override")
    ap.add_argument("--max-windows", type=int, default=2000, help="as benchmarks/musicvae.py --max-windows")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(REPO / "benchmarks"))
    from musicvae import data_fingerprint  # the benchmark's own fingerprint

    from musicfw.core.build import build_from_section
    from musicfw.core.plugins import load_registries
    from musicfw.engine.config import load_config
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.rundir import load_run_config
    from musicfw.plugins.models.musicvae.tools import heldout_windows, melody_part, min_onset_id

    registries = load_registries()
    if Path(args.source).is_dir():
        config = load_run_config(args.source, overrides=args.set, registries=registries)
    else:
        config = load_config(args.source, overrides=args.set, registries=registries)
    tokenizer = build_from_section("tokenizers", config.tokenizer, registries=registries, key="tokenizer")
    datamodule = build_datamodule(
        config.data, tokenizer, train=config.train, augment=config.get("augment"),
        seed=int(config.seed), registries=registries, progress=False,
    )
    # the windows and subset of reconstruction_metrics (plugins/models/musicvae/tools.py)
    windows = heldout_windows(
        datamodule.tokens("test"), length=int(config.model.max_seq_len),
        hop=int(getattr(tokenizer, "steps_per_bar", 16) or 16),
        min_onset_id=min_onset_id(tokenizer), melody=melody_part(tokenizer),
    )
    if args.max_windows and len(windows) > args.max_windows:
        rng = np.random.default_rng(0)
        windows = windows[rng.choice(len(windows), args.max_windows, replace=False)]
    n_melody = int(getattr(tokenizer, "n_melody", 0) or 0) if getattr(tokenizer, "chord_classes", 0) else 0
    share = no_event_share(windows, n_melody)
    print(f"no-event share {share:.4f} of {windows.size:,} steps in {len(windows)} test windows; "
          f"split_by {config.data.get('split_by')}; test sha256 {data_fingerprint(datamodule)['test']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
