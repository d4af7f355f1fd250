"""One feature's comparison, and the pieces it is made of (feast_parity.parity.feature and
parity.fills, parity.magnitude, parity.reservoir, parity.view).

The check feeds ``FeatureComparison`` one chunk at a time: what was served (a ``ServedFeature``),
the offline values at request time and at the served event time, and the view's row outcomes
(``view.classify``). The row rules of the feature module's docstring are restated here as a
plain row-by-row reference and the engine must agree with it on random data; the other
sections pin fill values, skew magnitude, reservoirs and the row outcomes of a view on small
hand-built examples.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
import scipy.stats

from feast_parity.parity.columns import canonical_column, row_hashes
from feast_parity.parity.edges import EDGE_ROWS
from feast_parity.parity.feature import FeatureComparison
from feast_parity.parity.fills import TALLY_CAP, FillTallies
from feast_parity.parity.hashing import schema_fingerprint, value_hash
from feast_parity.parity.magnitude import SkewMagnitude
from feast_parity.parity.reservoir import RESERVOIR_SIZE, Reservoir
from feast_parity.parity.served import (
    FIELD_STATUS_INVALID,
    FIELD_STATUS_NOT_FOUND,
    FIELD_STATUS_NULL_VALUE,
    FIELD_STATUS_PRESENT,
    NO_TIME,
    ServedFeature,
    ServedRows,
)
from feast_parity.parity.sketches import NumericHistogram, quantile_edges
from feast_parity.parity.stats import psi, psi_critical_value
from feast_parity.parity.view import (
    OfflineRows,
    RowOutcomes,
    ViewComparison,
    classify,
    offline_row_hashes,
)

KINDS = {  # the protobuf value kind Feast serves for each declared type
    "Float32": "float_val",
    "Float64": "double_val",
    "Int64": "int64_val",
    "String": "string_val",
    "Bool": "bool_val",
    "Array(Int64)": "int64_list_val",
    "Array(Float64)": "double_list_val",
}
SECOND = 1_000_000  # event and request times are int64 microseconds
# scipy's exact KS falls back to the asymptotic p-value on heavily tied samples, with a warning
pytestmark = pytest.mark.filterwarnings(
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning"
)


# --- building a chunk by hand -------------------------------------------------------------


def served_feature(
    values: list[Any], declared: str = "Float64", status: list[int] | None = None
) -> ServedFeature:
    """What the log holds for one feature over n rows: the canonical values, Feast's
    FieldStatus (PRESENT for a value, NOT_FOUND for None unless given), the value hash logged
    at serving time and the protobuf kind that was served (None for a null)."""
    column = canonical_column(values, declared)
    if status is None:
        status = [FIELD_STATUS_PRESENT if v is not None else FIELD_STATUS_NOT_FOUND for v in values]
    kinds = [
        KINDS[declared] if s == FIELD_STATUS_PRESENT and v is not None else None
        for v, s in zip(values, status, strict=True)
    ]
    requested = sum(s != FIELD_STATUS_INVALID for s in status)
    return ServedFeature(
        declared,
        column,
        np.asarray(status, dtype=np.int8),
        column.hashes(),
        np.asarray(kinds, dtype=object),
        {declared: requested},
    )


def outcomes(n: int, **masks: Any) -> RowOutcomes:
    """Row outcomes of n rows: by default every row has an offline row at exactly the served
    event time and is current (not stale, expired, online-only or NOT_FOUND)."""

    def mask(name: str, default: bool) -> np.ndarray:
        given = masks.get(name)
        return np.full(n, default) if given is None else np.asarray(given, dtype=bool)

    stale = mask("stale", False)
    lag = np.asarray(masks.get("stale_lag", np.where(stale, 60.0, 0.0)), dtype=np.float64)
    return RowOutcomes(
        exact=mask("exact", True),
        stale=stale,
        expired=mask("expired", False),
        online_only=mask("online_only", False),
        not_found=mask("not_found", False),
        future=mask("future", False),
        offline_row=mask("offline_row", True),
        stale_lag=lag,
        age=np.zeros(n),
    )


def compare(
    online: list[Any],
    offline: list[Any],
    declared: str = "Float64",
    *,
    at_served: list[Any] | None = None,
    status: list[int] | None = None,
    comparison: FeatureComparison | None = None,
    **masks: Any,
) -> FeatureComparison:
    """Feed one chunk: served ``online`` values against ``offline`` values at request time
    (and, unless given, the same values at the served event time)."""
    comparison = comparison or FeatureComparison("v:f", declared)
    n = len(online)
    comparison.update(
        served_feature(online, declared, status),
        canonical_column(offline, declared),
        canonical_column(offline if at_served is None else at_served, declared),
        outcomes(n, **masks),
        entity_labels=[f"e{i}" for i in range(n)],
    )
    return comparison


def result(comparison: FeatureComparison) -> dict[str, Any]:
    """The result with the default thresholds of parity.thresholds."""
    return comparison.result(ratio=5.0, min_share=0.05, min_rows=3)


# --- the row rules against a row-by-row reference -----------------------------------------


def synthetic_rows(seed: int, n: int) -> list[dict[str, Any]]:
    """Rows of a Float64 feature: a fill value (0.0), NOT_FOUND, true skew, rows whose
    request did not ask for the feature, missing offline values, stale rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        real = float(rng.integers(0, 500)) + 0.25
        exact = bool(rng.random() < 0.9)
        kind, status = rng.random(), FIELD_STATUS_PRESENT
        if kind < 0.15:
            online: float | None = 0.0  # a fill value
        elif kind < 0.20:
            online, status = None, FIELD_STATUS_NOT_FOUND
        elif kind < 0.25:
            online = real + 1.0  # true skew
        elif kind < 0.28:
            online, status = real, FIELD_STATUS_INVALID  # not requested
        else:
            online = real
        rows.append(
            {
                "entity": f"e{i}",
                "online": online,
                "status": status,
                "at_request": None if rng.random() < 0.05 else real,
                "exact": exact,
                "at_served": real if exact else None,
                "stale": bool(rng.random() < 0.1),
            }
        )
    return rows


