"""The parity report: findings and severities from comparison results, JSON/text/HTML output.

The JSON shape is the contract of DESIGN.md (schema_version 1); fields are only ever added.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import xxhash

from feast_parity.parity.cohorts import feature_cohorts
from feast_parity.parity.compare import type_family
from feast_parity.parity.freshness import format_duration, freshness_status
from feast_parity.parity.stats import severity_for_psi

SCHEMA_VERSION = 1
SEVERITY_RANK = {"fail": 3, "warn": 2, "insufficient_data": 1, "ok": 0}
FINDING_KINDS = (
    "value_mismatch",
    "stale_serving",
    "silent_default",
    "schema_divergence",
    "distribution_drift",
    "freshness_slo",
)
LAG_EDGES = [0, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400]


def run_id_for(project: str, start: datetime, end: datetime) -> str:
    """Deterministic per (project, window): re-running a window replaces its stored run.

    >>> a = datetime(2026, 1, 1, tzinfo=timezone.utc); b = datetime(2026, 1, 2, tzinfo=timezone.utc)
    >>> run_id_for("p", a, b) == run_id_for("p", a, b)
    True
    >>> run_id_for("p", a, b) == run_id_for("q", a, b)
    False
    """
    key = f"{project}|{start.isoformat()}|{end.isoformat()}".encode()
    return f"{xxhash.xxh3_64_intdigest(key):016x}"


def _level(rate: float | None, warn: float, fail: float) -> str | None:
    if rate is None:
        return None
    if rate >= fail:
        return "fail"
    if rate >= warn:
        return "warn"
    return None


def _worst(severities: Sequence[str]) -> str:
    return max(severities, key=lambda s: SEVERITY_RANK[s]) if severities else "ok"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def _schema(result: Mapping[str, Any]) -> dict[str, Any]:
    declared = result.get("declared")
    online = result.get("online_type")
    offline = result.get("offline_type")
    families = {type_family(t) for t in (declared, online, offline) if type_family(t) is not None}
    at_serving = set(result.get("declared_at_serving") or []) - {None, ""}
    diverged = (
        len(families) > 1
        or result.get("missing_offline", False)
        or declared is None
        or bool(at_serving - {declared})
    )
    return {
        "declared": declared,
        "online": online,
        "offline": offline,
        "diverged": diverged,
        "declared_at_serving": sorted(at_serving),
    }


def feature_findings(result: Mapping[str, Any], thresholds: Any) -> tuple[str, list[dict]]:
    """Findings of one feature and its status (worst severity, or insufficient_data)."""
    feature = result["feature"]
    findings: list[dict[str, Any]] = []
    schema = result["schema"]
    if schema["diverged"]:
        if result.get("missing_offline") or schema["declared"] is None:
            message = "served, but no longer declared in the registry"
        elif set(schema["declared_at_serving"]) - {schema["declared"]}:
            message = (
                f"declared {schema['declared']} now, served as declared "
                f"{', '.join(schema['declared_at_serving'])}"
            )
        else:
            message = (
                f"declared {schema['declared']}, served as {schema['online']}, "
                f"offline column {schema['offline']}"
            )
        findings.append(
            {
                "kind": "schema_divergence",
                "feature": feature,
                "severity": "fail",
                "message": message,
                "evidence": dict(schema),
            }
        )
    # Rates need rows with something offline to compare against; an offline store that
    # answered nothing leaves the feature insufficient_data, never ok.
    enough_rows = (
        result["rows"] >= thresholds.min_compared
        and result.get("offline_rows", 0) >= thresholds.min_compared
    )
    enough_compared = result["compared"] >= thresholds.min_compared
    if enough_compared:
        level = _level(result["mismatch_rate"], thresholds.mismatch_warn, thresholds.mismatch_fail)
        if level:
            findings.append(
                {
                    "kind": "value_mismatch",
                    "feature": feature,
                    "severity": level,
                    "message": (
                        f"{_pct(result['mismatch_rate'])} of {result['compared']} served "
                        "values differ from the offline value at the same event time"
                    ),
                    "evidence": {
                        "mismatches": result["mismatches"],
                        "compared": result["compared"],
                        "examples": result.get("mismatch_examples", []),
                    },
                }
            )
    if enough_rows:
        level = _level(result["stale_rate"], thresholds.stale_warn, thresholds.stale_fail)
        if level:
            lag = result.get("stale_lag_seconds") or {}
            findings.append(
                {
                    "kind": "stale_serving",
                    "feature": feature,
                    "severity": level,
                    "message": (
                        f"{_pct(result['stale_rate'])} of rows served an older row than "
                        f"offline had at request time; lag p50 {format_duration(lag.get('p50'))}"
                    ),
                    "evidence": {"lag_seconds": lag},
                }
            )
        level = _level(
            result["silent_default_rate"],
            thresholds.silent_default_warn,
            thresholds.silent_default_fail,
        )
        if level:
            fills = result.get("fill_values") or []
            seen = ", ".join(repr(v) for v in fills) if fills else "null / NOT_FOUND"
            findings.append(
                {
                    "kind": "silent_default",
                    "feature": feature,
                    "severity": level,
                    "message": (
                        f"{_pct(result['silent_default_rate'])} of rows served a default "
                        f"({seen}) where offline has a real value"
                    ),
                    "evidence": {
                        "fill_values": fills,
                        "silent_defaults": result["silent_defaults"],
                        "online_null_rate": result["online_null_rate"],
                    },
                }
            )
    psi = result.get("psi")
    hist = result.get("histogram") or {}
    drift_rows = min(sum(hist.get("online", [])), sum(hist.get("offline", []))) if hist else 0
    if psi is not None and drift_rows >= thresholds.min_compared:
        level = severity_for_psi(psi, thresholds.psi_warn, thresholds.psi_fail)
        if level in ("warn", "fail"):
            findings.append(
                {
                    "kind": "distribution_drift",
                    "feature": feature,
                    "severity": level,
                    "message": (
                        f"served vs offline PSI {psi:.3f}"
                        + (
                            f", KS D {result['ks_statistic']:.3f}"
                            if result.get("ks_statistic") is not None
                            else ""
                        )
                    ),
                    "evidence": {
                        "reference": "offline",
                        "psi": psi,
                        "ks_statistic": result.get("ks_statistic"),
                        "ks_pvalue": result.get("ks_pvalue"),
                    },
                }
            )
    psi_trained = result.get("psi_vs_training")
    if psi_trained is not None and result["rows"] >= thresholds.min_compared:
        level = severity_for_psi(psi_trained, thresholds.psi_warn, thresholds.psi_fail)
        if level in ("warn", "fail"):
            findings.append(
                {
                    "kind": "distribution_drift",
                    "feature": feature,
                    "severity": level,
                    "message": f"served vs trained-on PSI {psi_trained:.3f}",
                    "evidence": {
                        "reference": "training",
                        "psi": psi_trained,
                        "training_dataset_id": result.get("training_dataset_id"),
                    },
                }
            )
    severities = [f["severity"] for f in findings]
    if severities:
        status = _worst(severities)
    elif not enough_rows:
        status = "insufficient_data"
    else:
        status = "ok"
    return status, findings


def view_findings(view: Mapping[str, Any]) -> tuple[str, list[dict]]:
    status, ratio = freshness_status(
        view.get("slo_seconds"),
        (view.get("served_lag_seconds") or {}).get("p95"),
        view.get("materialization_lag_seconds"),
        view.get("source_lag_seconds"),
    )
    if status == "ok":
        return status, []
    lags = {
        "served p95": (view.get("served_lag_seconds") or {}).get("p95"),
        "materialization": view.get("materialization_lag_seconds"),
        "source": view.get("source_lag_seconds"),
    }
    worst_name = max(lags, key=lambda k: lags[k] or 0.0)
    message = (
        f"{worst_name} lag {format_duration(lags[worst_name])} over the "
        f"{format_duration(view.get('slo_seconds'))} SLO ({view.get('slo_source')})"
    )
    return status, [
        {
            "kind": "freshness_slo",
            "feature_view": view["feature_view"],
            "severity": status,
            "message": message,
            "evidence": {**lags, "slo_seconds": view.get("slo_seconds"), "over_ratio": ratio},
        }
    ]


def _lag_histogram(lags: Sequence[float]) -> dict[str, Any]:
    edges = np.asarray(LAG_EDGES, dtype=np.float64)
    counts = np.bincount(
        np.searchsorted(edges, np.asarray(lags, dtype=np.float64), side="right"),
        minlength=len(edges) + 1,
    )
    labels = ["<0"] + [f">={format_duration(e)}" for e in edges]
    return {"labels": labels, "counts": counts.tolist()}


def build_report(
    *,
    window: tuple[datetime, datetime],
    samples: int,
    features: Sequence[Mapping[str, Any]],
    views: Sequence[Mapping[str, Any]],
    thresholds: Any,
    project: str,
    deleted_views: Mapping[str, int] | None = None,
    notes: Sequence[str] = (),
    timings: Mapping[str, float] | None = None,
    cohorts: Any = None,
) -> dict[str, Any]:
    """Assemble the schema-1 report; findings sorted worst first.

    ``cohorts`` (a ``CohortConfig``, when dimensions are configured) adds per feature the top
    cohorts by rate above the aggregate, their findings, and a top-level ``cohorts`` section."""
    start, end = window
    feature_rows: list[dict[str, Any]] = []
    findings: list[dict[str, Any]] = []
    for result in features:
        row = dict(result)
        row["schema"] = _schema(result)
        status, found = feature_findings(row, thresholds)
        status, found = _with_cohorts(row, status, found, thresholds, cohorts)
        row["status"] = status
        for key in (
            "declared",
            "online_type",
            "offline_type",
            "declared_at_serving",
            "missing_offline",
        ):
            row.pop(key, None)
        feature_rows.append(row)
        findings.extend(found)
    view_rows = []
    for view in views:
        row = dict(view)
        row["served_lag_histogram"] = _lag_histogram(row.pop("served_lag_sample", []))
        status, found = view_findings(row)
        row["status"] = status
        view_rows.append(row)
        findings.extend(found)
    findings.sort(
        key=lambda f: (
            -SEVERITY_RANK[f["severity"]],
            f["kind"],
            f.get("feature") or f.get("feature_view") or "",
        )
    )
    worst = _worst([f["severity"] for f in findings])
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id_for(project, start, end),
        "project": project,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "samples": samples,
        "status": worst if worst in ("fail", "warn") else "ok",
        "features": feature_rows,
        "feature_views": view_rows,
        "findings": findings,
        "deleted_feature_views": dict(deleted_views or {}),
        "notes": list(notes),
        "timings": dict(timings or {}),
        **({"cohorts": _cohort_section(cohorts, feature_rows)} if cohorts is not None else {}),
    }


def _with_cohorts(
    row: dict[str, Any], status: str, found: list[dict], thresholds: Any, cohorts: Any
) -> tuple[str, list[dict]]:
    """Add a feature's top cohorts and cohort findings (fail) to its row; the status counts
    them like any finding."""
    slices = row.pop("cohort_slices", None)
    if cohorts is None:
        return status, found
    top, summary, cohort_found = feature_cohorts(
        row["feature"],
        slices or {},
        row,
        thresholds,
        top_k=cohorts.top_k,
        min_rows=cohorts.min_rows,
        max_pvalue=cohorts.max_pvalue,
    )
    row["cohorts"] = top
    row["cohort_dimensions"] = summary
    if cohort_found:
        status = _worst([status, *(f["severity"] for f in cohort_found)])
    return status, [*found, *cohort_found]


def _cohort_section(cohorts: Any, feature_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Top-level ``cohorts``: the settings and every feature's top cohorts, largest delta first."""
    flat = [{"feature": r["feature"], **c} for r in feature_rows for c in r.get("cohorts", [])]
    flat.sort(key=lambda c: (-c["delta"], c["feature"], c["label"]))
    return {
        "dimensions": list(cohorts.dimensions),
        "top_k": cohorts.top_k,
        "min_rows": cohorts.min_rows,
        "max_cohorts": cohorts.max_cohorts,
        "max_pvalue": cohorts.max_pvalue,
        "top": flat,
    }


