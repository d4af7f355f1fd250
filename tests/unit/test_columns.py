"""Canonical columns (feast_parity.parity.columns): the vectorised form of the equality rule.

The check compares whole columns at a time: ``canonical_column(values, declared)`` builds one
feature's canonical values for many rows from whatever a side delivers (Arrow arrays from the
sample log, pandas columns from the offline store, plain lists), and ``hashes()`` gives each
row's value hash. Fixed-width kinds take a numpy path, everything else goes value by value.
Whatever the path, a row's hash must be exactly the scalar ``value_hash`` of its value: the
scalar path (feast_parity.parity.hashing) is the reference here.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_parity.parity.canonical import Seconds
from feast_parity.parity.columns import canonical_column, concat, equal, row_hashes
from feast_parity.parity.hashing import (
    encode_value,
    keyed_hash,
    row_hash,
    schema_fingerprint,
    value_hash,
)

UTC = dt.timezone.utc


def scalar_hashes(values: list[Any], declared: str) -> list[int]:
    return [value_hash(v, declared) for v in values]


def column_hashes(values: Any, declared: str) -> list[int]:
    return [int(h) for h in canonical_column(values, declared).hashes()]


def test_the_module_example_one_int_column_from_floats_and_from_arrow() -> None:
    offline = canonical_column([1.0, None, 3.0], "Int64")  # pandas widened an Int64 column
    served = canonical_column(pa.array([1, None, 4]), "Int64")
    assert equal(offline, served).tolist() == [True, True, False]


# --- vectorised path == scalar path, for every shape of every type ------------------------

i64 = st.integers(-(2**63), 2**63 - 1)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 0.0, math.nan])
moments = st.datetimes(
    min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(UTC)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | floats | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)
ROWS = {"max_size": 30}  # rows per generated column


def _shapes(values: list[Any], arrow_type: pa.DataType | None) -> list[tuple[str, Any, list]]:
    """(name, container, the elements a scalar caller would see) for one list of values."""
    out: list[tuple[str, Any, list]] = [("list", values, values), ("tuple", tuple(values), values)]
    if arrow_type is not None:
        array = pa.array(values, type=arrow_type)
        out.append(("arrow", array, array.to_pylist()))
        chunked = pa.chunked_array([array[: len(values) // 2], array[len(values) // 2 :]])
        out.append(("chunked arrow", chunked, array.to_pylist()))
    return out


def _agree(values: list[Any], declared: str, arrow_type: pa.DataType | None = None) -> None:
    for name, container, elements in _shapes(values, arrow_type):
        got = column_hashes(container, declared)
        assert got == scalar_hashes(elements, declared), (name, declared, values)


@settings(max_examples=80, deadline=None)
@given(st.lists(i64 | st.none(), **ROWS), st.sampled_from(["Int32", "Int64"]))
def test_int_columns_agree_with_the_scalar_path(values: list[int | None], declared: str) -> None:
    _agree(values, declared, pa.int64())
    ints = [v for v in values if v is not None]
    array = np.asarray(ints, dtype=np.int64)
    assert column_hashes(array, declared) == scalar_hashes(list(array), declared)
    series = pd.Series(values, dtype="Int64")
    assert column_hashes(series, declared) == scalar_hashes(list(series), declared)
    small = [v for v in ints if abs(v) < 2**53]  # pandas widens an int column with gaps
    widened = np.asarray([np.nan, *small], dtype=np.float64)
    assert column_hashes(widened, declared) == scalar_hashes(list(widened), declared)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), **ROWS))
def test_unsigned_int_columns_agree_with_the_scalar_path(values: list[int]) -> None:
    """A uint64 column (an id column in Parquet) holds values at and above 2**63."""
    array = np.asarray(values, dtype=np.uint64)
    assert column_hashes(array, "Int64") == scalar_hashes(list(array), "Int64")
    arrow = pa.array(values, type=pa.uint64())
    assert column_hashes(arrow, "Int64") == scalar_hashes(arrow.to_pylist(), "Int64")


def test_huge_ints_beyond_int64_agree_with_the_scalar_path() -> None:
    values = [2**70, -(2**70), 2**63, -(2**63) - 1, 1, None]
    assert column_hashes(values, "Int64") == scalar_hashes(values, "Int64")


@settings(max_examples=80, deadline=None)
@given(st.lists(floats | st.none(), **ROWS), st.sampled_from(["Float32", "Float64"]))
def test_float_columns_agree_with_the_scalar_path(
    values: list[float | None], declared: str
) -> None:
    _agree(values, declared, pa.float64())
    dense = np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
    assert column_hashes(dense, declared) == scalar_hashes(list(dense), declared)
    with np.errstate(over="ignore"):
        single = dense.astype(np.float32)
    assert column_hashes(single, declared) == scalar_hashes(list(single), declared)
    series = pd.Series(dense)
    assert column_hashes(series, declared) == scalar_hashes(list(series), declared)
    ints = [int(v) for v in dense if math.isfinite(v) and abs(v) < 2**62]
    assert column_hashes(pa.array(ints, pa.int64()), declared) == scalar_hashes(ints, declared)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans() | st.none(), **ROWS))
def test_bool_columns_agree_with_the_scalar_path(values: list[bool | None]) -> None:
    _agree(values, "Bool", pa.bool_())
    dense = np.asarray([bool(v) for v in values])
    assert column_hashes(dense, "Bool") == scalar_hashes(list(dense), "Bool")


@settings(max_examples=60, deadline=None)
@given(st.lists(moments | st.none(), **ROWS))
def test_timestamp_columns_agree_with_the_scalar_path(values: list[dt.datetime | None]) -> None:
    _agree(values, "UnixTimestamp", pa.timestamp("us", tz="UTC"))
    naive = [v.replace(tzinfo=None) for v in values if v is not None]
    array = np.asarray(naive, dtype="datetime64[us]")
    assert column_hashes(array, "UnixTimestamp") == scalar_hashes(list(array), "UnixTimestamp")
    series = pd.Series(pd.to_datetime(values, utc=True))
    assert column_hashes(series, "UnixTimestamp") == scalar_hashes(list(series), "UnixTimestamp")
    seconds = [int(v.timestamp()) for v in values if v is not None]
    assert column_hashes(pa.array(seconds, pa.int64()), "UnixTimestamp") == scalar_hashes(
        seconds, "UnixTimestamp"
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.text(max_size=5) | st.none(), **ROWS),
    st.lists(st.binary(max_size=5) | st.none(), **ROWS),
)
def test_text_and_bytes_columns_agree_with_the_scalar_path(
    texts: list[str | None], blobs: list[bytes | None]
) -> None:
    for declared in ("String", "Uuid"):
        _agree(texts, declared, pa.string())
    _agree(blobs, "Bytes", pa.binary())
    series = pd.Series(texts, dtype=object)
    assert column_hashes(series, "String") == scalar_hashes(list(series), "String")


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.none() | st.lists(i64 | st.none(), max_size=4), **ROWS),
    st.lists(st.none() | st.lists(floats, max_size=4), **ROWS),
    st.lists(st.none() | st.lists(st.text(max_size=2), max_size=4), **ROWS),
)
def test_array_columns_agree_with_the_scalar_path(
    ints: list[Any], reals: list[Any], texts: list[Any]
) -> None:
    _agree(ints, "Array(Int64)", pa.list_(pa.int64()))
    _agree(reals, "Array(Float64)", pa.list_(pa.float64()))
    _agree(reals, "Array(Float32)", pa.list_(pa.float64()))
    _agree(texts, "Array(String)", pa.list_(pa.string()))
    _agree(texts, "Set(String)", pa.list_(pa.string()))
    as_numpy = [None if v is None else np.asarray(v, dtype=np.float64) for v in reals]
    assert column_hashes(as_numpy, "Array(Float64)") == scalar_hashes(as_numpy, "Array(Float64)")


@settings(max_examples=50, deadline=None)
@given(st.lists(json_values, **ROWS))
def test_map_and_json_columns_agree_with_the_scalar_path(values: list[Any]) -> None:
    for declared in ("Map", "Json", "Struct({a: Int64})", "Invalid"):
        _agree(values, declared)


def test_nested_values_equal_in_python_but_not_as_feature_values_hash_apart() -> None:
    """``[True] == [1]`` in Python, but a JSON true is not the number 1: within one column each
    row must still get its own value's hash."""
    for declared, values in [
        ("Json", [[True], [1]]),
        ("Json", [[0, 1], [False, True]]),
        ("Map", [{"flag": 1}, {"flag": True}]),
        ("Struct({flag: Bool})", [{"flag": True}, {"flag": 1}]),
    ]:
        assert column_hashes(values, declared) == scalar_hashes(values, declared), values