def reference_result(rows: list[dict[str, Any]], min_share: float = 0.05) -> dict[str, Any]:
    """The row rules of feast_parity.parity.feature, one row at a time, for a Float64 feature
    whose values are plain floats (so Python ``==`` is the canonical equality)."""
    asked = [r for r in rows if r["status"] != FIELD_STATUS_INVALID]
    out = Counter()
    served, offline, replaced, replaced_mismatch = Counter(), Counter(), Counter(), Counter()
    raw_mismatch_rows = []
    for r in asked:
        online_null = r["online"] is None or r["status"] != FIELD_STATUS_PRESENT
        offline_real = r["at_request"] is not None
        both_null = online_null and r["at_served"] is None
        same = both_null or (not online_null and r["online"] == r["at_served"])
        differs = r["exact"] and not same
        null_default = online_null and offline_real
        raw_mismatch = differs and not null_default
        out["compared"] += r["exact"]
        out["online_nulls"] += online_null
        out["offline_real"] += offline_real
        out["null_defaults"] += null_default
        out["raw_mismatches"] += raw_mismatch
        out["stale"] += r["stale"]
        if raw_mismatch:
            raw_mismatch_rows.append(r)
        if not online_null and offline_real:  # the fill-value tallies
            served[r["online"]] += 1
            offline[r["at_request"]] += 1
            if r["online"] != r["at_request"]:
                replaced[r["online"]] += 1
                replaced_mismatch[r["online"]] += raw_mismatch
    needed = max(3, min_share * out["offline_real"])
    fills = [v for v in replaced if replaced[v] >= needed and served[v] >= 5.0 * max(offline[v], 1)]
    n = len(asked)
    return {
        "rows": n,
        "compared": out["compared"],
        "offline_rows": out["offline_real"],
        "fill_values": fills,
        "silent_defaults": out["null_defaults"] + sum(replaced[v] for v in fills),
        "mismatches": out["raw_mismatches"] - sum(replaced_mismatch[v] for v in fills),
        "stale_rows": out["stale"],
        "online_null_rate": out["online_nulls"] / n,
        "offline_null_rate": (n - out["offline_real"]) / n,
        # examples: of the first 4 x 5 raw mismatches, those that are not fill-value rows
        "examples": [r for r in raw_mismatch_rows[:20] if r["online"] not in fills][:5],
    }


@pytest.mark.parametrize("chunks", [1, 3, 7])
def test_the_comparison_equals_the_row_by_row_reference(chunks: int) -> None:
    rows = synthetic_rows(7, 3000)
    comparison = FeatureComparison("v:f", "Float64")
    for part in np.array_split(np.arange(len(rows)), chunks):
        sub = [rows[i] for i in part]
        comparison.update(
            served_feature([r["online"] for r in sub], "Float64", [r["status"] for r in sub]),
            canonical_column([r["at_request"] for r in sub], "Float64"),
            canonical_column([r["at_served"] for r in sub], "Float64"),
            outcomes(len(sub), exact=[r["exact"] for r in sub], stale=[r["stale"] for r in sub]),
            entity_labels=[r["entity"] for r in sub],
        )
    got, want = result(comparison), reference_result(rows)
    assert want["fill_values"] == [0.0]  # the scenario is what it claims to be
    for key in (
        "rows",
        "compared",
        "offline_rows",
        "fill_values",
        "silent_defaults",
        "mismatches",
        "stale_rows",
        "online_null_rate",
        "offline_null_rate",
    ):
        assert got[key] == pytest.approx(want[key]), key
    assert got["silent_default_rate"] == pytest.approx(
        want["silent_defaults"] / want["offline_rows"]
    )
    assert got["mismatch_rate"] == pytest.approx(want["mismatches"] / want["compared"])
    # examples: early rows that stay value mismatches, never a fill value's row
    assert got["mismatch_examples"] and [e["entity"] for e in got["mismatch_examples"]] == [
        r["entity"] for r in want["examples"]
    ]
    for example, row in zip(got["mismatch_examples"], want["examples"], strict=True):
        assert (example["online"], example["offline"]) == (row["online"], row["at_served"])


