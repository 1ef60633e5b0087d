"""The built-in report: the sections of report.html every run has, given through
``musicfw_report_sections`` exactly as a third party's section is.

Sections (``order``): the run in one line (10, "In short" only), the generated set in a few
lines (25, "In short" only), config (30), training curves (40), metrics (50), feature
distributions (60) and samples (90).  The likelihood lines come from the metric plugins that
measure them, the listening test from ``musicfw.plugins.listen``.
"""

from __future__ import annotations

from musicfw.core.hookspecs import hookimpl
from musicfw.core.report import ReportContext, ReportSection


@hookimpl
def musicfw_report_sections(report: ReportContext) -> list[ReportSection]:
    from musicfw.engine.loggers import read_history
    from musicfw.engine.report import escape, image, missing

    from .figures import curves_figure
    from .sections import _distributions_section, _metrics_section, _samples_section, run_lines, set_lines

    run, metrics = report.run_dir, report.metrics
    config_path = run / "config.yaml"
    config_text = config_path.read_text(errors="replace") if config_path.is_file() else None
    history = read_history(run)
    curves = curves_figure(history) if history else None
    if curves is None:
        curves_html = missing(
            "No training curves: history.jsonl is missing or holds no numbers "
            "(count-based models such as markov are fitted without training steps)."
        )
    else:
        curves_html = image(curves, "training curves", f"{len(history)} logged rows from history.jsonl")
    return [
        ReportSection("run", summary=run_lines(report.config, metrics), order=10),
        ReportSection("sets", summary=set_lines(run, metrics), order=25),
        ReportSection(
            "config",
            "Config",
            f'<pre class="config">{escape(config_text)}</pre>' if config_text is not None
            else missing("config.yaml was not found in the run folder."),
            order=30,
            nav="config",
        ),
        ReportSection("curves", "Training curves", curves_html, order=40, nav="training curves"),
        ReportSection("metrics", "Metrics", _metrics_section(metrics, report.metrics_problem), order=50, nav="metrics"),
        ReportSection(
            "distributions",
            "Feature distributions: generated vs reference",
            _distributions_section(metrics),
            order=60,
            nav="distributions",
        ),
        ReportSection("samples", "Generated samples", _samples_section(run / "samples"), order=90, nav="samples"),
    ]
