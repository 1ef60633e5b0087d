"""The example package's features, each through the hook a built-in feature uses:

* ``jsonl``: a logger (``logger: {name: jsonl}``) writing every logged row as one JSON line
  into the run folder -- plain Python, no Lightning (``start`` returns None, so the engine
  hands it each row through ``log_metrics``);
* a report section: the pitch range of the generated samples, with one "In short" line;
* lifecycle hooks: every stage is noted in ``example-lifecycle.txt`` and, when the run
  finishes, ``example-summary.json`` is written into the run folder and the number of samples
  is added to metrics.json under ``example``;
* ``npz``: an export format (``musicfw export --format npz``): the weights as a numpy
  ``.npz`` (loads without pickle) and the tokenizer's JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from musicfw import hookimpl
from musicfw.core.export import ExportFormat, ExportSource
from musicfw.core.logger import Logger
from musicfw.core.report import ReportContext, ReportSection

LIFECYCLE_FILE = "example-lifecycle.txt"
SUMMARY_FILE = "example-summary.json"


class JsonLinesLogger(Logger):
    """Every logged row as one JSON line in the run folder."""

    name = "jsonl"

    @dataclass
    class Config:
        file: str = field(default="example-log.jsonl", metadata={"help": "file name inside the run folder"})

    def start(self, run_dir: Path, hyperparams: Mapping[str, Any], resume: bool) -> None:
        self.path = run_dir / self.config.file
        if not resume:
            self.path.write_text("")
        return None  # no Lightning logger: rows come through log_metrics

    def log_metrics(self, metrics: Mapping[str, float], step: int | None) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")

    def finish(self, status: str) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps({"finished": status}) + "\n")


@hookimpl
def musicfw_report_sections(report: ReportContext) -> ReportSection | None:
    import symusic

    from musicfw.engine.report import escape, table

    mids = sorted((report.run_dir / "samples").glob("*.mid"))
    pitches = [
        (mid.name, int(arr["pitch"].min()), int(arr["pitch"].max()))
        for mid in mids
        for arr in [symusic.Score(str(mid)).tracks[0].notes.numpy()] if len(arr["pitch"])
    ]
    if not pitches:
        return None
    low, high = min(p[1] for p in pitches), max(p[2] for p in pitches)
    return ReportSection(
        key="pitch-range",
        title="Pitch range (example plugin)",
        html=f'<p class="small">{escape(len(pitches))} samples</p>'
        + table([["sample", "lowest", "highest"], *pitches]),
        summary=[f"The samples span MIDI pitches {low} to {high}."],
        order=85,
        nav="pitch range",
    )


@hookimpl
def musicfw_run_started(run_dir: Path, config: Mapping[str, Any]) -> None:
    (run_dir / LIFECYCLE_FILE).write_text(f"run_started {config['name']}\n")


@hookimpl
def musicfw_stage_finished(run_dir: Path, stage: str) -> None:
    with (run_dir / LIFECYCLE_FILE).open("a") as fh:
        fh.write(f"stage_finished {stage}\n")


@hookimpl
def musicfw_run_finished(run_dir: Path, metrics: Mapping[str, Any]) -> dict[str, Any]:
    n = len(list((run_dir / "samples").glob("*.mid")))
    summary = {"samples": n, "metrics_keys": sorted(metrics)}
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    with (run_dir / LIFECYCLE_FILE).open("a") as fh:
        fh.write("run_finished\n")
    return {"example": {"n_samples": n}}


class Npz(ExportFormat):
    """The weights as a numpy .npz (no pickle) and the tokenizer's JSON."""

    name = "npz"

    @dataclass
    class Config:
        compressed: bool = field(default=True, metadata={"help": "zip-compress the arrays"})

    def export(self, source: ExportSource, out_dir: Path) -> None:
        import numpy as np

        arrays = {k: v.detach().cpu().numpy() for k, v in source.model.state_dict().items() if hasattr(v, "detach")}
        (np.savez_compressed if self.config.compressed else np.savez)(out_dir / "weights.npz", **arrays)
        source.tokenizer.save(out_dir / "tokenizer.json")
        (out_dir / "export.json").write_text(
            json.dumps({"model": source.config.model.name, "checkpoint": source.checkpoint, "license": source.license}) + "\n"
        )
