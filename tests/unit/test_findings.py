"""The findings policy (feast_parity.parity.findings) and the report built from it
(feast_parity.parity.report.build_report), on hand-built comparison results.

One cause, one finding: a cause that lives in a view row (stale, expired, NOT_FOUND, a schema
change) is one view-level finding naming the affected features, and per-feature findings it
alone explains are folded into its evidence. Drift stands on its own only when nothing else
explains it, and only when PSI is above both the configured threshold and the PSI that samples
without drift stay under. The results below have the fields FeatureComparison.result() and
ViewComparison.result() produce, plus those the check adds.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from feast_parity.parity.findings import (
    FINDING_KINDS,
    SEVERITY_RANK,
    CheckThresholds,
    feature_findings,
    freshness_findings,
    level,
    schema_of,
    view_findings,
)
from feast_parity.parity.report import (
    LAG_EDGES,
    SCHEMA_VERSION,
    build_report,
    exit_code,
    lag_histogram,
    run_id_for,
)
from feast_parity.parity.stats import (
    # hand-built results: the asymptotic value is enough
    psi_chi_square_bound as psi_critical_value,
)

WINDOW = (datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 3, 2, tzinfo=timezone.utc))
DEFAULTS = CheckThresholds()


def feature(name: str = "user_engagement:watch_minutes", **overrides: Any) -> dict[str, Any]:
    """A healthy Float64 feature: 1,000 rows compared, nothing wrong."""
    row: dict[str, Any] = {
        "feature": name,
        "feature_view": name.split(":")[0],
        "declared": "Float64",
        "online_type": "float64",
        "offline_type": "double",
        "declared_at_serving": ["Float64"],
        "offline_unfit": 0,
        "missing_offline": False,
        "on_demand": False,
        "rows": 1000,
        "compared": 1000,
        "offline_rows": 1000,
        "mismatches": 0,
        "mismatch_rate": 0.0,
        "mismatch_magnitude": None,
        "mismatch_examples": [],
        "silent_defaults": 0,
        "silent_defaults_not_found": 0,
        "silent_default_rate": 0.0,
        "fill_values": [],
        "fill_value_hashes": [],
        "online_null_rate": 0.0,
        "offline_null_rate": 0.0,
        "stale_rate": 0.0,
        "psi": 0.01,
        "psi_critical": psi_critical_value(1000, 1000, 10),
        "psi_vs_training": None,
        "psi_vs_training_critical": None,
        "training_dataset_id": None,
        "ks_statistic": 0.02,
        "ks_pvalue": 0.9,
        "histogram": {"labels": ["a", "b"], "online": [500, 500], "offline": [500, 500]},
    }
    row.update(overrides)
    return row


def view(name: str = "user_engagement", **overrides: Any) -> dict[str, Any]:
    """A healthy batch view: 1,000 rows, fresh, nothing stale, expired or not found."""
    row: dict[str, Any] = {
        "feature_view": name,
        "on_demand": False,
        "samples": 1000,
        "served_lag_seconds": {"p50": 300.0, "p95": 600.0, "p99": 900.0},
        "served_lag_sample": [300.0] * 10,
        "stale_rows": 0,
        "stale_rate": 0.0,
        "stale_lag_seconds": {"p50": None, "p95": None, "p99": None},
        "expired_rows": 0,
        "expired_rate": 0.0,
        "expired_not_stale_rate": 0.0,
        "expired_age_seconds": {"p50": None, "p95": None, "p99": None},
        "online_only_rows": 0,
        "not_found_rows": 0,
        "not_found_rate": 0.0,
        "not_found_with_offline": 0,
        "not_found_default_rate": 0.0,
        "row_compared": 1000,
        "row_match_rate": 1.0,
        "ttl_seconds": 86400.0,
        "slo_seconds": 43200.0,
        "slo_source": "tag",
        "materialization_lag_seconds": 900.0,
        "source_lag_seconds": 600.0,
    }
    row.update(overrides)
    return row


def findings_of(result: dict[str, Any], causes: set[str] = frozenset()) -> tuple[list, list]:
    row = {**result, "schema": schema_of(result)}
    return feature_findings(row, DEFAULTS, set(causes))


def kinds(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["kind"], f["severity"]) for f in findings]


def report(features: list[dict[str, Any]], views: list[dict[str, Any]], **kw: Any) -> dict:
    return build_report(
        window=WINDOW,
        samples=sum(v["samples"] for v in views),
        features=features,
        views=views,
        thresholds=kw.pop("thresholds", DEFAULTS),
        project="video_recs",
        **kw,
    )


# --- thresholds ---------------------------------------------------------------------------


def test_levels_are_inclusive_and_warn_may_not_exceed_fail() -> None:
    levels = {rate: level(rate, 0.01, 0.05) for rate in (0.0099, 0.01, 0.0499, 0.05)}
    assert levels == {0.0099: None, 0.01: "warn", 0.0499: "warn", 0.05: "fail"}
    assert level(None, 0.01, 0.05) is None  # a rate that could not be computed
    with pytest.raises(ValueError, match="stale_warn"):
        CheckThresholds(stale_warn=0.2, stale_fail=0.1)
    assert SEVERITY_RANK["fail"] > SEVERITY_RANK["warn"] > SEVERITY_RANK["ok"]
    assert "expired_serving" in FINDING_KINDS and "transformation_divergence" in FINDING_KINDS


# --- per feature --------------------------------------------------------------------------


def test_a_healthy_feature_has_no_findings() -> None:
    assert findings_of(feature()) == ([], [])


@pytest.mark.parametrize(("rate", "severity"), [(0.0005, None), (0.001, "warn"), (0.01, "fail")])
def test_value_mismatch_follows_the_mismatch_thresholds(rate: float, severity: str | None) -> None:
    examples = [{"entity": "u1", "online": 2.0, "offline": 1.0}]
    magnitude = {"rows": 10, "smape": 0.5}
    result = feature(
        mismatches=int(rate * 1000),
        mismatch_rate=rate,
        mismatch_examples=examples,
        mismatch_magnitude=magnitude,
    )
    found, _ = findings_of(result)
    if severity is None:
        assert found == []
        return
    (finding,) = found
    assert (finding["kind"], finding["severity"]) == ("value_mismatch", severity)
    assert finding["feature"] == "user_engagement:watch_minutes"
    assert finding["evidence"]["examples"] == examples
    assert finding["evidence"]["magnitude"] == magnitude
    assert "of 1000 served values differ" in finding["message"]


def test_too_few_compared_rows_give_no_mismatch_finding() -> None:
    found, _ = findings_of(feature(compared=29, mismatches=29, mismatch_rate=1.0))
    assert found == []


def test_silent_defaults_name_the_fill_values_or_say_null() -> None:
    found, _ = findings_of(feature(silent_defaults=100, silent_default_rate=0.1, fill_values=[0.0]))
    assert kinds(found) == [("silent_default", "fail")]
    assert "(0.0)" in found[0]["message"] and found[0]["evidence"]["silent_defaults"] == 100
    found, _ = findings_of(feature(silent_defaults=20, silent_default_rate=0.02))
    assert kinds(found) == [("silent_default", "warn")]
    assert "null / NOT_FOUND" in found[0]["message"]
    assert findings_of(feature(offline_rows=29, silent_defaults=29))[0] == []


def test_defaults_of_rows_not_found_for_the_whole_view_belong_to_the_view_finding() -> None:
    """60 of 1000 rows are defaults, 50 of them because the whole view row was NOT_FOUND: with
    the view's silent_default finding, the feature keeps only its own 10 (1 %: a warning)."""
    result = feature(silent_defaults=60, silent_defaults_not_found=50, silent_default_rate=0.06)
    alone, _ = findings_of(result)
    assert kinds(alone) == [("silent_default", "fail")]
    with_view, _ = findings_of(result, {"silent_default"})
    assert kinds(with_view) == [("silent_default", "warn")]
    assert with_view[0]["evidence"]["silent_defaults"] == 10


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"online_type": "float32"}, "declared Float64, served as float32"),
        ({"offline_unfit": 3}, "holds 3 value(s) that are not Float64"),
        ({"missing_offline": True}, "no longer has it"),
        ({"declared": None}, "no longer has it"),
    ],
)
def test_schema_divergence_is_always_a_failure(overrides: dict[str, Any], says: str) -> None:
    found, _ = findings_of(feature(**overrides))
    assert kinds(found) == [("schema_divergence", "fail")]
    assert says in found[0]["message"]
    assert found[0]["evidence"]["diverged"] is True


