"""The self-contained HTML report: Jinja2 templates with autoescape on, inline CSS and SVG.

The functions here only shape the report into display values (strings, chart geometry);
``templates/report.html.j2`` lays them out. No value is escaped by hand: autoescape does it,
and ``_finalize`` first makes every data string :func:`printable`, so a bidi override in a
feature name cannot reorder the page either.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from feast_parity.render.charts import bar_chart, trend_chart
from feast_parity.render.text import (
    cohort_dimensions,
    cohort_rows,
    count,
    duration,
    finding_target,
    findings_by_cause,
    fixed,
    number,
    overall_status,
    pct,
    printable,
    rows_of,
    schema_text,
    served_lags,
    window_bounds,
)

DEFAULT_PSI_WARN = 0.1  # docs/checks.md, distribution_drift
DEFAULT_PSI_FAIL = 0.25
TREND_RUNS = 60  # stored runs drawn in the trend charts, newest last
_STATUS_CLASSES = {"fail", "warn", "ok", "insufficient_data"}


def _finalize(value: Any) -> Any:
    """Applied to every ``{{ ... }}`` before autoescape. Macro output is already Markup."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return printable(value)
    return value


@functools.cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("feast_parity.render", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _status(value: Any) -> dict[str, str]:
    """A status or severity for display: its text and a CSS class from a fixed set."""
    text = str(value) if value is not None else "-"
    return {"text": text, "css": text if text in _STATUS_CLASSES else "unknown"}


def psi_thresholds(thresholds: Any, report: Mapping[str, Any]) -> tuple[float, float]:
    """(psi_warn, psi_fail): from ``thresholds`` (an object or a mapping), else the report's own
    ``thresholds``, else the documented defaults.

    >>> psi_thresholds({"psi_warn": 0.2, "psi_fail": 0.3}, {}), psi_thresholds(None, {})
    ((0.2, 0.3), (0.1, 0.25))
    """
    source = thresholds if thresholds is not None else report.get("thresholds")

    def read(name: str, default: float) -> float:
        if isinstance(source, Mapping):
            value = source.get(name)
        else:
            value = getattr(source, name, None)
        out = number(value)
        return default if out is None else out

    return read("psi_warn", DEFAULT_PSI_WARN), read("psi_fail", DEFAULT_PSI_FAIL)


def _findings(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "severity": _status(f.get("severity")),
            "kind": str(f.get("kind", "unknown")),
            "target": finding_target(f),
            "message": str(f.get("message", "")),
        }
        for f in findings_by_cause(report)
    ]


