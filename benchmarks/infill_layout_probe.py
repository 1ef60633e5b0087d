"""Probe (issue 26): does the infilling layout decide whether the right context helps?

Runs ``musicfw ARGS...`` with the suffix-prefix-middle layout of "fill in the middle"
(Bavarian et al. 2022) patched in place of the MMM layout of musicfw/engine/infill.py, for
training (the infilling windows) and for the run's own held-out measure (``metrics.json`` ->
``training.infill_*``, :func:`musicfw.engine.infill.gap_nll`)::

    MMM:  left  Fill*k  right  Sep  bar_1 End ... bar_k End
    SPM:  Fill*k  right  Sep  left  bar_1 End ... bar_k End

In SPM the gap follows its left context directly, as in plain continuation.  Only the layout
changes; a run made this way is a measurement, not a model ``musicfw infill`` can use (its
decoder builds the MMM prompt).  This probe led to the library's own ``spm`` layout
(``train.infill.layout: spm``, the default since), which differs from the probe's: the filled
bars follow one another as in plain REMI with one End after the last, so every bar ending but
the last is the decision plain continuation makes (docs/infill.md).  The probe's runs are made
with ``train.infill.layout=mmm`` (appended), whose layout function it patches.  Example (README.md, "Bar infilling")::

    python benchmarks/infill_layout_probe.py run examples/infill_chorales_transformer.yaml \\
        init_from=RUN train.infill.probability=0.9 train.max_steps=500 train.warmup_steps=50 ...
    python benchmarks/infill_layout_probe.py score SPM_RUN_DIR     # the measure, also "as decoded"

``score`` prints the held-out gap measure of benchmarks/infill.py (ratio, notes only, as
decoded) in the SPM layout, for a run this probe trained.
"""

from __future__ import annotations

import sys

import numpy as np

import musicfw.engine.infill as infill


def spm_layout(tokens, bounds, first: int, k: int, ids, kind: str = "mmm") -> tuple[np.ndarray, int]:
    """``Fill*k right Sep left bar_1 End ... bar_k End`` and the index of the first filled token."""
    tokens = np.asarray(tokens, dtype=np.int64)
    s, e = int(bounds[first]), int(bounds[first + k])
    parts = [np.full(k, ids.fill, dtype=np.int64), tokens[e:], np.array([ids.sep], dtype=np.int64), tokens[:s]]
    head = sum(len(p) for p in parts)
    for i in range(first, first + k):
        parts.append(tokens[int(bounds[i]) : int(bounds[i + 1])])
        parts.append(np.array([ids.end], dtype=np.int64))
    return np.concatenate(parts), head


def score(run_dir: str) -> None:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
    import infill as bench  # benchmarks/infill.py

    import musicfw
    from musicfw.engine.data import build_datamodule
    from musicfw.engine.rundir import load_run_config
    from musicfw.engine.training import load_model

    registries = musicfw.get_registries()
    config = load_run_config(run_dir, registries=registries)
    model, tokenizer = load_model(run_dir, registries=registries, config=config)
    dm = build_datamodule(config.data, tokenizer, train=config.train, seed=int(config.seed), progress=False,
                          registries=registries)
    pieces = dm.tokens("test")
    g = infill.gap_nll(model, tokenizer, pieces, k=2)
    d = bench.as_decoded_nll(model, tokenizer, pieces, g["per_piece"], 2)
    print(f"{run_dir}: SPM layout, {g['pieces']} pieces, {g['gap_tokens']} gap tokens")
    print(f"both / left {g['nll_both_per_token']:.4f} / {g['nll_left_per_token']:.4f} = {g['ratio_both_over_left']:.4f}; "
          f"notes only {g['ratio_notes_both_over_left']:.4f}; as decoded {d['nll_both_per_token']:.4f} / "
          f"{d['nll_left_per_token']:.4f} = {d['ratio_both_over_left']:.4f}")


def main(argv: list[str]) -> int:
    infill.layout = spm_layout  # InfillTransform and span_nll look the layout up at call time
    if argv[:1] == ["score"] and len(argv) == 2:
        score(argv[1])
        return 0
    from musicfw.cli import main as cli

    # the patch replaces the mmm layout: the run is made (and its windows cut, 2k + 1 markers)
    # as an mmm run, so the probe's numbers stay what they were before the library had spm
    return cli(argv + ["train.infill.layout=mmm"] if argv[:1] == ["run"] else argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
