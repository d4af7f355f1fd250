"""Findings policy: which results become findings, of which severity, with which message.

One cause, one finding. A cause that lives in a view row (the row was stale, expired, or not
found at all, or the view's schema changed) is one *view-level* finding naming the affected
features; per-feature findings that this cause alone explains are folded into its evidence
(``folded``). Served-vs-offline drift of the same rows is always a consequence of other row
differences, so it stands as a finding only when no other finding of the feature or its view
explains it. Thresholds are :class:`CheckThresholds` (``parity.thresholds``); every rule is in
docs/checks.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from feast_parity.parity.canonical import type_family
from feast_parity.parity.causes import (
    code_drift_explains_divergence,
    defaults_held_by_view,
    drift_is_explained,
    type_change_explains_mismatch,
    view_schema_change_explains,
)
from feast_parity.parity.freshness import format_duration, freshness_status
from feast_parity.parity.stats import pct

SEVERITY_RANK = {"fail": 3, "warn": 2, "insufficient_data": 1, "ok": 0}
FINDING_KINDS = (
    "value_mismatch",
    "stale_serving",
    "silent_default",
    "schema_divergence",
    "distribution_drift",
    "freshness_slo",
    "expired_serving",
    "transformation_divergence",
)

# protobuf kinds that serve each declared type (a different kind is schema divergence)
EXPECTED_ONLINE = {
    "Int32": "int32",
    "Int64": "int64",
    "Float32": "float32",
    "Float64": "float64",
    "String": "string",
    "Bytes": "bytes",
    "Bool": "bool",
    "UnixTimestamp": "timestamp",
    "Map": "map",
    "Json": "json",
}


class CheckThresholds(BaseModel):
    """Severity thresholds of the parity check (``parity.thresholds``; docs/checks.md)."""

    model_config = ConfigDict(extra="forbid")

    psi_warn: float = Field(0.1, ge=0)
    psi_fail: float = Field(0.25, ge=0)
    drift_confidence: float = Field(0.95, gt=0.5, lt=1)
    mismatch_warn: float = Field(0.001, ge=0, le=1)
    mismatch_fail: float = Field(0.01, ge=0, le=1)
    mismatch_relative_tolerance: float = Field(0.01, ge=0)
    stale_warn: float = Field(0.01, ge=0, le=1)
    stale_fail: float = Field(0.05, ge=0, le=1)
    expired_warn: float = Field(0.01, ge=0, le=1)
    expired_fail: float = Field(0.05, ge=0, le=1)
    silent_default_warn: float = Field(0.01, ge=0, le=1)
    silent_default_fail: float = Field(0.05, ge=0, le=1)
    min_compared: int = Field(30, ge=1)
    fill_value_ratio: float = Field(5.0, gt=1)
    fill_value_min_share: float = Field(0.05, gt=0, le=1)
    fill_value_min_rows: int = Field(3, ge=1)

    @model_validator(mode="after")
    def _warn_not_above_fail(self) -> CheckThresholds:
        for name in ("psi", "mismatch", "stale", "expired", "silent_default"):
            warn, fail = getattr(self, f"{name}_warn"), getattr(self, f"{name}_fail")
            if warn > fail:
                raise ValueError(f"{name}_warn ({warn:g}) must not exceed {name}_fail ({fail:g})")
        return self


def level(rate: float | None, warn: float, fail: float) -> str | None:
    """``fail`` / ``warn`` / None for a rate against its thresholds (inclusive).

    >>> level(0.05, 0.01, 0.05), level(0.01, 0.01, 0.05), level(0.0, 0.01, 0.05), level(None, 0, 1)
    ('fail', 'warn', None, None)
    """
    if rate is None:
        return None
    if rate >= fail:
        return "fail"
    if rate >= warn:
        return "warn"
    return None


def worst(severities: Sequence[str]) -> str:
    return max(severities, key=lambda s: SEVERITY_RANK[s]) if severities else "ok"


def schema_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The report's ``schema`` field of a feature: declared, online and offline type, diverged."""
    declared = result.get("declared")
    online = result.get("online_type")
    offline = result.get("offline_type")
    at_serving = set(result.get("declared_at_serving") or []) - {None, "", "Invalid"}
    expected = EXPECTED_ONLINE.get(str(declared))
    online_diverged = bool(
        online is not None
        and (
            (expected is not None and online != expected)
            or (expected is None and type_family(online) != type_family(declared))
        )
    )
    offline_diverged = bool(result.get("offline_unfit")) or result.get("missing_offline", False)
    return {
        "declared": declared,
        "online": online,
        "offline": offline,
        "diverged": online_diverged or offline_diverged or declared is None,
        "declared_at_serving": sorted(at_serving),
        "online_diverged": online_diverged,
        "offline_diverged": offline_diverged,
        "changed_since_serving": bool(at_serving - {declared}) if declared else bool(at_serving),
    }


