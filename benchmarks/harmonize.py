"""Harmonisation of the Bach chorales, measured like Coconet's task (Huang et al. 2017).

Trains (or reads, ``--run``) the model of examples/harmonize_chorales.yaml -- a Transformer on
the ``tracks`` tokenizer, voices in a shuffled order -- and measures on the *test* split (the
dataset's default split, by tune, the run's seed):

* **held-out NLL of the alto, tenor and bass** (every token of their tracks, Track tokens
  excluded: what harmonisation samples), summed over the test chorales and given per token and
  per note, in three conditions, the same model and the same target tokens:

  - ``given soprano``: each segment reads S, then A, T, B;
  - ``soprano absent``: the chorale encoded without its soprano (A, T, B in each segment): the
    unconditional NLL of the three lower voices (the model was trained with
    ``drop_voices``, so three-voice pieces are in its training distribution);
  - ``soprano after``: each segment reads A, T, B, then S (later segments see the earlier
    segments' sopranos, so this is in between);

  How surely the soprano helps: the ratio given / absent with its 95% paired bootstrap interval
  (BCa, scipy.stats.bootstrap, 10,000 resamples of the test chorales, seed 0) and the number of
  chorales whose lower voices the soprano makes more likely;

* each test chorale's soprano **harmonised** once (``harmonize``, the run's sampler, seed
  ``--seed + i``), and of those four-voice results against the real test chorales and against
  a **mismatched** baseline (the real alto, tenor and bass of the next test chorale under this
  soprano, cut to its length): the **chord-tone ratio** (``chord_tone_ratio`` of
  musicfw/music/chords.py over REMI's recognised chords, 2-quarter segments, pooled over notes)
  (and, with a paired bootstrap interval over the sopranos, each set's difference from the real
  chorales', next to the spread of the real chorales' own per-piece ratios)
  and the **parallel fifths and octaves** between any two voices per 100 voice-pair transitions
  (musicfw/music/voiceleading.py);

* the harmonisations (and the mismatched baseline) against the real test chorales by the
  **Yang & Lerch** set comparison (mean overlapping area and KL divergence over its features),
  which shows what a sampler setting costs elsewhere;

* with ``--forbid-parallels``, each soprano harmonised a second time with the same seed and
  ``harmonize(..., forbid_parallels=True)`` (no written note may move in parallel fifths or
  octaves with a voice known at its onset), a row of its own;

* with ``--controls`` (a run whose tokenizer has attribute controls, e.g.
  examples/harmonize_chorales_controls.yaml): per-voice control adherence, each level requested
  alone and the held-out chorales' own levels, forced and not (benchmarks/harmonize_controls.py).
  The NLL then scores the same tokens as without controls (the control tokens are read, with the
  real chorale's levels, but not scored).

Usage::

    python benchmarks/harmonize.py                      # trains examples/harmonize_chorales.yaml
    python benchmarks/harmonize.py --run runs/harmonize_chorales-<stamp>
    python benchmarks/harmonize.py --set train.max_steps=50 --max-pieces 5   # a smoke run
    python benchmarks/harmonize.py --run runs/harmonize_chorales_controls-<stamp> --controls

Prints a table; ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np


ROOT = Path(__file__).resolve().parents[1]
ATB = ["alto", "tenor", "bass"]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def train(overrides: list[str], output_dir: Path) -> tuple[Path, dict]:
    import musicfw

    config = musicfw.load_config(ROOT / "examples" / "harmonize_chorales.yaml",
                                 [f"output_dir={output_dir}", "generate.n=1", *overrides])
    t0, c0 = time.perf_counter(), cpu_seconds()
    result = musicfw.run(config)
    return Path(result.run_dir), {"train_wall_s": time.perf_counter() - t0, "train_cpu_s": cpu_seconds() - c0}


def nll_conditions(model, tok, pieces) -> dict:
    import torch

    from musicfw.engine.training import evaluate_nll
    from musicfw.plugins.tokenizers.tracks import CONTROL

    out = {}
    conds = {
        "given soprano": lambda parts: (parts, ["soprano", *ATB]),
        "soprano absent": lambda parts: ({v: parts[v] for v in ATB}, ATB),
        "soprano after": lambda parts: (parts, [*ATB, "soprano"]),
    }
    targets = None
    for name, make in conds.items():
        batches, n_targets, n_notes, notes = [], 0, 0, []
        for p in pieces:
            parts = tok.parts(p.score)
            last = max(int(x["onset"][-1]) for x in parts.values())
            starts, lens = tok.grid(p.score, last)
            use, order = make(parts)
            ids = tok.encode_parts(use, starts, lens, order)
            mask = tok.track_mask(ids, ATB) & (tok.type_codes[ids] < CONTROL)  # control tokens: read, not scored
            n_targets += int(mask.sum())
            notes.append(sum(len(parts[v]["onset"]) for v in ATB))
            n_notes += notes[-1]
            batches.append({"tokens": torch.as_tensor(ids)[None], "mask": torch.as_tensor(mask)[None]})
        # piece by piece (the same sum, in the same order, as one call over all batches): the
        # per-piece sums are what the paired bootstrap below resamples
        per_piece = [evaluate_nll(model, [b]) for b in batches]
        r = {"nll_sum": 0.0, "n_targets": 0}
        for q in per_piece:
            r["nll_sum"] += q["nll_sum"]
            r["n_targets"] += q["n_targets"]
        r["nll_per_token"] = r["nll_sum"] / r["n_targets"] if r["n_targets"] else float("nan")
        if targets is None:
            targets = n_targets
        assert n_targets == targets, "the conditions must score the same tokens"
        out[name] = {"nll_per_token": r["nll_per_token"], "nll_per_note": r["nll_sum"] / n_notes,
                     "tokens": n_targets, "notes": n_notes, "piece_nll_sums": [q["nll_sum"] for q in per_piece],
                     "piece_notes": notes}
    return out


def paired_ci(arrays: tuple, statistic, seed: int = 0, resamples: int = 10_000) -> tuple[float, float]:
    """95% BCa bootstrap interval (scipy.stats.bootstrap, paired: the pieces are resampled, each
    piece's numbers together) of ``statistic(*arrays)``, a function of per-piece arrays; the
    percentile interval where BCa is undefined."""
    import warnings

    from scipy.stats import bootstrap

    data = tuple(np.asarray(a, dtype=float) for a in arrays)
    for method in ("BCa", "percentile"):  # BCa is undefined on degenerate resamples (a few pieces, a constant)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = bootstrap(data, statistic, paired=True, vectorized=True, n_resamples=resamples, method=method,
                            confidence_level=0.95, random_state=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            break
    return lo, hi


def soprano_effect(nll: dict, seed: int = 0) -> dict:
    """How surely the soprano lowers the lower voices' NLL: the ratio given / absent of the summed
    NLLs (the same target tokens), its paired bootstrap interval over the test chorales, and in how
    many chorales the given soprano lowers it."""
    g = np.asarray(nll["given soprano"]["piece_nll_sums"])
    u = np.asarray(nll["soprano absent"]["piece_nll_sums"])
    lo, hi = paired_ci((g, u), lambda a, b, axis=-1: a.sum(axis) / b.sum(axis), seed)
    return {"ratio": float(g.sum() / u.sum()), "ci95": [lo, hi], "pieces_lower": int((g < u).sum()), "pieces": len(g)}


def chord_tone_gap(style: dict, real: str = "real test chorales", seed: int = 0) -> dict:
    """Each set's pooled chord-tone ratio minus the real chorales' (the same sopranos, piece i of
    each set against real piece i; the per-piece counts of :func:`style_numbers`), with its
    paired bootstrap interval over the pieces, and the spread of the real chorales' own
    per-piece ratios."""
    rh, rn = (np.asarray(style[real][k]) for k in ("piece_hits", "piece_counted"))
    per_real = rh / np.maximum(rn, 1)
    out = {"real_per_piece_mean": float(per_real.mean()), "real_per_piece_sd": float(per_real.std(ddof=1)),
           "real_per_piece_p10_p90": [float(x) for x in np.percentile(per_real, [10, 90])]}
    for name, r in style.items():
        if name == real:
            continue
        h, n = np.asarray(r["piece_hits"]), np.asarray(r["piece_counted"])
        diff = float(h.sum() / n.sum() - rh.sum() / rn.sum())
        lo, hi = paired_ci((h, n, rh, rn), lambda a, b, c, d, axis=-1: a.sum(axis) / b.sum(axis) - c.sum(axis) / d.sum(axis),
                           seed)
        out[name] = {"minus_real": diff, "ci95": [lo, hi]}
    return out


def four_voices(score, tok):
    """The score's tracks that are voices (by name), as a Score of those tracks only."""
    s = score.copy()
    keep = [i for i, t in enumerate(s.tracks) if tok.voice_of_name(t.name) is not None]
    for i in sorted(set(range(len(s.tracks))) - set(keep), reverse=True):
        del s.tracks[i]
    return s


def style_numbers(scores) -> dict:
    from musicfw.music.chords import recognise_score
    from musicfw.music.voiceleading import score_parallels
    from musicfw.plugins.metrics.chords import ratios_of

    from musicfw.plugins.metrics.chords import score_ratio

    tracks = [recognise_score(s) for s in scores]
    ctr = ratios_of(scores, tracks)
    rows = [score_ratio(s, *t) for s, t in zip(scores, tracks)]  # per piece, for chord_tone_gap
    par = {"fifths": 0, "octaves": 0, "transitions": 0}
    for s in scores:
        for k, v in score_parallels(s).items():
            par[k] += v
    per = 100.0 / max(par["transitions"], 1)
    return {
        "chord_tone_ratio": ctr["chord_tone_ratio"],
        "chord_tone_ratio_duration": ctr["chord_tone_ratio_duration"],
        "parallel_fifths_per_100": par["fifths"] * per,
        "parallel_octaves_per_100": par["octaves"] * per,
        "parallel_fifths": par["fifths"],
        "parallel_octaves": par["octaves"],
        "transitions": par["transitions"],
        "pieces": len(scores),
        "piece_hits": [float(r["hits"]) for r in rows],
        "piece_counted": [float(r["counted"]) for r in rows],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default=None, help="a trained run folder (default: train one now)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="experiment override (training)")
    ap.add_argument("--output-dir", default=str(ROOT / "runs"), help="where a new run goes")
    ap.add_argument("--seed", type=int, default=0, help="harmonisation seed (piece i draws with seed + i)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="harmonise with temperature T then top-p 0.95 (default: the run's sampler)")
    ap.add_argument("--pitch-temperature", type=float, default=None,
                    help="harmonise with this temperature on the choice among pitches only (harmonize(pitch_temperature=))")
    ap.add_argument("--max-pieces", type=int, default=None, help="use the first N test chorales only")
    ap.add_argument("--forbid-parallels", action="store_true",
                    help="also harmonise each soprano with musicfw harmonize --forbid-parallels (a second row)")
    ap.add_argument("--controls", action="store_true",
                    help="also measure per-voice control adherence (a run trained with tokenizer.controls)")
    ap.add_argument("--control-pieces", type=int, default=8,
                    help="--controls: test chorales harmonised once per attribute and level (each level alone)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)

    import torch

    import musicfw
    from musicfw.engine.generation import build_sampler_chain
    from musicfw.engine.rundir import load_run_config
    from musicfw.engine.training import load_model
    from musicfw.plugins.harmonize.harmonize import harmonize

    torch.set_num_threads(1)
    record: dict = {"command": "python benchmarks/harmonize.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    if args.run:
        run_dir = Path(args.run)
    else:
        run_dir, timing = train(args.set, Path(args.output_dir))
        record.update(timing)
    record["run"] = str(run_dir)
    reg = musicfw.get_registries()
    config = load_run_config(run_dir, registries=reg)
    model, tok = load_model(run_dir, registries=reg, config=config)
    if args.controls and not tok.controls:
        ap.error(f"--controls: the run {run_dir} has no control tokens (train with tokenizer.controls)")
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text())
        record["run_test_nll"] = m.get("test", {}).get("nll_per_token") if isinstance(m.get("test"), dict) else None
    from musicfw.core.build import build_from_section

    dataset = build_from_section("dataset", config.data, reg)
    data = musicfw.load_data(dataset, seed=int(config.seed), progress=False)
    test = data.pieces("test")
    if args.max_pieces:
        test = test[: args.max_pieces]
    record["seed"] = int(config.seed)
    record["harmonize_seed"] = args.seed
    record["test_pieces"] = len(test)

    c0, t0 = cpu_seconds(), time.perf_counter()
    record["nll"] = nll_conditions(model, tok, test)
    record["soprano_effect"] = soprano_effect(record["nll"])
    record["nll_cpu_s"] = cpu_seconds() - c0

    section = config.sampler if args.temperature is None else [
        {"name": "temperature", "temperature": args.temperature}, {"name": "top_p", "p": 0.95}]
    sampler = build_sampler_chain(section, registries=reg)
    record["sampler"] = repr(sampler)
    record["pitch_temperature"] = args.pitch_temperature
    real = [four_voices(p.score, tok) for p in test]
    generated, mismatched, sopranos, strict = [], [], [], []
    c0, t0 = cpu_seconds(), time.perf_counter()
    for i, s in enumerate(real):
        sop = s.copy()
        for j in sorted(range(len(sop.tracks)), reverse=True):
            if tok.voice_of_name(sop.tracks[j].name) != "soprano":
                del sop.tracks[j]
        (out,) = harmonize(model, tok, sop, given="soprano", n=1, seed=args.seed + i, sampler=sampler,
                           pitch_temperature=args.pitch_temperature)
        generated.append(out)
        if args.forbid_parallels:
            strict.append(harmonize(model, tok, sop, given="soprano", n=1, seed=args.seed + i, sampler=sampler,
                                    forbid_parallels=True, pitch_temperature=args.pitch_temperature)[0])
        sopranos.append(sop)
        other = real[(i + 1) % len(real)]
        mix = sop.copy()
        end = int(s.end())
        for t in other.tracks:
            if tok.voice_of_name(t.name) in ATB:
                mix.tracks.append(t.copy())
        mismatched.append(mix.clip(0, end, clip_end=True))
    record["harmonize_cpu_s"] = cpu_seconds() - c0
    record["harmonize_wall_s"] = time.perf_counter() - t0
    record["style"] = {
        "real test chorales": style_numbers(real),
        "harmonised (given soprano)": style_numbers(generated),
        "mismatched real voices": style_numbers(mismatched),
    }
    if strict:
        record["style"]["harmonised, --forbid-parallels"] = style_numbers(strict)
    record["chord_tone_vs_real"] = chord_tone_gap(record["style"])
    record["yang_lerch"] = yang_lerch_vs(real, {"harmonised (given soprano)": generated, "mismatched real voices": mismatched,
                                                **({"harmonised, --forbid-parallels": strict} if strict else {})}, reg)

    if args.controls:
        from harmonize_controls import adherence

        c0 = cpu_seconds()
        record["controls"] = adherence(model, tok, sampler, real, sopranos, generated, args.seed, args.control_pieces)
        record["controls"]["cpu_s"] = cpu_seconds() - c0

    n = record["nll"]
    g, u, a = n["given soprano"], n["soprano absent"], n["soprano after"]
    print(f"run {run_dir}  (seed {record['seed']}, {len(test)} test chorales, split by tune)")
    if "train_cpu_s" in record:
        print(f"training: {record['train_cpu_s']:.0f} s CPU, {record['train_wall_s']:.0f} s wall")
    print(f"\nheld-out NLL of alto+tenor+bass ({g['tokens']} tokens, {g['notes']} notes)")
    print(f"  {'condition':<16} {'nats/token':>10} {'nats/note':>10} {'ratio':>7}")
    for name, r in (("given soprano", g), ("soprano after", a), ("soprano absent", u)):
        print(f"  {name:<16} {r['nll_per_token']:>10.4f} {r['nll_per_note']:>10.3f} {r['nll_per_token'] / u['nll_per_token']:>7.3f}")
    e = record["soprano_effect"]
    print(f"  the soprano's effect: given / absent {e['ratio']:.4f}, 95% interval {e['ci95'][0]:.4f}-{e['ci95'][1]:.4f} "
          f"(paired bootstrap over the chorales); lower in {e['pieces_lower']} of {e['pieces']} chorales")
    print("\nstyle (pooled over the pieces; parallels per 100 voice-pair transitions)")
    print(f"  {'':<28} {'chord-tone':>10} {'(by dur.)':>10} {'5ths/100':>9} {'8ves/100':>9} {'5ths':>6} {'8ves':>6}")
    for name, r in record["style"].items():
        print(f"  {name:<28} {r['chord_tone_ratio']:>10.3f} {r['chord_tone_ratio_duration']:>10.3f} "
              f"{r['parallel_fifths_per_100']:>9.2f} {r['parallel_octaves_per_100']:>9.2f} "
              f"{r['parallel_fifths']:>6d} {r['parallel_octaves']:>6d}")
    c = record["chord_tone_vs_real"]
    print(f"  chord-tone ratio minus the real chorales' (paired bootstrap 95% interval over the sopranos); the real "
          f"chorales piece by piece: mean {c['real_per_piece_mean']:.3f}, sd {c['real_per_piece_sd']:.3f}, "
          f"10th-90th percentile {c['real_per_piece_p10_p90'][0]:.3f}-{c['real_per_piece_p10_p90'][1]:.3f}")
    for name, r in c.items():
        if isinstance(r, dict):
            print(f"    {name:<28} {r['minus_real']:+.3f}  ({r['ci95'][0]:+.3f} to {r['ci95'][1]:+.3f})")
    print("\nYang & Lerch set comparison with the real test chorales (all four voices; OA higher and KL lower: closer)")
    for name, r in record["yang_lerch"].items():
        print(f"  {name:<32} mean OA {r['mean_oa_generated']:.4f}  mean KL {r['mean_kl_generated']:.4f}")
    print(f"\nharmonising {len(test)} sopranos: {record['harmonize_cpu_s']:.0f} s CPU; NLL: {record['nll_cpu_s']:.0f} s CPU")
    if args.controls:
        from harmonize_controls import print_table

        print_table(record["controls"])
        print(f"  control adherence: {record['controls']['cpu_s']:.0f} s CPU")
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1, default=float) + "\n")
    ok = math.isfinite(g["nll_per_token"])
    return 0 if ok else 1


def yang_lerch_vs(real: list, sets: dict, registries) -> dict:
    """Each set of pieces against the real ones by the Yang & Lerch comparison (the
    ``yang_lerch`` metric, musicfw/music/setcompare.py): its summary (mean OA and KL of the
    inter-set distances against the real pieces' intra-set ones) and each feature's OA."""
    from musicfw.engine.evaluation import build_metrics, evaluate_sets

    metrics = build_metrics([{"name": "yang_lerch"}], registries=registries)
    ref = [(f"real{i}", s) for i, s in enumerate(real)]
    out = {}
    for name, pieces in sets.items():
        c = evaluate_sets([(f"g{i}", s) for i, s in enumerate(pieces)], ref, metrics)["comparison"]
        out[name] = {**c["summary"], "oa_per_feature": {f: v["oa_generated"] for f, v in c["features"].items()}}
    return out


if __name__ == "__main__":
    sys.exit(main())