def test_mixed_shapes_in_one_column_agree_with_the_scalar_path() -> None:
    values = [1, 1.0, np.int32(1), "1", True, None, math.nan, 2**70, 1.5, [1], -0.0, b"1"]
    for declared in ("Int64", "Float32", "Float64", "String", "Bool", "Json", "Invalid"):
        assert column_hashes(values, declared) == scalar_hashes(values, declared), declared
    stamps = [1_767_225_600, 1_767_225_600.5, dt.datetime(2026, 1, 1), "2026-01-01", None, True]
    assert column_hashes(stamps, "UnixTimestamp") == scalar_hashes(stamps, "UnixTimestamp")


# --- equality, values, and column operations ----------------------------------------------


def test_equal_is_row_wise_equality_of_canonical_values() -> None:
    offline = canonical_column(pa.array([0.0, None, None, 0.1, 0.1, 2.0]), "Float32")
    served = canonical_column(
        [-0.0, math.nan, None, float(np.float32(0.1)), 0.1000001, None], "Float32"
    )
    # -0.0 is 0.0; NaN and None are both null; float32 rounding noise is not a difference;
    # a null on one side only is a difference
    assert equal(offline, served).tolist() == [True, True, True, True, False, False]
    ints = canonical_column(np.asarray([1, 2, 3]), "Int64")
    mixed = canonical_column([1.0, "2", 3], "Int64")  # an object column: compared by hash
    assert mixed.kind == "object" and ints.kind == "int"
    assert equal(ints, mixed).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="different lengths"):
        equal(ints, canonical_column([1], "Int64"))


