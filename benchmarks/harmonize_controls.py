"""Per-voice control adherence of harmonisation (``python benchmarks/harmonize.py --run RUN --controls``).

For a run whose ``tracks`` tokenizer has attribute controls (examples/harmonize_chorales_controls.yaml),
each test chorale's soprano is harmonised with levels requested for the written alto, tenor and
bass, and every written voice-segment (a voice in a one-bar segment with ``segment_bars: 1``) is
measured from its notes with the tokenizer's own boundaries
(:func:`musicfw.plugins.tokenizers.tracks_controls.score_levels`, what encode writes) and
compared with the request, per attribute: the share at exactly the requested level, within one
level, and Spearman's rank correlation of requested and measured levels (the numbers of
``control_adherence``, :func:`musicfw.plugins.metrics.controls.scores`):

* **each level alone**: every level of an attribute requested for every written voice in every
  segment of the first ``--control-pieces`` test chorales (the other attributes the model's
  choice); one harmonisation per piece, attribute and level;
* **held-out**: every test chorale's own levels (its real alto, tenor and bass, segment by
  segment, every attribute) requested under its soprano;
* **not forced**: the same model harmonising the same sopranos with the same seeds and no
  request (its own control tokens), against the same requests.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

ATB = ["alto", "tenor", "bass"]


def _pairs(tok: Any, requested: dict[str, np.ndarray], out: Any, into: dict) -> None:
    """Add (requested, measured) per attribute over the written voices' segments of ``out``;
    ``requested``: per voice ``[segments, controls]``, -1 where nothing was asked."""
    from musicfw.plugins.tokenizers.tracks_controls import score_levels

    got = score_levels(tok, out)
    for v in ATB:
        req = requested[v]
        have = got.get(v, np.zeros((0, len(tok.controls)), dtype=np.int64))
        if len(have) < len(req):  # a voice silent to the end of the piece: empty segments
            empty = tok.segment_levels(None, np.zeros(len(req) - len(have), dtype=np.int64),
                                       np.ones(len(req) - len(have), dtype=np.int64))
            have = np.concatenate([have, empty])
        for k, a in enumerate(tok.controls):
            keep = req[:, k] >= 0
            into[a][0].extend(req[keep, k].tolist())
            into[a][1].extend(have[: len(req)][keep, k].tolist())


def adherence(model: Any, tok: Any, sampler: Any, real: list, sopranos: list, free: list, seed: int,
              pieces_alone: int) -> dict:
    """The numbers described in the module docstring; ``real``: the test chorales (four voices),
    ``sopranos``: their sopranos alone, ``free``: their harmonisations with no request (seed
    ``seed + i``)."""
    from musicfw.plugins.harmonize.harmonize import harmonize
    from musicfw.plugins.metrics.controls import scores
    from musicfw.plugins.tokenizers.tracks_controls import score_levels

    ctrl, L = tok.controls, int(tok.config.control_levels)
    t0 = time.perf_counter()
    own = [score_levels(tok, s) for s in real]
    # the segments of the harmonisation (the soprano's grid): the real voices cut or padded to them
    n_seg = [len(score_levels(tok, s)["soprano"]) for s in sopranos]
    own = [{v: _fit_rows(tok, lv.get(v), n) for v in ATB} for lv, n in zip(own, n_seg)]
    out: dict = {"levels": L, "pieces_alone": min(pieces_alone, len(real)), "pieces_held_out": len(real)}
    # (a) each level alone
    alone = {a: ([], []) for a in ctrl}
    alone_free = {a: ([], []) for a in ctrl}
    for i in range(out["pieces_alone"]):
        for k, a in enumerate(ctrl):
            for level in range(L):
                req = np.full((n_seg[i], len(ctrl)), -1, dtype=np.int64)
                req[:, k] = level
                (h,) = harmonize(model, tok, sopranos[i], given="soprano", n=1, seed=seed + i, sampler=sampler,
                                 controls=f"{a}={level}")
                for result, into in ((h, alone), (free[i], alone_free)):
                    one = {a2: ([], []) for a2 in ctrl}
                    _pairs(tok, {v: req for v in ATB}, result, one)
                    into[a][0].extend(one[a][0])
                    into[a][1].extend(one[a][1])
    out["alone_wall_s"] = time.perf_counter() - t0
    # (b) each held-out chorale's own levels, every attribute, segment by segment
    t1 = time.perf_counter()
    held = {a: ([], []) for a in ctrl}
    held_free = {a: ([], []) for a in ctrl}
    for i, sop in enumerate(sopranos):
        request = [{f"{v}:{a}": int(own[i][v][s, k]) for v in ATB for k, a in enumerate(ctrl)} for s in range(n_seg[i])]
        (h,) = harmonize(model, tok, sop, given="soprano", n=1, seed=seed + i, sampler=sampler, controls=request)
        _pairs(tok, own[i], h, held)
        _pairs(tok, own[i], free[i], held_free)
    out["held_out_wall_s"] = time.perf_counter() - t1
    for label, source in (("alone", alone), ("alone_not_forced", alone_free), ("held_out", held),
                          ("held_out_not_forced", held_free)):
        out[label] = {a: {**scores(*source[a]), "voice_segments": len(source[a][0])} for a in ctrl}
    # how the requested held-out levels spread (fitted bins: about a quarter each on the training split)
    out["held_out_request_shares"] = {a: np.bincount(np.asarray(held[a][0], dtype=np.int64), minlength=L).tolist()
                                      for a in ctrl}
    return out


def _fit_rows(tok: Any, levels: np.ndarray | None, n: int) -> np.ndarray:
    if levels is None:
        levels = np.zeros((0, len(tok.controls)), dtype=np.int64)
    if len(levels) >= n:
        return levels[:n]
    pad = tok.segment_levels(None, np.zeros(n - len(levels), dtype=np.int64), np.ones(n - len(levels), dtype=np.int64))
    return np.concatenate([levels, pad])


def print_table(r: dict) -> None:
    def cell(x: dict) -> str:
        rho = "   -  " if x["spearman"] is None else f"{x['spearman']:6.3f}"
        return f"{100 * x['exact']:5.1f}% {100 * x['within_one']:5.1f}% {rho}"

    print(f"\nper-voice control adherence ({r['levels']} levels; written alto, tenor, bass per one-segment; "
          "exact / within one / Spearman)")
    print(f"  each level alone: {r['pieces_alone']} test chorales x every level; held-out: {r['pieces_held_out']} "
          "chorales' own levels")
    print(f"  {'attribute':<12} {'alone, forced':>22} {'alone, not forced':>22} {'held-out, forced':>22} "
          f"{'held-out, not forced':>22} {'n alone/held':>13}")
    for a in r["alone"]:
        print(f"  {a:<12} {cell(r['alone'][a]):>22} {cell(r['alone_not_forced'][a]):>22} {cell(r['held_out'][a]):>22} "
              f"{cell(r['held_out_not_forced'][a]):>22} {r['alone'][a]['voice_segments']:>6}/{r['held_out'][a]['voice_segments']}")
    print("  held-out requests per level: " + "; ".join(f"{a} {v}" for a, v in r["held_out_request_shares"].items()))
