"""The built-in report's sections: the run in one line, the generated set in a few, the
config, the training curves, the metrics tables, the feature distributions and the samples."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from musicfw.engine.report import escape, file_data_uri, fmt, image, kv_table, missing, table

from .figures import audio_data_uri, curves_figure, distance_kde_figure, pianoroll_figure, value_kde_figure


#: how many features the summary names (those where the samples differ most from the reference)
SUMMARY_FEATURES = 3


def _feature_name(key: str) -> str:
    """'avg_ioi' -> 'avg IOI', 'note_count' -> 'note count' (the full definitions are in the
    feature comparison table and docs/metrics.md)."""
    words = key.split("_")
    return " ".join(w.upper() if w in ("ioi", "pc", "pch", "nc") else w for w in words)


def _num(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def feature_differences(metrics: Mapping[str, Any], top: int = SUMMARY_FEATURES) -> list[dict[str, Any]]:
    """The scalar features where the generated set's mean differs most from the reference's,
    ranked by the difference in pooled standard deviations (so counts and rates compare):
    ``[{"feature", "name", "generated", "reference", "ratio", "effect"}]``."""
    stats = metrics.get("statistics") or {}
    gen, ref = stats.get("generated") or {}, stats.get("reference") or {}
    info = metrics.get("feature_info") or {}
    rows = []
    for key, g in gen.items():
        r = ref.get(key) or {}
        gm, rm = g.get("mean"), r.get("mean")
        if not isinstance(gm, (int, float)) or not isinstance(rm, (int, float)) or isinstance(gm, bool):
            continue
        if not (math.isfinite(gm) and math.isfinite(rm)):
            continue
        pooled = math.sqrt(((g.get("std") or 0.0) ** 2 + (r.get("std") or 0.0) ** 2) / 2)
        scale = pooled if pooled > 0 else max(abs(rm), 1e-12)
        rows.append(
            {
                "feature": key,
                "name": _feature_name(key),
                "description": (info.get(key) or {}).get("description", ""),
                "generated": float(gm),
                "reference": float(rm),
                "ratio": float(gm) / float(rm) if rm else None,
                "effect": abs(gm - rm) / scale,
            }
        )
    rows.sort(key=lambda d: -d["effect"])
    return rows[:top]


def _difference_sentence(d: Mapping[str, Any]) -> str:
    g, r, ratio = d["generated"], d["reference"], d["ratio"]
    if ratio is None:
        change = "where the reference has 0"
    elif ratio >= 1.005:
        change = f"{(ratio - 1) * 100:.0f}% more" if ratio < 2 else f"{ratio:.1f} times as much"
    elif ratio <= 0.995:
        change = f"{(1 - ratio) * 100:.0f}% less"
    else:
        change = "about the same"
    return f"{d['name']} {_num(g)} in the samples vs {_num(r)} in the reference ({change})"


def _generation_record(samples_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((samples_dir / "generation.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_lines(config: Mapping[str, Any], metrics: Mapping[str, Any] | None) -> list[str]:
    """The first "In short" line: what was trained on what, how long (and a note when the
    evaluation did not run)."""
    section = lambda key: config.get(key) if isinstance(config.get(key), dict) else {}  # noqa: E731
    training = (metrics or {}).get("training") or {}
    what = (
        f"A {section('model').get('name', '?')} model on {section('tokenizer').get('name', '?')} tokens of "
        f"the {section('data').get('name', '?')} data"
    )
    steps, secs = training.get("global_step"), training.get("train_time_s")
    if isinstance(steps, int) and steps > 0:
        what += f", trained for {steps:,} steps"
        if isinstance(secs, (int, float)):
            what += f" ({secs / 60:.1f} min)"
    elif training:
        what += ", fitted by counting" if training.get("n_parameters") == 0 else ""
    lines = [what + "."]
    if metrics is None:
        lines.append("No metrics: the evaluation did not run (see below).")
    return lines


def set_lines(run: Path, metrics: Mapping[str, Any] | None) -> list[str]:
    """The "In short" lines on the generated set: how many samples and what stopped them, the
    features where they differ most from the reference, the mean overlap area."""
    if metrics is None:
        return []
    lines = []
    record = _generation_record(run / "samples")
    reasons = record.get("stop_reasons")
    sets = metrics.get("sets") or {}
    n_gen = (sets.get("generated") or {}).get("n_pieces")
    n_ref = (sets.get("reference") or {}).get("n_pieces")
    if n_gen:
        text = f"{n_gen} samples were generated"
        if isinstance(reasons, list) and reasons:
            counts = {r: reasons.count(r) for r in dict.fromkeys(reasons)}
            text += " (stopped by " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"
        lines.append(text + ".")
    diffs = feature_differences(metrics)
    if diffs and n_ref:
        lines.append(
            f"Where the samples differ most from the {n_ref} reference pieces: "
            + "; ".join(_difference_sentence(d) for d in diffs) + "."
        )
    summary = (metrics.get("comparison") or {}).get("summary") or {}
    oa = summary.get("mean_oa_generated")
    if oa is not None:
        lines.append(
            f"Mean overlap area {fmt(oa)} over the features (1 would mean the samples are as far from the "
            f"reference pieces as from each other: indistinguishable on these features; see the feature "
            f"comparison below)."
        )
    elif n_gen is not None and n_ref is not None and min(n_gen, n_ref) < 2:
        lines.append(
            f"The set comparison is None: it needs at least 2 pieces in each set (generated {n_gen}, "
            f"reference {n_ref}) to measure distances within a set."
        )
    return lines


def _metrics_section(metrics: Mapping[str, Any] | None, problem: str | None) -> str:
    from musicfw.engine.evaluation import comparison_rows

    parts: list[str] = []
    if metrics is None:
        return "".join(parts) + missing(problem or "No metrics.")
    lik = metrics.get("likelihood") or {}
    parts.append("<h3>Held-out likelihood</h3>")
    if lik:
        for name, values in lik.items():
            unit = "nats; perplexity = exp(NLL per token)" if "perplexity" in values else "nats"
            parts.append(f'<p class="small">metric <b>{escape(name)}</b> ({unit})</p>')
            parts.append(kv_table(values))
    else:
        parts.append(missing("No likelihood was measured for this run."))
    training = metrics.get("training") or {}
    parts.append("<h3>Training</h3>")
    parts.append(kv_table(training) if training else missing("Training reported no numbers."))
    sets = metrics.get("sets") or {}
    if sets:
        parts.append("<h3>Sets compared</h3>")
        rows = [["set", "pieces", "source", "skipped files"]]
        for side in ("generated", "reference"):
            info = sets.get(side) or {}
            skipped = info.get("skipped") or []
            rows.append([side, info.get("n_pieces", 0), info.get("source", ""), len(skipped)])
        parts.append(table(rows))
        for side in ("generated", "reference"):
            for s in (sets.get(side) or {}).get("skipped") or []:
                parts.append(f'<p class="small">skipped ({escape(side)}) {escape(s.get("file"))}: {escape(s.get("reason"))}</p>')
    rows = comparison_rows(metrics)
    parts.append("<h3>Feature comparison (Yang &amp; Lerch)</h3>")
    if len(rows) > 1:
        parts.append(
            '<p class="small">generated / reference: mean ± std of the feature (scalars); intra / inter: '
            "mean ± std of the pairwise Euclidean distances within a set and between the sets; "
            "KLD = KL(intra-set density || inter-set density), OA = overlapping area of the two "
            "densities (1 = the set is as close to the other set as to itself).</p>"
        )
        parts.append(table(rows))
        summary = (metrics.get("comparison") or {}).get("summary") or {}
        if summary:
            parts.append(kv_table(summary))
    else:
        parts.append(missing("No set comparison: " + "; ".join(metrics.get("notes") or ["no generated or reference pieces"])))
    for note in metrics.get("notes") or []:
        parts.append(f'<p class="small">note: {escape(note)}</p>')
    return "".join(parts)


def _distributions_section(metrics: Mapping[str, Any] | None) -> str:
    parts: list[str] = []
    if metrics is None:
        return "".join(parts) + missing("No metrics.json, so no distributions.")
    values = value_kde_figure(metrics)
    distances = distance_kde_figure(metrics.get("kde") or {})
    if values is None and distances is None:
        return "".join(parts) + missing("No features were compared in this run.")
    if values is not None:
        parts.append(image(values, "feature value densities", "Kernel density of each scalar feature over the pieces of each set (ticks: the pieces)."))
    if distances is not None:
        parts.append(
            image(
                distances,
                "distance densities",
                "Kernel densities of the pairwise distances: within the generated set, within the "
                "reference set, and between the sets (mgeval's plot).",
            )
        )
    return "".join(parts)


def _samples_section(samples_dir: Path) -> str:
    parts: list[str] = []
    if not samples_dir.is_dir():
        return "".join(parts) + missing("No samples folder: nothing was generated in this run.")
    mids = sorted(p for p in samples_dir.iterdir() if p.suffix.lower() in (".mid", ".midi"))
    if not mids:
        return "".join(parts) + missing("The samples folder holds no MIDI file.")
    wavs = [p for p in mids if p.with_suffix(".wav").is_file()]
    if not wavs:
        parts.append(missing("No audio was rendered for these samples (no .wav files: no soundfont was found, or rendering was off)."))
    for mid in mids:
        parts.append(f'<div class="sample"><h3>{escape(mid.name)}</h3>')
        parts.append(_file_links(mid, samples_dir.name))
        png = mid.with_suffix(".png")
        try:
            uri = file_data_uri(png, "image/png") if png.is_file() else pianoroll_figure(mid)
            parts.append(image(uri, f"piano roll of {mid.name}"))
        except Exception as exc:  # a broken sample must not break the report
            parts.append(missing(f"No piano roll for {mid.name}: {type(exc).__name__}: {exc}"))
        wav = mid.with_suffix(".wav")
        if wav.is_file():
            uri = audio_data_uri(wav)
            parts.append(f'<audio controls preload="metadata" src="{uri}"></audio>')
        elif wavs:
            parts.append(missing("No audio for this sample."))
        parts.append("</div>")
    return "".join(parts)


def _file_links(path: Path, base: str) -> str:
    """Links to a sample's .mid and (when written) .wav, relative to report.html."""
    links = [f'<a href="{escape(base)}/{escape(path.name)}" download>{escape(path.name)}</a>']
    wav = path.with_suffix(".wav")
    if wav.is_file():
        links.append(f'<a href="{escape(base)}/{escape(wav.name)}" download>{escape(wav.name)}</a>')
    return f'<p class="small files">files: {" &middot; ".join(links)}</p>'