def test_only_rows_whose_request_asked_for_the_feature_count() -> None:
    """Feature services project subsets of a view: a row that did not ask for the feature
    (status 0) counts nowhere, not even as a null."""
    asked = [FIELD_STATUS_PRESENT, FIELD_STATUS_INVALID, FIELD_STATUS_INVALID, FIELD_STATUS_PRESENT]
    got = result(compare([1.0, None, 9.0, 2.0], [1.0, 5.0, 5.0, 3.0], status=asked))
    assert (got["rows"], got["compared"], got["offline_rows"]) == (2, 2, 2)
    assert (got["mismatches"], got["silent_defaults"], got["online_null_rate"]) == (1, 0, 0.0)


def test_float32_values_compare_at_float32_precision() -> None:
    offline = [0.1, 0.2, 0.3]
    online = [float(np.float32(v)) for v in offline]
    assert result(compare(online, offline, "Float32"))["mismatches"] == 0
    assert result(compare(online, offline, "Float64"))["mismatches"] == 3


def test_an_int_feature_widened_to_float_offline_is_no_mismatch() -> None:
    got = result(compare([1, 2, None, 4], [1.0, 2.0, None, 5.0], "Int64"))
    assert got["compared"] == 4 and got["mismatches"] == 1  # 4 vs 5 only; null == null


def test_nulls_and_not_found_where_offline_is_real_are_silent_defaults() -> None:
    status = [
        FIELD_STATUS_PRESENT,
        FIELD_STATUS_NULL_VALUE,
        FIELD_STATUS_NOT_FOUND,
        FIELD_STATUS_PRESENT,
    ]
    got = result(compare([1.0, None, None, None], [1.0, 2.0, 3.0, None], status=status))
    # the null served on row 3 has no real offline value: not a default, and null == null
    assert (got["silent_defaults"], got["offline_rows"], got["mismatches"]) == (2, 3, 0)
    assert got["online_null_rate"] == 0.75 and got["offline_null_rate"] == 0.25


def test_a_value_mismatch_needs_an_offline_row_at_the_served_event_time() -> None:
    got = result(compare([1.0, 9.0, 9.0], [1.0, 2.0, 3.0], exact=[True, True, False]))
    assert (got["compared"], got["mismatches"]) == (2, 1)


def test_rows_served_from_rows_that_exist_only_online_are_counted_apart() -> None:
    """A value pushed or written online only (no offline row at its event time, none newer):
    not a default standing in for the older offline value, and not compared."""
    online_only = [True] * 10 + [False] * 40
    exact = [not o for o in online_only]
    got = result(compare([9.0] * 10 + [1.0] * 40, [1.0] * 50, online_only=online_only, exact=exact))
    assert got["online_only_rows"] == 10 and got["offline_rows"] == 40
    assert (got["fill_values"], got["silent_defaults"], got["mismatches"]) == ([], 0, 0)
    assert got["offline_null_rate"] == 0.0  # offline did have a value at request time


def test_stale_rows_and_their_lags() -> None:
    stale = [True, True, False, False]
    lags = [60.0, 120.0, 0.0, 0.0]
    got = result(compare([1.0] * 4, [1.0] * 4, stale=stale, stale_lag=lags))
    assert got["stale_rows"] == 2 and got["stale_rate"] == 0.5
    assert got["stale_lag_seconds"]["p50"] == pytest.approx(90.0)
    on_demand = FeatureComparison("v:f", "Float64", on_demand=True)
    got = result(compare([1.0] * 4, [1.0] * 4, stale=stale, comparison=on_demand))
    assert got["stale_rate"] is None and got["expired_rate"] is None


def test_categorical_counts_and_histograms() -> None:
    online = ["a", "b", None, "c", "", "", "a", "b", "", ""] * 30
    offline = ["a", "b", "x", "c", "d", "e", "a", "b", "f", "g"] * 30
    got = result(compare(online, offline, "String"))
    assert got["fill_values"] == [""]
    assert got["silent_defaults"] == 5 * 30  # 4 "" + 1 null per 10 rows
    assert got["mismatches"] == 0 and got["mismatch_examples"] == []
    assert got["online_type"] == "string"
    hist = got["histogram"]
    # bins are the offline labels (most frequent first), then "other"
    assert hist["labels"][:3] == ["a", "b", "c"] and hist["labels"][-1] == "other"
    counts = dict(zip(hist["labels"], hist["online"], strict=True))
    assert (counts["a"], counts["b"], counts["c"], counts["other"]) == (60, 60, 30, 120)
    assert sum(hist["offline"]) == 300


