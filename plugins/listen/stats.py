"""``musicfw listen results``: the numbers of a study.

* Rater screening (every exclusion is listed with its reasons in the results; all answers of an
  excluded rater are left out; raters without any answer are not counted):
  - the MOS attention check: a rater who rated any low-anchor clip (shuffled pitches) 4 or 5;
  - BS.1534-3 post-screening for MUSHRA: a rater who scored the hidden reference below 90 on
    more than 15% of the MUSHRA items they answered;
  - with ``--require-headphones``, a rater who said they did not listen with headphones.
* Repeated items (``--repeats``): per rater the mean absolute difference between the two
  answers of a repeated MOS item (1-5 scale) and of a repeated MUSHRA item (0-100, averaged over
  its conditions); the repeats' answers are not used for anything else.
* MOS per system: the mean of the included raters' 1-5 scores of the system's clips, with a
  95% percentile interval from a two-level bootstrap (:func:`two_level_bootstrap`): each of the
  2,000 resamples draws the raters with replacement and, independently, the system's clips with
  replacement, and averages every (rater, clip) score present with weight (times the rater was
  drawn) x (times the clip was drawn).  Seeded (``numpy.random.default_rng(seed)``, seed 0 by
  default), so the same database gives the same interval.
* MUSHRA per condition (every run, the hidden reference, the mid and the low anchor): the mean
  0-100 score with the same two-level bootstrap over raters and MUSHRA items; for every pair of
  conditions a paired two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) over the
  (rater, item) pairs, with Holm's step-down correction over all the pairs (scipy has no Holm;
  it is five lines in :func:`holm`).
* A/B: for each pair of systems the answers for each side and "no preference", the win rate
  of the decisive answers with its exact (Clopper-Pearson) 95% interval and a two-sided exact
  binomial test against 50% (``scipy.stats.binomtest``; both treat answers as independent, which
  repeated raters make optimistic); per system the win rate over all its decisive comparisons,
  with the same exact interval.  A unanimous pair of 6 answers gets [0, 0.46], not [0, 0].
* Bradley-Terry strengths when more than two systems were compared: ``choix.ilsr_pairwise``
  (iterative Luce spectral ranking, the ML estimate) with a small ridge ``alpha=0.01``; ties are
  left out.  Log-strengths centred on 0, shares exp(theta)/sum exp(theta), and a 95% percentile
  interval from 1,000 refits on raters resampled with replacement.  A system that never won
  (never lost) has no finite ML strength: its value is set by the ridge alone, so it is flagged
  and printed as such rather than as a number.
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
from .study import HIDDEN_REFERENCE_MAX_SHARE, HIDDEN_REFERENCE_MIN, Study

RESAMPLES = 2000
BT_RESAMPLES = 1000
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


def clopper_pearson(k: int, n: int) -> tuple[float, float] | None:
    """The exact 95% interval of a binomial proportion k/n (scipy's ``method="exact"``)."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return float(ci.low), float(ci.high)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * float(pvalues[i])))
        out[i] = running
    return out


def wilcoxon_pair(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Paired two-sided Wilcoxon signed-rank test of x against y (scipy; zero differences
    dropped, as Wilcoxon did); p is None when every difference is zero."""
    from scipy.stats import wilcoxon

    d = x - y
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return {"n": int(len(d)), "n_nonzero": 0, "statistic": None, "p_value": None}
    res = wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    return {"n": int(len(d)), "n_nonzero": nonzero, "statistic": float(res.statistic), "p_value": float(res.pvalue)}


def bradley_terry(n: int, decisive: Sequence[tuple[int, int, str]], raters: Sequence[str], seed: int = 0,
                  resamples: int = BT_RESAMPLES) -> tuple[np.ndarray, np.ndarray | None]:
    """Centred log-strengths from ``(winner, loser, rater)`` answers, and the 2.5/97.5
    percentiles of refits on raters resampled with replacement (None with one rater)."""
    import choix

    def fit(pairs: Sequence[tuple[int, int]]) -> np.ndarray:
        theta = np.asarray(choix.ilsr_pairwise(n, list(pairs), alpha=BT_ALPHA), dtype=float)
        return theta - theta.mean()

    theta = fit([(w, l) for w, l, _ in decisive])
    if len(raters) < 2:
        return theta, None
    by_rater = {r: [(w, l) for w, l, rr in decisive if rr == r] for r in raters}
    rng = np.random.default_rng(seed)
    fits = []
    for _ in range(resamples):
        pairs = [p for j in rng.integers(0, len(raters), len(raters)) for p in by_rater[raters[int(j)]]]
        if pairs:
            fits.append(fit(pairs))
    if not fits:
        return theta, None
    return theta, np.percentile(np.asarray(fits), [2.5, 97.5], axis=0)


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _ci(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [_r(ci[0]), _r(ci[1])]


def screen_raters(study: Study, ratings: Sequence[dict[str, Any]], raters: Sequence[dict[str, Any]]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """``({rater id: number}, exclusions)``: raters are numbered 1, 2, ... in the order they
    started; each exclusion is ``{"rater": number, "reasons": [str, ...]}``."""
    clips, items = study.clips, study.items
    threshold = int(study.manifest.get("attention", {}).get("threshold", 4))
    order = [r["id"] for r in raters] + sorted({r["rater"] for r in ratings} - {r["id"] for r in raters})
    number = {rid: n for n, rid in enumerate(order, 1)}
    info = {r["id"]: r for r in raters}
    answered = sorted({r["rater"] for r in ratings}, key=lambda r: number[r])
    exclusions = []
    for rid in answered:
        mine = [r for r in ratings if r["rater"] == rid]
        reasons = []
        anchors = [r["score"] for r in mine if r["kind"] == "mos" and clips[items[r["item"]]["clip"]]["system"] == "anchor"]
        high = [s for s in anchors if s >= threshold]
        if high:
            reasons.append(f"attention check: rated the low anchor {max(high)} (>= {threshold}) "
                           f"on {len(high)} of {len(anchors)} anchor items")
        hidden = []
        for r in mine:
            if r["kind"] == "mushra" and "repeat_of" not in items[r["item"]]:
                hid = next(c for c in items[r["item"]]["clips"] if clips[c].get("role") == "hidden_reference")
                hidden.append(r.get("scores", {}).get(hid))
        low = [s for s in hidden if s is not None and s < HIDDEN_REFERENCE_MIN]
        if hidden and len(low) > HIDDEN_REFERENCE_MAX_SHARE * len(hidden):
            reasons.append(f"MUSHRA post-screening (BS.1534-3): scored the hidden reference below {HIDDEN_REFERENCE_MIN} "
                           f"on {len(low)} of {len(hidden)} items ({len(low) / len(hidden):.0%} > {HIDDEN_REFERENCE_MAX_SHARE:.0%})")
        env = (info.get(rid) or {}).get("environment")
        if study.settings.get("require_headphones") and env != "headphones":
            reasons.append(f"listening environment: {env or 'not given'}, the study requires headphones")
        if reasons:
            exclusions.append({"rater": number[rid], "reasons": reasons})
    return number, exclusions


def compute_results(study: Study, ratings: Sequence[dict[str, Any]], raters: Sequence[dict[str, Any]] = (),
                    seed: int = 0, resamples: int = RESAMPLES) -> dict[str, Any]:
    """Every number of the module docstring, from the study's manifest and its ratings."""
    from scipy.stats import binomtest

    clips = study.clips
    items = study.items
    systems = [s["name"] for s in study.manifest["systems"]]
    compared = [s["name"] for s in study.manifest["systems"] if s["kind"] != "anchor"]

    number, exclusions = screen_raters(study, ratings, raters)
    excluded_numbers = {e["rater"] for e in exclusions}
    answered = sorted({r["rater"] for r in ratings}, key=lambda r: number[r])
    failed = [e for e in exclusions if any(x.startswith("attention check") for x in e["reasons"])]
    included = [r for r in answered if number[r] not in excluded_numbers]
    index = {r: i for i, r in enumerate(included)}
    kept_all = [r for r in ratings if r["rater"] in index]
    kept = [r for r in kept_all if "repeat_of" not in items[r["item"]]]
    expertise = Counter((next((x.get("expertise") for x in raters if x["id"] == r), None) or "not given") for r in included)
    environment = Counter((next((x.get("environment") for x in raters if x["id"] == r), None) or "not given") for r in included)

    # consistency (repeated items) --------------------------------------------------------
    by_key = {(r["rater"], r["item"]): r for r in ratings}
    consistency_rows = []
    for rid in answered:
        mos_d, mushra_d = [], []
        for item in study.manifest["items"]:
            if "repeat_of" not in item:
                continue
            a, b = by_key.get((rid, item["repeat_of"])), by_key.get((rid, item["id"]))
            if a is None or b is None:
                continue
            if item["kind"] == "mos":
                mos_d.append(abs(a["score"] - b["score"]))
            elif item["kind"] == "mushra":
                sa, sb = a.get("scores", {}), b.get("scores", {})
                common = [c for c in sa if c in sb]
                if common:
                    mushra_d.append(float(np.mean([abs(sa[c] - sb[c]) for c in common])))
        if mos_d or mushra_d:
            consistency_rows.append({
                "rater": number[rid], "included": rid in index, "n_repeats": len(mos_d) + len(mushra_d),
                "mos_mean_abs_diff": _r(float(np.mean(mos_d))) if mos_d else None,
                "mushra_mean_abs_diff": _r(float(np.mean(mushra_d))) if mushra_d else None,
            })

    def pooled(key: str) -> float | None:
        vals = [c[key] for c in consistency_rows if c["included"] and c[key] is not None]
        return _r(float(np.mean(vals))) if vals else None

    consistency = {
        "method": "mean absolute difference between the two answers of a repeated item (MOS: 1-5 scale; "
                  "MUSHRA: 0-100, averaged over the item's conditions); 0 = perfectly consistent",
        "raters": consistency_rows,
        "mos_mean_abs_diff": pooled("mos_mean_abs_diff"),
        "mushra_mean_abs_diff": pooled("mushra_mean_abs_diff"),
    }

    # MOS ------------------------------------------------------------------------------
    mos_clip_ids = {i["clip"] for i in study.manifest["items"] if i["kind"] == "mos"}
    mos: dict[str, Any] = {}
    for k, system in enumerate(systems):
        ids = [c for c, info in clips.items() if info["system"] == system and c in mos_clip_ids]
        if not ids:
            continue
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

    # MUSHRA ------------------------------------------------------------------------------
    mushra: dict[str, Any] | None = None
    mushra_items = [i for i in study.manifest["items"] if i["kind"] == "mushra" and "repeat_of" not in i]
    if mushra_items:
        def condition(c: str) -> str:
            return clips[c]["system"]

        conditions = []
        for name in ["reference"] + [s for s in compared if s != "reference"] + ["mid_anchor", "anchor"]:
            if any(condition(c) == name for i in mushra_items for c in i["clips"]) and name not in conditions:
                conditions.append(name)
        col = {i["id"]: j for j, i in enumerate(mushra_items)}
        cube = {name: np.zeros((len(included), len(mushra_items))) for name in conditions}
        have = {name: np.zeros((len(included), len(mushra_items)), dtype=bool) for name in conditions}
        for r in kept:
            if r["kind"] != "mushra":
                continue
            for c, v in r.get("scores", {}).items():
                name = condition(c)
                cube[name][index[r["rater"]], col[r["item"]]] = v
                have[name][index[r["rater"]], col[r["item"]]] = True
        means = {}
        for k, name in enumerate(conditions):
            x, m = cube[name], have[name]
            n = int(m.sum())
            means[name] = {
                "mean": _r(float(x[m].mean())) if n else None,
                "ci95": _ci(two_level_bootstrap(x, m, resamples, seed + 3000 + k)),
                "n_scores": n, "n_items": len(mushra_items), "n_raters": int(m.any(axis=1).sum()),
                "role": {"reference": "hidden reference", "mid_anchor": "mid anchor", "anchor": "low anchor"}.get(name, "system"),
            }
        tests = []
        for i, a in enumerate(conditions):
            for b in conditions[i + 1:]:
                both = have[a] & have[b]
                row = {"a": a, "b": b, **wilcoxon_pair(cube[a][both], cube[b][both])}
                row["mean_difference"] = _r(float((cube[a][both] - cube[b][both]).mean())) if both.any() else None
                tests.append(row)
        for row, adj in zip(tests, holm([t["p_value"] for t in tests])):
            row["p_value"] = _r(row["p_value"], 6)
            row["p_holm"] = _r(adj, 6)
            if row["statistic"] is not None:
                row["statistic"] = _r(row["statistic"])
        mushra = {"conditions": means, "wilcoxon": tests, "n_items": len(mushra_items)}

    # A/B ------------------------------------------------------------------------------
    ab_rows = []
    pair_items: dict[tuple[str, str], list[str]] = {}
    for item in study.manifest["items"]:
        if item["kind"] == "ab":
            a, b = (clips[c]["system"] for c in item["clips"])
            pair_items.setdefault((a, b), []).append(item["id"])
    answers = {(r["rater"], r["item"]): r for r in kept if r["kind"] == "ab"}

    def tally(item_ids: list[str], system: str) -> tuple[int, int, int]:
        wins = losses = ties = 0
        for it in item_ids:
            for rater in index:
                r = answers.get((rater, it))
                if r is None:
                    continue
                if r["choice"] == "none":
                    ties += 1
                elif clips[r["choice"]]["system"] == system:
                    wins += 1
                else:
                    losses += 1
        return wins, losses, ties

    decisive: list[tuple[int, int, str]] = []
    for (a, b), ids in sorted(pair_items.items()):
        wins_a, wins_b, ties = tally(ids, a)
        n_dec = wins_a + wins_b
        p = binomtest(wins_a, n_dec, 0.5).pvalue if n_dec else None
        ab_rows.append({
            "a": a, "b": b, "n": n_dec + ties, "wins_a": wins_a, "wins_b": wins_b, "ties": ties,
            "win_rate_a": _r(wins_a / n_dec) if n_dec else None,
            "ci95": _ci(clopper_pearson(wins_a, n_dec)),
            "p_value": _r(p),
        })
        if a in compared and b in compared:
            for it in ids:
                for rater in index:
                    r = answers.get((rater, it))
                    if r is None or r["choice"] == "none":
                        continue
                    win = clips[r["choice"]]["system"]
                    lose = b if win == a else a
                    decisive.append((compared.index(win), compared.index(lose), rater))
    ab_systems = {}
    for system in compared:
        ids = [it for (a, b), its in pair_items.items() if system in (a, b) for it in its]
        if not ids:
            continue
        wins, losses, ties = tally(ids, system)
        ab_systems[system] = {
            "n": wins + losses + ties, "wins": wins, "losses": losses, "ties": ties,
            "win_rate": _r(wins / (wins + losses)) if wins + losses else None,
            "ci95": _ci(clopper_pearson(wins, wins + losses)),
        }

    # Bradley-Terry ----------------------------------------------------------------------
    bt: dict[str, Any] | None = None
    if len(compared) > 2 and pair_items:
        method = (f"choix.ilsr_pairwise (ML Bradley-Terry, ridge alpha={BT_ALPHA}); ties left out; 95% percentile "
                  f"interval of {BT_RESAMPLES} refits on raters resampled with replacement")
        if decisive:
            theta, ci = bradley_terry(len(compared), decisive, list(index), seed=seed)
            share = np.exp(theta) / np.exp(theta).sum()
            out = {}
            for i, s in enumerate(compared):
                won = sum(1 for w, _, _ in decisive if w == i)
                lost = sum(1 for _, l, _ in decisive if l == i)
                flag = None
                if won + lost == 0:
                    flag = "never compared decisively: no strength"
                elif won == 0:
                    flag = "never won: no finite ML strength (-infinity); the value is set by the ridge alone"
                elif lost == 0:
                    flag = "never lost: no finite ML strength (+infinity); the value is set by the ridge alone"
                out[s] = {"log_strength": _r(theta[i]), "share": _r(share[i]), "wins": won, "losses": lost,
                          "ci95": None if ci is None else [_r(ci[0][i]), _r(ci[1][i])], "flag": flag}
            bt = {"method": method, "n_decisive": len(decisive), "systems": out}
        else:
            bt = {"method": method, "n_decisive": 0, "systems": {}, "note": "no decisive A/B answer yet"}

    # agreement --------------------------------------------------------------------------
    units = [c for c, info in clips.items() if info["system"] != "anchor" and c in mos_clip_ids]
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

    screening = study.manifest.get("screening", {}).get("rule") or (
        f"BS.1534-3 post-screening: a rater who scores the hidden reference below {HIDDEN_REFERENCE_MIN} "
        f"on more than {HIDDEN_REFERENCE_MAX_SHARE:.0%} of the MUSHRA items is excluded")
    return {
        "study": str(study.path.resolve()),
        "study_id": study.manifest["study_id"],
        "raters": {
            "answered": len(answered),
            "included": len(included),
            "excluded": len(exclusions),
            "failed_attention": len(failed),
            "exclusions": exclusions,
            "attention_rule": study.manifest.get("attention", {}).get("rule"),
            "screening_rule": screening,
            "expertise": dict(sorted(expertise.items())),
            "environment": dict(sorted(environment.items())),
        },
        "ratings": {
            "mos": sum(1 for r in kept if r["kind"] == "mos"),
            "ab": sum(1 for r in kept if r["kind"] == "ab"),
            **({"mushra": sum(1 for r in kept if r["kind"] == "mushra")} if mushra_items else {}),
            **({"repeats": len(kept_all) - len(kept)} if len(kept_all) != len(kept) else {}),
            "all_including_excluded": len(ratings),
        },
        "mos": mos,
        "mushra": mushra,
        "ab": {"pairs": ab_rows, "systems": ab_systems},
        "bradley_terry": bt,
        "agreement": agreement,
        "consistency": consistency,
        "method": {
            "mos_ci": f"95% percentile interval, two-level bootstrap: raters and clips resampled with replacement, "
                      f"{resamples} resamples, numpy default_rng seeded {seed}+system index",
            "mushra": "means of 0-100 scores with the same two-level bootstrap over raters and MUSHRA items; paired "
                      "two-sided Wilcoxon signed-rank tests (scipy.stats.wilcoxon) over (rater, item) pairs, "
                      "Holm-corrected over all pairs of conditions",
            "ab_ci": "win rate of the decisive answers ('no preference' counted apart) with its exact Clopper-Pearson "
                     "95% interval; p: two-sided exact binomial test (scipy.stats.binomtest); both treat answers as independent",
            "bradley_terry": f"choix.ilsr_pairwise, ridge alpha {BT_ALPHA}, ties left out, {BT_RESAMPLES} rater-bootstrap refits "
                             "(only with more than two systems); a system that never won or never lost is flagged",
            "agreement": "Krippendorff's alpha (ordinal), krippendorff package",
            "attention": study.manifest.get("attention", {}).get("rule"),
            "screening": screening,
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
    mushra = ((results.get("mushra") or {}).get("conditions") or {})
    mine, hidden = mushra.get(system) or {}, mushra.get("reference") or {}
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
        "excluded_raters": results["raters"]["excluded"],
        "mushra": mine.get("mean"),
        "mushra_ci95": mine.get("ci95"),
        "hidden_reference_mushra": hidden.get("mean"),
        "mushra_vs": {(row["b"] if row["a"] == system else row["a"]): {"p_holm": row["p_holm"], "mean_difference": (
            row["mean_difference"] if row["a"] == system or row["mean_difference"] is None else _r(-row["mean_difference"]))}
            for row in (results.get("mushra") or {}).get("wilcoxon", []) if system in (row["a"], row["b"])},
        "reference_mos": ref.get("mos"),
        "reference_mos_ci95": ref.get("ci95"),
        "ab_win_rate": ab.get("win_rate"),
        "ab_win_rate_ci95": ab.get("ci95"),
        "ab_vs": vs,
        "bradley_terry_log_strength": None if bt is None else bt["log_strength"],
        "bradley_terry_ci95": None if bt is None else bt.get("ci95"),
        "bradley_terry_flag": None if bt is None else bt.get("flag"),
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
    counted = ", ".join(f"{v} {k if k != 'ab' else 'A/B'}".replace("mos", "MOS").replace("mushra", "MUSHRA")
                        for k, v in res["ratings"].items() if k not in ("all_including_excluded", "repeats") and v) or "none"
    lines.append(f"raters: {r['answered']} answered, {r['included']} included, {r['excluded']} excluded; answers counted: {counted}")
    for e in r.get("exclusions", []):
        lines.append(f"  excluded rater {e['rater']}: " + "; ".join(e["reasons"]))
    names = list(res["mos"]) + list((res.get("mushra") or {}).get("conditions", {}))
    w = max([28] + [len(n) + 2 for n in names])  # the name column fits the longest run name
    if res["mos"]:
        lines.append("")
        lines.append(f"{'system':<{w}} {'MOS':>6} {'95% CI':>15} {'ratings':>8} {'clips':>6}")
        for name, m in res["mos"].items():
            ci = "-" if m["ci95"] is None else f"[{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"
            lines.append(f"{name:<{w}} {_fmt(m['mos']):>6} {ci:>15} {m['n_ratings']:>8} {m['n_clips']:>6}")
    mu = res.get("mushra")
    if mu:
        lines.append("")
        lines.append(f"{'MUSHRA condition':<{w}} {'mean':>6} {'95% CI':>15} {'scores':>7}  role")
        for name, m in mu["conditions"].items():
            ci = "-" if m["ci95"] is None else f"[{m['ci95'][0]:.1f}, {m['ci95'][1]:.1f}]"
            lines.append(f"{name:<{w}} {_fmt(m['mean'], 1):>6} {ci:>15} {m['n_scores']:>7}  {m['role']}")
        lines.append("")
        w2 = max([40] + [len(t["a"]) + len(t["b"]) + 6 for t in mu["wilcoxon"]])
        lines.append(f"{'Wilcoxon signed-rank: a vs b':<{w2}} {'n':>4} {'diff':>6} {'p':>8} {'p Holm':>8}")
        for t in mu["wilcoxon"]:
            lines.append(f"{t['a'] + ' vs ' + t['b']:<{w2}} {t['n']:>4} {_fmt(t['mean_difference'], 1):>6} "
                         f"{_pfmt(t['p_value']):>8} {_pfmt(t['p_holm']):>8}")
    if res["ab"]["pairs"]:
        lines.append("")
        w3 = max([40] + [len(r["a"]) + len(r["b"]) + 6 for r in res["ab"]["pairs"]])
        lines.append(f"{'A/B: a vs b':<{w3}} {'n':>4} {'a wins':>7} {'b wins':>7} {'ties':>5} {'a rate':>7} {'exact 95% CI':>15} {'p':>6}")
        for row in res["ab"]["pairs"]:
            ci = "-" if row["ci95"] is None else f"[{row['ci95'][0]:.2f}, {row['ci95'][1]:.2f}]"
            lines.append(
                f"{row['a'] + ' vs ' + row['b']:<{w3}} {row['n']:>4} {row['wins_a']:>7} {row['wins_b']:>7} {row['ties']:>5} "
                f"{_fmt(row['win_rate_a']):>7} {ci:>15} {_fmt(row['p_value'], 3):>6}"
            )
    bt = res.get("bradley_terry")
    if bt and bt.get("systems"):
        lines.append("")
        lines.append("Bradley-Terry (" + bt["method"] + "):")
        for name, s in sorted(bt["systems"].items(), key=lambda kv: -kv[1]["log_strength"]):
            if s.get("flag"):
                lines.append(f"  {name:<{w}} {s['flag']}")
                continue
            ci = "" if s.get("ci95") is None else f" [{s['ci95'][0]:+.2f}, {s['ci95'][1]:+.2f}]"
            lines.append(f"  {name:<{w}} log-strength {s['log_strength']:+.3f}{ci}  share {s['share']:.3f}")
    con = res.get("consistency") or {}
    if con.get("raters"):
        lines.append("")
        parts = [f"{k.split('_')[0].upper()} {_fmt(con[k])}" for k in ("mos_mean_abs_diff", "mushra_mean_abs_diff") if con.get(k) is not None]
        lines.append("consistency on repeated items (mean absolute difference, included raters): " + ", ".join(parts))
    ag = res["agreement"]
    if res["mos"]:
        lines.append("")
        lines.append(f"agreement: Krippendorff's alpha (ordinal) = {_fmt(ag.get('alpha'), 3)}" + (f" ({ag['note']})" if ag.get("note") else ""))
    lines.append("intervals: " + (res["method"]["mos_ci"] if res["mos"] else res["method"]["mushra"] if mu else res["method"]["ab_ci"]))
    return "\n".join(lines)


def _pfmt(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.4f}" if p >= 0.0001 else "<0.0001"