def test_online_types_of_other_families_are_compared_by_family() -> None:
    lists = feature(
        declared="Array(Float32)",
        online_type="list<float32>",
        declared_at_serving=["Array(Float32)"],
    )
    assert schema_of(lists)["diverged"] is False
    assert schema_of({**lists, "online_type": "string"})["diverged"] is True


def test_values_served_as_another_type_are_one_schema_finding() -> None:
    """A type change makes every served value differ: the mismatch is its consequence, kept in
    the schema finding's evidence; a mismatch of values of the right type stays its own."""
    by_type = feature(online_type="string", mismatches=400, mismatch_rate=1.0)
    got = report([by_type], [view()])
    (schema,) = got["findings"]
    assert schema["kind"] == "schema_divergence"
    assert [f["kind"] for f in schema["evidence"]["folded"]] == ["value_mismatch"]
    offline_only = feature(offline_unfit=3, mismatches=400, mismatch_rate=1.0)
    assert kinds(findings_of(offline_only)[0]) == [
        ("schema_divergence", "fail"),
        ("value_mismatch", "fail"),
    ]


# --- drift --------------------------------------------------------------------------------


def drifting(psi: float, rows: int = 1000, **overrides: Any) -> dict[str, Any]:
    """A feature with the given PSI over ``rows`` binned rows per side."""
    half = rows // 2
    fields = {
        "psi": psi,
        "psi_critical": psi_critical_value(rows, rows, 10),
        "histogram": {"labels": ["a", "b"], "online": [half, rows - half], "offline": [half] * 2},
    }
    return feature(**{**fields, **overrides})