def test_bool_labels_are_true_and_false() -> None:
    got = result(compare([True, False, True, True], [True, False, False, True], "Bool"))
    assert set(got["histogram"]["labels"]) == {"True", "False", "other"}


# --- drift inside the comparison ----------------------------------------------------------


def test_drift_is_psi_on_reference_quantile_bins_of_the_current_rows() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    offline = rng.normal(size=n).tolist()
    online = (rng.normal(size=n) + 0.3).tolist()
    stale = rng.random(n) < 0.2  # stale rows say nothing about the values' own drift
    got = result(compare(online, offline, stale=stale))
    current = ~stale
    reference = np.asarray(offline)[current]
    served = np.asarray(online)[current]
    edges = quantile_edges(reference, bins=10)
    ref = NumericHistogram(edges).update(reference).counts
    cur = NumericHistogram(edges).update(served).counts
    assert got["psi"] == pytest.approx(psi(ref, cur), rel=1e-12)
    assert got["psi_critical"] == pytest.approx(psi_critical_value(ref, cur, seed=0))
    ks = scipy.stats.ks_2samp(reference, served)
    assert got["ks_statistic"] == pytest.approx(ks.statistic)
    assert got["ks_pvalue"] == pytest.approx(ks.pvalue)


def test_drift_bins_do_not_depend_on_the_chunking() -> None:
    """The bins are fixed by the first EDGE_ROWS offline values of the window, so a report
    never depends on how the log was chunked (one chunk of 60,000 rows, or nine)."""
    rng = np.random.default_rng(5)
    n = EDGE_ROWS + 10_000
    offline, online = rng.exponential(size=n), rng.exponential(size=n) * 1.1
    whole = result(compare(online.tolist(), offline.tolist()))
    chunked = FeatureComparison("v:f", "Float64")
    for part in np.array_split(np.arange(n), 9):
        compare(online[part].tolist(), offline[part].tolist(), comparison=chunked)
    by_chunks = result(chunked)
    assert by_chunks["histogram"]["edges"] == whole["histogram"]["edges"], "bins moved"
    assert by_chunks["histogram"] == whole["histogram"]
    assert by_chunks["psi"] == whole["psi"]
    # and they are the quantile edges of exactly the first EDGE_ROWS offline values
    assert whole["histogram"]["edges"] == quantile_edges(offline[:EDGE_ROWS], bins=10).tolist()


def test_lists_bytes_and_timestamps_get_no_histogram() -> None:
    got = result(compare([[1, 2]] * 40, [[1, 2]] * 40, "Array(Int64)"))
    assert got["psi"] is None and got["histogram"] is None and got["mismatches"] == 0


# --- fill values (parity.fills) -----------------------------------------------------------


def entity_rows(entities: int, per_entity: int) -> list[float]:
    """Offline values: each entity has its own real value, served ``per_entity`` times."""
    return [float(e) + 0.5 for e in range(entities) for _ in range(per_entity)]


@pytest.mark.parametrize(("replaced", "found"), [(10, True), (9, False)])
def test_a_value_replacing_real_values_on_min_share_of_rows_is_a_fill_value(
    replaced: int, found: bool
) -> None:
    """5 entities x 40 rows: fill_value_min_share 0.05 of 200 rows is 10 rows. -1.0 served in
    place of real values on 10 rows is a fill value; on 9 it is a skew (every other condition
    holds: 9 >= fill_value_min_rows and 9 >= 5 x max(offline count 0, 1))."""
    offline = entity_rows(5, 40)
    online = list(offline)
    for i in range(replaced):
        online[i * 20] = -1.0  # spread over the entities
    got = result(compare(online, offline))
    if found:
        assert got["fill_values"] == [-1.0]
        assert (got["silent_defaults"], got["mismatches"]) == (replaced, 0)
        assert got["silent_default_rate"] == pytest.approx(replaced / 200)
    else:
        assert got["fill_values"] == []
        assert (got["silent_defaults"], got["mismatches"]) == (0, replaced)


def test_a_configured_fill_value_applies_on_a_single_row() -> None:
    offline = entity_rows(5, 40)
    online = list(offline)
    online[0] = -1.0
    comparison = FeatureComparison("v:f", "Float64")
    comparison.fills.configured = frozenset({value_hash(-1, "Float64")})  # parity.fill_values
    got = result(compare(online, offline, comparison=comparison))
    assert got["fill_values"] == [-1.0] and got["silent_defaults"] == 1 and got["mismatches"] == 0


