"""Cohort slices (feast_parity.parity.cohorts): a feature's parity metrics per value of a
configured dimension (a feature's offline value, a join-key bucket).

A fault confined to one cohort (the users of one country) hardly moves a feature's aggregate
rates; the check keeps bounded counters per cohort, ranks cohorts by how far they sit above the
aggregate, and turns a cohort that crosses a fail threshold, and is unlikely under the
aggregate rate, into a finding with a ``cohort`` field. The same fault in a real demo repo is
tests/e2e/test_cohorts_e2e.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from scipy.stats import binom

from feast_parity.parity.cohort_findings import binomial_pvalue, cohort_findings, rank_cohorts
from feast_parity.parity.cohorts import (
    NULL,
    OTHER,
    CohortCounters,
    CohortSlices,
    entity_hashes,
    key_label,
    parse_dimension,
    parse_dimensions,
    value_label,
)
from feast_parity.parity.columns import canonical_column
from feast_parity.parity.feature import FeatureComparison
from feast_parity.parity.report import build_report
from feast_parity.parity.served import FIELD_STATUS_PRESENT, ServedFeature
from feast_parity.parity.view import RowOutcomes
from feast_parity.plugin.config import ParityConfig, ParityConfigError
from feast_parity.render import render_html, render_text

THRESHOLDS = SimpleNamespace(
    mismatch_fail=0.2, stale_fail=0.05, silent_default_fail=0.05, mismatch_warn=0.05
)

# -- syntax and configuration -------------------------------------------------------------------


def test_dimension_syntax() -> None:
    dim = parse_dimension("user_engagement:country")
    assert (dim.feature_view, dim.feature, dim.is_key) == ("user_engagement", "country", False)
    dim = parse_dimension(" key:user_id%10 ")
    assert (dim.spec, dim.key, dim.method, dim.buckets) == ("key:user_id%10", "user_id", "mod", 10)
    dim = parse_dimension("key:hash(video_id)%16")
    assert (dim.key, dim.method, dim.buckets, dim.feature_ref) == ("video_id", "hash", 16, None)
    for bad, reason in [
        ("country", "expected 'view:feature'"),
        ("user_id%10", "expected 'view:feature'"),
        ("key:user_id", "expected 'key:<join key>%<n>'"),
        ("key:user_id%0", "between 2 and 10000"),
        ("key:hash(user_id)%100000", "between 2 and 10000"),
        ("a:b:c", "expected 'view:feature'"),
        (3, "expected a string"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_dimension(bad)
    with pytest.raises(ValueError, match="listed twice"):
        parse_dimensions(["v:f", "key:k%2", "v:f"])


def test_config_block_from_yaml_and_errors_name_the_key() -> None:
    block = yaml.safe_load(
        """
        cohorts:
          dimensions: [user_engagement:country, key:user_id%10, key:hash(user_id)%16]
          top_k: 3
          min_rows: 20
        """
    )
    cohorts = ParityConfig.from_mapping(block).cohorts
    assert cohorts.dimensions == [
        "user_engagement:country",
        "key:user_id%10",
        "key:hash(user_id)%16",
    ]
    assert (cohorts.top_k, cohorts.min_rows, cohorts.max_cohorts) == (3, 20, 50)
    assert ParityConfig.from_mapping({}).cohorts.dimensions == []
    for block, message in [
        ({"dimensions": ["country"]}, r"^parity\.cohorts\.dimensions: 'country': expected"),
        ({"dimensions": "v:f"}, r"^parity\.cohorts\.dimensions: Input should be a valid list"),
        ({"top_k": 0}, r"^parity\.cohorts\.top_k: "),
        ({"min_rows": 0}, r"^parity\.cohorts\.min_rows: "),
        ({"max_pvalue": 0}, r"^parity\.cohorts\.max_pvalue: "),
        ({"dimension": ["v:f"]}, r"^parity\.cohorts\.dimension: unknown key$"),
    ]:
        with pytest.raises(ParityConfigError, match=message) as caught:
            ParityConfig.from_mapping({"cohorts": block})
        assert "\n" not in str(caught.value)


# -- labels -------------------------------------------------------------------------------------


def test_key_buckets_are_stable_and_spelling_independent() -> None:
    mod = parse_dimension("key:user_id%10")
    assert [key_label(v, mod) for v in (1043, "1043", -7, 0, "x", None, 2.5)] == [
        "3",
        "3",
        "3",
        "0",
        NULL,
        NULL,
        NULL,
    ]
    hashed = parse_dimension("key:hash(user_id)%8")
    labels = [key_label(v, hashed) for v in range(8000)]
    assert labels == [key_label(str(v), hashed) for v in range(8000)]
    counts = np.bincount([int(x) for x in labels], minlength=8)
    assert counts.min() > 850 and counts.max() < 1150  # about uniform
    assert key_label("user-a", hashed) == key_label("user-a", hashed) != NULL


def test_value_labels() -> None:
    assert [value_label(v) for v in ("JP", np.int64(3), 3.0, True, None, np.nan, b"\x01")] == [
        "JP",
        "3",
        "3",
        "true",
        NULL,
        NULL,
        "01",
    ]


def test_entity_hashes_use_the_view_keys_only() -> None:
    rows = [{"user_id": 1, "video_id": 5}, {"user_id": "1", "video_id": 6}, {"user_id": 2}]
    by_user = entity_hashes(rows, ["user_id"])
    assert by_user[0] == by_user[1] != by_user[2]
    by_row = entity_hashes(rows, None)
    assert by_row[0] != by_row[1]


# -- bounded counters ---------------------------------------------------------------------------


def _outcomes(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    compared = rng.random(n) < 0.9
    return {
        "compared": compared,
        "differs": compared & (rng.random(n) < 0.1),
        "stale": rng.random(n) < 0.05,
        "offline_real": rng.random(n) < 0.95,
        "online_null": rng.random(n) < 0.02,
    }


def _totals(slices: CohortSlices, dim: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in slices.tables[dim].values():
        for name in ("rows", "compared", "raw_mismatches", "stale_rows", "online_nulls"):
            out[name] = out.get(name, 0) + getattr(c, name)
    return out


def test_counts_add_up_and_cohorts_stay_bounded_with_an_other_bucket() -> None:
    rng = np.random.default_rng(3)
    slices = CohortSlices(max_cohorts=5)
    whole = {"rows": 0, "compared": 0, "raw_mismatches": 0, "stale_rows": 0, "online_nulls": 0}
    for _ in range(6):
        n = 500
        out = _outcomes(n, rng)
        # a skewed distribution of 40 labels: a few large cohorts, many small ones
        labels = np.asarray([f"c{int(x)}" for x in rng.zipf(1.6, n) % 40], dtype=object)
        slices.update({"dim": labels}, **out)
        whole["rows"] += n
        whole["compared"] += int(out["compared"].sum())
        whole["raw_mismatches"] += int(out["differs"].sum())
        whole["stale_rows"] += int(out["stale"].sum())
        whole["online_nulls"] += int(out["online_null"].sum())
        assert len(slices.tables["dim"]) <= 2 * 5 + 1
    result = slices.result()
    cohorts = result["dim"]["cohorts"]
    assert len(cohorts) == 6 and OTHER in cohorts  # top 5 by rows + (other)
    assert _totals(slices, "dim") == whole
    biggest = sorted((c["rows"] for k, c in cohorts.items() if k != OTHER), reverse=True)
    assert biggest[0] >= biggest[-1] and result["dim"]["merged"] > 0


def test_merge_of_two_partitions_equals_one_pass() -> None:
    rng = np.random.default_rng(5)
    chunks = []
    for _ in range(4):
        out = _outcomes(300, rng)
        labels = np.asarray(rng.choice(["a", "b", "c"], 300), dtype=object)
        units = rng.integers(0, 50, 300).astype(np.uint64)
        chunks.append((labels, out, units))
    one, left, right = CohortSlices(), CohortSlices(), CohortSlices()
    for i, (labels, out, units) in enumerate(chunks):
        one.update({"d": labels}, entity_hashes=units, **out)
        (left if i % 2 else right).update({"d": labels}, entity_hashes=units, **out)
    left.merge(right)
    assert left.result() == one.result()


def test_distinct_entities_are_exact_when_small_and_estimated_when_large() -> None:
    c = CohortCounters()
    c.add_entities(np.asarray([1, 2, 2, 3], dtype=np.uint64))
    assert c.entities() == 3
    big = CohortCounters()
    hashes = np.random.default_rng(0).integers(0, 2**64, 20_000, dtype=np.uint64)
    for part in np.array_split(hashes, 7):
        big.add_entities(np.concatenate([part, part]))  # duplicates do not count
    assert big.entities() == pytest.approx(20_000, rel=0.3)
    assert len(big.entity_hashes) == 128


def _current_rows(n: int) -> RowOutcomes:
    """n rows, each with an offline row at the served event time, none stale or expired."""
    no = np.zeros(n, dtype=bool)
    yes = np.ones(n, dtype=bool)
    return RowOutcomes(yes, no, no, no, no, no, yes, np.zeros(n), np.zeros(n))


def test_fill_values_of_the_feature_apply_to_cohorts() -> None:
    """A cohort served 0.0 in place of real values: silent defaults, not mismatches, exactly
    as the aggregate counts them."""
    n = 200
    offline = [float(i) + 0.5 for i in range(n)]
    country = np.asarray(["JP" if i % 5 == 0 else "US" for i in range(n)], dtype=object)
    online = [0.0 if c == "JP" else v for v, c in zip(offline, country)]
    values = canonical_column(online, "Float64")
    served = ServedFeature(
        "Float64",
        values,
        np.full(n, FIELD_STATUS_PRESENT, dtype=np.int8),
        values.hashes(),
        np.full(n, "double_val", dtype=object),
        {"Float64": n},
    )
    comparison = FeatureComparison("v:f", "Float64")
    comparison.update(
        served,
        canonical_column(offline, "Float64"),
        canonical_column(offline, "Float64"),
        _current_rows(n),
        cohort_labels={"v:country": country},
        cohort_entities=entity_hashes([{"id": i} for i in range(n)], None),
    )
    result = comparison.result(ratio=5.0, min_share=0.05, min_rows=3)
    assert result["fill_values"] == [0.0] and result["mismatches"] == 0
    jp = result["cohort_slices"]["v:country"]["cohorts"]["JP"]
    us = result["cohort_slices"]["v:country"]["cohorts"]["US"]
    assert (jp["silent_defaults"], jp["silent_default_rate"], jp["mismatches"]) == (40, 1.0, 0)
    assert (us["silent_defaults"], us["mismatches"]) == (0, 0)
    assert jp["entities"] == 40 and us["entities"] == pytest.approx(160, rel=0.2)  # KMV above 128
    top = rank_cohorts(result["cohort_slices"], result, top_k=3, min_rows=30)
    assert [(c["label"], c["metric"]) for c in top] == [("v:country=JP", "silent_default_rate")]
    assert top[0]["silent_default_share"] == 1.0
    assert top[0]["silent_default_delta"] == pytest.approx(0.8)


# -- ranking and findings -----------------------------------------------------------------------


def _slices(cohorts: dict[str, tuple[int, int, int]]) -> tuple[dict, dict]:
    """{label: (compared, mismatches, entities)} -> (slices of one dimension, aggregate)."""
    table = {}
    for label, (compared, mismatches, entities) in cohorts.items():
        c = CohortCounters(rows=compared, compared=compared, raw_mismatches=mismatches)
        c.offline_real = compared
        c.entities_tracked = True
        c.entity_hashes = np.arange(entities, dtype=np.uint64)
        table[label] = c.stats()
    compared = sum(v[0] for v in cohorts.values())
    mismatches = sum(v[1] for v in cohorts.values())
    aggregate = {
        "compared": compared,
        "mismatches": mismatches,
        "mismatch_rate": mismatches / compared,
        "stale_rate": 0.0,
        "silent_default_rate": 0.0,
        "silent_defaults": 0,
    }
    return {"d": {"cohorts": table, "merged": 0}}, aggregate


def test_a_confined_fault_is_the_top_cohort_and_a_finding() -> None:
    slices, aggregate = _slices(
        {"JP": (100, 100, 20), "US": (500, 0, 100), "BR": (300, 0, 60), "XX": (10, 5, 2)}
    )
    assert aggregate["mismatch_rate"] == pytest.approx(105 / 910)
    top = rank_cohorts(slices, aggregate, top_k=5, min_rows=30)
    assert [c["label"] for c in top] == ["d=JP"]  # XX is below min_rows; US/BR below aggregate
    assert top[0]["mismatch_share"] == pytest.approx(100 / 105)
    found = cohort_findings("v:f", slices, aggregate, THRESHOLDS, min_rows=30)
    assert [(f["kind"], f["severity"], f["cohort"]["value"]) for f in found] == [
        ("value_mismatch", "fail", "JP")
    ]
    evidence = found[0]["evidence"]
    assert evidence["cohort"] == found[0]["cohort"]
    assert (evidence["mismatches"], evidence["compared"], evidence["entities"]) == (100, 100, 20)
    assert evidence["pvalue"] < 1e-6 and "cohort d=JP" in found[0]["message"]


def test_no_cohort_finding_for_an_even_fault_noise_or_one_repeated_entity() -> None:
    # the same rate everywhere: the aggregate's finding, not one per cohort
    even, aggregate = _slices({"a": (300, 150, 60), "b": (300, 150, 60)})
    assert cohort_findings("v:f", even, aggregate, THRESHOLDS, min_rows=30) == []
    # above the fail threshold, but 12 of 40 rows at a 10 % aggregate rate is chance
    noise, aggregate = _slices({"a": (40, 12, 40), "b": (960, 88, 900)})
    assert binomial_pvalue(12, 40, aggregate["mismatch_rate"]) > 1e-6
    assert cohort_findings("v:f", noise, aggregate, THRESHOLDS, min_rows=30) == []
    # 60 mismatching rows, but from 3 users served 20 times each: weak evidence
    clustered, aggregate = _slices({"a": (60, 60, 3), "b": (2000, 60, 1000)})
    assert cohort_findings("v:f", clustered, aggregate, THRESHOLDS, min_rows=30) == []
    spread, aggregate = _slices({"a": (60, 60, 60), "b": (2000, 60, 1000)})
    assert len(cohort_findings("v:f", spread, aggregate, THRESHOLDS, min_rows=30)) == 1


def test_binomial_pvalue_matches_scipy_on_integers() -> None:
    for k, n, p in [(1, 30, 0.005), (12, 40, 0.1), (100, 100, 0.1), (5, 1000, 0.01)]:
        assert binomial_pvalue(k, n, p) == pytest.approx(binom.sf(k - 1, n, p), rel=1e-9)
    assert binomial_pvalue(10, 10, 1.0) == 1.0 and binomial_pvalue(0, 10, 0.3) == 1.0


def test_report_without_cohorts_is_unchanged_and_with_cohorts_has_sections() -> None:
    slices, aggregate = _slices({"JP": (100, 100, 20), "US": (500, 0, 100)})
    base = {
        "feature": "v:f",
        "feature_view": "v",
        "rows": 600,
        "offline_rows": 600,
        "stale_rate": 0.0,
        "silent_default_rate": 0.0,
        "silent_defaults": 0,
        "online_null_rate": 0.0,
        "offline_null_rate": 0.0,
        "declared": "Float64",
        "online_type": "float64",
        "offline_type": "float64",
        "declared_at_serving": ["Float64"],
        **{k: aggregate[k] for k in ("compared", "mismatches", "mismatch_rate")},
    }
    thresholds = ParityConfig.from_mapping(
        {"thresholds": {"mismatch_warn": 0.05, "mismatch_fail": 0.2}}
    ).thresholds
    common: dict = {
        "window": (
            datetime(2026, 1, 1, tzinfo=timezone.utc),
            datetime(2026, 1, 2, tzinfo=timezone.utc),
        ),
        "samples": 600,
        "views": [],
        "thresholds": thresholds,
        "project": "p",
    }
    plain = build_report(features=[{**base, "cohort_slices": slices}], **common)
    assert "cohorts" not in plain and "cohorts" not in plain["features"][0]
    assert "cohort_slices" not in plain["features"][0] and plain["status"] == "warn"
    config = ParityConfig.from_mapping({"cohorts": {"dimensions": ["d:x"]}}).cohorts
    report = build_report(features=[{**base, "cohort_slices": slices}], cohorts=config, **common)
    row = report["features"][0]
    assert row["status"] == "fail" and row["cohorts"][0]["label"] == "d=JP"
    assert row["cohort_dimensions"]["d"]["cohorts"] == 2
    assert report["cohorts"]["dimensions"] == ["d:x"] and report["cohorts"]["top"][0]["feature"]
    kinds = [(f["kind"], f["severity"], "cohort" in f) for f in report["findings"]]
    assert kinds == [("value_mismatch", "fail", True), ("value_mismatch", "warn", False)]
    json.dumps(report, allow_nan=False)
    assert "d=JP" in render_text(report) and "d=JP" in render_html(report)
