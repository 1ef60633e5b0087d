"""The built-in report's figures: training curves, feature densities, piano rolls, and audio
as data URIs.  matplotlib is imported inside the functions."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from musicfw.engine.report import file_data_uri, png_data_uri, pyplot

#: audio larger than this is re-encoded to Ogg Vorbis before embedding
MAX_RAW_AUDIO_BYTES = 1_500_000
#: at most this many feature panels per figure row
PANEL_COLUMNS = 4


def _panel_grid(n: int) -> tuple[Any, list[Any], int]:
    """A figure of ``n`` small panels, PANEL_COLUMNS to a row, the unused cells hidden:
    (figure, the n axes, number of rows)."""
    plt = pyplot()
    cols = min(PANEL_COLUMNS, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, list(axes.ravel()[:n]), rows


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
    plt = pyplot()
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
    return png_data_uri(fig)


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
    return png_data_uri(fig)


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
    return png_data_uri(fig)


def pianoroll_figure(midi_path: Path) -> str:
    """A piano roll of a MIDI file: notes as bars, pitch against time in beats."""
    import symusic

    score = symusic.Score(str(midi_path))
    tpq = max(int(score.tpq), 1)
    plt = pyplot()
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
    return png_data_uri(fig, tight=False)


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
    return file_data_uri(path, "audio/wav")