def test_a_configured_fill_value_that_never_replaced_a_real_value_is_not_reported() -> None:
    offline = [-1.0] * 10 + entity_rows(5, 10)
    comparison = FeatureComparison("v:f", "Float64")
    comparison.fills.configured = frozenset({value_hash(-1.0, "Float64")})
    assert result(compare(list(offline), offline, comparison=comparison))["fill_values"] == []


def test_a_common_real_value_is_not_a_fill_value() -> None:
    """0.0 is a real value on 30 % of rows; serving it on 20 more rows is skew, because it is
    not far more frequent online than offline (80 < 5 x 60)."""
    offline = [0.0] * 60 + entity_rows(140, 1)
    online = list(offline)
    for i in range(60, 80):
        online[i] = 0.0
    got = result(compare(online, offline))
    assert got["fill_values"] == [] and got["mismatches"] == 20 and got["silent_defaults"] == 0


def test_a_value_served_for_one_skewed_entity_among_many_is_not_a_fill_value() -> None:
    """One entity (out of 200) served 8 times with a skewed value: 8 rows are below
    fill_value_min_share of the 208 rows, so they stay value mismatches."""
    offline = entity_rows(200, 1) + [500.0] * 8
    online = entity_rows(200, 1) + [777.0] * 8
    got = result(compare(online, offline))
    assert got["fill_values"] == [] and got["mismatches"] == 8 and got["silent_defaults"] == 0


def test_fill_values_work_for_every_type_by_hash() -> None:
    offline = [[float(i), 1.0] for i in range(100)]
    online = [[0.0, 0.0] if i % 4 == 0 else v for i, v in enumerate(offline)]
    got = result(compare(online, offline, "Array(Float64)"))
    assert got["fill_values"] == [[0.0, 0.0]] and got["silent_defaults"] == 25


def _tally_chunk(tallies: FillTallies, online: list[int], offline: list[int]) -> None:
    on, off = np.asarray(online, dtype=np.uint64), np.asarray(offline, dtype=np.uint64)
    valid = np.ones(len(online), dtype=bool)
    tallies.update(on, valid, off, valid, on != off, values=lambda i: int(on[i]))


def test_tallies_merge_like_one_pass_and_keep_configured_values_past_the_cap() -> None:
    rng = np.random.default_rng(1)
    online = rng.integers(1, 3 * TALLY_CAP, 4000).tolist()
    offline = rng.integers(1, 3 * TALLY_CAP, 4000).tolist()
    online[:2] = [10_000, 10_000]  # a configured value, far too rare for the candidate cap
    one = FillTallies(configured=frozenset({10_000}))
    left, right = FillTallies(configured=one.configured), FillTallies(configured=one.configured)
    _tally_chunk(one, online[:2000], offline[:2000])
    _tally_chunk(one, online[2000:], offline[2000:])
    _tally_chunk(left, online[:2000], offline[:2000])
    _tally_chunk(right, online[2000:], offline[2000:])
    left.merge(right)
    counts = {h: (t.served, t.offline, t.replaced) for h, t in one.tallies.items()}
    assert {h: (t.served, t.offline, t.replaced) for h, t in left.tallies.items()} == counts
    assert counts[10_000] == (2, 0, 2)
    assert len(one.tallies) <= 2 * TALLY_CAP
    found = one.found(offline_rows=4000, min_share=0.05, min_rows=3, ratio=5.0)
    assert [t.hash for t in found] == [10_000]


# --- skew magnitude (parity.magnitude) ----------------------------------------------------


def test_skew_magnitude_by_hand() -> None:
    online = np.array([2.0, -3.0, 100.0, 0.0, np.inf, 5.0])
    offline = np.array([1.0, -3.3, 101.0, 0.0, 1.0, np.nan])  # the last two are not finite
    m = SkewMagnitude(relative_tolerance=0.01)
    m.update(online, offline)
    got = m.result()
    assert got is not None and got["rows"] == 4
    # SMAPE per row: 2|a-b|/(|a|+|b|) = 2/3, 0.6/6.3, 2/201, and 0 where both are 0
    assert got["smape"] == pytest.approx((2 / 3 + 0.6 / 6.3 + 2 / 201 + 0.0) / 4)
    # |a-b| <= 0.01 max(|a|, |b|): 1 <= 0.02 no, 0.3 <= 0.033 no, 1 <= 1.01 yes, 0 <= 0 yes
    assert got["within_tolerance_share"] == 0.5
    diffs = [1.0, 0.3, 1.0, 0.0]
    assert got["abs_diff"]["max"] == 1.0
    assert got["abs_diff"]["p50"] == pytest.approx(np.percentile(diffs, 50))
    assert got["abs_diff"]["p95"] == pytest.approx(np.percentile(diffs, 95))
    assert SkewMagnitude().result() is None