def new_finding(
    kind: str, target: str, severity: str, message: str, evidence: Any, *, view: bool = False
) -> dict[str, Any]:
    """A finding of the report contract, on a feature or (``view``) a feature view."""
    return {
        "kind": kind,
        ("feature_view" if view else "feature"): target,
        "severity": severity,
        "message": message,
        "evidence": evidence,
    }


def _drift_finding(
    feature: str,
    psi: float | None,
    critical: float | None,
    rows: int,
    reference: str,
    thresholds: CheckThresholds,
    extra: Mapping[str, Any],
) -> dict[str, Any] | None:
    """A drift finding when PSI is over the threshold AND over the no-drift critical value."""
    if psi is None or rows < thresholds.min_compared:
        return None
    severity = level(psi, thresholds.psi_warn, thresholds.psi_fail)
    if severity is None or critical is None or psi <= critical:
        return None
    versus = (
        "offline point-in-time values of the same rows"
        if reference == "offline"
        else "the training profile"
    )
    message = f"served vs {versus}: PSI {psi:.3f} (no-drift 95th percentile {critical:.3f})"
    if extra.get("ks_statistic") is not None:
        message += f", KS D {extra['ks_statistic']:.3f}"
    return new_finding(
        "distribution_drift",
        feature,
        severity,
        message,
        {"reference": reference, "psi": psi, "psi_critical": critical, **extra},
    )


def divergence_finding(
    result: Mapping[str, Any], thresholds: CheckThresholds
) -> dict[str, Any] | None:
    """The per-output finding of an on-demand feature: the served output differs from Feast's
    offline transformation of the inputs serving read (rates and severity as for
    ``value_mismatch``), with whether the inputs were known and agreed: inputs equal and
    outputs different means the code that computed them differs."""
    if result["compared"] < thresholds.min_compared:
        return None
    severity = level(result["mismatch_rate"], thresholds.mismatch_warn, thresholds.mismatch_fail)
    if severity is None:
        return None
    inputs = result.get("transformation") or {}
    known = inputs.get("diverged_inputs_known", 0)
    same_inputs = inputs.get("code_differs", 0)
    if known:
        why = f"; inputs were served and agree offline for {same_inputs} of {known} such rows"
        if same_inputs:
            why += " (same inputs, other outputs: the code differs)"
    else:
        why = "; the request did not serve the inputs, so input staleness cannot be ruled out"
    return new_finding(
        "transformation_divergence",
        result["feature"],
        severity,
        f"{pct(result['mismatch_rate'])} of {result['compared']} served outputs differ from "
        f"Feast's offline transformation of the same inputs{why}",
        {
            "mismatches": result["mismatches"],
            "compared": result["compared"],
            "magnitude": result.get("mismatch_magnitude"),
            "examples": result.get("mismatch_examples", []),
            "inputs_known": known,
            "inputs_agreed": same_inputs,
            "code_differs": bool(same_inputs),
            "diverged_on_registry_code": inputs.get("diverged_on_registry_code"),
        },
    )


