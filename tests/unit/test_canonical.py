"""Canonical forms (feast_parity.parity.canonical): the one equality rule of the checker.

The same feature value reaches the check in different shapes: serving returns what Feast's
protobuf converter makes of the online row, training reads what the offline store's dataframe
holds. ``canonical_value(value, declared)`` maps every shape to one canonical Python value, and
two values are the same feature value exactly when their canonical forms are equal. Each test
below takes one row of the rule table in the module docstring and shows two shapes of one
value meeting (and two different values staying apart); the property tests at the end pin
that the canonical form is a fixed point and that hashing goes through it.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_parity.parity.canonical import (
    NAN,
    MapItems,
    Other,
    Seconds,
    base_type,
    canonical_value,
    canonical_values,
    element_type,
    type_family,
)
from feast_parity.parity.hashing import encode_canonical, encode_value

UTC = dt.timezone.utc


def same(a: Any, b: Any) -> bool:
    """Equal canonical forms: the same type and the same repr (so 1 is not 1.0 or True)."""
    return type(a) is type(b) and repr(a) == repr(b)


def canon(declared: str, *values: Any) -> list[Any]:
    return [canonical_value(v, declared) for v in values]


# --- the rule table, row by row -----------------------------------------------------------


@pytest.mark.parametrize("declared", ["Int32", "Int64"])
def test_ints_are_ints_and_pandas_widened_floats_come_back(declared: str) -> None:
    seven = [7, np.int8(7), np.int64(7), np.uint32(7), 7.0, np.float64(7.0)]
    assert all(same(c, 7) for c in canon(declared, *seven))
    # a real fraction under an int type stays a float, so the type change is visible
    assert same(canonical_value(7.5, declared), 7.5)
    # a bool or a number's text is not an int
    assert isinstance(canonical_value(True, declared), Other)
    assert isinstance(canonical_value("7", declared), Other)


def test_float32_is_rounded_to_float32_and_float64_is_not() -> None:
    rounded = float(np.float32(0.1))
    assert same(canonical_value(0.1, "Float32"), rounded)
    assert same(canonical_value(np.float32(0.1), "Float32"), rounded)
    assert same(canonical_value(0.1, "Float64"), 0.1)
    assert same(canonical_value(np.float32(0.1), "Float64"), rounded)
    assert same(canonical_value(1e39, "Float32"), math.inf)  # what a float32 column stores
    assert same(canonical_value(3, "Float64"), 3.0)  # an int column read for a float feature


@pytest.mark.parametrize("declared", ["Float32", "Float64"])
def test_negative_zero_is_zero_and_a_scalar_nan_is_null(declared: str) -> None:
    assert all(same(c, 0.0) for c in canon(declared, -0.0, np.float32(-0.0), 0.0, 0))
    assert canon(declared, math.nan, np.float32("nan"), np.float64("nan")) == [None] * 3
    assert same(canonical_value(-math.inf, declared), -math.inf)
    assert isinstance(canonical_value("1.5", declared), Other)


@pytest.mark.parametrize("declared", ["Int32", "Int64"])
def test_ints_beyond_2_53_are_the_int_of_their_nearest_double(declared: str) -> None:
    """Feast's own paths carry large ints through float64 (materializing an Int64 column with
    nulls, pandas frames), so beyond 2**53 an int compares as its nearest double; at and past
    2**63 as the largest double an int64 holds."""
    assert same(canonical_value(2**53, declared), 2**53)
    assert same(canonical_value(2**53 + 1, declared), 2**53)  # halfway: ties to even
    assert same(canonical_value(2**62 + 1, declared), 2**62)
    assert same(canonical_value(float(2**62), declared), 2**62)
    assert same(canonical_value(np.int64(-(2**62) - 3), declared), -(2**62))
    largest = 2**63 - 1024  # the largest double below 2**63
    for big in (2**63 - 1, 2**63, 2**70, np.uint64(2**64 - 1)):
        assert same(canonical_value(big, declared), largest), big
    assert same(canonical_value(-(2**70), declared), -(2**63))


@pytest.mark.filterwarnings("ignore:Casting complex values to real")
@pytest.mark.parametrize("declared", ["Float32", "Float64"])
def test_a_complex_number_is_no_float(declared: str) -> None:
    """Python and numpy complex numbers alike fit no rule: kept as their repr, never cut down
    to their real part (1+2j is not the float 1.0)."""
    assert isinstance(canonical_value(1 + 2j, declared), Other)
    assert isinstance(canonical_value(np.complex128(1 + 2j), declared), Other)


def test_text_types_are_str_and_feasts_uuid_and_decimal_objects_their_text() -> None:
    import decimal
    import uuid

    for declared in ("String", "Uuid", "Decimal"):
        assert same(canonical_value("abc", declared), "abc")
        assert same(canonical_value(np.str_("abc"), declared), "abc")
        assert isinstance(canonical_value(12, declared), Other)  # a number is not text
    ident = uuid.UUID(int=7)
    assert same(canonical_value(ident, "Uuid"), str(ident))
    assert same(canonical_value(decimal.Decimal("12.50"), "Decimal"), "12.50")


@pytest.mark.parametrize("declared", ["Bytes", "PdfBytes", "ImageBytes"])
def test_bytes_types_are_bytes(declared: str) -> None:
    for shape in (b"\x00ab", bytearray(b"\x00ab"), memoryview(b"\x00ab")):
        assert same(canonical_value(shape, declared), b"\x00ab")
    assert isinstance(canonical_value("\x00ab", declared), Other)  # text is not bytes


def test_bools_are_bool() -> None:
    assert same(canonical_value(np.bool_(True), "Bool"), True)
    assert same(canonical_value(False, "Bool"), False)
    assert isinstance(canonical_value(1, "Bool"), Other)


def test_timestamps_are_utc_epoch_seconds_truncated_like_feasts_online_write() -> None:
    expected = Seconds(1_767_225_600)  # 2026-01-01T00:00:00Z
    shapes = [
        dt.datetime(2026, 1, 1),  # naive means UTC
        dt.datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC),  # sub-second parts dropped
        dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        pd.Timestamp("2026-01-01T00:00:00.999999999Z"),
        np.datetime64("2026-01-01T00:00:00.5"),
        1_767_225_600,  # epoch seconds, as the online store holds them
        dt.date(2026, 1, 1),  # midnight UTC
    ]
    assert all(same(c, expected) for c in canon("UnixTimestamp", *shapes))
    assert int(canonical_value(dt.datetime(2026, 1, 1, 0, 0, 1), "UnixTimestamp")) == expected + 1
    assert canon("UnixTimestamp", None, pd.NaT, np.datetime64("NaT")) == [None] * 3


def test_pre_epoch_timestamps_truncate_toward_zero_in_every_shape() -> None:
    """Feast stores ``int(ts.timestamp())``: 1969-12-31T23:59:59.5Z is second 0, not -1."""
    moment = dt.datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
    assert int(moment.timestamp()) == 0
    shapes = [moment, pd.Timestamp(moment), np.datetime64("1969-12-31T23:59:59.500000")]
    assert [int(c) for c in canon("UnixTimestamp", *shapes)] == [0, 0, 0]


def test_arrays_are_tuples_of_canonical_elements_and_sets_are_sorted() -> None:
    assert same(canonical_value(np.array([1, 2]), "Array(Int64)"), (1, 2))
    assert same(canonical_value([1.0, 2.0], "Array(Int64)"), (1, 2))
    assert same(canonical_value([0.1], "Array(Float32)"), (float(np.float32(0.1)),))
    assert canonical_value([], "Array(String)") == ()
    assert canonical_value(None, "Array(String)") is None
    assert same(canonical_value(["b", "a", "c"], "Set(String)"), ("a", "b", "c"))
    assert same(canonical_value({"b", "a"}, "Set(String)"), ("a", "b"))
    # in a float array a NaN element is kept, as the one NaN, so two arrays with NaN at the
    # same place compare equal; a null element is that NaN too (Arrow conversions of offline
    # frames turn NaN into null)
    left, right = (
        canonical_value([1.0, math.nan], "Array(Float64)"),
        canonical_value(np.array([1.0, np.float64("nan")]), "Array(Float64)"),
    )
    assert left[1] is NAN and right[1] is NAN and left == right
    assert canonical_value([1.0, None], "Array(Float64)") == left
    assert canonical_value([1, None], "Array(Int64)") == (1, None)  # ints have no NaN


@pytest.mark.parametrize("declared", ["Map", "Json", "Struct({a: Int64, b: Array(Int64)})"])
def test_maps_structs_and_json_compare_parsed(declared: str) -> None:
    parsed = canonical_value({"b": [1, 2], "a": 1}, declared)
    assert isinstance(parsed, MapItems) and [k for k, _ in parsed] == ["a", "b"]
    assert same(canonical_value('{"a": 1, "b": [1, 2]}', declared), parsed)  # offline text
    assert same(canonical_value({"a": 1.0, "b": [1.0, 2.0]}, declared), parsed)  # pandas floats
    assert not same(canonical_value({"a": 1.5, "b": [1, 2]}, declared), parsed)
    # text that is not JSON is compared as the text it is
    assert same(canonical_value("{not json", declared), Other("{not json"))


@pytest.mark.parametrize("value", ["hello", "5", '{"a": 1}'])
def test_a_json_string_is_compared_as_the_json_text_both_sides_hold(value: str) -> None:
    """A Json feature whose value is a JSON *string*: the online row holds the JSON text
    ``"5"`` and so does the offline store. Parsing ``5`` and ``"5"`` gives different values, so
    a parsed str is ambiguous: the writer logs the served ``json_val`` text as it is (not Feast's
    parsed form), and both sides compare as the JSON they hold."""
    import json

    from feast.protos.feast.types.Value_pb2 import Value

    from feast_parity.plugin.collect import read_values

    class Result:  # the three repeated fields of one response column
        values = [Value(json_val=json.dumps(value))]
        statuses = [1]
        event_timestamps: list = []

    served, _, kinds = read_values(Result, None)
    assert kinds == ["json_val"] and served == [json.dumps(value)]
    offline_text = json.dumps(value)
    assert same(canonical_value(served[0], "Json"), canonical_value(offline_text, "Json"))
    assert canonical_value(served[0], "Json") == value  # the JSON string itself


def test_any_other_type_compares_as_parsed_json_or_its_repr() -> None:
    assert same(canonical_value({"a": 1.0}, "Invalid"), canonical_value({"a": 1}, "Invalid"))
    assert same(canonical_value((1, 2), "Invalid"), canonical_value([1, 2], "Invalid"))

    class Thing:
        def __repr__(self) -> str:
            return "Thing()"

    assert same(canonical_value(Thing(), "Invalid"), Other("Thing()"))


def test_nulls_in_every_shape_are_none() -> None:
    for declared in ("Int64", "Float64", "String", "Bool", "UnixTimestamp", "Json"):
        assert canon(declared, None, math.nan, pd.NA, pd.NaT) == [None] * 4, declared


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __float__(self) -> float:
        raise RuntimeError("no float")


@pytest.mark.parametrize("declared", ["Int64", "Float32", "String", "Json", "Array(Int64)", "x"])
def test_canonical_value_never_raises(declared: str) -> None:
    nested: list[Any] = []
    nested.append(nested)
    for value in (_Unprintable(), nested, 1 + 2j, object()):
        first = canonical_value(value, declared)
        assert first is not None  # a value that fits no rule is kept, not dropped
        assert same(canonical_value(value, declared), first)  # and stable


def test_canonical_values_equals_canonical_value_of_each_element() -> None:
    values = [1, 1.0, "1", None, math.nan, b"1", 1, "1", True, [1]]
    for declared in ("Int64", "Float64", "String", "Invalid"):
        expected = [canonical_value(v, declared) for v in values]
        got = canonical_values(values, declared)
        assert all(same(a, b) for a, b in zip(got, expected, strict=True)), declared


def test_type_names_and_families() -> None:
    assert (base_type("Array(Float32)"), element_type("Array(Float32)")) == ("Array", "Float32")
    assert (base_type("Struct({a: Int64})"), element_type("Int64")) == ("Struct", "Int64")
    # declared (registry), online (protobuf kind names) and offline (Arrow/pandas) spellings
    # of one type meet in one family; widths are not compared
    families = {
        "float": ["Float32", "Float64", "float32", "double"],
        "int": ["Int32", "Int64", "int64", "uint8"],
        "string": ["String", "Uuid", "Decimal", "large_string"],
        "list": ["Array(Int64)", "Set(String)", "list<float32>"],
        "timestamp": ["UnixTimestamp", "timestamp[us, tz=UTC]", "datetime64[ns]"],
        "bytes": ["Bytes", "PdfBytes", "binary"],
        "struct": ["Struct({a: Int64})", "struct<a: int64>"],
        "map": ["Map", "map<string, int64>", "ScalarMap"],
    }
    for family, names in families.items():
        assert {type_family(name) for name in names} == {family}, family
    assert type_family(None) is None and type_family("null") is None


# --- properties: a fixed point, and what hashing sees -------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | any_float | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)
moments = st.datetimes(
    min_value=dt.datetime(1900, 1, 1),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.none() | st.just(UTC),
)

# Values that fit each declared type, in every shape a side may deliver them.
FITTING: dict[str, st.SearchStrategy[Any]] = {
    "Int32": st.integers(-(2**31), 2**31 - 1) | st.integers(-1000, 1000).map(float),
    "Int64": st.integers() | st.integers(-(2**53), 2**53).map(float) | st.none(),
    "Float32": any_float | st.floats(width=32).map(np.float32) | st.integers(-(2**20), 2**20),
    "Float64": any_float | st.integers(-(2**40), 2**40) | st.none(),
    "String": st.text(),
    "Uuid": st.uuids() | st.uuids().map(str),
    "Decimal": st.decimals(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str),
    "Bytes": st.binary() | st.binary().map(bytearray),
    "PdfBytes": st.binary(),
    "ImageBytes": st.binary(),
    "Bool": st.booleans() | st.booleans().map(np.bool_) | st.none(),
    "UnixTimestamp": moments | st.integers(-(2**40), 2**40) | st.none(),
    "Array(Int64)": st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), max_size=5),
    "Array(Float32)": st.lists(any_float, max_size=5),
    "Array(Float64)": st.lists(any_float | st.none(), max_size=5),
    "Array(String)": st.lists(st.text(max_size=3), max_size=5),
    "Array(Bytes)": st.lists(st.binary(max_size=3), max_size=5),
    "Array(Bool)": st.lists(st.booleans(), max_size=5),
    "Array(UnixTimestamp)": st.lists(moments, max_size=3),
    "Set(String)": st.lists(st.text(max_size=3), max_size=5),
    "Set(Int64)": st.frozensets(st.integers(), max_size=5),
    "Map": st.dictionaries(st.text(max_size=3), json_values, max_size=4),
    "Json": json_values,
    "Struct({a: Int64, b: String})": st.fixed_dictionaries(
        {"a": st.integers(-(2**50), 2**50), "b": st.text(max_size=3)}
    ),
    "Invalid": json_values,
}
# Values of the wrong kind for the type (a type change on one side): kept as ``Other``.
UNFIT: dict[str, st.SearchStrategy[Any]] = {
    "Int64": st.text(min_size=1) | st.booleans(),
    "String": st.integers() | st.binary(),
    "Float64": st.text(min_size=1) | st.booleans(),
    "Bytes": st.text(),
    "Bool": st.integers(),
    "UnixTimestamp": st.text(),
    "Array(Int64)": st.text(min_size=1),
}


def _check_fixed_point(value: Any, declared: str) -> None:
    once = canonical_value(value, declared)
    twice = canonical_value(once, declared)
    assert same(twice, once), (value, once, twice)
    assert encode_canonical(twice, declared) == encode_canonical(once, declared)


@pytest.mark.parametrize("declared", sorted(FITTING))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_canonical_value_is_idempotent(declared: str, data: st.DataObject) -> None:
    _check_fixed_point(data.draw(FITTING[declared], label="value"), declared)


@pytest.mark.parametrize("declared", sorted(UNFIT))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_canonical_value_is_idempotent_for_values_of_the_wrong_kind(
    declared: str, data: st.DataObject
) -> None:
    _check_fixed_point(data.draw(UNFIT[declared], label="value"), declared)


@pytest.mark.parametrize("declared", sorted(FITTING))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_encoding_a_value_is_encoding_its_canonical_form(
    declared: str, data: st.DataObject
) -> None:
    value = data.draw(FITTING[declared], label="value")
    assert encode_value(value, declared) == encode_value(canonical_value(value, declared), declared)
