"""The self-contained HTML report: Jinja2 templates with autoescape on, inline CSS and SVG.

The page answers "what is wrong, where, since when" from the top: a header with the status,
the window and one line per cause (worst first, each linking to its evidence); then one
section per feature view (freshness with the lag over the window, its view-level findings, its
unhealthy features as cards with their evidence and histograms, its healthy features as one
table row each); then trends over stored runs for the unhealthy features only.

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

from feast_parity.parity.findings import CheckThresholds
from feast_parity.parity.metrics import METRICS
from feast_parity.render.charts import bar_chart, paired_bars, trend_chart
from feast_parity.render.evidence import evidence_block
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
    rank,
    rows_of,
    schema_text,
    window_bounds,
)

_DEFAULTS = CheckThresholds()  # the configuration's defaults, when a report carries none


# the signals of the trend charts: (report field, label, threshold keys, formatter)
def _trend_label(name: str) -> str:
    return "PSI" if name == "psi" else name.removesuffix("_rate").replace("_", " ")


# the signals the trend charts draw (the four); their threshold keys come from the one
# metrics table: (report field, label, warn and fail threshold keys, value format)
TREND_METRICS = ("mismatch_rate", "stale_rate", "silent_default_rate", "psi")
TREND_SIGNALS = tuple(
    (
        m.name,
        _trend_label(m.name),
        (f"{m.thresholds}_warn", f"{m.thresholds}_fail"),
        (lambda v: f"{v:.3f}") if m.name == "psi" else pct,
    )
    for name in TREND_METRICS
    for m in METRICS
    if m.name == name and m.thresholds
)
UNHEALTHY = ("fail", "warn")
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

    return read("psi_warn", _DEFAULTS.psi_warn), read("psi_fail", _DEFAULTS.psi_fail)


def _threshold(thresholds: Any, report: Mapping[str, Any], name: str) -> float | None:
    """One threshold: from ``thresholds``, else the report's own, else the default."""
    for source in (thresholds, report.get("thresholds"), _DEFAULTS):
        if isinstance(source, Mapping) and number(source.get(name)) is not None:
            return number(source.get(name))
        if source is not None and not isinstance(source, Mapping):
            value = number(getattr(source, name, None))
            if value is not None:
                return value
    return None


def _anchor(index: int) -> str:
    return f"finding-{index}"


def _view_of(target: str) -> str:
    return target.split(":", 1)[0]