def test_magnitude_merge_of_two_halves_equals_one_pass() -> None:
    rng = np.random.default_rng(4)
    online, offline = rng.normal(10, 3, 4000), rng.normal(10, 3, 4000)
    one, left, right = SkewMagnitude(), SkewMagnitude(), SkewMagnitude(seed=1)
    one.update(online, offline)
    left.update(online[:1500], offline[:1500])
    right.update(online[1500:], offline[1500:])
    left.merge(right)
    a, b = left.result(), one.result()
    assert a is not None and b is not None
    assert (a["rows"], a["within_tolerance_share"], a["abs_diff"]["max"]) == (
        b["rows"],
        b["within_tolerance_share"],
        b["abs_diff"]["max"],
    )
    assert a["smape"] == pytest.approx(b["smape"], rel=1e-12)
    # every difference fits the sample, so the percentiles come from the same values
    assert a["abs_diff"]["p50"] == pytest.approx(b["abs_diff"]["p50"], rel=1e-12)
    assert a["abs_diff"]["p95"] == pytest.approx(b["abs_diff"]["p95"], rel=1e-12)


def test_a_merged_magnitude_sample_stays_uniform_over_both_halves() -> None:
    """Halves larger than the sample: 5,000 rows differing by 1 and 10,000 differing by 2.
    A uniform sample of the 15,000 differences holds 2 in two thirds of its slots."""
    small, large = SkewMagnitude(seed=1), SkewMagnitude(seed=2)
    small.update(np.full(5_000, 1.0), np.zeros(5_000))
    large.update(np.full(10_000, 2.0), np.zeros(10_000))
    small.merge(large)
    kept = small.sample.values
    share = float(np.mean(kept == 2.0))
    sigma = math.sqrt((2 / 3) * (1 / 3) / kept.size)
    assert abs(share - 2 / 3) < 5 * sigma, f"share of the larger half in the sample: {share:.3f}"


# --- reservoirs (parity.reservoir) --------------------------------------------------------


def test_reservoir_is_uniform_over_the_whole_stream_whatever_the_batches() -> None:
    n, k, trials = 300, 30, 3000
    hits = np.zeros(n)
    for seed in range(trials):
        r = Reservoir(size=k, seed=seed)
        for lo, hi in ((0, 20), (20, 45), (45, 200), (200, 201), (201, 300)):
            r.add(np.arange(lo, hi, dtype=np.float64))
        kept = r.values.astype(int)
        assert len(kept) == k and len(set(kept.tolist())) == k  # without replacement
        assert r.seen == n
        hits[kept] += 1
    expected = trials * k / n  # 300 per element
    # every element within ~5 standard deviations, and each stretch of the stream alike
    assert np.abs(hits - expected).max() < 5 * math.sqrt(expected)
    for lo, hi in ((0, 20), (45, 200), (201, 300)):
        assert hits[lo:hi].mean() == pytest.approx(expected, rel=0.05)
    chi2 = float(((hits - expected) ** 2 / expected).sum())
    assert chi2 < scipy.stats.chi2.ppf(1 - 1e-6, n - 1)  # chi-square with n - 1 dof


def test_reservoir_is_deterministic_and_salts_make_sides_independent() -> None:
    a, b = Reservoir(size=5, seed=1, salt=1), Reservoir(size=5, seed=1, salt=1)
    c = Reservoir(size=5, seed=1, salt=2)
    for batch in (np.arange(10.0), np.arange(10.0, 100.0)):
        a.add(batch)
        b.add(batch)
        c.add(batch)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_a_short_stream_is_kept_whole() -> None:
    r = Reservoir(size=10, seed=3)
    r.add([1.0, 2.0])
    r.add([])
    r.add([3.0])
    assert r.tolist() == [1.0, 2.0, 3.0] and len(r) == 3 and r.seen == 3


# --- row outcomes of a view (parity.view) -------------------------------------------------

T = 1_767_225_600 * SECOND  # request time of every row below: 2026-01-01T00:00:00Z


def served_rows(event_time: list[int], statuses: dict[str, list[int]]) -> ServedRows:
    """Sampled rows of view ``v``, all requested at T, with the given served event times and
    per-feature FieldStatus."""
    n = len(event_time)

    def objects(values: list[Any]) -> np.ndarray:
        out = np.empty(n, dtype=object)
        out[:] = values
        return out

    features = {
        name: served_feature(
            [1.0 if s == FIELD_STATUS_PRESENT else None for s in status], "Float64", status
        )
        for name, status in statuses.items()
    }
    layout = sorted(features)
    fingerprint = schema_fingerprint({f: "Float64" for f in layout})
    logged = row_hashes([features[f].hashes for f in layout], fingerprint)
    return ServedRows(
        feature_view="v",
        sample_ids=np.arange(n, dtype=np.int64),
        request_id=objects([f"r{i}" for i in range(n)]),
        request_time=np.full(n, T, dtype=np.int64),
        event_time=np.asarray(event_time, dtype=np.int64),
        keys={"id": objects(list(range(n)))},
        entity_key_hash=np.arange(n, dtype=np.uint64),
        feature_service=objects([None] * n),
        features=features,
        row_hash=logged,
        writer=objects(["host:1"] * n),
    )