@pytest.mark.parametrize(("psi", "severity"), [(0.05, None), (0.1, "warn"), (0.3, "fail")])
def test_drift_follows_the_psi_thresholds(psi: float, severity: str | None) -> None:
    found, _ = findings_of(drifting(psi))
    assert kinds(found) == ([] if severity is None else [("distribution_drift", severity)])
    if found:
        evidence = found[0]["evidence"]
        assert evidence["reference"] == "offline" and evidence["psi"] == psi
        assert "no-drift 95th percentile" in found[0]["message"]


def test_drift_below_the_no_drift_critical_value_is_no_finding() -> None:
    """At 100 rows per side and 10 bins, PSI 0.3 is within what chance alone gives (0.34)."""
    critical = psi_critical_value(100, 100, 10)
    assert critical is not None and 0.3 < critical
    found, _ = findings_of(drifting(0.3, rows=100, psi_critical=critical))
    assert found == []
    found, _ = findings_of(drifting(0.4, rows=100, psi_critical=critical))
    assert kinds(found) == [("distribution_drift", "fail")]


def test_drift_needs_enough_binned_rows() -> None:
    found, _ = findings_of(drifting(0.5, rows=20, psi_critical=0.01))
    assert found == []


def test_drift_explained_by_the_features_own_findings_is_folded() -> None:
    result = drifting(0.3, mismatches=50, mismatch_rate=0.05)
    found, folded = findings_of(result)
    assert kinds(found) == [("value_mismatch", "fail")]
    assert kinds(folded) == [("distribution_drift", "fail")]


def test_drift_explained_by_a_view_cause_is_folded() -> None:
    found, folded = findings_of(drifting(0.3), {"stale_serving"})
    assert found == [] and kinds(folded) == [("distribution_drift", "fail")]


def test_drift_against_the_training_profile_is_its_own_finding() -> None:
    result = feature(psi_vs_training=0.4, psi_vs_training_critical=0.02, training_dataset_id="ds-1")
    found, _ = findings_of(result)
    assert kinds(found) == [("distribution_drift", "fail")]
    assert found[0]["evidence"]["reference"] == "training"
    assert found[0]["evidence"]["training_dataset_id"] == "ds-1"


# --- per view -----------------------------------------------------------------------------

NAMES = [feature("user_engagement:a"), feature("user_engagement:b")]


def with_schema(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "schema": schema_of(r)} for r in rows]