def _finding_blocks(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every finding with its anchor, display strings and evidence, in the report's order."""
    blocks = []
    for index, finding in enumerate(rows_of(report, "findings")):
        target = finding_target(finding)
        blocks.append(
            {
                "anchor": _anchor(index),
                "severity": _status(finding.get("severity")),
                "kind": str(finding.get("kind", "unknown")),
                "target": target,
                "feature": finding.get("feature"),
                "view": str(finding.get("feature_view") or _view_of(target)),
                "message": str(finding.get("message", "")),
                "raw": finding,
                **evidence_block(finding),
            }
        )
    return blocks


def _causes(report: Mapping[str, Any], blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per cause (finding kind), worst first, each target linking to its evidence."""
    by_id = {id(b["raw"]): b for b in blocks}
    causes: dict[str, dict[str, Any]] = {}
    for finding in findings_by_cause(report):
        block = by_id[id(finding)]
        cause = causes.setdefault(
            block["kind"], {"kind": block["kind"], "severity": block["severity"], "links": []}
        )
        label = block["target"] + (
            f" [{block['raw']['cohort'].get('label')}]"
            if isinstance(block["raw"].get("cohort"), Mapping)
            else ""
        )
        cause["links"].append({"href": "#" + block["anchor"], "text": label})
    for cause in causes.values():
        cause["count"] = len(cause["links"])
    return list(causes.values())


def _histogram(row: Mapping[str, Any], psi_warn: float, psi_fail: float) -> dict[str, Any] | None:
    hist = row.get("histogram")
    if not isinstance(hist, Mapping) or not hist.get("labels"):
        return None
    psi = number(row.get("psi"))
    verdict = (
        "fail"
        if psi is not None and psi >= psi_fail
        else "warn"
        if (psi is not None and psi >= psi_warn)
        else "ok"
    )
    return {
        "chart": paired_bars(
            hist.get("labels") or [],
            hist.get("online") or [],
            hist.get("offline") or [],
            categorical=hist.get("edges") is None,
        ),
        "psi": fixed(psi),
        "psi_css": verdict if psi is not None else "unknown",
        "warn": fixed(psi_warn),
        "fail": fixed(psi_fail),
    }


def _feature_card(
    row: Mapping[str, Any], findings: list[dict[str, Any]], psi: tuple[float, float]
) -> dict[str, Any]:
    return {
        "name": str(row.get("feature", "-")),
        "status": _status(row.get("status")),
        "findings": findings,
        "histogram": _histogram(row, *psi),
        "stats": [
            ("rows", count(row.get("rows"))),
            ("compared", count(row.get("compared"))),
            ("mismatch", pct(row.get("mismatch_rate"))),
            ("stale", pct(row.get("stale_rate"))),
            ("silent default", pct(row.get("silent_default_rate"))),
            ("served null", pct(row.get("online_null_rate"))),
            ("PSI", fixed(row.get("psi"))),
            ("types declared/online/offline", schema_text(row.get("schema"))),
        ],
    }


def _healthy_row(
    row: Mapping[str, Any], via_view: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """One table row of a feature with no finding of its own; ``via_view`` are its view's
    findings that name it (the features of a stale view are not healthy), linked."""
    status = _status(row.get("status"))
    if via_view:
        kinds = ", ".join(dict.fromkeys(b["kind"] for b in via_view))
        status = {"css": "warn", "text": f"see view: {kinds}", "href": "#" + via_view[0]["anchor"]}
    return {
        "name": str(row.get("feature", "-")),
        "status": status,
        "cells": [
            count(row.get("rows")),
            count(row.get("compared")),
            pct(row.get("mismatch_rate")),
            pct(row.get("stale_rate")),
            pct(row.get("silent_default_rate")),
            fixed(row.get("psi")),
            schema_text(row.get("schema")),
        ],
    }


def _freshness(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Served, materialization and source lag of a view against its SLO."""
    slo = number(view.get("slo_seconds"))
    lags = view.get("served_lag_seconds")
    lags = lags if isinstance(lags, Mapping) else {}
    out = []
    for label, value in (
        ("served lag p50", lags.get("p50")),
        ("served lag p95", lags.get("p95")),
        ("served lag p99", lags.get("p99")),
        ("materialization lag", view.get("materialization_lag_seconds")),
        ("source lag", view.get("source_lag_seconds")),
    ):
        seconds = number(value)
        over = slo is not None and seconds is not None and seconds > slo
        out.append({"label": label, "value": duration(value), "over": over})
    out.append(
        {
            "label": "SLO",
            "value": duration(slo)
            + (f" ({view.get('slo_source')})" if view.get("slo_source") else ""),
            "over": False,
        }
    )
    return out


def _lag_series(view: Mapping[str, Any]) -> dict[str, Any] | None:
    series = view.get("served_lag_series")
    buckets = series.get("buckets") if isinstance(series, Mapping) else None
    if not isinstance(series, Mapping) or not buckets or len(buckets) < 2:
        return None
    slo = number(view.get("slo_seconds"))
    rules = [(slo, "SLO")] if slo else []
    points = [(str(b.get("start")), number(b.get("mean_seconds"))) for b in buckets]
    peaks = [(str(b.get("start")), number(b.get("max_seconds"))) for b in buckets]
    return {
        "mean": trend_chart(points, duration, rules=rules, width=440, height=80),
        "max": trend_chart(peaks, duration, rules=rules, color="#6a1b9a", width=440, height=80),
        "first": str(buckets[0].get("start")),
        "last": str(buckets[-1].get("start")),
        "bucket": duration(series.get("bucket_seconds")),
    }


def _views(
    report: Mapping[str, Any], blocks: list[dict[str, Any]], psi: tuple[float, float]
) -> list[dict[str, Any]]:
    """One section per feature view, the unhealthy views first."""
    features: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows_of(report, "features"):
        name = str(row.get("feature_view") or _view_of(str(row.get("feature", ""))))
        features.setdefault(name, []).append(row)
    view_rows = {str(v.get("feature_view", "-")): v for v in rows_of(report, "feature_views")}
    names = list(dict.fromkeys([*view_rows, *features, *(b["view"] for b in blocks)]))
    known = {str(r.get("feature")) for rows in features.values() for r in rows}
    sections = []
    for name in names:
        view = view_rows.get(name, {})
        rows = sorted(
            features.get(name, []),
            key=lambda r: (-rank(r.get("status")), str(r.get("feature", ""))),
        )
        # view-level findings, and those of features the report has no row for
        own = [
            b
            for b in blocks
            if b["view"] == name and (b["feature"] is None or str(b["feature"]) not in known)
        ]
        named: dict[str, list[dict[str, Any]]] = {}  # feature -> view findings naming it
        for b in own:
            evidence = b["raw"].get("evidence")
            listed = evidence.get("features") if isinstance(evidence, Mapping) else None
            for feature in listed if isinstance(listed, list) else []:
                named.setdefault(str(feature), []).append(b)
        cards, healthy = [], []
        for row in rows:
            mine = [b for b in blocks if b["feature"] == row.get("feature")]
            if row.get("status") in UNHEALTHY or mine:
                cards.append(_feature_card(row, mine, psi))
            else:
                healthy.append(_healthy_row(row, named.get(str(row.get("feature")), [])))
        statuses = [view.get("status"), *(r.get("status") for r in rows)]
        worst = max(statuses, key=lambda s: rank(s) if s in UNHEALTHY else -1)
        hist = view.get("served_lag_histogram")
        counts = hist.get("counts") if isinstance(hist, Mapping) else None
        labels = (hist.get("labels") or []) if isinstance(hist, Mapping) else []
        if counts and any(counts):  # the bins from one before the first to one after the last row
            used = [i for i, c in enumerate(counts) if number(c)]
            first, last = max(used[0] - 1, 0), min(used[-1] + 2, len(counts))
            counts, labels = counts[first:last], labels[first:last]
        sections.append(
            {
                "id": "view-" + "".join(c if c.isalnum() else "-" for c in name),
                "name": name,
                "status": _status(view.get("status", "-")),
                "health": _status(worst if worst in UNHEALTHY else "ok"),
                "on_demand": bool(view.get("on_demand")),
                "samples": count(view.get("samples")),
                "freshness": [] if view.get("on_demand") else _freshness(view),
                "lag_series": _lag_series(view),
                "lag_histogram": bar_chart(labels, {"served lag": counts})
                if counts and any(counts)
                else None,
                "findings": own,
                "cards": cards,
                "healthy": healthy,
            }
        )
    sections.sort(key=lambda s: -rank(s["health"]["text"]))
    return sections


def _window_end(run: Mapping[str, Any]) -> str:
    """The run's window end, '' when it has none (such a run is left out of the trends)."""
    window = run.get("window")
    end = window.get("end") if isinstance(window, Mapping) else None
    return "" if end is None else str(end)


def _trends(
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] | None,
    thresholds: Any,
    alerts: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any] | None:
    """Per unhealthy feature, mismatch, stale, silent default and PSI over the stored runs of
    the report's project (the report itself included), oldest first, with the open or resolved
    alert of each signal; None under two runs or without an unhealthy feature."""
    unhealthy = [
        str(r.get("feature")) for r in rows_of(report, "features") if r.get("status") in UNHEALTHY
    ]
    if not history or not unhealthy:
        return None
    project = report.get("project")
    runs = [r for r in history if isinstance(r, Mapping) and r.get("project", project) == project]
    if report.get("run_id") not in {r.get("run_id") for r in runs}:
        runs.append(report)
    runs = sorted((r for r in runs if _window_end(r)), key=_window_end)[-TREND_RUNS:]
    if len(runs) < 2:
        return None
    ends = [_window_end(r) for r in runs]
    by_feature: dict[str, list[Mapping[str, Any] | None]] = {
        f: [None] * len(runs) for f in unhealthy
    }
    for i, run in enumerate(runs):
        for row in rows_of(run, "features"):
            name = str(row.get("feature"))
            if name in by_feature:
                by_feature[name][i] = row
    alert_of: dict[tuple[str, str], Mapping[str, Any]] = {}
    for alert in alerts or []:
        key = (str(alert.get("target")), str(alert.get("signal")))
        if key not in alert_of or alert.get("state") == "open":
            alert_of[key] = alert
    cards = []
    for name in unhealthy:
        charts = []
        for field, label, keys, fmt in TREND_SIGNALS:
            points = [
                (ends[i], number(r.get(field)) if r else None)
                for i, r in enumerate(by_feature[name])
            ]
            if all(v is None for _, v in points):
                continue
            rules = [
                (limit, severity)
                for key, severity in zip(keys, ("warn", "fail"))
                if (limit := _threshold(thresholds, report, key)) is not None
            ]
            open_alert = alert_of.get((name, field))
            charts.append(
                {
                    "label": label,
                    "chart": trend_chart(points, fmt, rules=rules, width=260, height=80),
                    "alert": None
                    if open_alert is None
                    else {
                        "css": _status(open_alert.get("severity"))["css"],
                        "text": f"alert {open_alert.get('state')} "
                        f"({open_alert.get('severity')}) since {open_alert.get('opened_at')}"
                        + (
                            f", resolved {open_alert.get('resolved_at')}"
                            if open_alert.get("state") == "resolved"
                            else ""
                        ),
                    },
                }
            )
        cards.append({"name": name, "charts": charts})
    return {"runs": len(runs), "first": ends[0], "last": ends[-1], "features": cards}


def _summary(report: Mapping[str, Any], views: list[dict[str, Any]]) -> dict[str, str]:
    features = rows_of(report, "features")

    def tally(statuses: list[str]) -> str:
        counts: dict[str, int] = {}
        for status in statuses:
            counts[status] = counts.get(status, 0) + 1
        order = sorted(counts, key=lambda s: -rank(s))
        return ", ".join(f"{counts[s]} {s}" for s in order)

    return {
        "views": f"{len(views)} ({tally([v['health']['text'] for v in views])})" if views else "0",
        "features": f"{len(features)} ({tally([str(f.get('status')) for f in features])})"
        if features
        else "0",
    }


def render_html(
    report: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] | None = None,
    *,
    thresholds: Any = None,
    alerts: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """A self-contained HTML page of a report (see the module docstring).

    ``history`` are stored runs (e.g. ``results.load_runs``) for the trends; ``alerts`` the
    alerts evaluated over them (``Alert.to_dict()``), marked on the trends; the threshold
    lines come from ``thresholds`` (an object or mapping), else the report's ``thresholds``,
    else the documented defaults."""
    psi = psi_thresholds(thresholds, report)
    cohorts = report.get("cohorts")
    blocks = _finding_blocks(report)
    views = _views(report, blocks, psi)
    page = {
        "project": str(report.get("project", "-")),
        "run_id": str(report.get("run_id", "-")),
        "generated_at": str(report.get("generated_at", "-")),
        "status": _status(overall_status(report)),
        "window": dict(zip(("start", "end"), window_bounds(report))),
        "samples": count(report.get("samples"), grouped=True),
        "no_samples": not report.get("samples"),
        "summary": _summary(report, views),
        "causes": _causes(report, blocks),
        "notes": [str(n) for n in report.get("notes") or [] if n is not None],
        "views": views,
        "cohorts": (
            {
                "dimensions": cohort_dimensions(report),
                "min_rows": count(cohorts.get("min_rows")),
                "rows": cohort_rows(report),
            }
            if isinstance(cohorts, Mapping)
            else None
        ),
        "trends": _trends(report, history, thresholds, alerts),
        "healthy_headers": [
            "rows",
            "compared",
            "mismatch",
            "stale",
            "silent default",
            "PSI",
            "declared/online/offline",
        ],
    }
    return _environment().get_template("report.html.j2").render(page)
