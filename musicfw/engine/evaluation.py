"""Evaluation: the configured metrics of a run, or of any two MIDI folders, into metrics.json.

Metric plugins (the ``metrics`` registry) come in two kinds, told apart by their ``kind``
class attribute:

* ``kind = "likelihood"``: ``evaluate(model, datamodule, tokenizer) -> dict`` measures a
  trained model on a held-out split (the built-in ``nll``);
* ``kind = "features"``: ``features(score) -> {feature: float | array}`` describes one piece
  with fixed-shape values (``yang_lerch``, ``muspy``); optional ``feature_descriptions``
  (a dict) documents them.  Every feature of every such metric is compared between the
  generated and the reference set with the Yang & Lerch method (intra-/inter-set distances,
  KDE, KL divergence, overlapping area).

metrics.json (schema ``musicfw.metrics/1``; documented in docs/metrics.md) is a JSON object:

``schema``, ``created``, ``musicfw_version``
``metrics``: ``[{"name", "config"}]`` the metric plugins that ran
``likelihood``: ``{metric name: {split, n_sequences, n_targets, nll_sum, nll_per_token,
perplexity, bits_per_token, n_notes, nll_per_note, seconds, nll_per_second}}``
``training``: what training reported (the runner's ``fit_metrics``), ``{}`` if nothing
``sets``: ``{"generated"|"reference": {"source", "n_pieces", "skipped": [{"file", "reason"}]}}``
``feature_info``: ``{feature: {"metric", "shape", "description"}}``
``features``: ``{"generated"|"reference": {piece file name: {feature: value}}}``
``statistics``: ``{"generated"|"reference": {feature: {"mean", "std", "n"}}}``
``comparison``: ``{"features": {feature: {n_generated, n_reference, intra_generated: {mean,
std}, intra_reference: {mean, std}, inter: {mean, std}, kl_generated, oa_generated,
kl_reference, oa_reference}}, "summary": {mean_oa_generated, mean_kl_generated, ...}}``
``kde``: ``{feature: {"x": [...], "intra_generated": [...], "intra_reference": [...],
"inter": [...]}}`` the densities, for plots
``notes``: what could not be measured, and why
``split``: how the data was split and what the split leaks (``split_by``, ``tunes``,
``leakage``: test pieces sharing a melody run with the training split, n-gram overlap;
musicfw/engine/splits.py), ``{}`` without a data module

Undefined numbers (NaN, an empty set's mean, an infinite perplexity) are ``null``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from musicfw.core.errors import DataError, PluginError
from musicfw.music.limits import PieceRejected
from musicfw.core.metric import FEATURES, LIKELIHOOD
from musicfw.core.version import musicfw_version
from musicfw.music.midiload import MIDI_SUFFIXES

SCHEMA = "musicfw.metrics/1"
DEFAULT_FOLDER_METRICS = ("yang_lerch", "muspy")


# --------------------------------------------------------------------------------------
# Loading pieces
# --------------------------------------------------------------------------------------


def load_midi_folder(folder: str | Path) -> tuple[list[tuple[str, Any]], list[dict[str, str]]]:
    """Every .mid/.midi file under ``folder`` (recursive, sorted) as ``(relative name, Score)``;
    files that do not load are returned as ``{"file", "reason"}`` instead of raising."""
    root = Path(folder)
    if not root.exists():
        raise DataError(f"MIDI folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"Expected a folder of MIDI files, got a file: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)
    return load_midi_files(files, root, f"No loadable MIDI file in {root}.")


def load_midi_files(
    files: Sequence[Path], root: Path, empty: str
) -> tuple[list[tuple[str, Any]], list[dict[str, str]]]:
    """``files`` as ``(name relative to root, Score)`` and the skipped ones with reasons; no
    loadable file is a DataError starting with ``empty``."""
    from musicfw.music.midiload import load_score

    pieces: list[tuple[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for path in files:
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = path.as_posix()
        score, reason = load_score(path)  # the loader (and reasons) of the midi_folder dataset
        if reason is not None:
            skipped.append({"file": name, "reason": reason})
            continue
        pieces.append((name, score))
    if not pieces:
        detail = (
            f" {len(skipped)} file(s) failed to load: "
            + "; ".join(f"{s['file']} ({s['reason']})" for s in skipped[:5])
            if skipped
            else " It holds no .mid or .midi file."
        )
        raise DataError(f"{empty}{detail}")
    return pieces, skipped


def run_sample_files(run_dir: str | Path, samples: str | None = None) -> tuple[list[Path], str]:
    """The generated MIDI files of a run that ``musicfw evaluate --run`` scores, and a label.

    Default: ``samples/*.mid`` (the run's own samples; not the ``samples/generate-NNN/``
    folders of later ``musicfw generate`` calls).  ``samples``: a folder (its .mid/.midi
    files) or a glob such as ``samples/generate-001/*.mid`` or ``samples/**/*.mid``, relative
    to the run folder unless absolute."""
    import glob

    run_dir = Path(run_dir)
    if samples is None:
        folder = run_dir / "samples"
        files = sorted(folder.glob("*")) if folder.is_dir() else []
        label = str(folder / "*.mid")
    else:
        target = Path(samples) if Path(samples).is_absolute() else run_dir / samples
        if target.is_dir():
            files, label = sorted(target.glob("*")), str(target)
        elif glob.has_magic(samples):
            files = sorted(Path(p) for p in glob.glob(str(target), recursive=True))
            label = str(target)
        else:
            raise DataError(
                f"--samples {samples}: {target} is neither a folder nor a glob pattern "
                "(e.g. samples/generate-001 or 'samples/**/*.mid', relative to the run folder)."
            )
    return [p for p in files if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES], label


def _unique_names(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            name = f"{name}#{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return out


def named_pieces(items: Any, prefix: str = "piece") -> list[tuple[str, Any]]:
    """Accept Scores, ``(name, Score)`` pairs, a ``{name: Score}`` dict, or objects with a
    ``score`` attribute (and ``name``/``path``/``id``); return ``[(name, Score)]``."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        pairs = [(str(k), v) for k, v in items.items()]
    else:
        pairs = []
        for i, item in enumerate(items):
            default = f"{prefix}_{i:03d}"
            if isinstance(item, tuple) and len(item) == 2 and not hasattr(item, "tracks"):
                a, b = item
                name, score = (str(a), b) if hasattr(b, "tracks") else (str(b), a)
            elif hasattr(item, "tracks"):
                name, score = default, item
            elif hasattr(item, "score"):
                score = item.score
                label = next(
                    (getattr(item, a) for a in ("name", "path", "id", "key") if getattr(item, a, None)),
                    default,
                )
                name = Path(str(label)).name if isinstance(label, Path) else str(label)
            else:
                raise TypeError(f"cannot read a piece of music from {type(item).__name__}")
            pairs.append((name, score))
    names = _unique_names(n for n, _ in pairs)
    return list(zip(names, (s for _, s in pairs)))


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------