def test_stale_expired_and_not_found_rows_are_view_level_findings() -> None:
    v = view(
        stale_rows=60,
        stale_rate=0.06,
        stale_lag_seconds={"p50": 120.0, "p95": 600.0},
        expired_rows=20,
        expired_rate=0.02,
        expired_not_stale_rate=0.02,
        expired_age_seconds={"p50": 9e4, "p95": 1e5},
        not_found_with_offline=70,
        not_found_default_rate=0.07,
    )
    found = view_findings(v, with_schema(NAMES), DEFAULTS)
    assert kinds(found) == [
        ("stale_serving", "fail"),
        ("expired_serving", "warn"),
        ("silent_default", "fail"),
    ]
    for finding in found:
        assert finding["feature_view"] == "user_engagement" and "feature" not in finding
        assert finding["evidence"]["features"] == ["user_engagement:a", "user_engagement:b"]
    assert "lag p50 2.0m, p95 10.0m" in found[0]["message"]
    assert "past the view's ttl (1.0d)" in found[1]["message"]


def test_rows_both_stale_and_expired_are_the_stale_finding() -> None:
    """A row served past its ttl while offline had a newer row is one cause (materialization
    did not refresh it): the stale finding. Only expired rows with nothing newer offline make
    an expired finding of their own."""
    both = view(
        stale_rows=60,
        stale_rate=0.06,
        expired_rows=60,
        expired_rate=0.06,
        expired_not_stale_rate=0.0,
    )
    assert kinds(view_findings(both, with_schema(NAMES), DEFAULTS)) == [("stale_serving", "fail")]
    apart = view(expired_rows=60, expired_rate=0.06, expired_not_stale_rate=0.06)
    assert kinds(view_findings(apart, with_schema(NAMES), DEFAULTS)) == [
        ("expired_serving", "fail")
    ]


def test_views_with_few_rows_or_on_demand_have_no_row_findings() -> None:
    stale = {"stale_rows": 60, "stale_rate": 0.06}
    assert view_findings(view(samples=29, **stale), with_schema(NAMES), DEFAULTS) == []
    assert view_findings(view(on_demand=True, **stale), with_schema(NAMES), DEFAULTS) == []


def test_a_schema_changed_since_serving_is_one_view_finding() -> None:
    changed = feature(
        "user_engagement:a",
        declared="Float32",
        online_type="float32",
        declared_at_serving=["Float64"],
    )
    found = view_findings(view(), with_schema([changed, NAMES[1]]), DEFAULTS)
    assert kinds(found) == [("schema_divergence", "fail")]
    assert found[0]["evidence"]["features"] == ["user_engagement:a"]
    assert found[0]["evidence"]["declared_at_serving"] == {"user_engagement:a": ["Float64"]}


@pytest.mark.parametrize(
    ("lags", "severity", "named"),
    [
        ({"served_lag_seconds": {"p95": 50_000.0}}, "fail", "served p95"),
        ({"materialization_lag_seconds": 50_000.0}, "fail", "materialization"),
        ({"source_lag_seconds": 50_000.0}, "warn", "source"),
        (
            {"materialization_lag_seconds": 50_000.0, "source_lag_seconds": 60_000.0},
            "fail",
            "materialization",
        ),
        ({"slo_seconds": None, "source_lag_seconds": 1e9}, None, None),
    ],
)
def test_freshness_against_the_slo(lags: dict[str, Any], severity: str | None, named: str) -> None:
    """Over the SLO on what serving sees fails, and the message names that lag; a late source
    alone only warns (training data is late too)."""
    found = freshness_findings(view(**lags))
    if severity is None:
        assert found == []
        return
    (finding,) = found
    assert (finding["kind"], finding["severity"]) == ("freshness_slo", severity)
    assert finding["message"].startswith(f"{named} lag"), finding["message"]
    assert "over the 12.0h SLO (tag)" in finding["message"]


# --- the report ---------------------------------------------------------------------------


