"""The report-section contract: ``report.html`` is built from sections that plugins give.

Every plugin may implement ``musicfw_report_sections(report)`` (see
:mod:`musicfw.core.hookspecs`) and return :class:`ReportSection` objects.  The page orders them
by ``order`` (ties keep plugin registration order), puts each section's ``summary`` lines into
the page's "In short" list (in the same order) and its ``html`` under a heading of its own.
The built-in sections (config, curves, metrics, distributions, samples) come from the default
report plugin (plugins/report/) through the same hook, so a third party's section is in the
page exactly like a built-in one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping


@dataclass
class ReportContext:
    """What a report-section hook receives: the run folder and what the page already read."""

    #: the run folder
    run_dir: Path
    #: config.yaml as a plain dict ({} when missing or unreadable)
    config: Mapping[str, Any]
    #: metrics.json as a dict, or None when it is missing or unreadable
    metrics: Mapping[str, Any] | None
    #: why ``metrics`` is None (shown on the page), else None
    metrics_problem: str | None = None


@dataclass
class ReportSection:
    """One part of report.html.

    ``key``: a short id (the HTML anchor, ``[a-z0-9_-]``); ``title``: the heading (no heading
    and no navigation link when empty); ``html``: the body, already escaped HTML (it may be
    empty when the section only adds ``summary`` lines); ``summary``: plain-text sentences for
    the "In short" list at the top (escaped by the page); ``order``: place on the page, lower
    first (built-ins: summary of the run 10, likelihood lines 20, config 30, curves 40,
    metrics 50, distributions 60, samples 90; listening 70).
    """

    key: str
    title: str = ""
    html: str = ""
    summary: list[str] = field(default_factory=list)
    order: float = 80.0
    #: the section's link in the page's navigation bar (none when empty)
    nav: str = ""
