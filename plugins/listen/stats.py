"""``musicfw listen results``: the numbers of a study.

* Attention check: a rater who rated any low-anchor clip (shuffled pitches) 4 or 5 fails and
  all their answers are excluded.  Raters without any answer are not counted.
* MOS per system: the mean of the included raters' 1-5 scores of the system's clips, with a
  95% percentile interval from a two-level bootstrap (:func:`two_level_bootstrap`): each of the
  2,000 resamples draws the raters with replacement and, independently, the system's clips with
  replacement, and averages every (rater, clip) score present with weight (times the rater was
  drawn) x (times the clip was drawn).  Seeded (``numpy.random.default_rng(seed)``, seed 0 by
  default), so the same database gives the same interval.
* A/B: for each pair of systems the share of answers preferring each side (no preference
  counts half to each), with the same two-level bootstrap over raters and the pair's items, and
  a two-sided exact binomial test (scipy) of the decisive answers against 50%; per system the
  win rate over all its comparisons, bootstrapped the same way.
* Bradley-Terry strengths when more than two systems were compared: ``choix.ilsr_pairwise``
  (iterative Luce spectral ranking, the ML estimate) with a small ridge ``alpha=0.01`` so that
  a system that won every comparison still gets a finite strength; ties are left out.  Reported
  as log-strengths centred on 0 and as the share exp(theta)/sum exp(theta).
* Inter-rater agreement: Krippendorff's alpha for ordinal data (the ``krippendorff`` package)
  over the included raters' MOS scores of the non-anchor clips (raters x clips, missing answers
  allowed).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from musicfw.core.atomic import atomic_write

from .db import fetch_raters, fetch_ratings, open_existing
from .study import Study

RESAMPLES = 2000
BT_ALPHA = 0.01


def two_level_bootstrap(values: np.ndarray, mask: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float] | None:
    """95% percentile interval of the weighted mean of ``values[r, k]`` (where ``mask``) when
    raters (rows) and items (columns) are each resampled with replacement; None without data."""
    n_r, n_k = values.shape
    if n_r == 0 or n_k == 0 or not mask.any():
        return None
    rng = np.random.default_rng(seed)
    x = np.where(mask, values, 0.0)
    m = mask.astype(float)
    w = rng.multinomial(n_r, np.full(n_r, 1.0 / n_r), size=resamples).astype(float)
    v = rng.multinomial(n_k, np.full(n_k, 1.0 / n_k), size=resamples).astype(float)
    num = ((w @ x) * v).sum(axis=1)
    den = ((w @ m) * v).sum(axis=1)
    ok = den > 0
    if not ok.any():
        return None
    est = num[ok] / den[ok]
    lo, hi = np.percentile(est, [2.5, 97.5])
    return float(lo), float(hi)


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _ci(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [_r(ci[0]), _r(ci[1])]


def compute_results(study: Study, ratings: Sequence[dict[str, Any]], raters: Sequence[dict[str, Any]] = (),
                    seed: int = 0, resamples: int = RESAMPLES) -> dict[str, Any]:
    """Every number of the module docstring, from the study's manifest and its ratings."""
    from scipy.stats import binomtest

    clips = study.clips
    items = study.items
    systems = [s["name"] for s in study.manifest["systems"]]
    compared = [s["name"] for s in study.manifest["systems"] if s["kind"] != "anchor"]
    threshold = int(study.manifest.get("attention", {}).get("threshold", 4))

    answered = sorted({r["rater"] for r in ratings})
    failed = sorted({
        r["rater"] for r in ratings
        if r["kind"] == "mos" and clips[items[r["item"]]["clip"]]["system"] == "anchor" and r["score"] >= threshold
    })
    included = [r for r in answered if r not in failed]
    index = {r: i for i, r in enumerate(included)}
    kept = [r for r in ratings if r["rater"] in index]
    expertise = Counter((next((x.get("expertise") for x in raters if x["id"] == r), None) or "not given") for r in included)

    # MOS ------------------------------------------------------------------------------
    mos: dict[str, Any] = {}
    for k, system in enumerate(systems):
        ids = [c for c, info in clips.items() if info["system"] == system]
        col = {c: j for j, c in enumerate(ids)}
        x = np.zeros((len(included), len(ids)))
        m = np.zeros_like(x, dtype=bool)
        for r in kept:
            if r["kind"] != "mos":
                continue
            c = items[r["item"]]["clip"]
            if c in col:
                x[index[r["rater"]], col[c]] = r["score"]
                m[index[r["rater"]], col[c]] = True
        n = int(m.sum())
        mos[system] = {
            "mos": _r(float(x[m].mean())) if n else None,
            "ci95": _ci(two_level_bootstrap(x, m, resamples, seed + k)),
            "n_ratings": n,
            "n_clips": len(ids),
            "n_raters": int(m.any(axis=1).sum()),
        }

    # A/B ------------------------------------------------------------------------------
    ab_rows = []
    pair_items: dict[tuple[str, str], list[str]] = {}
    for item in study.manifest["items"]:
        if item["kind"] == "ab":
            a, b = (clips[c]["system"] for c in item["clips"])
            pair_items.setdefault((a, b), []).append(item["id"])
    answers = {(r["rater"], r["item"]): r for r in kept if r["kind"] == "ab"}

    def outcome(item_id: str, rater: str, system: str) -> float | None:
        r = answers.get((rater, item_id))
        if r is None:
            return None
        if r["choice"] == "none":
            return 0.5
        return 1.0 if clips[r["choice"]]["system"] == system else 0.0

    def matrix(item_ids: list[str], system: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((len(included), len(item_ids)))
        m = np.zeros_like(x, dtype=bool)
        for j, it in enumerate(item_ids):
            for rater, i in index.items():
                o = outcome(it, rater, system)
                if o is not None:
                    x[i, j], m[i, j] = o, True
        return x, m

    decisive: list[tuple[int, int]] = []
    for k, ((a, b), ids) in enumerate(sorted(pair_items.items())):
        x, m = matrix(ids, a)
        vals = x[m]
        wins_a, wins_b = int((vals == 1.0).sum()), int((vals == 0.0).sum())
        ties = int((vals == 0.5).sum())
        n = wins_a + wins_b + ties
        p = binomtest(wins_a, wins_a + wins_b, 0.5).pvalue if wins_a + wins_b else None
        ab_rows.append({
            "a": a, "b": b, "n": n, "wins_a": wins_a, "wins_b": wins_b, "ties": ties,
            "win_rate_a": _r(float(vals.mean())) if n else None,
            "ci95": _ci(two_level_bootstrap(x, m, resamples, seed + 1000 + k)),
            "p_value": _r(p),
        })
        if a in compared and b in compared:
            decisive += [(compared.index(a), compared.index(b))] * wins_a + [(compared.index(b), compared.index(a))] * wins_b
    ab_systems = {}
    for k, system in enumerate(compared):
        ids = [it for (a, b), its in pair_items.items() if system in (a, b) for it in its]
        x, m = matrix(ids, system)
        n = int(m.sum())
        ab_systems[system] = {
            "n": n,
            "win_rate": _r(float(x[m].mean())) if n else None,
            "ci95": _ci(two_level_bootstrap(x, m, resamples, seed + 2000 + k)),
        }

    # Bradley-Terry ----------------------------------------------------------------------
    bt: dict[str, Any] | None = None
    if len(compared) > 2:
        if decisive:
            import choix

            theta = np.asarray(choix.ilsr_pairwise(len(compared), decisive, alpha=BT_ALPHA), dtype=float)
            theta = theta - theta.mean()
            share = np.exp(theta) / np.exp(theta).sum()
            bt = {
                "method": f"choix.ilsr_pairwise (ML Bradley-Terry, ridge alpha={BT_ALPHA}); ties left out",
                "n_decisive": len(decisive),
                "systems": {s: {"log_strength": _r(theta[i]), "share": _r(share[i])} for i, s in enumerate(compared)},
            }
        else:
            bt = {"method": "choix.ilsr_pairwise", "n_decisive": 0, "systems": {}, "note": "no decisive A/B answer yet"}

    # agreement --------------------------------------------------------------------------
    units = [c for c, info in clips.items() if info["system"] != "anchor"]
    ucol = {c: j for j, c in enumerate(units)}
    rel = np.full((len(included), len(units)), np.nan)
    for r in kept:
        if r["kind"] == "mos":
            c = items[r["item"]]["clip"]
            if c in ucol:
                rel[index[r["rater"]], ucol[c]] = r["score"]
    agreement: dict[str, Any] = {"method": "Krippendorff's alpha, ordinal (krippendorff package), non-anchor MOS clips"}
    paired_units = int((np.sum(~np.isnan(rel), axis=0) >= 2).sum()) if len(included) else 0
    if len(included) < 2 or paired_units == 0:
        agreement.update(alpha=None, note="needs two raters who rated a common clip")
    elif len(set(rel[~np.isnan(rel)].tolist())) < 2:
        agreement.update(alpha=None, note="every score is the same; alpha is undefined")
    else:
        import krippendorff

        agreement["alpha"] = _r(float(krippendorff.alpha(reliability_data=rel, level_of_measurement="ordinal",
                                                         value_domain=[1, 2, 3, 4, 5])))
    agreement["n_raters"] = len(included)
    agreement["n_clips_rated_twice"] = paired_units

    return {
        "study": str(study.path.resolve()),
        "study_id": study.manifest["study_id"],
        "raters": {
            "answered": len(answered),
            "included": len(included),
            "failed_attention": len(failed),
            "attention_rule": study.manifest.get("attention", {}).get("rule"),
            "expertise": dict(sorted(expertise.items())),
        },
        "ratings": {
            "mos": sum(1 for r in kept if r["kind"] == "mos"),
            "ab": sum(1 for r in kept if r["kind"] == "ab"),
            "all_including_excluded": len(ratings),
        },
        "mos": mos,
        "ab": {"pairs": ab_rows, "systems": ab_systems},
        "bradley_terry": bt,
        "agreement": agreement,
        "method": {
            "mos_ci": f"95% percentile interval, two-level bootstrap: raters and clips resampled with replacement, "
                      f"{resamples} resamples, numpy default_rng seeded {seed}+system index",
            "ab_ci": f"same bootstrap over raters and the pair's items; 'no preference' counts 1/2; "
                     "p: two-sided exact binomial test of the decisive answers (scipy.stats.binomtest)",
            "bradley_terry": "choix.ilsr_pairwise, ridge alpha 0.01, ties left out (only with more than two systems)",
            "agreement": "Krippendorff's alpha (ordinal), krippendorff package",
            "attention": study.manifest.get("attention", {}).get("rule"),
        },
    }


def study_results(study: Study, seed: int = 0, resamples: int = RESAMPLES) -> dict[str, Any]:
    conn = open_existing(study.db_path, study.manifest["study_id"])
    try:
        ratings, raters = fetch_ratings(conn), fetch_raters(conn)
    finally:
        conn.close()
    items = study.items
    ratings = [r for r in ratings if r["item"] in items]
    return compute_results(study, ratings, raters, seed=seed, resamples=resamples)


def listening_section(results: dict[str, Any], system: str) -> dict[str, Any]:
    """The ``listening`` section of one system's run: its numbers, the reference's, the method."""
    mos = results["mos"].get(system) or {}
    ref = results["mos"].get("reference") or {}
    vs = {}
    for row in results["ab"]["pairs"]:
        if system in (row["a"], row["b"]):
            other = row["b"] if row["a"] == system else row["a"]
            rate = row["win_rate_a"] if row["a"] == system else (None if row["win_rate_a"] is None else _r(1 - row["win_rate_a"]))
            ci = row["ci95"] if row["a"] == system or row["ci95"] is None else [_r(1 - row["ci95"][1]), _r(1 - row["ci95"][0])]
            vs[other] = {"win_rate": rate, "ci95": ci, "n": row["n"], "p_value": row["p_value"]}
    bt = (results.get("bradley_terry") or {}).get("systems", {}).get(system)
    ab = results["ab"]["systems"].get(system) or {}
    return {
        "study": results["study"],
        "study_id": results["study_id"],
        "system": system,
        "mos": mos.get("mos"),
        "mos_ci95": mos.get("ci95"),
        "n_ratings": mos.get("n_ratings"),
        "n_clips": mos.get("n_clips"),
        "n_raters": results["raters"]["included"],
        "failed_attention": results["raters"]["failed_attention"],
        "reference_mos": ref.get("mos"),
        "reference_mos_ci95": ref.get("ci95"),
        "ab_win_rate": ab.get("win_rate"),
        "ab_win_rate_ci95": ab.get("ci95"),
        "ab_vs": vs,
        "bradley_terry_log_strength": None if bt is None else bt["log_strength"],
        "krippendorff_alpha_ordinal": results["agreement"].get("alpha"),
        "method": results["method"]["mos_ci"],
    }


def write_listening(study: Study, results: dict[str, Any], log: Any = print) -> list[Path]:
    """Write each run system's ``listening`` section into its run's metrics.json (atomically,
    other sections kept); a run folder that is gone or a metrics.json that is unreadable is said
    and skipped."""
    written = []
    for system in study.manifest["systems"]:
        if system["kind"] != "run" or not system.get("run"):
            continue
        run = Path(system["run"])
        if not run.is_dir():
            log(f"note: the run folder {run} of system {system['name']} is gone; its metrics.json was not updated.")
            continue
        path = run / "metrics.json"
        data: dict[str, Any] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                data = None  # type: ignore[assignment]
            if not isinstance(data, dict):
                log(f"note: {path} is not a JSON object; it was left alone.")
                continue
        data["listening"] = listening_section(results, system["name"])
        atomic_write(path, json.dumps(data, indent=1, allow_nan=False) + "\n")
        written.append(path)
    return written


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def format_results(res: dict[str, Any]) -> str:
    lines = [f"study {res['study']}"]
    r = res["raters"]
    lines.append(
        f"raters: {r['included']} included, {r['failed_attention']} failed the attention check (excluded); "
        f"ratings counted: {res['ratings']['mos']} MOS, {res['ratings']['ab']} A/B"
    )
    lines.append("")
    lines.append(f"{'system':<28} {'MOS':>6} {'95% CI':>15} {'ratings':>8} {'clips':>6}")
    for name, m in res["mos"].items():
        ci = "-" if m["ci95"] is None else f"[{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"
        lines.append(f"{name:<28} {_fmt(m['mos']):>6} {ci:>15} {m['n_ratings']:>8} {m['n_clips']:>6}")
    if res["ab"]["pairs"]:
        lines.append("")
        lines.append(f"{'A/B: a vs b':<40} {'n':>4} {'a wins':>7} {'b wins':>7} {'ties':>5} {'a rate':>7} {'95% CI':>15} {'p':>6}")
        for row in res["ab"]["pairs"]:
            ci = "-" if row["ci95"] is None else f"[{row['ci95'][0]:.2f}, {row['ci95'][1]:.2f}]"
            lines.append(
                f"{row['a'] + ' vs ' + row['b']:<40} {row['n']:>4} {row['wins_a']:>7} {row['wins_b']:>7} {row['ties']:>5} "
                f"{_fmt(row['win_rate_a']):>7} {ci:>15} {_fmt(row['p_value'], 3):>6}"
            )
    bt = res.get("bradley_terry")
    if bt and bt.get("systems"):
        lines.append("")
        lines.append("Bradley-Terry (" + bt["method"] + "):")
        for name, s in sorted(bt["systems"].items(), key=lambda kv: -kv[1]["log_strength"]):
            lines.append(f"  {name:<28} log-strength {s['log_strength']:+.3f}  share {s['share']:.3f}")
    ag = res["agreement"]
    lines.append("")
    lines.append(f"agreement: Krippendorff's alpha (ordinal) = {_fmt(ag.get('alpha'), 3)}" + (f" ({ag['note']})" if ag.get("note") else ""))
    lines.append("MOS interval: " + res["method"]["mos_ci"])
    return "\n".join(lines)
