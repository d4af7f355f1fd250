"""Cohort ranking and findings: which cohorts of a feature stand out, and when that is a finding.

The counters per cohort are :mod:`feast_parity.parity.cohorts`; this module reads their results:
it ranks cohorts by how far their rates sit above the feature's aggregate and turns a cohort
that crosses a fail threshold, unlikely under the aggregate rate, into a finding of an existing
kind with a ``cohort`` field (docs/checks.md "Cohort slices").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feast_parity.parity.cohorts import NULL, OTHER, sliced_metrics
from feast_parity.parity.stats import pct, percentiles


def rank_cohorts(
    slices: Mapping[str, Mapping[str, Any]],
    aggregate: Mapping[str, Any],
    *,
    top_k: int = 5,
    min_rows: int = 30,
) -> list[dict[str, Any]]:
    """The ``top_k`` cohorts of one feature, across dimensions, that sit furthest above the
    aggregate: ``delta`` = the largest of (cohort rate - aggregate rate) over the mismatch,
    stale and silent-default rates whose cohort denominator is at least ``min_rows``.

    Only cohorts with a positive delta are listed; ``(other)`` never is. Each entry carries
    every rate with its count, its delta, and the cohort's ``share`` of the feature's rows
    of that kind (1.0: the whole fault is in this cohort).
    """
    ranked = []
    for dim, info in slices.items():
        for value, stats in info["cohorts"].items():
            if value == OTHER:
                continue
            entry = cohort_entry(dim, value, stats, aggregate, min_rows)
            if entry["delta"] is not None and entry["delta"] > 0:
                ranked.append(entry)
    ranked.sort(key=lambda e: (-e["delta"], -e["rows"], e["label"]))
    return ranked[:top_k]


def cohort_entry(
    dim: str,
    value: str,
    stats: Mapping[str, Any],
    aggregate: Mapping[str, Any],
    min_rows: int,
) -> dict[str, Any]:
    """One cohort's report entry: its counts and rates, deltas and shares vs the aggregate."""
    entry: dict[str, Any] = {"dimension": dim, "cohort": value, "label": f"{dim}={value}"}
    entry.update({k: v for k, v in stats.items() if k not in ("examples", "stale_lag_seconds")})
    best: tuple[float, str] | None = None
    for _, rate, count, denominator, _ in sliced_metrics():
        prefix = rate[: -len("_rate")]
        mine, overall = stats.get(rate), aggregate.get(rate)
        delta = None if mine is None or overall is None else mine - overall
        total = aggregate.get(count)
        entry[f"{prefix}_delta"] = delta
        entry[f"{prefix}_share"] = (
            None if not total or stats.get(count) is None else stats[count] / total
        )
        if delta is not None and (stats.get(denominator) or 0) >= min_rows:
            if best is None or delta > best[0]:
                best = (delta, rate)
    entry["delta"] = None if best is None else best[0]
    entry["metric"] = None if best is None else best[1]
    return entry


def binomial_pvalue(
    successes: float, trials: float, rate: float, rows_per_entity: float = 1.0
) -> float:
    """One-sided P(X >= successes) for X ~ Binomial(trials, rate), with both counts divided by
    the cohort's rows per entity first (a design-effect correction: an entity served 5 times
    with a skewed value is one piece of evidence, not 5). Non-integer counts use the
    regularized incomplete beta function, P(X >= k) = I_rate(k, n - k + 1).

    >>> binomial_pvalue(0, 10, 0.5)
    1.0
    >>> round(binomial_pvalue(10, 10, 0.5), 6)
    0.000977
    >>> round(binomial_pvalue(50, 50, 0.5, rows_per_entity=5.0), 6)
    0.000977
    """
    m = max(float(rows_per_entity), 1.0)
    k, n = successes / m, trials / m
    if k <= 0:
        return 1.0
    if rate <= 0.0:
        return 0.0
    if rate >= 1.0:
        return 1.0
    from scipy.special import betainc

    return float(betainc(k, n - k + 1.0, rate))


