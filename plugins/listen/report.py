"""The listening test's section of report.html (``musicfw_report_sections``): the ``listening``
entry ``musicfw listen results`` writes into a run's metrics.json."""

from __future__ import annotations

from typing import Any, Mapping

from musicfw.core.report import ReportContext, ReportSection
from musicfw.engine.report import escape, fmt, table


def report_sections(report: ReportContext) -> ReportSection | None:
    html = listening_html(report.metrics)
    return ReportSection("listening", "Listening test", html, order=70) if html else None


def listening_html(metrics: Mapping[str, Any] | None) -> str:
    """The ``listening`` section of metrics.json (written by ``musicfw listen results``), if any:
    the MOS with its interval and rater count, the reference's MOS, the A/B win rates, and for a
    study with a MUSHRA test the run's MUSHRA mean with its interval, the hidden reference's mean
    and the paired comparisons (Wilcoxon signed-rank, Holm-corrected)."""
    listening = (metrics or {}).get("listening")
    if not isinstance(listening, Mapping):
        return ""

    def num(x: Any, digits: int = 2) -> str:
        return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"

    def ci(pair: Any) -> str:
        return f"[{num(pair[0])}, {num(pair[1])}]" if isinstance(pair, (list, tuple)) and len(pair) == 2 else "-"

    parts: list[str] = []
    parts.append(
        f'<p class="small">study {escape(listening.get("study", "?"))}: this run is system '
        f'<b>{escape(listening.get("system", "?"))}</b>; {escape(listening.get("n_raters", "?"))} raters included, '
        f'{escape(listening.get("excluded_raters", listening.get("failed_attention", 0)))} excluded '
        f'({escape(listening.get("failed_attention", 0))} by the attention check). '
        f'{escape(listening.get("method", ""))}.</p>'
    )
    rows = [["system", "MOS (1-5)", "95% CI", "ratings"]]
    rows.append([listening.get("system", "this run"), num(listening.get("mos")), ci(listening.get("mos_ci95")), fmt(listening.get("n_ratings"))])
    if listening.get("reference_mos") is not None:
        rows.append(["reference", num(listening.get("reference_mos")), ci(listening.get("reference_mos_ci95")), ""])
    parts.append(table(rows))
    vs = listening.get("ab_vs") or {}
    if isinstance(vs, Mapping) and vs:
        rows = [["A/B against", "win rate (no preference = 1/2)", "95% CI", "answers", "p"]]
        for other, v in vs.items():
            if isinstance(v, Mapping):
                rows.append([other, num(v.get("win_rate")), ci(v.get("ci95")), fmt(v.get("n")), num(v.get("p_value"), 3)])
        parts.append(table(rows))
    if listening.get("mushra") is not None:
        rows = [["MUSHRA", "mean (0-100)", "95% CI"]]
        rows.append([listening.get("system", "this run"), num(listening.get("mushra"), 1), ci(listening.get("mushra_ci95"))])
        if listening.get("hidden_reference_mushra") is not None:
            rows.append(["hidden reference", num(listening.get("hidden_reference_mushra"), 1), ""])
        parts.append(table(rows))
        against = listening.get("mushra_vs") or {}
        if isinstance(against, Mapping) and against:
            rows = [["MUSHRA against", "mean difference", "p (Wilcoxon signed-rank, Holm)"]]
            for other, v in against.items():
                if isinstance(v, Mapping):
                    rows.append([other, num(v.get("mean_difference"), 1), num(v.get("p_holm"), 3)])
            parts.append(table(rows))
    alpha = listening.get("krippendorff_alpha_ordinal")
    parts.append(f'<p class="small">inter-rater agreement (Krippendorff\'s alpha, ordinal): {escape(num(alpha, 3))}</p>')
    return "".join(parts)