_COHORT_METRICS = {
    "mismatch_rate": ("mismatch", "mismatches", "compared", "compared"),
    "stale_rate": ("stale", "stale_rows", "rows", "rows"),
    "silent_default_rate": ("default", "silent_defaults", "offline_rows", "rows offline"),
}


def _cohort_rows(report: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], str, str, str]]:
    """(entry, metric name, 'cohort vs aggregate' text, counts text) of the top cohorts."""
    section = report.get("cohorts") or {}
    rates = {r["feature"]: r for r in report["features"]}
    out = []
    for c in section.get("top", []):
        name, count, whole, noun = _COHORT_METRICS[c["metric"]]
        overall = rates.get(c["feature"], {}).get(c["metric"])
        versus = f"{_pct(c[c['metric']])} vs {_pct(overall)} all rows, +{c['delta'] * 100:.1f} pts"
        entities = f", {c['entities']} entities" if c.get("entities") is not None else ""
        out.append((c, name, versus, f"{c[count]}/{c[whole]} {noun}{entities}"))
    return out


def _cohort_text(report: Mapping[str, Any]) -> list[str]:
    section = report.get("cohorts")
    if not section:
        return []
    lines = ["", f"cohorts by {', '.join(section['dimensions'])}: rates above all rows"]
    rows = _cohort_rows(report)
    if not rows:
        lines.append("  no cohort stands out")
    for c, name, versus, counts in rows:
        lines.append(f"  {c['feature'][:36]:36} {c['label'][:34]:34} {name:8} {versus}; {counts}")
    return lines