def test_value_returns_the_canonical_python_value_of_a_row() -> None:
    stamps = canonical_column(
        pa.array([dt.datetime(2026, 1, 1, 0, 0, 0, 600_000), None]), "UnixTimestamp"
    )
    assert stamps.value(0) == Seconds(1_767_225_600) and type(stamps.value(0)) is Seconds
    assert stamps.value(1) is None
    ints = canonical_column([np.int64(3), None], "Int64")
    assert type(ints.value(0)) is int and ints.value(1) is None
    assert canonical_column([{"a": 1}], "Json").value(0) == (("a", 1),)


def test_numbers_are_float64_with_nan_for_nulls_and_for_what_is_no_number() -> None:
    numbers = canonical_column(pa.array([1, None, 3]), "Int64").numbers()
    assert numbers[0] == 1.0 and math.isnan(numbers[1]) and numbers[2] == 3.0
    # a string served for an Int64 feature: schema divergence reports it, statistics skip it
    mixed = canonical_column([1, "x", 2.5, True], "Int64").numbers()
    assert mixed[0] == 1.0 and mixed[2] == 2.5
    assert math.isnan(mixed[1]) and math.isnan(mixed[3])
    assert np.isnan(canonical_column(["a"], "String").numbers()).all()


def test_take_and_concat_keep_values_and_hashes() -> None:
    a = canonical_column(pa.array([1, 2, None]), "Int64")
    b = canonical_column([3, 4.5], "Int64")  # a real fraction under Int64: an object column
    assert (a.kind, b.kind) == ("int", "object")
    both = concat([a, b])
    assert both.kind == "object" and len(both) == 5
    assert [both.value(i) for i in range(5)] == [1, 2, None, 3, 4.5]
    assert both.hashes().tolist() == scalar_hashes([1, 2, None, 3, 4.5], "Int64")
    picked = both.take(np.asarray([4, 0]))
    assert picked.hashes().tolist() == scalar_hashes([4.5, 1], "Int64")
    with pytest.raises(ValueError):
        concat([])


def test_redacted_columns_hash_with_the_key() -> None:
    values = [7, None, 7, 8]
    column = canonical_column(values, "Int64", redact_key=b"k")
    expected = [keyed_hash(b"k", encode_value(v, "Int64")) for v in values]
    assert column.hashes().tolist() == expected
    assert column.hashes()[0] != value_hash(7, "Int64")
    plain = canonical_column(values, "Int64")
    # a redacted side never equals a side hashed in clear, even for the same values
    assert not equal(column, plain).any()
    assert equal(column, canonical_column(values, "Int64", redact_key=b"k")).all()


@pytest.mark.parametrize("features", [1, 3, 30, 31, 40])  # 30 x 8 bytes = the 240-byte limit
def test_row_hashes_equal_the_scalar_row_hash(features: int) -> None:
    rng = np.random.default_rng(features)
    names = [f"f{i:02d}" for i in range(features)]
    per_feature = [rng.integers(0, 2**64, 50, dtype=np.uint64) for _ in names]
    fingerprint = schema_fingerprint({n: "Int64" for n in names})
    got = row_hashes(per_feature, fingerprint)
    for row in range(50):
        hashes = {n: int(h[row]) for n, h in zip(names, per_feature, strict=True)}
        assert int(got[row]) == row_hash(hashes, fingerprint)
    seeds = rng.integers(0, 2**64, 50, dtype=np.uint64)  # one fingerprint per row
    per_row = row_hashes(per_feature, seeds)
    first = {n: int(h[0]) for n, h in zip(names, per_feature, strict=True)}
    assert int(per_row[0]) == row_hash(first, int(seeds[0]))
    with pytest.raises(ValueError):
        row_hashes([], fingerprint)