def test_a_healthy_report() -> None:
    got = report(
        [feature()],
        [view()],
        notes=["a note"],
        skipped={"bad row": 2},
        timings={"total_seconds": 1.5},
    )
    assert got["schema_version"] == SCHEMA_VERSION == 1
    assert got["status"] == "ok" and got["findings"] == [] and exit_code(got) == 0
    assert got["run_id"] == run_id_for("video_recs", *WINDOW)
    assert got["window"] == {"start": WINDOW[0].isoformat(), "end": WINDOW[1].isoformat()}
    assert got["samples"] == 1000 and got["thresholds"] == DEFAULTS.model_dump()
    assert (got["notes"], got["skipped_rows"], got["timings"]) == (
        ["a note"],
        {"bad row": 2},
        {"total_seconds": 1.5},
    )
    (row,) = got["features"]
    assert row["status"] == "ok" and row["schema"]["diverged"] is False
    for internal in ("declared", "online_type", "offline_type", "fill_value_hashes"):
        assert internal not in row
    (v,) = got["feature_views"]
    assert v["status"] == "ok" and "served_lag_sample" not in v
    assert sum(v["served_lag_histogram"]["counts"]) == 10
    json.dumps(got, allow_nan=False)


def test_findings_are_sorted_worst_first_then_by_kind_and_target() -> None:
    features = [
        feature("user_engagement:b", mismatches=2, mismatch_rate=0.002),  # warn
        feature("user_engagement:a", mismatches=50, mismatch_rate=0.05),  # fail
        feature("video_stats:c", online_type="string", feature_view="video_stats"),  # fail
    ]
    got = report(features, [view(), view("video_stats")])
    assert [(f["severity"], f["kind"], f["feature"]) for f in got["findings"]] == [
        ("fail", "schema_divergence", "video_stats:c"),
        ("fail", "value_mismatch", "user_engagement:a"),
        ("warn", "value_mismatch", "user_engagement:b"),
    ]
    assert got["status"] == "fail" and exit_code(got) == 1
    statuses = {f["feature"]: f["status"] for f in got["features"]}
    assert statuses == {
        "user_engagement:a": "fail",
        "user_engagement:b": "warn",
        "video_stats:c": "fail",
    }
    assert [f["feature"] for f in got["features"]] == sorted(statuses)


def test_one_cause_one_finding_drift_of_stale_rows_is_folded_into_the_stale_finding() -> None:
    stale_view = view(stale_rows=100, stale_rate=0.1, stale_lag_seconds={"p50": 60.0, "p95": 90.0})
    got = report([drifting(0.3), feature("user_engagement:sessions")], [stale_view])
    assert kinds(got["findings"]) == [("stale_serving", "fail")]
    (stale,) = got["findings"]
    assert [f["kind"] for f in stale["evidence"]["folded"]] == ["distribution_drift"]
    assert stale["evidence"]["folded"][0]["feature"] == "user_engagement:watch_minutes"
    rows = {f["feature"]: f["status"] for f in got["features"]}
    # the drifting feature shows the severity of what was folded; its neighbour stays ok
    assert rows == {"user_engagement:watch_minutes": "fail", "user_engagement:sessions": "ok"}
    assert got["feature_views"][0]["status"] == "fail"


def test_drift_folded_into_the_features_own_finding_stays_in_its_evidence() -> None:
    got = report([drifting(0.3, mismatches=50, mismatch_rate=0.05)], [view()])
    (mismatch,) = got["findings"]
    assert mismatch["kind"] == "value_mismatch"
    assert [f["kind"] for f in mismatch["evidence"]["folded"]] == ["distribution_drift"]


def test_a_feature_with_too_few_rows_is_insufficient_data_and_not_ok() -> None:
    got = report([feature(rows=10, compared=10, offline_rows=10)], [view(samples=10)])
    assert got["features"][0]["status"] == "insufficient_data"
    assert got["status"] == "ok" and got["findings"] == []


def test_freshness_findings_do_not_fold_anything() -> None:
    late = view(materialization_lag_seconds=50_000.0)
    got = report([drifting(0.3)], [late])
    assert sorted(kinds(got["findings"])) == [
        ("distribution_drift", "fail"),
        ("freshness_slo", "fail"),
    ]


def test_lag_histogram_bins() -> None:
    got = lag_histogram([-1.0, 0.0, 59.0, 60.0, 3600.0, 10**7])
    assert got["edges"] == LAG_EDGES and len(got["counts"]) == len(LAG_EDGES) + 1
    assert got["counts"][0] == 1  # negative lags (clock skew) have their own bin
    assert got["counts"][1] == 2 and got["counts"][2] == 1 and got["counts"][-1] == 1
    assert sum(got["counts"]) == 6 and got["labels"][0] == "<0"