def exit_code(report: Mapping[str, Any]) -> int:
    """0 when no finding has severity fail, 1 when one has (DESIGN.md)."""
    return 1 if any(f["severity"] == "fail" for f in report["findings"]) else 0


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, default=str, allow_nan=False)


def render_text(report: Mapping[str, Any]) -> str:
    """The terminal summary: one line per finding, worst first, then per-feature and per-view."""
    lines = [
        f"feast-parity check  project {report['project']}  run {report['run_id']}",
        f"window {report['window']['start']} .. {report['window']['end']}  "
        f"samples {report['samples']:,}",
        "",
    ]
    findings = report["findings"]
    if findings:
        lines.append(f"{len(findings)} finding(s), worst first:")
        for f in findings:
            target = f.get("feature") or f.get("feature_view")
            lines.append(f"  {f['severity'].upper():5} {f['kind']:19} {target}: {f['message']}")
    else:
        lines.append("no findings: served values match the offline store")
    lines.append("")
    lines.append(
        f"{'feature':40} {'status':17} {'compared':>8} {'mismatch':>8} {'stale':>7} "
        f"{'default':>7} {'psi':>6}"
    )
    for row in sorted(
        report["features"], key=lambda r: (-SEVERITY_RANK[r["status"]], r["feature"])
    ):
        psi = "-" if row.get("psi") is None else f"{row['psi']:.3f}"
        lines.append(
            f"{row['feature'][:40]:40} {row['status']:17} {row['compared']:>8} "
            f"{_pct(row['mismatch_rate']):>8} {_pct(row['stale_rate']):>7} "
            f"{_pct(row['silent_default_rate']):>7} {psi:>6}"
        )
    if report["feature_views"]:
        lines.append("")
        lines.append(
            f"{'feature view':24} {'status':7} {'served p50/p95/p99':>24} "
            f"{'materialized':>12} {'source':>8} {'SLO':>6}"
        )
        for view in report["feature_views"]:
            lag = view["served_lag_seconds"]
            served = "/".join(format_duration(lag.get(p)) for p in ("p50", "p95", "p99"))
            lines.append(
                f"{view['feature_view'][:24]:24} {view['status']:7} {served:>24} "
                f"{format_duration(view.get('materialization_lag_seconds')):>12} "
                f"{format_duration(view.get('source_lag_seconds')):>8} "
                f"{format_duration(view.get('slo_seconds')):>6}"
            )
    lines.extend(_cohort_text(report))
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    lines.append("")
    lines.append(f"result: {report['status'].upper()} (exit {exit_code(report)})")
    return "\n".join(lines)