def offline_rows(at_request_time: list[int], at_served_time: list[int], **kw: Any) -> OfflineRows:
    return OfflineRows(
        np.asarray(at_request_time, dtype=np.int64),
        {},
        np.asarray(at_served_time, dtype=np.int64),
        {},
        **kw,
    )


PRESENT, NOT_FOUND, ASKED_NOT = FIELD_STATUS_PRESENT, FIELD_STATUS_NOT_FOUND, FIELD_STATUS_INVALID


def ago(seconds: int) -> int:
    return T - seconds * SECOND


# One row of each outcome, ttl one hour. Per row: the served event time t_s, the offline
# point-in-time event time at the request t_o, the offline row at exactly t_s (t_e), and the
# FieldStatus of features a and b.
CASES = {
    "exact": (ago(100), ago(100), ago(100), (PRESENT, PRESENT)),
    "stale": (ago(100), ago(40), ago(100), (PRESENT, PRESENT)),  # offline had a newer row
    "expired": (ago(7200), NO_TIME, ago(7200), (PRESENT, PRESENT)),  # older than the ttl
    "online_only": (ago(50), NO_TIME, NO_TIME, (PRESENT, PRESENT)),  # pushed online only
    "not_found": (NO_TIME, ago(30), NO_TIME, (NOT_FOUND, NOT_FOUND)),
    "one_missing": (ago(10), ago(10), ago(10), (PRESENT, NOT_FOUND)),
    "b_not_asked": (NO_TIME, NO_TIME, NO_TIME, (NOT_FOUND, ASKED_NOT)),
}


def classified(ttl_seconds: float = 3600.0, **kw: Any) -> tuple[ServedRows, RowOutcomes]:
    names = list(CASES)
    served = served_rows(
        [CASES[c][0] for c in names],
        {"a": [CASES[c][3][0] for c in names], "b": [CASES[c][3][1] for c in names]},
    )
    offline = offline_rows([CASES[c][1] for c in names], [CASES[c][2] for c in names], **kw)
    return served, classify(served, offline, ttl_seconds)


def rows_where(mask: np.ndarray) -> list[str]:
    return [name for name, hit in zip(CASES, mask.tolist(), strict=True) if hit]


def test_classify_gives_each_row_its_outcome() -> None:
    _, got = classified()
    assert rows_where(got.exact) == ["exact", "stale", "expired", "one_missing"]
    assert rows_where(got.stale) == ["stale"]
    assert rows_where(got.expired) == ["expired"]
    assert rows_where(got.online_only) == ["online_only"]
    # NOT_FOUND is a whole-view outcome: every feature the row asked for was not found
    assert rows_where(got.not_found) == ["not_found", "b_not_asked"]
    assert rows_where(got.offline_row) == ["exact", "stale", "not_found", "one_missing"]
    assert rows_where(~got.current) == ["stale", "expired", "online_only"]
    lag = dict(zip(CASES, got.stale_lag.tolist(), strict=True))
    assert lag["stale"] == 60.0 and sum(lag.values()) == 60.0
    age = dict(zip(CASES, got.age.tolist(), strict=True))
    assert (age["exact"], age["expired"]) == (100.0, 7200.0) and math.isnan(age["not_found"])


def test_a_ttl_of_zero_never_expires_and_an_unreachable_store_makes_nothing_online_only() -> None:
    _, no_ttl = classified(ttl_seconds=0)
    assert not no_ttl.expired.any()
    _, unknown = classified(available=False)
    assert not unknown.online_only.any()


def test_view_comparison_counts_rates_and_lags() -> None:
    served, got = classified()
    view = ViewComparison("v")
    view.update(served, got, entity_labels=[f"e{i}" for i in range(len(CASES))])
    res = view.result()
    n = len(CASES)
    assert res["samples"] == n
    assert (res["stale_rows"], res["expired_rows"], res["online_only_rows"]) == (1, 1, 1)
    assert res["stale_rate"] == res["expired_rate"] == pytest.approx(1 / n)
    assert res["expired_not_stale_rate"] == pytest.approx(1 / n)  # the expired row is not stale
    assert (res["not_found_rows"], res["not_found_with_offline"]) == (2, 1)
    assert res["not_found_default_rate"] == pytest.approx(1 / n)
    assert res["stale_lag_seconds"]["p50"] == 60.0
    assert res["expired_age_seconds"]["p50"] == 7200.0
    # served lag: request time minus served event time, over rows that had one
    assert sorted(res["served_lag_sample"]) == [10.0, 50.0, 100.0, 100.0, 7200.0]
    (example,) = res["online_only_examples"]
    assert example["entity"] == "e3" and example["request_time"].startswith("2026-01-01T00:00:00")
    assert res["row_compared"] == 0 and res["row_match_rate"] is None