def feature_findings(
    result: Mapping[str, Any], thresholds: CheckThresholds, view_causes: set[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(findings, folded) of one feature. ``view_causes`` are the kinds of view-level findings
    of its view; per-feature findings that they explain go to ``folded`` instead
    (:mod:`feast_parity.parity.causes` states each rule)."""
    schema = result["schema"]
    found: list[dict[str, Any]] = []
    folded: list[dict[str, Any]] = []
    finding = _schema_finding(result)
    if finding is not None:
        (folded if view_schema_change_explains(view_causes) else found).append(finding)
    if result.get("on_demand"):
        finding = divergence_finding(result, thresholds)
        if finding is not None:
            explained = code_drift_explains_divergence(result, view_causes)
            (folded if explained else found).append(finding)
    else:
        finding = _mismatch_finding(result, thresholds)
        if finding is not None:
            by_type = type_change_explains_mismatch(schema)
            (folded if by_type else found).append(finding)
    finding = _default_finding(result, thresholds, defaults_held_by_view(result, view_causes))
    if finding is not None:
        found.append(finding)
    drift = _drift_finding(
        result["feature"],
        result.get("psi"),
        result.get("psi_critical"),
        _drift_rows(result),
        "offline",
        thresholds,
        {"ks_statistic": result.get("ks_statistic"), "ks_pvalue": result.get("ks_pvalue")},
    )
    if drift is not None:
        explained = drift_is_explained([f["kind"] for f in found + folded], view_causes)
        (folded if explained else found).append(drift)
    trained = _drift_finding(
        result["feature"],
        result.get("psi_vs_training"),
        result.get("psi_vs_training_critical"),
        result["rows"],
        "training",
        thresholds,
        {"training_dataset_id": result.get("training_dataset_id")},
    )
    if trained is not None:
        found.append(trained)
    return found, folded


def _schema_finding(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """``schema_divergence`` of a feature: served as another type, gone from the registry or
    the offline store, or offline values that are not of the declared type."""
    schema = result["schema"]
    if not schema["diverged"]:
        return None
    if schema["declared"] is None or result.get("missing_offline"):
        message = "served, but the offline store or the registry no longer has it"
    elif schema["online_diverged"]:
        message = f"declared {schema['declared']}, served as {schema['online']}"
    else:
        message = (
            f"declared {schema['declared']}, offline column {schema['offline']} holds "
            f"{result.get('offline_unfit', 0)} value(s) that are not {schema['declared']}"
        )
    return new_finding("schema_divergence", result["feature"], "fail", message, dict(schema))


def _mismatch_finding(
    result: Mapping[str, Any], thresholds: CheckThresholds
) -> dict[str, Any] | None:
    """``value_mismatch``: served values that differ from offline at the same event time."""
    if result["compared"] < thresholds.min_compared:
        return None
    severity = level(result["mismatch_rate"], thresholds.mismatch_warn, thresholds.mismatch_fail)
    if not severity:
        return None
    return new_finding(
        "value_mismatch",
        result["feature"],
        severity,
        f"{pct(result['mismatch_rate'])} of {result['compared']} served values differ "
        "from the offline value at the same event time",
        {
            "mismatches": result["mismatches"],
            "compared": result["compared"],
            "magnitude": result.get("mismatch_magnitude"),
            "examples": result.get("mismatch_examples", []),
        },
    )


def _default_finding(
    result: Mapping[str, Any], thresholds: CheckThresholds, held_by_view: int
) -> dict[str, Any] | None:
    """``silent_default`` of a feature: a default served where offline has a real value (the
    rows its view's NOT_FOUND finding holds left out)."""
    offline_rows = result.get("offline_rows", 0)
    if offline_rows < thresholds.min_compared:
        return None
    own = result["silent_defaults"] - held_by_view
    rate = own / offline_rows if offline_rows else None
    severity = level(rate, thresholds.silent_default_warn, thresholds.silent_default_fail)
    if not severity:
        return None
    fills = result.get("fill_values") or []
    seen = ", ".join(repr(v) for v in fills) if fills else "null / NOT_FOUND"
    return new_finding(
        "silent_default",
        result["feature"],
        severity,
        f"{pct(rate)} of rows served a default ({seen}) where offline has a real value",
        {
            "fill_values": fills,
            "silent_defaults": own,
            "offline_rows": offline_rows,
            "online_null_rate": result["online_null_rate"],
        },
    )


def _drift_rows(result: Mapping[str, Any]) -> int:
    hist = result.get("histogram") or {}
    if not hist:
        return 0
    return int(min(sum(hist.get("online", [])), sum(hist.get("offline", []))))


def feature_status(
    result: Mapping[str, Any], findings: Sequence[Mapping[str, Any]], thresholds: CheckThresholds
) -> str:
    """Worst severity of a feature's findings; ``insufficient_data`` when nothing could be
    compared (an offline store that answered nothing is never ``ok``)."""
    if findings:
        return worst([f["severity"] for f in findings])
    enough = (
        result["rows"] >= thresholds.min_compared
        and result.get("offline_rows", 0) >= thresholds.min_compared
    )
    return "ok" if enough else "insufficient_data"


def view_findings(
    view: Mapping[str, Any], features: Sequence[Mapping[str, Any]], thresholds: CheckThresholds
) -> list[dict[str, Any]]:
    """View-level findings: stale, expired, NOT_FOUND defaults, schema change, freshness."""
    names = sorted(f["feature"] for f in features)
    out = []
    if view.get("samples", 0) >= thresholds.min_compared and not view.get("on_demand"):
        for make in (_stale_finding, _expired_finding, _not_found_finding):
            finding = make(view, names, thresholds)
            if finding is not None:
                out.append(finding)
    finding = _schema_change_finding(view["feature_view"], features)
    if finding is not None:
        out.append(finding)
    out.extend(freshness_findings(view))
    return out


def _stale_finding(
    view: Mapping[str, Any], names: list[str], thresholds: CheckThresholds
) -> dict[str, Any] | None:
    """``stale_serving``: rows served older than the row offline had at request time."""
    severity = level(view.get("stale_rate"), thresholds.stale_warn, thresholds.stale_fail)
    if not severity:
        return None
    lag = view.get("stale_lag_seconds") or {}
    rows = view.get("samples", 0)
    return new_finding(
        "stale_serving",
        view["feature_view"],
        severity,
        f"{pct(view['stale_rate'])} of {rows} rows served an older row than offline had "
        f"at request time; lag p50 {format_duration(lag.get('p50'))}, p95 "
        f"{format_duration(lag.get('p95'))}",
        {
            "lag_seconds": lag,
            "stale_rows": view["stale_rows"],
            "rows": rows,
            "expired_rows": view.get("expired_rows", 0),
            "features": names,
        },
        view=True,
    )


def _expired_finding(
    view: Mapping[str, Any], names: list[str], thresholds: CheckThresholds
) -> dict[str, Any] | None:
    """``expired_serving``: rows served past the view's ttl (those also stale are the stale
    finding's; the rest are their own)."""
    severity = level(
        view.get("expired_not_stale_rate"), thresholds.expired_warn, thresholds.expired_fail
    )
    if not severity:
        return None
    age = view.get("expired_age_seconds") or {}
    rows = view.get("samples", 0)
    return new_finding(
        "expired_serving",
        view["feature_view"],
        severity,
        f"{pct(view['expired_not_stale_rate'])} of {rows} rows were served past the view's ttl "
        f"({format_duration(view.get('ttl_seconds'))}); age p50 "
        f"{format_duration(age.get('p50'))}, p95 {format_duration(age.get('p95'))}",
        {
            "age_seconds": age,
            "expired_rows": view["expired_rows"],
            "rows": rows,
            "ttl_seconds": view.get("ttl_seconds"),
            "features": names,
        },
        view=True,
    )


def _not_found_finding(
    view: Mapping[str, Any], names: list[str], thresholds: CheckThresholds
) -> dict[str, Any] | None:
    """``silent_default`` of a view: whole rows NOT_FOUND online while offline had them."""
    severity = level(
        view.get("not_found_default_rate"),
        thresholds.silent_default_warn,
        thresholds.silent_default_fail,
    )
    if not severity:
        return None
    rows = view.get("samples", 0)
    return new_finding(
        "silent_default",
        view["feature_view"],
        severity,
        f"{pct(view['not_found_default_rate'])} of {rows} rows were NOT_FOUND online for "
        "every feature of the view while offline had the row",
        {"not_found_rows": view["not_found_with_offline"], "rows": rows, "features": names},
        view=True,
    )


def _schema_change_finding(
    name: str, features: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """``schema_divergence`` of a view: its registry schema changed since the rows were
    served."""
    changed = [f for f in features if f["schema"].get("changed_since_serving")]
    if not changed:
        return None
    return new_finding(
        "schema_divergence",
        name,
        "fail",
        f"the registry's schema of {name} changed since these rows were served: "
        f"{', '.join(f['feature'] for f in changed)}",
        {
            "features": [f["feature"] for f in changed],
            "declared_now": {f["feature"]: f["schema"]["declared"] for f in changed},
            "declared_at_serving": {
                f["feature"]: f["schema"]["declared_at_serving"] for f in changed
            },
        },
        view=True,
    )


def freshness_findings(view: Mapping[str, Any]) -> list[dict[str, Any]]:
    status, ratio = freshness_status(
        view.get("slo_seconds"),
        (view.get("served_lag_seconds") or {}).get("p95"),
        view.get("materialization_lag_seconds"),
        view.get("source_lag_seconds"),
    )
    if status == "ok":
        return []
    lags = {
        "served p95": (view.get("served_lag_seconds") or {}).get("p95"),
        "materialization": view.get("materialization_lag_seconds"),
        "source": view.get("source_lag_seconds"),
    }
    # a fail is what serving sees (a late source alone only warns): name that lag
    candidates = ["served p95", "materialization"] if status == "fail" else list(lags)
    worst_name = max(candidates, key=lambda k: lags[k] or 0.0)
    message = (
        f"{worst_name} lag {format_duration(lags[worst_name])} over the "
        f"{format_duration(view.get('slo_seconds'))} SLO ({view.get('slo_source')})"
    )
    return [
        new_finding(
            "freshness_slo",
            view["feature_view"],
            status,
            message,
            {**lags, "slo_seconds": view.get("slo_seconds"), "over_ratio": ratio},
            view=True,
        )
    ]


def sort_findings(findings: list[dict[str, Any]]) -> None:
    """Worst first, then kind, then target (in place)."""
    findings.sort(
        key=lambda f: (
            -SEVERITY_RANK[f["severity"]],
            f["kind"],
            f.get("feature") or f.get("feature_view") or "",
        )
    )
