"""report.html: one self-contained page per run folder, built from the sections plugins give.

The page itself (this module) is a frame: a title, a navigation bar, the "In short" list and
the sections, in the order they ask for.  Every section -- the built-in config, training
curves, metrics, distributions and samples (``musicfw.plugins.report``), the likelihood lines
of the metrics that measured them, the listening test (``musicfw.plugins.listen``) and any
third party's -- comes through the ``musicfw_report_sections`` hook
(:class:`musicfw.core.report.ReportSection`); nothing here knows a built-in's result keys.

Everything is embedded: figures as base64 PNG data URIs, audio as base64 data URIs, CSS
inline, no JavaScript, no network.  A third party's section that raises is replaced by a note
naming the plugin and the error (and a :class:`~musicfw.core.plugins.PluginHookWarning`);
the rest of the page is written as usual.

The small HTML toolkit below (:func:`escape`, :func:`missing`, :func:`image`, :func:`table`,
:func:`kv_table`, :func:`fmt`, :func:`png_data_uri`, :func:`file_data_uri`) is for section
writers, built-in or not.  matplotlib is imported inside the functions (it is slow to import).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from musicfw.core.errors import RunFolderError
from musicfw.core.report import ReportContext, ReportSection


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
# the HTML toolkit for section writers
# --------------------------------------------------------------------------------------


def escape(text: Any) -> str:
    """``text`` as HTML text (quotes too)."""
    return html.escape(str(text), quote=True)


def missing(text: str) -> str:
    """A highlighted note saying what is missing and why."""
    return f'<p class="missing">{escape(text)}</p>'


def image(uri: str, alt: str, caption: str | None = None) -> str:
    """A figure from a data URI, with an optional caption."""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{escape(alt)}">{cap}</figure>'


def table(rows: Sequence[Sequence[Any]]) -> str:
    """A table: the first row is the header; every cell is escaped."""
    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fmt(value: Any) -> str:
    """A number to three significant digits (as the CLI prints them); None as ``-``."""
    from musicfw.engine.evaluation import _fmt as fmt_number

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt_number(value)
    if value is None:
        return "-"
    return str(value)


def kv_table(data: Mapping[str, Any]) -> str:
    """A two-column quantity / value table."""
    rows = [["quantity", "value"]]
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        rows.append([key, fmt(value)])
    return table(rows)


def pyplot():
    """matplotlib's pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def png_data_uri(fig: Any, dpi: int = 90, tight: bool = True) -> str:
    """A matplotlib figure as a PNG data URI (the figure is closed)."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def file_data_uri(path: Path, mime: str) -> str:
    """A file as a data URI."""
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# --------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def _as_sections(result: Any, plugin: str) -> list[ReportSection]:
    if result is None:
        return []
    items = [result] if isinstance(result, ReportSection) else list(result)
    for item in items:
        if not isinstance(item, ReportSection):
            raise TypeError(
                f"musicfw_report_sections of {plugin} returned {type(item).__name__}; return "
                "musicfw.core.report.ReportSection objects (or a list of them, or None)"
            )
    return items


def collect_sections(context: ReportContext, registries: Any = None) -> list[ReportSection]:
    """Every plugin's sections for this run, ordered by ``order`` (ties: registration order).
    A third party's implementation that raises or returns something else than sections is
    replaced by a section saying so."""
    from musicfw.core.plugins import BUILTIN_PROVIDER, PluginHookWarning, call_hook, load_registries

    registries = registries if registries is not None else load_registries()
    sections: list[ReportSection] = []
    for call in call_hook(registries.pm, "musicfw_report_sections", report=context):
        error = call.error
        if error is None:
            try:
                sections.extend(_as_sections(call.result, call.plugin))
                continue
            except TypeError as exc:
                if call.provider == BUILTIN_PROVIDER:
                    raise
                import warnings

                error = str(exc)
                warnings.warn(f"musicfw plugin {call.plugin!r} (from {call.provider}): {error}", PluginHookWarning, stacklevel=2)
        key = "plugin-" + re.sub(r"[^a-z0-9_-]+", "-", call.plugin.lower())
        sections.append(
            ReportSection(
                key=key,
                title=f"Section of {call.plugin}",
                html=missing(f"The plugin {call.plugin} (from {call.provider}) failed to give its report section: {error}"),
                order=95.0,
            )
        )
    return sorted(sections, key=lambda s: s.order)  # sorted() is stable: ties keep plugin order


def report_context(run_dir: str | Path, metrics: Mapping[str, Any] | None = None) -> ReportContext:
    """What the section hooks get for ``run_dir`` (``metrics`` given: instead of metrics.json)."""
    run = Path(run_dir)
    problem = None
    if metrics is None:
        metrics, problem = _read_metrics(run / "metrics.json")
    return ReportContext(run, _read_config(run / "config.yaml"), metrics, problem)


def summary_lines(run_dir: str | Path, metrics: Mapping[str, Any] | None = None, registries: Any = None) -> list[str]:
    """The report's "In short" sentences, in page order (also for tests and CLIs)."""
    sections = collect_sections(report_context(run_dir, metrics), registries)
    return [line for section in sections for line in section.summary]


def render_report(run_dir: str | Path, registries: Any = None) -> str:
    """The report page of a run folder as an HTML string.  ``registries``: the plugins whose
    sections make the page (loaded when None)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise RunFolderError(f"Run folder not found: {run}")
    sections = collect_sections(report_context(run), registries)
    nav = "".join(f'<a href="#{escape(s.key)}">{escape(s.nav)}</a>' for s in sections if s.nav)
    items = "".join(f"<li>{escape(line)}</li>" for s in sections for line in s.summary)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>musicfw report: {escape(run.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>musicfw report: {escape(run.name)}</h1>",
        f'<p class="small">run folder: {escape(run.resolve())}</p>',
        f'<nav><a href="#summary">in short</a>{nav}</nav>',
        f'<h2 id="summary">In short</h2><ul class="summary">{items}</ul>',
    ]
    for section in sections:
        if not section.title and not section.html:
            continue  # "In short" lines only
        heading = f'<h2 id="{escape(section.key)}">{escape(section.title)}</h2>' if section.title else ""
        parts.append(heading + section.html)
    parts.append('<p class="small">Generated by musicfw. This page is self-contained: it needs no network.</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, registries: Any = None) -> Path:
    """Write ``run_dir/report.html`` (one self-contained file) and return its path."""
    run = Path(run_dir)
    page = render_report(run, registries)
    path = run / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