_COLORS = {"fail": "#c62828", "warn": "#ef6c00", "ok": "#2e7d32", "insufficient_data": "#757575"}


def _axis_label(label: str) -> str:
    """A bin label short enough for an axis: ``[0.0009929, 0.004279)`` -> ``≥0.00099``.

    >>> _axis_label("[0.0009929, 0.004279)"), _axis_label("< 0.0009929"), _axis_label("US")
    ('≥0.00099', '<0.00099', 'US')
    """
    match = re.match(r"^(\[|< |>= )(-?[0-9.eE+-]+)", label)
    if not match:
        return label
    sign = {"[": "≥", "< ": "<", ">= ": "≥"}[match.group(1)]
    try:
        value = float(match.group(2))
        return f"{sign}{value:.3g}" if 1 <= abs(value) < 1e4 else f"{sign}{value:.2g}"
    except ValueError:
        return label


def _bars_svg(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    width: int = 460,
    height: int = 150,
) -> str:
    """Overlaid bar chart of proportions per bin, as inline SVG (no scripts, no network)."""
    colors = {
        "online": "rgba(21,101,192,0.55)",
        "offline": "rgba(239,108,0,0.55)",
        "served lag": "rgba(21,101,192,0.7)",
    }
    n = max(len(labels), 1)
    props = {}
    for name, counts in series.items():
        total = float(sum(counts)) or 1.0
        props[name] = [c / total for c in counts]
    top = max((max(p) for p in props.values() if p), default=1.0) or 1.0
    bar_w = (width - 40) / n
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}" '
        f'role="img">'
    ]
    for name, p in props.items():
        for i, value in enumerate(p):
            h = (height - 10) * value / top
            parts.append(
                f'<rect x="{30 + i * bar_w:.1f}" y="{height - h:.1f}" '
                f'width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{colors.get(name, "#888")}"><title>{html.escape(name)} '
                f"{html.escape(labels[i])}: {value:.1%}</title></rect>"
            )
    for i, label in enumerate(labels):
        label = _axis_label(label)
        if n <= 14 or i % 2 == 0:
            parts.append(
                f'<text x="{30 + (i + 0.5) * bar_w:.1f}" y="{height + 14}" '
                f'font-size="8" text-anchor="middle">{html.escape(label[:10])}</text>'
            )
    for j, name in enumerate(props):
        parts.append(
            f'<rect x="{30 + j * 90}" y="{height + 24}" width="10" height="10" '
            f'fill="{colors.get(name, "#888")}"/><text x="{44 + j * 90}" '
            f'y="{height + 33}" font-size="10">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(
    report: Mapping[str, Any], history: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """A self-contained HTML page: findings, a histogram per feature, lag per view."""
    esc = html.escape
    rows = []
    for f in report["findings"]:
        target = f.get("feature") or f.get("feature_view")
        rows.append(
            f'<tr><td style="color:{_COLORS[f["severity"]]}"><b>{esc(f["severity"])}'
            f"</b></td><td>{esc(f['kind'])}</td><td>{esc(str(target))}</td>"
            f"<td>{esc(f['message'])}</td></tr>"
        )
    cards = []
    for row in report["features"]:
        hist = row.get("histogram")
        chart = (
            _bars_svg(hist["labels"], {"online": hist["online"], "offline": hist["offline"]})
            if hist
            else "<p><i>no distribution (type not binned or no data)</i></p>"
        )
        psi = "-" if row.get("psi") is None else f"{row['psi']:.3f}"
        cards.append(
            f'<div class="card"><h3>{esc(row["feature"])} <span style="color:'
            f'{_COLORS[row["status"]]}">{esc(row["status"])}</span></h3>{chart}'
            f"<p>compared {row['compared']} · mismatch {_pct(row['mismatch_rate'])} · stale "
            f"{_pct(row['stale_rate'])} · default {_pct(row['silent_default_rate'])} · PSI {psi}"
            f" · schema {esc(str(row['schema']['declared']))}/{esc(str(row['schema']['online']))}"
            f"/{esc(str(row['schema']['offline']))}</p></div>"
        )
    view_cards = []
    for view in report["feature_views"]:
        lag = view["served_lag_seconds"]
        hist = view.get("served_lag_histogram") or {"labels": [], "counts": []}
        view_cards.append(
            f'<div class="card"><h3>{esc(view["feature_view"])} <span style="color:'
            f'{_COLORS[view["status"]]}">{esc(view["status"])}</span></h3>'
            f"{_bars_svg(hist['labels'], {'served lag': hist['counts']})}"
            f"<p>served lag p50/p95/p99 {format_duration(lag.get('p50'))} / "
            f"{format_duration(lag.get('p95'))} / {format_duration(lag.get('p99'))} · "
            f"materialization {format_duration(view.get('materialization_lag_seconds'))} · "
            f"source {format_duration(view.get('source_lag_seconds'))} · SLO "
            f"{format_duration(view.get('slo_seconds'))}</p></div>"
        )
    notes = "".join(f"<li>{esc(n)}</li>" for n in report.get("notes", []))
    cohorts_html = _cohort_html(report)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>feast-parity report {esc(report["run_id"])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}
table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}}
.grid{{display:flex;flex-wrap:wrap;gap:12px}}.card{{border:1px solid #ddd;border-radius:6px;padding:8px;width:480px}}
h3{{font-size:14px;margin:4px 0}}p{{font-size:12px}}</style></head><body>
<h1>feast-parity: {esc(report["project"])} <span style="color:{_COLORS[report["status"]]}">
{esc(report["status"])}</span></h1>
<p>window {esc(report["window"]["start"])} .. {esc(report["window"]["end"])} ·
{report["samples"]:,} samples · run {esc(report["run_id"])}</p>
<h2>Findings</h2>
{"<table><tr><th>severity</th><th>kind</th><th>where</th><th>message</th></tr>" + "".join(rows) + "</table>" if rows else "<p>No findings: served values match the offline store.</p>"}
{"<ul>" + notes + "</ul>" if notes else ""}
<h2>Features: served (online) vs offline point-in-time values of the same rows</h2>
<div class="grid">{"".join(cards)}</div>
{cohorts_html}
<h2>Freshness: served lag per feature view</h2>
<div class="grid">{"".join(view_cards)}</div>
{_trend_section(report, history)}
</body></html>
"""


def _cohort_html(report: Mapping[str, Any]) -> str:
    """The cohort table of the HTML report (empty when no dimensions are configured)."""
    section = report.get("cohorts")
    if not section:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(c['feature'])}</td><td>{esc(c['label'])}</td><td>{esc(name)}</td>"
        f"<td>{esc(versus)}</td><td>{esc(counts)}</td></tr>"
        for c, name, versus, counts in _cohort_rows(report)
    )
    body = (
        "<table><tr><th>feature</th><th>cohort</th><th>metric</th><th>cohort vs all rows</th>"
        f"<th>counts</th></tr>{rows}</table>"
        if rows
        else "<p>no cohort stands out</p>"
    )
    return (
        f"<h2>Cohorts: {esc(', '.join(section['dimensions']))}</h2>"
        f"<p>top cohorts by rate above all rows (at least {section['min_rows']} rows)</p>{body}"
    )


# --- trends over stored runs (history = results.load_runs(...), oldest first) -----------------

TREND_RUNS = 60


def _trend_svg(
    points: Sequence[tuple[str, float | None]],
    fmt: Any,
    *,
    lines: Sequence[tuple[float, str]] = (),
    color: str = "#1565c0",
    width: int = 300,
    height: int = 90,
) -> str:
    """Line chart of one metric over runs as inline SVG; ``lines`` are (value, label) rules."""
    values = [v for _, v in points if v is not None]
    top = max([*values, *(v for v, _ in lines), 0.0]) * 1.1 or 1.0
    n = len(points)
    left, right, pad = 4, width - 56, 6

    def x(i: int) -> float:
        return left + (right - left) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return pad + (height - 2 * pad) * (1 - v / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" width="{width}" '
        f'height="{height}" role="img">',
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{right}" y2="{y(0):.1f}" stroke="#bbb"/>',
    ]
    for value, label in lines:
        parts.append(
            f'<line x1="{left}" y1="{y(value):.1f}" x2="{right}" y2="{y(value):.1f}" '
            f'stroke="#c62828" stroke-dasharray="4 3"/><text x="{right + 3}" '
            f'y="{y(value) + 3:.1f}" font-size="9" fill="#c62828">{html.escape(label)}</text>'
        )
    segment: list[str] = []
    segments = [segment]
    for i, (_, v) in enumerate(points):
        if v is None:
            segment = []
            segments.append(segment)
        else:
            segment.append(f"{x(i):.1f},{y(v):.1f}")
    for seg in segments:
        if len(seg) > 1:
            parts.append(
                f'<polyline points="{" ".join(seg)}" fill="none" stroke="{color}" '
                f'stroke-width="1.5"/>'
            )
    for i, (when, v) in enumerate(points):
        if v is not None:
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2" fill="{color}">'
                f"<title>{html.escape(when)}: {html.escape(fmt(v))}</title></circle>"
            )
    last = next((v for _, v in reversed(points) if v is not None), None)
    if last is not None:
        parts.append(
            f'<text x="{right + 3}" y="{height - 2}" font-size="10">{html.escape(fmt(last))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _trend_section(report: Mapping[str, Any], history: Sequence[Mapping[str, Any]] | None) -> str:
    """Per-feature PSI and mismatch rate, per-view served lag p99, over the stored runs."""
    if not history:
        return ""
    runs = [r for r in history if r.get("project", report.get("project")) == report.get("project")]
    if report.get("run_id") not in {r.get("run_id") for r in runs}:
        runs.append(report)
    runs = sorted(runs, key=lambda r: r["window"]["end"])[-TREND_RUNS:]
    if len(runs) < 2:
        return ""
    esc = html.escape
    ends = [str(r["window"]["end"]) for r in runs]

    def number(value: Any) -> float | None:
        try:
            out = float(value)
        except (TypeError, ValueError):
            return None
        return out if np.isfinite(out) else None

    features: dict[str, list[Mapping[str, Any] | None]] = {}
    views: dict[str, list[Mapping[str, Any] | None]] = {}
    for i, run in enumerate(runs):
        for row in run.get("features") or []:
            features.setdefault(row["feature"], [None] * len(runs))[i] = row
        for view in run.get("feature_views") or []:
            views.setdefault(view["feature_view"], [None] * len(runs))[i] = view
    feature_cards = []
    for name in sorted(features):
        rows = features[name]
        psi = [(ends[i], number(r.get("psi")) if r else None) for i, r in enumerate(rows)]
        mismatch = [
            (ends[i], number(r.get("mismatch_rate")) if r else None) for i, r in enumerate(rows)
        ]
        feature_cards.append(
            f'<div class="card"><h3>{esc(name)}</h3><p>PSI</p>'
            f"{_trend_svg(psi, lambda v: f'{v:.3f}', lines=[(0.1, 'warn'), (0.25, 'fail')])}"
            f"<p>mismatch rate</p>{_trend_svg(mismatch, _pct, color='#ef6c00')}</div>"
        )
    view_cards = []
    for name in sorted(views):
        rows = views[name]
        p99 = [
            (ends[i], number((r.get("served_lag_seconds") or {}).get("p99")) if r else None)
            for i, r in enumerate(rows)
        ]
        slo = next((number(r.get("slo_seconds")) for r in reversed(rows) if r), None)
        view_cards.append(
            f'<div class="card"><h3>{esc(name)}</h3><p>served lag p99</p>'
            f"{_trend_svg(p99, format_duration, lines=[(slo, 'SLO')] if slo else [])}</div>"
        )
    return (
        f"<h2>Trends over the last {len(runs)} stored runs ({esc(ends[0])} .. {esc(ends[-1])})"
        f'</h2>\n<div class="grid">{"".join(feature_cards)}</div>\n'
        f'<div class="grid">{"".join(view_cards)}</div>'
    )