def _feature_cards(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    cards = []
    for row in rows_of(report, "features"):
        hist = row.get("histogram")
        chart = None
        if isinstance(hist, Mapping):
            chart = bar_chart(
                hist.get("labels") or [],
                {"online": hist.get("online") or [], "offline": hist.get("offline") or []},
            )
        cards.append(
            {
                "name": str(row.get("feature", "-")),
                "status": _status(row.get("status")),
                "chart": chart,
                "stats": (
                    f"compared {count(row.get('compared'))} · mismatch "
                    f"{pct(row.get('mismatch_rate'))} · stale {pct(row.get('stale_rate'))} · "
                    f"default {pct(row.get('silent_default_rate'))} · PSI {fixed(row.get('psi'))}"
                    f" · schema {schema_text(row.get('schema'))}"
                ),
            }
        )
    return cards


def _view_cards(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    cards = []
    for view in rows_of(report, "feature_views"):
        hist = view.get("served_lag_histogram")
        counts = hist.get("counts") if isinstance(hist, Mapping) else None
        chart = None
        if isinstance(hist, Mapping) and counts:
            chart = bar_chart(hist.get("labels") or [], {"served lag": counts})
        cards.append(
            {
                "name": str(view.get("feature_view", "-")),
                "status": _status(view.get("status")),
                "chart": chart,
                "stats": (
                    f"served lag p50/p95/p99 {served_lags(view).replace('/', ' / ')} · "
                    f"materialization {duration(view.get('materialization_lag_seconds'))} · "
                    f"source {duration(view.get('source_lag_seconds'))} · "
                    f"SLO {duration(view.get('slo_seconds'))}"
                ),
            }
        )
    return cards


def _window_end(run: Mapping[str, Any]) -> str:
    """The run's window end, '' when it has none (such a run is left out of the trends)."""
    window = run.get("window")
    end = window.get("end") if isinstance(window, Mapping) else None
    return "" if end is None else str(end)


def _trends(
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] | None,
    psi_rules: Sequence[tuple[float, str]],
) -> dict[str, Any] | None:
    """Per-feature PSI and mismatch rate, per-view served lag p99, over the stored runs of the
    report's project (the report itself included), oldest first; None under two runs."""
    if not history:
        return None
    project = report.get("project")
    runs = [r for r in history if isinstance(r, Mapping) and r.get("project", project) == project]
    if report.get("run_id") not in {r.get("run_id") for r in runs}:
        runs.append(report)
    runs = sorted((r for r in runs if _window_end(r)), key=_window_end)
    runs = runs[-TREND_RUNS:]
    if len(runs) < 2:
        return None
    ends = [_window_end(r) for r in runs]
    features: dict[str, list[Mapping[str, Any] | None]] = {}
    views: dict[str, list[Mapping[str, Any] | None]] = {}
    for i, run in enumerate(runs):
        for row in rows_of(run, "features"):
            features.setdefault(str(row.get("feature")), [None] * len(runs))[i] = row
        for view in rows_of(run, "feature_views"):
            views.setdefault(str(view.get("feature_view")), [None] * len(runs))[i] = view

    def series(rows: Sequence[Mapping[str, Any] | None], read: Any) -> list[Any]:
        return [(ends[i], number(read(r)) if r else None) for i, r in enumerate(rows)]

    feature_cards = [
        {
            "name": name,
            "psi": trend_chart(
                series(rows, lambda r: r.get("psi")), lambda v: f"{v:.3f}", rules=psi_rules
            ),
            "mismatch": trend_chart(
                series(rows, lambda r: r.get("mismatch_rate")), pct, color="#ef6c00"
            ),
        }
        for name, rows in sorted(features.items())
    ]
    view_cards = []
    for name, rows in sorted(views.items()):
        slo = next((number(r.get("slo_seconds")) for r in reversed(rows) if r), None)
        p99 = series(rows, lambda r: (r.get("served_lag_seconds") or {}).get("p99"))
        view_cards.append(
            {
                "name": name,
                "lag": trend_chart(p99, duration, rules=[(slo, "SLO")] if slo else []),
            }
        )
    return {
        "runs": len(runs),
        "first": ends[0],
        "last": ends[-1],
        "features": feature_cards,
        "views": view_cards,
    }


def render_html(
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] | None = None,
    *,
    thresholds: Any = None,
) -> str:
    """A self-contained HTML page: summary, findings, a histogram per feature, lag per view,
    cohorts, and trend charts over ``history`` (stored runs, e.g. ``results.load_runs``).

    The PSI warn/fail lines of the trend charts come from ``thresholds`` (an object or mapping
    with ``psi_warn``/``psi_fail``), else the report's ``thresholds``, else 0.1/0.25."""
    psi_warn, psi_fail = psi_thresholds(thresholds, report)
    cohorts = report.get("cohorts")
    page = {
        "project": str(report.get("project", "-")),
        "run_id": str(report.get("run_id", "-")),
        "status": _status(overall_status(report)),
        "window": dict(zip(("start", "end"), window_bounds(report))),
        "samples": count(report.get("samples"), grouped=True),
        "no_samples": report.get("samples") == 0,
        "findings": _findings(report),
        "notes": [str(n) for n in report.get("notes") or [] if n is not None],
        "features": _feature_cards(report),
        "views": _view_cards(report),
        "cohorts": (
            {
                "dimensions": cohort_dimensions(report),
                "min_rows": count(cohorts.get("min_rows")),
                "rows": cohort_rows(report),
            }
            if isinstance(cohorts, Mapping)
            else None
        ),
        "trends": _trends(report, history, [(psi_warn, "warn"), (psi_fail, "fail")]),
    }
    return _environment().get_template("report.html.j2").render(page)
