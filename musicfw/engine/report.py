"""report.html: one self-contained page per run folder.

Everything is embedded: figures as base64 PNG data URIs, audio as base64 data URIs, CSS
inline, no JavaScript, no network.  The page shows the config (config.yaml), the training
curves (history.jsonl: one JSON object per line, ``{"step", "epoch", metric: value, ...}``),
the metrics tables (metrics.json), the feature distributions of the generated and the
reference set, and every generated sample (samples/*.mid) with its piano roll
(sample_XXX.png when present, otherwise rendered here) and an audio player when
sample_XXX.wav exists.  Whatever is missing is said on the page instead.

matplotlib is imported inside the functions (it is slow to import).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from musicfw.core.errors import RunFolderError

#: audio larger than this is re-encoded to Ogg Vorbis before embedding
MAX_RAW_AUDIO_BYTES = 1_500_000
#: at most this many feature panels per figure row
PANEL_COLUMNS = 4

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1200px;padding:1em 2em;color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:.8em;overflow:auto;font-size:.85em}
pre.config{max-height:26em}
.missing{color:#8a5a00;background:#fff6e0;border:1px solid #f0d9a0;padding:.5em .8em;border-radius:4px}
.sample{border:1px solid #e3e3e3;border-radius:6px;padding:.6em;margin:.8em 0}
.sample h3{margin:.1em 0 .4em 0;font-size:1em}
figure{margin:.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
nav a{margin-right:1em}
.small{font-size:.85em;color:#555}
"""


# --------------------------------------------------------------------------------------
# reading the run folder
# --------------------------------------------------------------------------------------


