"""The parity report: the schema-1 JSON of DESIGN.md, assembled from comparison results.

:func:`build_report` takes per-feature and per-view results, applies the findings policy
(:mod:`feast_parity.parity.findings`) and returns the report dict. Fields are only ever added
(docs/report.md lists every one); rendering it is :mod:`feast_parity.render`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import xxhash

from feast_parity.parity.causes import attach_folded, fold_input_moves
from feast_parity.parity.cohort_findings import feature_cohorts
from feast_parity.parity.findings import (
    SEVERITY_RANK,
    CheckThresholds,
    feature_findings,
    feature_status,
    schema_of,
    sort_findings,
    view_findings,
    worst,
)
from feast_parity.parity.freshness import format_duration
from feast_parity.parity.transformation_findings import transformation_view_findings

SCHEMA_VERSION = 1
LAG_EDGES = [0, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400]
_INTERNAL_FIELDS = (
    "declared",
    "online_type",
    "offline_type",
    "declared_at_serving",
    "missing_offline",
    "offline_unfit",
    "fill_value_hashes",
)


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


def lag_histogram(lags: Sequence[float]) -> dict[str, Any]:
    """Counts of served lags in fixed bins (one minute to one week), for charts."""
    edges = np.asarray(LAG_EDGES, dtype=np.float64)
    counts = np.bincount(
        np.searchsorted(edges, np.asarray(lags, dtype=np.float64), side="right"),
        minlength=len(edges) + 1,
    )
    labels = ["<0"] + [f">={format_duration(e)}" for e in edges]
    return {"labels": labels, "edges": LAG_EDGES, "counts": counts.tolist()}


def exit_code(report: Mapping[str, Any]) -> int:
    """0 when no finding has severity fail, 1 when one has (DESIGN.md).

    >>> warn, fail = {"severity": "warn"}, {"severity": "fail"}
    >>> exit_code({"findings": [warn]}), exit_code({"findings": [warn, fail]}), exit_code({})
    (0, 1, 0)
    """
    findings = report.get("findings") or []
    return int(any(isinstance(f, Mapping) and f.get("severity") == "fail" for f in findings))


def build_report(
    *,
    window: tuple[datetime, datetime],
    samples: int,
    features: Sequence[Mapping[str, Any]],
    views: Sequence[Mapping[str, Any]],
    thresholds: CheckThresholds,
    project: str,
    deleted_views: Mapping[str, int] | None = None,
    notes: Sequence[str] = (),
    timings: Mapping[str, float] | None = None,
    cohorts: Any = None,
    skipped: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the schema-1 report; findings sorted worst first.

    ``cohorts`` (a ``CohortConfig``, when dimensions are configured) adds per feature the top
    cohorts by rate above the aggregate, their findings, and a top-level ``cohorts`` section."""
    start, end = window
    by_view: dict[str, list[dict[str, Any]]] = {}
    for result in features:
        row = dict(result)
        row["schema"] = schema_of(result)
        by_view.setdefault(row["feature_view"], []).append(row)
    view_rows, findings = [], []
    causes_by_view: dict[str, set[str]] = {}
    for view in views:
        row = dict(view)
        row["served_lag_histogram"] = lag_histogram(row.pop("served_lag_sample", []))
        found = view_findings(row, by_view.get(row["feature_view"], []), thresholds)
        if row.get("on_demand"):
            found += transformation_view_findings(
                row, by_view.get(row["feature_view"], []), thresholds
            )
        causes_by_view[row["feature_view"]] = {
            f["kind"] for f in found if f["kind"] != "freshness_slo"
        }
        row["status"] = worst([f["severity"] for f in found])
        view_rows.append((row, found))
    feature_rows = []
    view_folded: dict[str, list[dict[str, Any]]] = {}
    for view_name, rows in sorted(by_view.items()):
        for row in sorted(rows, key=lambda r: r["feature"]):
            found, folded = feature_findings(row, thresholds, causes_by_view.get(view_name, set()))
            found = _with_cohorts(row, found, thresholds, cohorts)
            view_folded.setdefault(view_name, []).extend(folded)
            row["status"] = feature_status(row, found, thresholds)
            if folded and row["status"] in ("ok", "insufficient_data"):
                row["status"] = worst([f["severity"] for f in folded])
            for key in _INTERNAL_FIELDS:
                row.pop(key, None)
            feature_rows.append(row)
            findings.extend(found)
    for _, found in view_rows:
        findings.extend(found)
    attach_folded([(row["feature_view"], found) for row, found in view_rows], view_folded, findings)
    notes = list(notes)
    fold_input_moves(findings, [row for row, _ in view_rows], notes)
    sort_findings(findings)
    overall = worst([f["severity"] for f in findings])
    report = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id_for(project, start, end),
        "project": project,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "samples": samples,
        "status": overall if overall in ("fail", "warn") else "ok",
        "thresholds": thresholds.model_dump(),
        "features": feature_rows,
        "feature_views": [row for row, _ in view_rows],
        "findings": findings,
        "deleted_feature_views": dict(deleted_views or {}),
        "skipped_rows": dict(skipped or {}),
        "notes": list(notes),
        "timings": dict(timings or {}),
    }
    if cohorts is not None:
        report["cohorts"] = _cohort_section(cohorts, feature_rows)
    return report


def _with_cohorts(
    row: dict[str, Any], found: list[dict[str, Any]], thresholds: Any, cohorts: Any
) -> list[dict[str, Any]]:
    """Add a feature's top cohorts and cohort findings to its row."""
    slices = row.pop("cohort_slices", None)
    if cohorts is None:
        return found
    aggregate = dict(row)
    aggregate["fill_values"] = row.get("fill_values")
    top, summary, cohort_found = feature_cohorts(
        row["feature"],
        slices or {},
        aggregate,
        thresholds,
        top_k=cohorts.top_k,
        min_rows=cohorts.min_rows,
        max_pvalue=cohorts.max_pvalue,
    )
    row["cohorts"] = top
    row["cohort_dimensions"] = summary
    return [*found, *cohort_found]


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


__all__ = [
    "SCHEMA_VERSION",
    "SEVERITY_RANK",
    "build_report",
    "exit_code",
    "lag_histogram",
    "run_id_for",
]