def build_metrics(sections: Sequence[Any], registries: Any = None) -> list[Any]:
    """Metric instances from config sections (``{name: ..., params}``) or names."""
    from musicfw.core.build import build_from_section

    return [
        build_from_section("metrics", s, registries=registries, key=f"evaluate.metrics[{i}]")
        for i, s in enumerate(sections)
    ]


def _metric_record(metric: Any) -> dict[str, Any]:
    import dataclasses

    config = metric.config
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
    return {"name": metric.name, "config": values}


def feature_metrics(metrics: Sequence[Any]) -> list[Any]:
    return [m for m in metrics if m.kind == FEATURES]


def likelihood_metrics(metrics: Sequence[Any]) -> list[Any]:
    return [m for m in metrics if m.kind == LIKELIHOOD]


def piece_features(metrics: Sequence[Any], pieces: Sequence[tuple[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``({piece: {feature: value}}, feature_info)`` for every feature metric.

    A piece's notes are flattened once and shared by the built-in metrics.  Two metrics that
    produce the same feature name are a :class:`PluginError`.
    """
    from musicfw.music.notes import piece_notes

    owners: dict[str, str] = {}
    info: dict[str, dict[str, Any]] = {}
    out: dict[str, dict[str, Any]] = {}
    for name, score in pieces:
        try:
            notes = piece_notes(score)
        except PieceRejected as exc:  # beyond the limits (a runaway generated sample): not measured
            import warnings

            warnings.warn(f"{name} is left out of the feature statistics: {exc}", stacklevel=2)
            continue
        values: dict[str, Any] = {}
        for metric in metrics:
            metric_name = metric.name
            feats = metric.features(notes if metric.input == "notes" else score)
            for feature, value in feats.items():
                owner = owners.setdefault(feature, metric_name)
                if owner != metric_name:
                    raise PluginError(
                        f"The metrics {owner!r} and {metric_name!r} both produce a feature named "
                        f"{feature!r}; evaluate them separately or rename one."
                    )
                values[feature] = np.asarray(value, dtype=np.float64)
                if feature not in info:
                    desc = metric.feature_descriptions or {}
                    info[feature] = {
                        "metric": metric_name,
                        "shape": list(np.shape(value)),
                        "description": desc.get(feature, ""),
                    }
        out[name] = values
    return out, info


def _set_statistics(stacked: Mapping[str, np.ndarray]) -> dict[str, Any]:
    stats = {}
    for feature, values in stacked.items():
        flat = values.reshape(len(values), int(np.prod(values.shape[1:], dtype=np.int64)))
        ok = np.all(np.isfinite(flat), axis=1)
        good = values[ok]
        if len(good) == 0:
            stats[feature] = {"mean": None, "std": None, "n": 0}
            continue
        stats[feature] = {"mean": good.mean(axis=0), "std": good.std(axis=0), "n": int(len(good))}
    return stats


def evaluate_sets(
    generated: Sequence[tuple[str, Any]],
    reference: Sequence[tuple[str, Any]],
    metrics: Sequence[Any],
) -> dict[str, Any]:
    """Features of both sets, their statistics, and the set comparison (no likelihood)."""
    from musicfw.music.setcompare import compare_sets, stack_features

    feats = feature_metrics(metrics)
    gen_feats, info_g = piece_features(feats, generated)
    ref_feats, info_r = piece_features(feats, reference)
    info = {**info_r, **info_g}
    names = list(info)
    gen_stack = stack_features(list(gen_feats.values()), names)
    ref_stack = stack_features(list(ref_feats.values()), names)
    result: dict[str, Any] = {
        "feature_info": info,
        "features": {"generated": gen_feats, "reference": ref_feats},
        "statistics": {"generated": _set_statistics(gen_stack), "reference": _set_statistics(ref_stack)},
    }
    if generated and reference:
        comp = compare_sets(gen_stack, ref_stack)
        result["comparison"] = {"features": comp["features"], "summary": comp["summary"]}
        result["kde"] = comp["kde"]
    else:
        result["comparison"] = {"features": {}, "summary": {}}
        result["kde"] = {}
    return result


# --------------------------------------------------------------------------------------
# metrics.json
# --------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """numpy -> lists/floats; NaN and infinities -> None (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return to_jsonable(value.item())
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):  # a 0-d tensor
        try:
            return to_jsonable(value.item())
        except Exception:
            pass
    return str(value)


def _skeleton(metrics: Sequence[Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "musicfw_version": musicfw_version(),
        "metrics": [_metric_record(m) for m in metrics],
        "likelihood": {},
        "training": {},
        "sets": {},
        "feature_info": {},
        "features": {"generated": {}, "reference": {}},
        "statistics": {"generated": {}, "reference": {}},
        "comparison": {"features": {}, "summary": {}},
        "kde": {},
        "notes": [],
        "split": {},
    }


def write_metrics(result: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(result), indent=1, allow_nan=False) + "\n")
    return path


# --------------------------------------------------------------------------------------
# The two entry points
# --------------------------------------------------------------------------------------


def _reference_pieces(datamodule: Any, split: str, limit: int) -> list[tuple[str, Any]]:
    pairs = named_pieces(datamodule.pieces(split), prefix=split)
    return pairs[:limit] if limit and limit > 0 else pairs


def _generated_names(run_dir: Path, n: int) -> list[str]:
    samples = run_dir / "samples"
    mids = sorted(p.name for p in samples.glob("*.mid")) if samples.is_dir() else []
    if len(mids) == n:
        return mids
    return [f"sample_{i:03d}.mid" for i in range(n)]


def evaluate_run(
    evaluate: Any,
    run_dir: str | Path,
    *,
    model: Any = None,
    tokenizer: Any = None,
    datamodule: Any = None,
    generated: Sequence[Any] | None = None,
    fit_metrics: Mapping[str, Any] | None = None,
    registries: Any = None,
    samples: str | None = None,
) -> dict[str, Any]:
    """Compute the ``evaluate:`` section's metrics for a run and write ``run_dir/metrics.json``.

    Likelihood metrics run on the held-out split of ``datamodule`` with ``model``; feature
    metrics compare ``generated`` (Scores; default: the run's samples/*.mid, or the files
    ``samples`` names: see :func:`run_sample_files`) with
    ``datamodule.pieces(evaluate.reference_split)`` (at most ``evaluate.max_reference``
    pieces).  ``fit_metrics`` is stored under "training".
    Returns the dict written (strict JSON values).
    """
    run_dir = Path(run_dir)
    metrics = build_metrics(list(evaluate.metrics), registries)
    result = _skeleton(metrics)
    result["training"] = dict(fit_metrics or {})
    notes: list[str] = result["notes"]
    loaded = getattr(datamodule, "data", None)
    if loaded is not None:  # the split the held-out numbers are measured on, and its leakage
        result["split"] = dict(loaded.split_report)

    for metric in likelihood_metrics(metrics):
        if model is None or datamodule is None:
            notes.append(f"{metric.name}: skipped, no trained model or data module was given")
            continue
        measured = metric.evaluate(model, datamodule, tokenizer)
        if measured is not None:  # None: nothing to measure in this run (control_adherence without controls)
            result["likelihood"][metric.name] = measured

    if feature_metrics(metrics):
        if generated is None:
            gen_pieces, skipped, gen_source = _run_samples(run_dir, samples)
        else:
            gen_list = list(generated)
            gen_pieces = list(zip(_generated_names(run_dir, len(gen_list)), gen_list))
            skipped, gen_source = [], "generated samples of this run"
        split = str(evaluate.reference_split)
        if datamodule is None:
            ref_pieces = []
            notes.append("set comparison skipped: no data module to draw the reference split from")
        else:
            ref_pieces = _reference_pieces(datamodule, split, int(evaluate.max_reference))
            if not ref_pieces:
                notes.append(f"set comparison skipped: the {split!r} split is empty")
        if not gen_pieces:
            notes.append("set comparison skipped: no generated samples")
        for metric in feature_metrics(metrics):
            metric.prepare(datamodule)
        result["sets"] = {
            "generated": {"source": gen_source, "n_pieces": len(gen_pieces), "skipped": skipped},
            "reference": {"source": f"{split} split", "n_pieces": len(ref_pieces), "skipped": []},
        }
        result.update(evaluate_sets(gen_pieces, ref_pieces, metrics))
    result = to_jsonable(result)
    write_metrics(result, run_dir / "metrics.json")
    return result


def _run_samples(run_dir: Path, samples: str | None) -> tuple[list[tuple[str, Any]], list[dict[str, str]], str]:
    files, label = run_sample_files(run_dir, samples)
    if samples is not None and not files:
        raise DataError(f"--samples {samples}: no .mid or .midi file matches {label}.")
    root = run_dir / "samples" if samples is None else run_dir
    try:
        pieces, skipped = load_midi_files(files, root, f"No loadable MIDI file in {label}.")
    except DataError:
        if samples is not None:
            raise
        return [], [], label
    return pieces, skipped, label


def compare_folders(
    generated_dir: str | Path,
    reference_dir: str | Path,
    metrics: Sequence[Any] | None = None,
    out: str | Path | None = None,
    registries: Any = None,
) -> dict[str, Any]:
    """Features and set comparison of two MIDI folders (``musicfw evaluate``).

    ``metrics``: names or sections of feature metrics (default yang_lerch and muspy).
    Files that do not load are skipped and listed under ``sets``.  Writes ``out`` if given.
    """
    metric_objs = build_metrics(list(metrics) if metrics is not None else list(DEFAULT_FOLDER_METRICS), registries)
    non_feature = [m.name for m in metric_objs if m.kind != FEATURES]
    if non_feature:
        raise PluginError(
            f"Comparing MIDI folders needs piece-level (feature) metrics; {', '.join(non_feature)} "
            "need a trained model. Use them in an experiment (musicfw run) instead."
        )
    for metric in metric_objs:
        metric.prepare(None)
    gen_pieces, gen_skipped = load_midi_folder(generated_dir)
    ref_pieces, ref_skipped = load_midi_folder(reference_dir)
    result = _skeleton(metric_objs)
    result["sets"] = {
        "generated": {"source": str(generated_dir), "n_pieces": len(gen_pieces), "skipped": gen_skipped},
        "reference": {"source": str(reference_dir), "n_pieces": len(ref_pieces), "skipped": ref_skipped},
    }
    result.update(evaluate_sets(gen_pieces, ref_pieces, metric_objs))
    result = to_jsonable(result)
    if out is not None:
        write_metrics(result, out)
    return result


# --------------------------------------------------------------------------------------
# Tables for people
# --------------------------------------------------------------------------------------


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1000 or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if abs(x) >= 1 else f"{x:.{digits}f}"


def _mean_std(stat: Mapping[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    mean, std = stat["mean"], stat.get("std")
    if isinstance(mean, list):
        return "(vector)"
    return f"{_fmt(mean)} ± {_fmt(std)}"


def comparison_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """The comparison as rows of strings (header first), for the CLI and the report."""
    header = [
        "feature", "generated", "reference", "intra gen", "intra ref", "inter",
        "KLD gen", "OA gen", "KLD ref", "OA ref",
    ]
    rows = [header]
    comp = result.get("comparison", {}).get("features", {})
    stats = result.get("statistics", {})
    for feature, row in comp.items():
        rows.append(
            [
                feature,
                _mean_std(stats.get("generated", {}).get(feature)),
                _mean_std(stats.get("reference", {}).get(feature)),
                _mean_std(row.get("intra_generated")),
                _mean_std(row.get("intra_reference")),
                _mean_std(row.get("inter")),
                _fmt(row.get("kl_generated")),
                _fmt(row.get("oa_generated")),
                _fmt(row.get("kl_reference")),
                _fmt(row.get("oa_reference")),
            ]
        )
    return rows


def format_rows(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(result: Mapping[str, Any]) -> str:
    """A plain-text summary: likelihood, set sizes and the per-feature comparison."""
    parts = []
    for name, lik in (result.get("likelihood") or {}).items():
        if "nll_per_token" not in lik:  # another likelihood-kind metric: its numbers as they are
            numbers = ", ".join(f"{k} {_fmt(v)}" for k, v in lik.items() if isinstance(v, (int, float)))
            parts.append(f"{name} ({lik.get('split')} split): {numbers}")
            continue
        ppl = f", perplexity {_fmt(lik.get('perplexity'))}" if "perplexity" in lik else " (a bound: no perplexity)"
        parts.append(
            f"{name} ({lik.get('split')} split, {lik.get('n_sequences')} sequences): "
            f"NLL/token {_fmt(lik.get('nll_per_token'))}{ppl}, "
            f"NLL/note {_fmt(lik.get('nll_per_note'))}, NLL/second {_fmt(lik.get('nll_per_second'))}"
        )
    sets = result.get("sets") or {}
    for side in ("generated", "reference"):
        info = sets.get(side)
        if info:
            skipped = info.get("skipped") or []
            extra = f", {len(skipped)} skipped" if skipped else ""
            parts.append(f"{side}: {info.get('n_pieces')} pieces from {info.get('source')}{extra}")
            for s in skipped:
                parts.append(f"  skipped {s['file']}: {s['reason']}")
    rows = comparison_rows(result)
    if len(rows) > 1:
        parts.append("")
        parts.append(format_rows(rows))
        summary = result.get("comparison", {}).get("summary", {})
        parts.append("")
        parts.append(
            f"mean overlap area (intra-set vs inter-set): generated {_fmt(summary.get('mean_oa_generated'))}, "
            f"reference {_fmt(summary.get('mean_oa_reference'))}; "
            f"mean KLD: generated {_fmt(summary.get('mean_kl_generated'))}, "
            f"reference {_fmt(summary.get('mean_kl_reference'))}"
        )
    for note in result.get("notes") or []:
        parts.append(f"note: {note}")
    return "\n".join(parts)