def read_history(path: Path) -> list[dict[str, Any]]:
    """history.jsonl rows (lines that are not JSON objects are skipped)."""
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_metrics(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.is_file():
        return None, "metrics.json was not found in the run folder (evaluation did not run)."
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return None, f"metrics.json could not be read: {exc}"
    if not isinstance(data, dict):
        return None, "metrics.json does not hold a JSON object."
    return data, None


# --------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _panel_grid(n: int) -> tuple[Any, list[Any], int]:
    """A figure of ``n`` small panels, PANEL_COLUMNS to a row, the unused cells hidden:
    (figure, the n axes, number of rows)."""
    plt = _pyplot()
    cols = min(PANEL_COLUMNS, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, list(axes.ravel()[:n]), rows


def _png_data_uri(fig: Any, dpi: int = 90, tight: bool = True) -> str:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _metric_group(key: str) -> str:
    """Put train/valid variants of one quantity on one plot: train_loss, val_loss -> loss."""
    for prefix in ("train/", "val/", "valid/", "test/", "train_", "val_", "valid_", "test_"):
        if key.startswith(prefix):
            return key[len(prefix):]
    for suffix in ("/train", "/val", "_train", "_val", "_epoch", "_step"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def curves_figure(history: Sequence[Mapping[str, Any]]) -> str | None:
    """One panel per quantity (train and validation together), value against step."""
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for i, row in enumerate(history):
        step = row.get("step", i)
        if not isinstance(step, (int, float)):
            continue
        for key, value in row.items():
            if key in ("step", "epoch") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if key.startswith(("final/", "final_")):  # end-of-training numbers: in the tables
                continue
            if not math.isfinite(value):
                continue
            xs, ys = series.setdefault(_metric_group(key), {}).setdefault(key, ([], []))
            xs.append(float(step))
            ys.append(float(value))
    if not series:
        return None
    plt = _pyplot()
    groups = sorted(series, key=lambda g: (0 if "loss" in g else 1 if "nll" in g or "perplex" in g else 2, g))
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, group in zip(axes.ravel(), groups):
        for key, (xs, ys) in sorted(series[group].items()):
            style = "o-" if len(xs) < 30 else "-"
            ax.plot(xs, ys, style, markersize=3, linewidth=1.2, label=key)
        ax.set_title(group, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(groups):]:
        ax.axis("off")
    fig.tight_layout()
    return _png_data_uri(fig)


def distance_kde_figure(kde: Mapping[str, Any]) -> str | None:
    """mgeval's plot: densities of intra-set (generated, reference) and inter-set distances."""
    names = [n for n, c in kde.items() if c and c.get("x")]
    if not names:
        return None
    fig, axes, rows = _panel_grid(len(names))
    styles = {
        "intra_generated": ("intra generated", "#d62728", "-"),
        "intra_reference": ("intra reference", "#1f77b4", "-"),
        "inter": ("inter (generated vs reference)", "#2ca02c", "--"),
    }
    for ax, name in zip(axes, names):
        curves = kde[name]
        for key, (label, color, ls) in styles.items():
            ys = curves.get(key)
            if ys:
                ax.plot(curves["x"], [y if y is not None else 0.0 for y in ys], ls, color=color, label=label, linewidth=1.3)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05 if rows > 1 else 0.1, 1, 1))
    return _png_data_uri(fig)


def value_kde_figure(metrics: Mapping[str, Any]) -> str | None:
    """Densities of each scalar feature's values: generated vs reference pieces."""
    from musicfw.music.setcompare import kde_on_grid, scott_bandwidth

    info = metrics.get("feature_info") or {}
    feats = metrics.get("features") or {}
    scalars = [n for n, i in info.items() if i.get("shape") == []]
    panels = []
    for name in scalars:
        sets = {}
        for side in ("generated", "reference"):
            vals = [p.get(name) for p in (feats.get(side) or {}).values()]
            vals = np.array([v for v in vals if isinstance(v, (int, float))], dtype=np.float64)
            if len(vals):
                sets[side] = vals
        if sets:
            panels.append((name, sets))
    if not panels:
        return None
    fig, axes, _ = _panel_grid(len(panels))
    colors = {"generated": "#d62728", "reference": "#1f77b4"}
    for ax, (name, sets) in zip(axes, panels):
        every = np.concatenate(list(sets.values()))
        lo, hi = float(every.min()), float(every.max())
        floor = 1e-3 * max(hi - lo, abs(hi), 1e-9)
        bws = {k: max(scott_bandwidth(v), floor) for k, v in sets.items()}
        pad = 4 * max(bws.values())
        grid = np.linspace(lo - pad, hi + pad, 400)
        for side, vals in sets.items():
            ax.plot(grid, kde_on_grid(vals, grid, bws[side]), color=colors[side], label=f"{side} (n={len(vals)})", linewidth=1.3)
            ax.plot(vals, np.zeros_like(vals), "|", color=colors[side], alpha=0.5, markersize=6)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _png_data_uri(fig)


def pianoroll_figure(midi_path: Path) -> str:
    """A piano roll of a MIDI file: notes as bars, pitch against time in beats."""
    import symusic

    score = symusic.Score(str(midi_path))
    tpq = max(int(score.tpq), 1)
    plt = _pyplot()
    from matplotlib.collections import PolyCollection

    fig, ax = plt.subplots(figsize=(10, 2.8))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.16, top=0.97)
    cmap = plt.get_cmap("tab10")
    lo, hi, end = 127.0, 0.0, 0.0
    handles = []
    for i, track in enumerate(score.tracks):
        if len(track.notes) == 0:
            continue
        arr = track.notes.numpy()
        x0 = arr["time"] / tpq
        x1 = x0 + np.maximum(arr["duration"] / tpq, 0.05)
        y0 = arr["pitch"].astype(float) - 0.4
        y1 = y0 + 0.8
        verts = np.stack([np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1), np.stack([x0, y1], 1)], 1)
        color = cmap(i % 10)
        ax.add_collection(PolyCollection(verts, facecolors=color, edgecolors="none"))
        handles.append(plt.Rectangle((0, 0), 1, 1, color=color, label=track.name or f"track {i}"))
        lo, hi, end = min(lo, float(y0.min())), max(hi, float(y1.max())), max(end, float(x1.max()))
    ax.set_xlabel("beats (quarter notes)", fontsize=8)
    ax.set_ylabel("pitch", fontsize=8)
    ax.tick_params(labelsize=7)
    if not handles:
        ax.text(0.5, 0.5, "this sample has no notes", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.set_xlim(0, end * 1.01)
        ax.set_ylim(lo - 1, hi + 1)
        if len(handles) > 1:
            fig.subplots_adjust(right=0.85)
            ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
    ax.grid(alpha=0.25)
    return _png_data_uri(fig, tight=False)


# --------------------------------------------------------------------------------------
# embedding files
# --------------------------------------------------------------------------------------


def _file_data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def audio_data_uri(path: Path) -> str:
    """A WAV file as a data URI; large files are re-encoded to Ogg Vorbis first."""
    if path.stat().st_size > MAX_RAW_AUDIO_BYTES:
        try:
            import soundfile as sf

            data, rate = sf.read(str(path), dtype="float32", always_2d=False)
            buf = io.BytesIO()
            sf.write(buf, data, rate, format="OGG", subtype="VORBIS")
            return "data:audio/ogg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        except Exception:  # no Vorbis in this libsndfile: embed the WAV as it is
            pass
    return _file_data_uri(path, "audio/wav")


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


def _img(uri: str, alt: str, caption: str | None = None) -> str:
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{_e(alt)}">{cap}</figure>'


def _table(rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    from musicfw.engine.evaluation import _fmt as fmt

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt(value)
    if value is None:
        return "-"
    return str(value)


def _kv_table(data: Mapping[str, Any]) -> str:
    rows = [["quantity", "value"]]
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        rows.append([key, _fmt(value)])
    return _table(rows)


def _metrics_section(metrics: Mapping[str, Any] | None, problem: str | None) -> str:
    from musicfw.engine.evaluation import comparison_rows

    parts = ['<h2 id="metrics">Metrics</h2>']
    if metrics is None:
        return "".join(parts) + _missing(problem or "No metrics.")
    lik = metrics.get("likelihood") or {}
    parts.append("<h3>Held-out likelihood</h3>")
    if lik:
        for name, values in lik.items():
            unit = "nats; perplexity = exp(NLL per token)" if "perplexity" in values else "nats"
            parts.append(f'<p class="small">metric <b>{_e(name)}</b> ({unit})</p>')
            parts.append(_kv_table(values))
    else:
        parts.append(_missing("No likelihood was measured for this run."))
    training = metrics.get("training") or {}
    parts.append("<h3>Training</h3>")
    parts.append(_kv_table(training) if training else _missing("Training reported no numbers."))
    sets = metrics.get("sets") or {}
    if sets:
        parts.append("<h3>Sets compared</h3>")
        rows = [["set", "pieces", "source", "skipped files"]]
        for side in ("generated", "reference"):
            info = sets.get(side) or {}
            skipped = info.get("skipped") or []
            rows.append([side, info.get("n_pieces", 0), info.get("source", ""), len(skipped)])
        parts.append(_table(rows))
        for side in ("generated", "reference"):
            for s in (sets.get(side) or {}).get("skipped") or []:
                parts.append(f'<p class="small">skipped ({_e(side)}) {_e(s.get("file"))}: {_e(s.get("reason"))}</p>')
    rows = comparison_rows(metrics)
    parts.append("<h3>Feature comparison (Yang &amp; Lerch)</h3>")
    if len(rows) > 1:
        parts.append(
            '<p class="small">generated / reference: mean ± std of the feature (scalars); intra / inter: '
            "mean ± std of the pairwise Euclidean distances within a set and between the sets; "
            "KLD = KL(intra-set density || inter-set density), OA = overlapping area of the two "
            "densities (1 = the set is as close to the other set as to itself).</p>"
        )
        parts.append(_table(rows))
        summary = (metrics.get("comparison") or {}).get("summary") or {}
        if summary:
            parts.append(_kv_table(summary))
    else:
        parts.append(_missing("No set comparison: " + "; ".join(metrics.get("notes") or ["no generated or reference pieces"])))
    for note in metrics.get("notes") or []:
        parts.append(f'<p class="small">note: {_e(note)}</p>')
    return "".join(parts)


def _distributions_section(metrics: Mapping[str, Any] | None) -> str:
    parts = ['<h2 id="distributions">Feature distributions: generated vs reference</h2>']
    if metrics is None:
        return "".join(parts) + _missing("No metrics.json, so no distributions.")
    values = value_kde_figure(metrics)
    distances = distance_kde_figure(metrics.get("kde") or {})
    if values is None and distances is None:
        return "".join(parts) + _missing("No features were compared in this run.")
    if values is not None:
        parts.append(_img(values, "feature value densities", "Kernel density of each scalar feature over the pieces of each set (ticks: the pieces)."))
    if distances is not None:
        parts.append(
            _img(
                distances,
                "distance densities",
                "Kernel densities of the pairwise distances: within the generated set, within the "
                "reference set, and between the sets (mgeval's plot).",
            )
        )
    return "".join(parts)


def _listening_section(metrics: Mapping[str, Any] | None) -> str:
    """The ``listening`` section of metrics.json (written by ``musicfw listen results``), if any:
    the MOS with its interval and rater count, the reference's MOS, the A/B win rates."""
    listening = (metrics or {}).get("listening")
    if not isinstance(listening, Mapping):
        return ""

    def num(x: Any, digits: int = 2) -> str:
        return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"

    def ci(pair: Any) -> str:
        return f"[{num(pair[0])}, {num(pair[1])}]" if isinstance(pair, (list, tuple)) and len(pair) == 2 else "-"

    parts = ['<h2 id="listening">Listening test</h2>']
    parts.append(
        f'<p class="small">study {_e(listening.get("study", "?"))}: this run is system '
        f'<b>{_e(listening.get("system", "?"))}</b>; {_e(listening.get("n_raters", "?"))} raters included, '
        f'{_e(listening.get("failed_attention", 0))} excluded by the attention check. '
        f'{_e(listening.get("method", ""))}.</p>'
    )
    rows = [["system", "MOS (1-5)", "95% CI", "ratings"]]
    rows.append([listening.get("system", "this run"), num(listening.get("mos")), ci(listening.get("mos_ci95")), _fmt(listening.get("n_ratings"))])
    if listening.get("reference_mos") is not None:
        rows.append(["reference", num(listening.get("reference_mos")), ci(listening.get("reference_mos_ci95")), ""])
    parts.append(_table(rows))
    vs = listening.get("ab_vs") or {}
    if isinstance(vs, Mapping) and vs:
        rows = [["A/B against", "win rate (no preference = 1/2)", "95% CI", "answers", "p"]]
        for other, v in vs.items():
            if isinstance(v, Mapping):
                rows.append([other, num(v.get("win_rate")), ci(v.get("ci95")), _fmt(v.get("n")), num(v.get("p_value"), 3)])
        parts.append(_table(rows))
    alpha = listening.get("krippendorff_alpha_ordinal")
    parts.append(f'<p class="small">inter-rater agreement (Krippendorff\'s alpha, ordinal): {_e(num(alpha, 3))}</p>')
    return "".join(parts)


def _samples_section(samples_dir: Path) -> str:
    parts = ['<h2 id="samples">Generated samples</h2>']
    if not samples_dir.is_dir():
        return "".join(parts) + _missing("No samples folder: nothing was generated in this run.")
    mids = sorted(p for p in samples_dir.iterdir() if p.suffix.lower() in (".mid", ".midi"))
    if not mids:
        return "".join(parts) + _missing("The samples folder holds no MIDI file.")
    wavs = [p for p in mids if p.with_suffix(".wav").is_file()]
    if not wavs:
        parts.append(_missing("No audio was rendered for these samples (no .wav files: no soundfont was found, or rendering was off)."))
    for mid in mids:
        parts.append(f'<div class="sample"><h3>{_e(mid.name)}</h3>')
        parts.append(_file_links(mid, samples_dir.name))
        png = mid.with_suffix(".png")
        try:
            uri = _file_data_uri(png, "image/png") if png.is_file() else pianoroll_figure(mid)
            parts.append(_img(uri, f"piano roll of {mid.name}"))
        except Exception as exc:  # a broken sample must not break the report
            parts.append(_missing(f"No piano roll for {mid.name}: {type(exc).__name__}: {exc}"))
        wav = mid.with_suffix(".wav")
        if wav.is_file():
            uri = audio_data_uri(wav)
            parts.append(f'<audio controls preload="metadata" src="{uri}"></audio>')
        elif wavs:
            parts.append(_missing("No audio for this sample."))
        parts.append("</div>")
    return "".join(parts)


# --------------------------------------------------------------------------------------
# the plain-language summary at the top, and links to the sample files
# --------------------------------------------------------------------------------------

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


def summary_lines(run: Path, metrics: Mapping[str, Any] | None) -> list[str]:
    """The report's plain-language summary, one sentence per line (also for tests and CLIs)."""
    import yaml

    lines = []
    try:
        config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
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
    lines.append(what + ".")
    if metrics is None:
        lines.append("No metrics: the evaluation did not run (see below).")
        return lines
    for name, lik in (metrics.get("likelihood") or {}).items():
        if not isinstance(lik, dict):
            continue
        split, n = lik.get("split", "held-out"), lik.get("n_sequences") or lik.get("n_windows")
        if "teacher_forced_accuracy" in lik:
            lines.append(
                f"Reconstruction of {n} {split}-split windows ({name}): accuracy per step "
                f"{_fmt(lik.get('teacher_forced_accuracy'))} teacher-forced, {_fmt(lik.get('sampled_accuracy'))} "
                f"sampled; ELBO {_fmt(lik.get('elbo'))} nats, KL {_fmt(lik.get('kl'))} nats "
                f"({_fmt(lik.get('kl_bits'))} bits) per window."
            )
        elif "nll_per_token" in lik:
            kind = "negative ELBO (a bound on the NLL)" if lik.get("bound") else "NLL"
            text = f"Held-out {kind} on {n} {split}-split pieces: {_fmt(lik.get('nll_per_token'))} nats per token"
            if lik.get("perplexity") is not None:
                text += f" (perplexity {_fmt(lik.get('perplexity'))})"
            if lik.get("nll_per_note") is not None:
                text += f", {_fmt(lik.get('nll_per_note'))} nats per note"
            lines.append(text + " (lower is better).")
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
            f"Mean overlap area {_fmt(oa)} over the features (1 would mean the samples are as far from the "
            f"reference pieces as from each other: indistinguishable on these features; see the feature "
            f"comparison below)."
        )
    elif n_gen is not None and n_ref is not None and min(n_gen, n_ref) < 2:
        lines.append(
            f"The set comparison is None: it needs at least 2 pieces in each set (generated {n_gen}, "
            f"reference {n_ref}) to measure distances within a set."
        )
    return lines


def _summary_section(run: Path, metrics: Mapping[str, Any] | None) -> str:
    items = "".join(f"<li>{_e(line)}</li>" for line in summary_lines(run, metrics))
    return f'<h2 id="summary">In short</h2><ul class="summary">{items}</ul>'


def _file_links(path: Path, base: str) -> str:
    """Links to a sample's .mid and (when written) .wav, relative to report.html."""
    links = [f'<a href="{_e(base)}/{_e(path.name)}" download>{_e(path.name)}</a>']
    wav = path.with_suffix(".wav")
    if wav.is_file():
        links.append(f'<a href="{_e(base)}/{_e(wav.name)}" download>{_e(wav.name)}</a>')
    return f'<p class="small files">files: {" &middot; ".join(links)}</p>'


def render_report(run_dir: str | Path) -> str:
    """The report page of a run folder as an HTML string."""
    run = Path(run_dir)
    if not run.is_dir():
        raise RunFolderError(f"Run folder not found: {run}")
    config_path = run / "config.yaml"
    config_text = config_path.read_text(errors="replace") if config_path.is_file() else None
    title = run.name
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>musicfw report: {_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>musicfw report: {_e(title)}</h1>",
        f'<p class="small">run folder: {_e(run.resolve())}</p>',
        '<nav><a href="#summary">in short</a><a href="#config">config</a><a href="#curves">training curves</a>'
        '<a href="#metrics">metrics</a><a href="#distributions">distributions</a>'
        '<a href="#samples">samples</a></nav>',
        _summary_section(run, _read_metrics(run / "metrics.json")[0]),
        '<h2 id="config">Config</h2>',
        f'<pre class="config">{_e(config_text)}</pre>' if config_text is not None else _missing("config.yaml was not found in the run folder."),
        '<h2 id="curves">Training curves</h2>',
    ]
    history = read_history(run / "history.jsonl")
    curves = curves_figure(history) if history else None
    if curves is None:
        parts.append(
            _missing(
                "No training curves: history.jsonl is missing or holds no numbers "
                "(count-based models such as markov are fitted without training steps)."
            )
        )
    else:
        parts.append(_img(curves, "training curves", f"{len(history)} logged rows from history.jsonl"))
    metrics, problem = _read_metrics(run / "metrics.json")
    parts.append(_metrics_section(metrics, problem))
    parts.append(_distributions_section(metrics))
    parts.append(_listening_section(metrics))
    parts.append(_samples_section(run / "samples"))
    parts.append('<p class="small">Generated by musicfw. This page is self-contained: it needs no network.</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` (one self-contained file) and return its path."""
    run = Path(run_dir)
    page = render_report(run)
    path = run / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