def test_row_match_rate_compares_logged_row_hashes_with_the_offline_values() -> None:
    """An exact row matches when the offline values at the served event time hash to the
    logged row hash over the features the row asked for."""
    served, got = classified()
    n = len(CASES)
    offline = offline_rows([T] * n, [T] * n)
    offline.at_served = {
        "a": canonical_column([1.0] * n, "Float64"),
        "b": canonical_column([1.0, 2.0] + [1.0] * (n - 2), "Float64"),  # row "stale" differs
    }
    view = ViewComparison("v")
    view.update(served, got, offline_row_hashes(served, offline))
    res = view.result()
    exact = int(got.exact.sum())
    # "exact" matches; "stale" has b = 2.0 offline; "expired" matches; "one_missing"
    # was served b as NOT_FOUND (null) while offline holds 1.0
    assert res["row_compared"] == exact == 4
    assert res["row_match_rate"] == pytest.approx(2 / 4)


def test_on_demand_views_have_no_stale_or_expired_rate() -> None:
    served, got = classified()
    view = ViewComparison("v", on_demand=True)
    view.update(served, got)
    assert view.result()["stale_rate"] is None and view.result()["expired_rate"] is None


def test_served_lags_are_a_uniform_sample_of_all_chunks() -> None:
    means = []
    for seed in range(20):
        view = ViewComparison("v", seed=seed)
        for lag in (0.0, 1.0):
            n = 30_000
            served = served_rows([T - int(lag * SECOND)] * n, {"a": [PRESENT] * n})
            view.update(served, classify(served, offline_rows([T] * n, [T] * n), 0))
        assert view.served_lag.seen == 60_000 and len(view.served_lag) == RESERVOIR_SIZE
        means.append(float(np.mean(view.served_lag.values)))
    assert np.mean(means) == pytest.approx(0.5, abs=0.01)  # resampling per chunk gave 0.6


def test_stale_lags_are_a_uniform_sample_of_all_chunks() -> None:
    view = ViewComparison("v")
    n = 15_000
    for lag in (100, 200, 300):
        served = served_rows([T - 1000 * SECOND] * n, {"a": [PRESENT] * n})
        newer = T - (1000 - lag) * SECOND
        view.update(served, classify(served, offline_rows([newer] * n, [NO_TIME] * n), 0))
    counts = Counter(view.stale_lag.values.tolist())
    assert sum(counts.values()) == RESERVOIR_SIZE
    for lag in (100.0, 200.0, 300.0):  # keeping the last 10,000 would give only 300 s
        assert counts[lag] / RESERVOIR_SIZE == pytest.approx(1 / 3, abs=0.03)


def test_a_row_served_with_an_event_time_after_its_request_is_future_and_not_current() -> None:
    served = served_rows([T + 30 * SECOND, ago(100)], {"a": [PRESENT, PRESENT]})
    offline = offline_rows([ago(5), ago(100)], [T + 30 * SECOND, ago(100)])
    got = classify(served, offline, 3600.0)
    assert got.future.tolist() == [True, False]
    assert got.exact.tolist() == [True, True]  # compared at its own event time
    assert got.current.tolist() == [False, True]  # never against the request-time row
    view = ViewComparison("v")
    view.update(served, got)
    assert view.result()["future_rows"] == 1


def test_the_magnitude_leaves_out_rows_whose_served_value_is_a_fill_value() -> None:
    """0.0 served in place of real values is a default; the true skew of other rows (+1.0)
    is what the magnitude describes."""
    n = 300
    offline = [float(10 + i % 50) for i in range(n)]
    online = [0.0 if i % 3 == 0 else (v + 1.0 if i % 3 == 1 else v) for i, v in enumerate(offline)]
    got = result(compare(online, offline))
    assert got["fill_values"] == [0.0]
    magnitude = got["mismatch_magnitude"]
    assert magnitude["rows"] == got["mismatches"] == n // 3
    assert magnitude["abs_diff"]["max"] == 1.0 and magnitude["abs_diff"]["p50"] == 1.0


def test_the_drift_confidence_sets_the_quantile_of_the_critical_value() -> None:
    rng = np.random.default_rng(11)
    online, offline = rng.normal(size=500).tolist(), rng.normal(size=500).tolist()
    low = result(
        compare(
            online, offline, comparison=FeatureComparison("v:f", "Float64", drift_confidence=0.9)
        )
    )
    high = result(
        compare(
            online, offline, comparison=FeatureComparison("v:f", "Float64", drift_confidence=0.99)
        )
    )
    assert low["psi"] == high["psi"]
    assert low["psi_critical"] < high["psi_critical"]
