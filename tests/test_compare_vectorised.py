"""The vectorised comparison engine against straightforward reference implementations.

compare.py computes equality, normalisation, fill-value tallies and reservoirs with numpy /
pandas / Arrow instead of per-value Python loops; these tests pin that the results are the ones
the plain definitions give (the references below are the previous per-value code, or a direct
transcription of docs/checks.md).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_parity.parity.compare import (
    RESERVOIR_SIZE,
    FeatureComparison,
    Reservoir,
    ViewFreshness,
    equal_values,
    normalize_scalars,
)
from feast_parity.plugin.check import decode_entity_keys, decode_feature_columns

# --- references: the per-value definitions ----------------------------------------------------


def ref_hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return tuple(ref_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), ref_hashable(v)) for k, v in value.items()))
    if hasattr(value, "tolist"):
        return ref_hashable(value.tolist())
    return value


def ref_normalize(values: list[Any], declared: str) -> np.ndarray:
    if declared in ("Float32", "Float64", "Int32", "Int64"):
        out = np.full(len(values), np.nan, dtype=np.float64)
        for i, v in enumerate(values):
            if v is None or isinstance(v, (str, bytes, list, dict)):
                continue
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                continue
        if declared == "Float32":
            out = out.astype(np.float32).astype(np.float64)
        return out + 0.0
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):  # element by element: tuples stay elements
        out[i] = ref_hashable(v)
    return out


def ref_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype == object or b.dtype == object:
        return np.asarray([x == y for x, y in zip(a, b)], dtype=bool)
    return (a == b) | (np.isnan(a) & np.isnan(b))


def same_normalized(got: np.ndarray, want: np.ndarray) -> bool:
    if got.dtype != object:
        return (
            want.dtype != object
            and bool(np.array_equal(got, want, equal_nan=True))
            and bool(np.array_equal(np.signbit(got), np.signbit(want)))
        )
    return len(got) == len(want) and all(type(x) is type(y) and (x == y) for x, y in zip(got, want))


# --- value strategies: None, NaN, +-0.0, values that round differently at float32, strings ----

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 0.1, 0.2, 1e-46, 3.4028235e38, 16777217.0, float("nan")]),
    st.floats(width=32).map(float),
)
ints = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 2**53 + 1]))
scalars = st.one_of(st.none(), floats, ints, st.booleans(), st.text(max_size=4))
mixed = st.one_of(scalars, st.lists(st.one_of(st.none(), floats, st.text(max_size=2)), max_size=3))
declared_types = st.sampled_from(["Float32", "Float64", "Int64", "Int32", "String", "Bool"])


@settings(max_examples=300, deadline=None)
@given(values=st.lists(mixed, max_size=30), declared=declared_types)
def test_normalize_scalars_equals_the_per_value_definition(values, declared):
    assert same_normalized(normalize_scalars(values, declared), ref_normalize(values, declared))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), floats, ints), max_size=30),
    declared=st.sampled_from(["Float32", "Float64", "Int64"]),
)
def test_normalize_scalars_of_a_numeric_array_equals_the_list_path(values, declared):
    as_array = np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    as_list = [None if v is None else float(v) for v in values]
    assert same_normalized(normalize_scalars(as_array, declared), ref_normalize(as_list, declared))


pairs = st.lists(st.tuples(mixed, mixed), max_size=30)


@settings(max_examples=300, deadline=None)
@given(pairs=pairs, declared=declared_types, share=st.booleans())
def test_equal_values_equals_elementwise_python_equality(pairs, declared, share):
    left = [a for a, _ in pairs]
    right = [a if share and i % 2 else b for i, (a, b) in enumerate(pairs)]
    a, b = normalize_scalars(left, declared), normalize_scalars(right, declared)
    ra, rb = ref_normalize(left, declared), ref_normalize(right, declared)
    assert equal_values(a, b).tolist() == ref_equal(ra, rb).tolist()


def test_equality_semantics_pinned():
    # -0.0 == 0.0, NaN == NaN == None, float32 rounding at Float32 only
    a = normalize_scalars([-0.0, float("nan"), None, 0.1, 0.1], "Float32")
    b = normalize_scalars([0.0, None, float("nan"), float(np.float32(0.1)), 0.1000001], "Float32")
    assert equal_values(a, b).tolist() == [True, True, True, True, False]
    a = normalize_scalars([0.1], "Float64")
    assert not equal_values(a, normalize_scalars([float(np.float32(0.1))], "Float64"))[0]
    s = normalize_scalars(["x", None, float("nan"), [1, None]], "String")
    t = normalize_scalars(["x", float("nan"), None, (1, float("nan"))], "String")
    assert equal_values(s, t).tolist() == [True, True, True, True]
    # strings that look like numbers are not numbers of a numeric feature
    assert np.isnan(normalize_scalars(["1.5"], "Float64")[0])


# --- reservoirs ----------------------------------------------------------------------------------


def test_reservoir_is_uniform_over_the_whole_stream_whatever_the_batches():
    n, k, trials = 300, 30, 3000
    hits = np.zeros(n)
    for seed in range(trials):
        r = Reservoir(size=k, seed=seed)
        for lo, hi in ((0, 20), (20, 45), (45, 200), (200, 201), (201, 300)):
            r.add(np.arange(lo, hi, dtype=np.float64))
        kept = r.values.astype(int)
        assert len(kept) == k and len(set(kept.tolist())) == k  # without replacement
        hits[kept] += 1
    expected = trials * k / n  # 300 per element
    # every element within ~5 standard deviations, and each stretch of the stream alike
    assert np.abs(hits - expected).max() < 5 * math.sqrt(expected)
    for lo, hi in ((0, 20), (45, 200), (201, 300)):
        assert hits[lo:hi].mean() == pytest.approx(expected, rel=0.05)
    chi2 = float(((hits - expected) ** 2 / expected).sum())
    assert chi2 < n + 6 * math.sqrt(2 * n)  # chi-square with n-1 dof, far tail


def test_reservoir_is_deterministic_and_sides_are_independent():
    a, b = Reservoir(size=5, seed=1, salt=1), Reservoir(size=5, seed=1, salt=1)
    c = Reservoir(size=5, seed=1, salt=2)
    for batch in (np.arange(10.0), np.arange(10.0, 100.0)):
        a.add(batch)
        b.add(batch)
        c.add(batch)
    assert a.values.tolist() == b.values.tolist()
    assert a.values.tolist() != c.values.tolist()


def test_view_freshness_does_not_overweight_later_chunks():
    means = []
    for seed in range(20):
        fresh = ViewFreshness("v", seed=seed)
        fresh.update(np.zeros(30_000))
        fresh.update(np.ones(30_000))
        assert len(fresh.lags) == RESERVOIR_SIZE and fresh.rows == 60_000
        means.append(np.mean(fresh.lags))
    assert np.mean(means) == pytest.approx(0.5, abs=0.01)  # the old pooling gave 0.6


def test_stale_lags_are_a_uniform_sample_of_all_chunks():
    comparison = FeatureComparison(feature="v:f", declared_type="Float64")
    for lag in (100.0, 200.0, 300.0):
        n = 15_000
        comparison.update(
            online_values=[1.0] * n,
            online_status=np.ones(n, dtype=int),
            online_types=["float64"] * n,
            declared_at_serving=["Float64"] * n,
            offline_at_event=[1.0] * n,
            has_event_row=np.ones(n, dtype=bool),
            offline_at_request=[1.0] * n,
            offline_type="float64",
            stale_lag_seconds=np.full(n, lag),
        )
    counts = Counter(comparison.stale_lags)
    assert sum(counts.values()) == RESERVOIR_SIZE
    for lag in (100.0, 200.0, 300.0):  # the old code kept only the last 10,000 (all 300 s)
        assert counts[lag] / RESERVOIR_SIZE == pytest.approx(1 / 3, abs=0.03)


# --- the whole comparison against a reference ----------------------------------------------


def reference_comparison(rows: list[dict[str, Any]], fills: list[float]) -> dict[str, Any]:
    """docs/checks.md row rules, one row at a time, for a Float64 feature and given fills."""
    compared = mismatches = stale = online_nulls = offline_nulls = real = defaults = 0
    for r in rows:
        on, at_event, at_req = r["online"], r["at_event"], r["at_request"]
        on_null = on is None or r["status"] != 1
        req_null = at_req is None
        online_nulls += on_null
        offline_nulls += req_null
        differs = r["has_event"] and not (on == at_event or (on is None and at_event is None))
        if not req_null:
            real += 1
        is_default = not req_null and (on_null or (on in fills and on != at_req))
        defaults += is_default
        compared += r["has_event"]
        mismatches += differs and not is_default
        stale += r["lag"] > 0
    return {
        "compared": compared,
        "mismatches": mismatches,
        "stale_rows": stale,
        "online_null_rate": online_nulls / len(rows),
        "offline_null_rate": offline_nulls / len(rows),
        "silent_defaults": defaults,
        "offline_rows": real,
    }


def synthetic_rows(seed: int, n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        real = float(rng.integers(0, 500)) + 0.25
        at_req = None if rng.random() < 0.05 else real
        at_event = real if rng.random() < 0.9 else None
        kind = rng.random()
        status = 1
        if kind < 0.15:
            online = 0.0  # a fill value
        elif kind < 0.20:
            online, status = None, 3  # NOT_FOUND
        elif kind < 0.25:
            online = real + 1.0  # true skew
        else:
            online = real
        rows.append(
            {
                "entity": f"u{i}",
                "online": online,
                "status": status,
                "at_event": at_event,
                "has_event": at_event is not None,
                "at_request": at_req,
                "lag": float(rng.choice([0.0, 0.0, 0.0, 60.0])),
            }
        )
    return rows


@pytest.mark.parametrize("chunks", [1, 3])
def test_comparison_equals_the_row_by_row_reference(chunks):
    rows = synthetic_rows(7, 3000)
    comparison = FeatureComparison(feature="v:f", declared_type="Float64")
    for part in np.array_split(np.arange(len(rows)), chunks):
        sub = [rows[i] for i in part]
        comparison.update(
            online_values=[r["online"] for r in sub],
            online_status=np.asarray([r["status"] for r in sub]),
            online_types=["float64" if r["online"] is not None else "null" for r in sub],
            declared_at_serving=["Float64"] * len(sub),
            offline_at_event=np.asarray(
                [np.nan if r["at_event"] is None else r["at_event"] for r in sub]
            ),
            has_event_row=np.asarray([r["has_event"] for r in sub]),
            offline_at_request=[r["at_request"] for r in sub],
            offline_type="float64",
            stale_lag_seconds=np.asarray([r["lag"] for r in sub]),
            entity_keys=[r["entity"] for r in sub],
        )
    result = comparison.result()
    assert result["fill_values"] == [0.0]
    want = reference_comparison(rows, [0.0])
    for key, value in want.items():
        assert result[key] == pytest.approx(value), key
    # examples are rows that stay value mismatches: never a silent default
    assert len(result["mismatch_examples"]) == 5
    by_entity = {r["entity"]: r for r in rows}
    first_true = [
        r["entity"]
        for r in rows
        if r["has_event"]
        and r["online"] != r["at_event"]
        and not (r["at_request"] is not None and (r["online"] is None or r["status"] != 1))
        and not (r["at_request"] is not None and r["online"] == 0.0 and r["at_request"] != 0.0)
    ][:5]
    assert [e["entity"] for e in result["mismatch_examples"]] == first_true
    for example in result["mismatch_examples"]:
        row = by_entity[example["entity"]]
        assert example["online"] == row["online"] and example["offline"] == row["at_event"]
    # per-value tallies: online / offline counts of the fill value on the same rows
    tally = comparison.tallies[0.0]
    assert tally.online == sum(r["online"] == 0.0 and r["status"] == 1 for r in rows)
    assert tally.offline == sum(r["at_request"] == 0.0 for r in rows)


def test_categorical_comparison_counts_and_histograms():
    online = ["a", "b", None, "c", "", "", "a", "b", "", ""] * 30
    offline = ["a", "b", "x", "c", "d", "e", "a", "b", "f", "g"] * 30
    comparison = FeatureComparison(feature="v:s", declared_type="String")
    n = len(online)
    comparison.update(
        online_values=online,
        online_status=np.asarray([1 if v is not None else 2 for v in online]),
        online_types=Counter("string" if v is not None else "null" for v in online),
        declared_at_serving={"String": n},
        offline_at_event=offline,
        has_event_row=np.ones(n, dtype=bool),
        offline_at_request=offline,
        offline_type="string",
        entity_keys=[str(i) for i in range(n)],
    )
    result = comparison.result()
    assert result["fill_values"] == [""]
    assert result["silent_defaults"] == 5 * 30  # 4 "" + 1 null per 10 rows
    assert result["mismatches"] == 0 and result["mismatch_examples"] == []
    assert result["online_type"] == "string"
    hist = result["histogram"]
    counts_on = dict(zip(hist["labels"], hist["online"]))
    assert counts_on["a"] == 60 and counts_on["b"] == 60 and counts_on["c"] == 30


# --- decoding of the log -------------------------------------------------------------------


def test_decode_feature_columns_equals_per_row_decoding():
    cells = [
        {"a": [1.5, 1, "h", "double", "Float64"], "b": ["x", 1, "h", "string", "String"]},
        {"b": [None, 2, "h", "null", "String"], "a": [float("nan"), 1, "h", "double", "Float64"]},
        {"a": [{"$b": "YWI="}, 1, "h", "bytes", "Bytes"]},
        {"a": [1.5, 1, "h", "double", "Float64"], "b": ["x", 1, "h", "string", "String"]},
        {"c": [[1, 2], 1, "h", "int64_list", "Array(Int64)"]},
    ]
    texts = [json.dumps(c, allow_nan=True) for c in cells]
    columns = decode_feature_columns(np.asarray(texts, dtype=object))
    assert sorted(columns) == ["a", "b", "c"]
    a = columns["a"]
    assert a.values[0] == 1.5 and math.isnan(a.values[1]) and a.values[2] == b"ab"
    assert a.values[4] is None and a.status.tolist() == [1, 1, 1, 1, 3]
    assert a.online_types == {"double": 3, "bytes": 1, "null": 1}
    assert a.declared == {"Float64": 3, "Bytes": 1} and a.first_declared == "Float64"
    b = columns["b"]
    assert b.values.tolist() == ["x", None, None, "x", None]
    assert b.status.tolist() == [1, 2, 3, 1, 3]
    assert columns["c"].values[4] == [1, 2] and columns["c"].first_declared == "Array(Int64)"
    keys, labels = decode_entity_keys(np.asarray(['{"u":1,"v":"a"}', '{"v":"a","u":1}']))
    assert keys == [{"u": 1, "v": "a"}, {"v": "a", "u": 1}]
    assert labels == ['{"u": 1, "v": "a"}'] * 2


@settings(max_examples=200, deadline=None)
@given(counts=st.lists(st.integers(1, 6), min_size=1, max_size=300), seed=st.integers(0, 99))
def test_top_candidates_equal_a_stable_sort_of_value_sorted_counts(counts, seed):
    from feast_parity.parity.compare import TALLY_CAP, _top

    counts = np.asarray(counts)
    values = np.random.default_rng(seed).permutation(len(counts)) * 0.5
    by_value = np.argsort(values)
    want = by_value[np.argsort(-counts[by_value], kind="stable")][:TALLY_CAP]
    assert _top(counts, TALLY_CAP, values).tolist() == want.tolist()
    assert _top(counts, TALLY_CAP).tolist() == np.argsort(-counts, kind="stable")[:64].tolist()