def cohort_findings(
    feature: str,
    slices: Mapping[str, Mapping[str, Any]],
    aggregate: Mapping[str, Any],
    thresholds: Any,
    *,
    min_rows: int = 30,
    max_pvalue: float = 1e-6,
    top_k: int = 5,
) -> list[dict[str, Any]]:
    """Fail findings of cohorts that cross a fail threshold while the aggregate may not.

    A cohort produces a finding of kind value_mismatch, stale_serving or silent_default when,
    for that rate: its denominator is at least ``min_rows``, its rate is at or above the fail
    threshold, and its count is unlikely under the aggregate rate (one-sided binomial p-value
    at most ``max_pvalue``; a fault spread evenly over every cohort is the aggregate's finding,
    not one per cohort). At most ``top_k`` findings per kind and feature, largest delta first.
    """
    found: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for dim, info in slices.items():
        for value, stats in info["cohorts"].items():
            if value == OTHER:
                continue
            for kind, rate, count, denominator, threshold in sliced_metrics():
                mine, overall = stats.get(rate), aggregate.get(rate)
                n = stats.get(denominator) or 0
                if mine is None or overall is None or n < min_rows:
                    continue
                if mine < getattr(thresholds, f"{threshold}_fail"):
                    continue
                entities = stats.get("entities")
                per_entity = stats["rows"] / entities if entities else 1.0
                pvalue = binomial_pvalue(stats[count], n, float(overall), per_entity)
                if pvalue > max_pvalue:
                    continue
                finding = _finding(
                    kind, feature, dim, value, stats, aggregate, rate, count, denominator, pvalue
                )
                found.setdefault(kind, []).append((mine - overall, finding))
    out: list[dict[str, Any]] = []
    for kind in sorted(found):
        ranked = sorted(found[kind], key=lambda df: (-df[0], df[1]["cohort"]["label"]))
        out.extend(f for _, f in ranked[:top_k])
    return out


def _finding(
    kind: str,
    feature: str,
    dim: str,
    value: str,
    stats: Mapping[str, Any],
    aggregate: Mapping[str, Any],
    rate: str,
    count: str,
    denominator: str,
    pvalue: float,
) -> dict[str, Any]:
    cohort = {"dimension": dim, "value": value, "label": f"{dim}={value}"}
    mine, overall = stats[rate], aggregate[rate]
    total = aggregate.get(count) or 0
    common = {
        "cohort": cohort,
        "rate": mine,
        "aggregate_rate": overall,
        "delta": mine - overall,
        "share": stats[count] / total if total else None,
        "entities": stats.get("entities"),
        "pvalue": pvalue,
    }
    tail = f"(all rows: {pct(overall)})"
    if kind == "value_mismatch":
        message = (
            f"cohort {cohort['label']}: {pct(mine)} of {stats['compared']} served values "
            f"differ from the offline value at the same event time {tail}"
        )
        evidence = {
            "mismatches": stats["mismatches"],
            "compared": stats["compared"],
            "examples": stats.get("examples", []),
        }
    elif kind == "stale_serving":
        message = (
            f"cohort {cohort['label']}: {pct(mine)} of {stats['rows']} rows served an older "
            f"row than offline had at request time {tail}"
        )
        evidence = {
            "lag_seconds": stats.get("stale_lag_seconds") or percentiles([]),
            "stale_rows": stats["stale_rows"],
            "rows": stats["rows"],
        }
    else:
        fills = list(aggregate.get("fill_values") or [])
        seen = ", ".join(repr(v) for v in fills) if fills else "null / NOT_FOUND"
        message = (
            f"cohort {cohort['label']}: {pct(mine)} of rows served a default ({seen}) where "
            f"offline has a real value {tail}"
        )
        evidence = {
            "fill_values": fills,
            "silent_defaults": stats["silent_defaults"],
            "online_null_rate": stats["online_null_rate"],
            "offline_rows": stats["offline_rows"],
        }
    return {
        "kind": kind,
        "feature": feature,
        "severity": "fail",
        "cohort": cohort,
        "message": message,
        "evidence": {**evidence, **common},
    }


def feature_cohorts(
    feature: str,
    slices: Mapping[str, Mapping[str, Any]],
    aggregate: Mapping[str, Any],
    thresholds: Any,
    *,
    top_k: int = 5,
    min_rows: int = 30,
    max_pvalue: float = 1e-6,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Everything the report needs of one feature's slices: the top cohorts, a per-dimension
    summary (cohorts tracked, rows in ``(other)`` and ``(null)``) and the cohort findings."""
    top = rank_cohorts(slices, aggregate, top_k=top_k, min_rows=min_rows)
    summary = {}
    for dim, info in slices.items():
        cohorts = info["cohorts"]
        summary[dim] = {
            "cohorts": sum(1 for v in cohorts if v != OTHER),
            "merged_into_other": info.get("merged", 0),
            "other_rows": cohorts.get(OTHER, {}).get("rows", 0),
            "null_rows": cohorts.get(NULL, {}).get("rows", 0),
        }
    findings = cohort_findings(
        feature,
        slices,
        aggregate,
        thresholds,
        min_rows=min_rows,
        max_pvalue=max_pvalue,
        top_k=top_k,
    )
    return top, summary, findings
