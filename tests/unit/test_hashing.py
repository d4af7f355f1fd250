"""Value encodings and hashes (feast_parity.parity.hashing), read as a specification.

A served value and an offline value are the same feature value exactly when their canonical
forms are equal (feast_parity.parity.canonical); ``encode_value`` turns the canonical form into
self-delimiting tagged bytes, and ``value_hash`` is xxh3_64 of those bytes. Row hashes combine
the value hashes of a view row, seeded with the schema fingerprint of its features.

Expected bytes below are written from the format table in the module docstring, never read
back from the code under test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import struct
import subprocess
import sys
import warnings
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xxhash
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from feast_parity.parity.hashing import (
    encode_canonical,
    encode_value,
    from_signed64,
    hash_hex,
    keyed_hash,
    row_hash,
    schema_fingerprint,
    to_signed64,
    value_hash,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
slow = settings(deadline=None)

any_float = st.floats(allow_nan=True, allow_infinity=True)
i64 = st.integers(-(2**63), 2**63 - 1)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
F64_NAN = b"d" + struct.pack("<Q", 0x7FF8000000000000)
F32_NAN = b"f" + struct.pack("<I", 0x7FC00000)


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def _i64(n: int) -> bytes:
    return n.to_bytes(8, "little", signed=True)


def _as_float32(x: float) -> np.float32:
    """What a float32 column stores for x (overflow to inf, like any float32 cast)."""
    with np.errstate(over="ignore"):
        return np.float32(x)


def _same_number(a: float, b: float) -> bool:
    """Equal as feature values: NaN is null, so two NaNs are equal; -0.0 equals 0.0."""
    return (math.isnan(a) and math.isnan(b)) or a == b


def _whole_seconds(moment: datetime) -> int:
    """UTC epoch seconds as Feast's online write stores them: ``int(ts.timestamp())``,
    i.e. truncated toward zero, computed here in exact integer arithmetic."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    micros = (aware - EPOCH) // timedelta(microseconds=1)
    return micros // 1_000_000 if micros >= 0 else -((-micros) // 1_000_000)


# --- pinned encodings (the format table of the module docstring) --------------------------


def test_scalar_encodings_match_the_documented_format() -> None:
    assert encode_value(None, "Int64") == b"N"
    assert encode_value(True, "Bool") == b"?\x01"
    assert encode_value(False, "Bool") == b"?\x00"
    assert encode_value(-2, "Int64") == b"i" + _i64(-2)
    # ints outside int64 (a canonical Int64 value never is one, see test_canonical)
    assert encode_canonical(2**70, "Json") == b"I" + _u32(22) + str(2**70).encode()
    assert encode_value(0.5, "Float32") == b"f" + struct.pack("<f", 0.5)
    assert encode_value(0.5, "Float64") == b"d" + struct.pack("<d", 0.5)
    assert encode_value("é", "String") == b"s" + _u32(2) + "é".encode()
    assert encode_value(b"\x00\x01", "Bytes") == b"b" + _u32(2) + b"\x00\x01"
    # timestamps: epoch microseconds of the whole second (sub-second parts are dropped)
    just_after = datetime(1970, 1, 1, 0, 0, 1, 999_999)
    assert encode_value(just_after, "UnixTimestamp") == b"t" + _i64(1_000_000)
    assert encode_value([1, None], "Array(Int64)") == b"a" + _u32(2) + b"i" + _i64(1) + b"N"
    assert encode_value({"k": 1}, "Map") == (
        b"m" + _u32(1) + b"s" + _u32(1) + b"k" + b"i" + _i64(1)
    )
    # a value of no known kind is its repr
    assert encode_value(1 + 2j, "Int64") == b"o" + _u32(6) + b"(1+2j)"


def test_value_hash_is_xxh3_of_the_encoding() -> None:
    for value, declared in [(1, "Int64"), ("x", "String"), ([0.5], "Array(Float32)")]:
        expected = xxhash.xxh3_64_intdigest(encode_value(value, declared))
        assert value_hash(value, declared) == expected
        assert 0 <= value_hash(value, declared) < 2**64


# --- floats -------------------------------------------------------------------------------


@given(st.floats(width=32), st.booleans())
def test_float32_values_hash_at_float32_precision(x32: float, upwards: bool) -> None:
    x = float(x32)
    y = float(np.nextafter(x, math.inf if upwards else -math.inf))
    # The next float64 is within half a float32 ulp, so both round to the same float32.
    assume(y != x and _as_float32(y) == _as_float32(x))
    assert value_hash(x, "Float32") == value_hash(y, "Float32")
    assert value_hash(x, "Float64") != value_hash(y, "Float64")


@given(any_float, any_float)
def test_float32_hashes_equal_exactly_when_float32_values_do(a: float, b: float) -> None:
    same = _same_number(float(_as_float32(a)), float(_as_float32(b)))
    assert (value_hash(a, "Float32") == value_hash(b, "Float32")) == same


@given(any_float, any_float)
def test_float64_hashes_equal_exactly_when_values_do(a: float, b: float) -> None:
    assert (value_hash(a, "Float64") == value_hash(b, "Float64")) == _same_number(a, b)


@given(any_float)
def test_numpy_float_scalars_equal_python_floats(x: float) -> None:
    assert value_hash(np.float64(x), "Float64") == value_hash(x, "Float64")
    x32 = _as_float32(x)
    assert value_hash(x32, "Float32") == value_hash(float(x32), "Float32")
    assert value_hash(x32, "Float32") == value_hash(x, "Float32")


@pytest.mark.parametrize("declared", ["Float32", "Float64"])
def test_negative_zero_equals_zero(declared: str) -> None:
    assert value_hash(-0.0, declared) == value_hash(0.0, declared)
    assert value_hash(np.float32(-0.0), declared) == value_hash(0.0, declared)
    assert value_hash(np.float64(-0.0), declared) == value_hash(0.0, declared)
    # Values too small for float32 round to -0.0 there; still the one zero.
    if declared == "Float32":
        assert value_hash(-1e-50, declared) == value_hash(0.0, declared)
        assert value_hash(-1e-50, "Float64") != value_hash(0.0, "Float64")


def _f64_nan(sign: int, mantissa: int) -> float:
    bits = (sign << 63) | (0x7FF << 52) | mantissa
    value: float = struct.unpack("<d", struct.pack("<Q", bits))[0]
    return value


def _f32_nan(sign: int, mantissa: int) -> np.float32:
    bits = np.array([(sign << 31) | (0xFF << 23) | mantissa], dtype=np.uint32)
    return np.frombuffer(bits.tobytes(), dtype=np.float32)[0]


@given(st.integers(0, 1), st.integers(1, 2**52 - 1), st.integers(0, 1), st.integers(1, 2**23 - 1))
def test_every_scalar_nan_is_null(s64: int, m64: int, s32: int, m32: int) -> None:
    """Online stores write a NaN float as a null, so a scalar NaN of any bit pattern is null."""
    nan64 = _f64_nan(s64, m64)
    nan32 = _f32_nan(s32, m32)
    assert math.isnan(nan64) and np.isnan(nan32)
    for declared in ("Float32", "Float64"):
        null = value_hash(None, declared)
        assert value_hash(float("nan"), declared) == null
        assert value_hash(nan64, declared) == null
        assert value_hash(nan32, declared) == null
        assert value_hash(float(nan32), declared) == null
        assert value_hash(np.float64(nan64), declared) == null


@slow
@given(st.integers(0, 1), st.integers(1, 2**52 - 1), st.integers(1, 20))
def test_nans_and_nulls_inside_float_arrays_are_one_nan(sign: int, mantissa: int, n: int) -> None:
    payload_nans = np.full(n, _f64_nan(sign, mantissa))
    plain = [float("nan")] * n
    for declared in ("Array(Float32)", "Array(Float64)"):
        reference = value_hash(plain, declared)
        assert value_hash(payload_nans, declared) == reference
        assert value_hash(payload_nans.tolist(), declared) == reference
        with np.errstate(invalid="ignore"):
            as_float32 = payload_nans.astype(np.float32)
        assert value_hash(as_float32, declared) == reference
        # Arrow conversions of offline frames turn NaN elements into nulls: the same array
        assert value_hash([None] * n, declared) == reference
        # and an element NaN is not a null array
        assert reference != value_hash(None, declared)


@pytest.mark.parametrize("declared", ["Float32", "Float64"])
def test_infinities_are_distinct_values(declared: str) -> None:
    hashes = {value_hash(v, declared) for v in (math.inf, -math.inf, math.nan, 0.0, 3.4e38)}
    assert len(hashes) == 5
    assert value_hash(math.nan, declared) == value_hash(None, declared)


def test_float32_overflow_is_infinity_like_a_float32_column() -> None:
    assert value_hash(1e300, "Float32") == value_hash(math.inf, "Float32")
    assert value_hash(-1e300, "Float32") == value_hash(-math.inf, "Float32")


# --- ints, strings, kinds -----------------------------------------------------------------


exact_ints = st.integers(-(2**53), 2**53)


@given(exact_ints, exact_ints)
def test_distinct_ints_hash_differently(a: int, b: int) -> None:
    assume(a != b)
    assert encode_value(a, "Int64") != encode_value(b, "Int64")
    assert value_hash(a, "Int64") != value_hash(b, "Int64")


def _nearest_int64_double(v: int) -> float:
    """The double an int travels as through float64, clipped to what an int64 holds."""
    return min(max(float(v), -(2.0**63)), float(2**63 - 1024))


@given(st.integers(-(2**80), 2**80), st.integers(-(2**80), 2**80))
def test_ints_beyond_2_53_hash_alike_exactly_when_their_doubles_do(a: int, b: int) -> None:
    same = _nearest_int64_double(a) == _nearest_int64_double(b)
    assert (value_hash(a, "Int64") == value_hash(b, "Int64")) == same


@given(st.text(), st.text())
def test_distinct_strings_hash_differently(a: str, b: str) -> None:
    assume(a != b)
    assert encode_value(a, "String") != encode_value(b, "String")
    assert value_hash(a, "String") != value_hash(b, "String")


@given(st.binary(), st.binary())
def test_distinct_bytes_hash_differently(a: bytes, b: bytes) -> None:
    assume(a != b)
    assert value_hash(a, "Bytes") != value_hash(b, "Bytes")


@given(st.data())
def test_numpy_int_widths_equal_python_int(data: st.DataObject) -> None:
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32):
        info = np.iinfo(dtype)
        value = data.draw(st.integers(int(info.min), int(info.max)), label=dtype.__name__)
        for declared in ("Int32", "Int64"):
            assert value_hash(dtype(value), declared) == value_hash(value, declared)
    big = data.draw(st.integers(0, 2**64 - 1), label="uint64")
    assert value_hash(np.uint64(big), "Int64") == value_hash(big, "Int64")


@given(i64.filter(lambda v: abs(v) < 2**53))
def test_an_integral_float_under_an_int_type_is_the_int(value: int) -> None:
    """pandas widens an Int64 column with gaps to float64: 7.0 offline is the served 7."""
    for declared in ("Int32", "Int64"):
        assert value_hash(float(value), declared) == value_hash(value, declared)
        assert value_hash(np.float64(value), declared) == value_hash(value, declared)


def test_a_fractional_float_under_an_int_type_stays_visible() -> None:
    assert value_hash(7.5, "Int64") != value_hash(7, "Int64")
    assert value_hash(7.5, "Int64") != value_hash(8, "Int64")


def test_an_int_under_a_float_type_is_the_float() -> None:
    assert value_hash(3, "Float64") == value_hash(3.0, "Float64")
    assert value_hash(np.int64(3), "Float32") == value_hash(3.0, "Float32")


@pytest.mark.parametrize(
    ("a", "b", "declared"),
    [
        (True, 1, "Int64"),  # a bool served for an Int64 feature is a type change
        (False, 0, "Float64"),
        (True, 1, "Invalid"),
        ("1", 1, "Int64"),  # text is no number of a numeric feature
        ("1.5", 1.5, "Float64"),
        ("abc", b"abc", "String"),  # bytes are not text
        ("1", "1.0", "String"),
        (None, 0, "Int64"),  # null is no value
        (None, "", "String"),
        (None, [], "Array(Int64)"),
        ([], "", "Invalid"),
        ([1], [1, None], "Array(Int64)"),
    ],
)
def test_values_that_only_look_alike_differ(a: object, b: object, declared: str) -> None:
    assert value_hash(a, declared) != value_hash(b, declared)


def test_uuid_and_decimal_objects_are_their_text() -> None:
    """Feast's converter returns uuid.UUID and decimal.Decimal objects; the log and offline
    stores hold their text. A number served for a String feature is a type change."""
    import decimal
    import uuid

    ident = uuid.UUID(int=42)
    assert value_hash(ident, "Uuid") == value_hash(str(ident), "Uuid")
    assert value_hash(decimal.Decimal("12.5"), "Decimal") == value_hash("12.5", "Decimal")
    assert value_hash(1, "String") != value_hash("1", "String")


# --- timestamps ---------------------------------------------------------------------------

naive_datetimes = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))


@given(naive_datetimes, st.integers(-14 * 60, 14 * 60))
def test_naive_datetimes_are_utc_and_every_spelling_of_a_moment_agrees(
    moment: datetime, minutes: int
) -> None:
    aware_utc = moment.replace(tzinfo=timezone.utc)
    other_zone = aware_utc.astimezone(timezone(timedelta(minutes=minutes)))
    expected = value_hash(moment, "UnixTimestamp")
    assert value_hash(aware_utc, "UnixTimestamp") == expected
    assert value_hash(other_zone, "UnixTimestamp") == expected
    assert value_hash(pd.Timestamp(aware_utc), "UnixTimestamp") == expected
    assert value_hash(np.datetime64(moment, "us"), "UnixTimestamp") == expected
    as_ns = np.datetime64(moment, "us").astype("datetime64[ns]")
    assert value_hash(as_ns, "UnixTimestamp") == expected
    seconds = _whole_seconds(moment)
    assert encode_value(moment, "UnixTimestamp") == b"t" + _i64(seconds * 1_000_000)
    # epoch seconds (what the online store holds) are the same value
    assert value_hash(seconds, "UnixTimestamp") == expected


@given(naive_datetimes)
@example(datetime(1969, 12, 31, 23, 59, 59, 1))  # found by hypothesis: the second before 0
def test_timestamps_compare_in_whole_seconds(moment: datetime) -> None:
    """The online store keeps whole seconds, so sub-second offline parts are not a skew."""
    same_second = [
        moment + timedelta(microseconds=d)
        for d in (-1, 1)
        if _whole_seconds(moment + timedelta(microseconds=d)) == _whole_seconds(moment)
    ]
    for other in same_second:
        assert value_hash(other, "UnixTimestamp") == value_hash(moment, "UnixTimestamp")
    one_second_later = moment + timedelta(seconds=1)
    later = value_hash(one_second_later, "UnixTimestamp")
    if _whole_seconds(one_second_later) != _whole_seconds(moment):
        assert later != value_hash(moment, "UnixTimestamp")
    else:  # the last second before the epoch: truncation toward zero maps it to 0 too, as Feast
        assert later == value_hash(moment, "UnixTimestamp")


def test_missing_timestamps_are_null() -> None:
    null = value_hash(None, "UnixTimestamp")
    assert value_hash(pd.NaT, "UnixTimestamp") == null
    assert value_hash(np.datetime64("NaT"), "UnixTimestamp") == null
    assert value_hash(datetime(1970, 1, 1), "UnixTimestamp") != null


# --- arrays and maps ----------------------------------------------------------------------


def _element(value: float, declared: str) -> bytes:
    """An array element's documented encoding: a NaN element is kept as the canonical NaN."""
    if value != value:
        return F32_NAN if declared == "Float32" else F64_NAN
    return encode_value(value, declared)


@slow
@given(st.lists(any_float, max_size=40))
def test_float_arrays_are_the_same_in_every_container(values: list[float]) -> None:
    for declared in ("Array(Float32)", "Array(Float64)"):
        expected = encode_value(values, declared)
        assert encode_value(tuple(values), declared) == expected
        assert encode_value(np.array(values, dtype=np.float64), declared) == expected
        element = declared[6:-1]
        elementwise = b"a" + _u32(len(values)) + b"".join(_element(v, element) for v in values)
        assert expected == elementwise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow to inf
        as_float32 = np.array(values, dtype=np.float32)
    assert encode_value(as_float32, "Array(Float32)") == encode_value(values, "Array(Float32)")


@slow
@given(st.lists(i64, max_size=40))
def test_int_arrays_are_the_same_in_every_container(values: list[int]) -> None:
    expected = b"a" + _u32(len(values)) + b"".join(encode_value(v, "Int64") for v in values)
    assert encode_value(values, "Array(Int64)") == expected
    assert encode_value(tuple(values), "Array(Int64)") == expected
    assert encode_value(np.array(values, dtype=np.int64), "Array(Int64)") == expected


def test_numpy_int_and_bool_arrays_of_any_width() -> None:
    ints = list(range(-5, 5))
    expected = value_hash(ints, "Array(Int32)")
    assert value_hash(np.array(ints, dtype=np.int8), "Array(Int32)") == expected
    assert value_hash(np.array(ints, dtype=">i4"), "Array(Int32)") == expected
    big = [0, 2**63, 2**64 - 1]
    assert value_hash(np.array(big, dtype=np.uint64), "Array(Int64)") == value_hash(
        big, "Array(Int64)"
    )
    bools = [True, False, True]
    assert value_hash(np.array(bools), "Array(Bool)") == value_hash(bools, "Array(Bool)")
    strings = ["a", "bc"]
    assert value_hash(np.array(strings), "Array(String)") == value_hash(strings, "Array(String)")


def test_array_element_type_sets_float_precision() -> None:
    x = 0.1
    rounded = float(np.float32(x))
    for n in (1, 20):
        assert value_hash([x] * n, "Array(Float32)") == value_hash([rounded] * n, "Array(Float32)")
        assert value_hash([x] * n, "Array(Float64)") != value_hash([rounded] * n, "Array(Float64)")


def test_negative_zero_inside_arrays() -> None:
    for n in (1, 20):
        for declared in ("Array(Float32)", "Array(Float64)"):
            assert value_hash([-0.0] * n, declared) == value_hash([0.0] * n, declared)
            assert value_hash(np.full(n, -0.0), declared) == value_hash([0.0] * n, declared)


def test_array_boundaries_are_unambiguous() -> None:
    assert value_hash(["ab", "c"], "Array(String)") != value_hash(["a", "bc"], "Array(String)")
    assert value_hash([[1], [2]], "Invalid") != value_hash([[1, 2]], "Invalid")
    assert value_hash([[1, 2], []], "Invalid") != value_hash([[1], [2]], "Invalid")
    assert value_hash([None], "Invalid") != value_hash([], "Invalid")


def test_nested_numpy_arrays_equal_nested_lists() -> None:
    nested = [[1.5, -0.0], [math.nan, 2.0]]
    assert value_hash(np.array(nested), "Invalid") == value_hash(nested, "Invalid")


@given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text()), max_size=6))
def test_maps_do_not_depend_on_key_order(mapping: dict[str, object]) -> None:
    reordered = dict(reversed(list(mapping.items())))
    assert value_hash(reordered, "Map") == value_hash(mapping, "Map")


def test_map_changes_are_detected() -> None:
    base = value_hash({"a": 1, "b": 2}, "Map")
    assert value_hash({"a": 2, "b": 1}, "Map") != base
    assert value_hash({"a": 1}, "Map") != base
    assert value_hash({"ab": "c"}, "Map") != value_hash({"a": "bc"}, "Map")


def test_maps_structs_and_json_compare_parsed() -> None:
    """Offline stores hold these as JSON text; serving returns them parsed, and pandas may have
    widened their integers to floats."""
    for declared in ("Map", "Json", "Struct({a: Int64, b: Array(Int64)})"):
        parsed = {"a": 1, "b": [1, 2]}
        assert value_hash('{"b": [1, 2], "a": 1}', declared) == value_hash(parsed, declared)
        assert value_hash({"a": 1.0, "b": [1.0, 2.0]}, declared) == value_hash(parsed, declared)
        assert value_hash({"a": 1.5, "b": [1, 2]}, declared) != value_hash(parsed, declared)


def test_sets_do_not_depend_on_insertion_order() -> None:
    words = [f"w{i}" for i in range(50)]
    assert value_hash(set(words), "Invalid") == value_hash(set(reversed(words)), "Invalid")
    assert value_hash(frozenset(words), "Invalid") == value_hash(set(words), "Invalid")
    assert value_hash(set(words[:-1]), "Invalid") != value_hash(set(words), "Invalid")
    assert value_hash(words, "Set(String)") == value_hash(words[::-1], "Set(String)")


# --- never raises -------------------------------------------------------------------------


class _BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class _BrokenZone(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        raise RuntimeError("no offset")

    def dst(self, dt: datetime | None) -> timedelta:
        raise RuntimeError("no dst")

    def tzname(self, dt: datetime | None) -> str:
        raise RuntimeError("no name")


def _self_containing() -> list[object]:
    lst: list[object] = [1]
    lst.append(lst)
    return lst


@pytest.mark.parametrize(
    "value",
    [
        _BrokenRepr(),
        datetime(2024, 1, 1, tzinfo=_BrokenZone()),
        _self_containing(),
        object,
        1 + 2j,
        np.complex64(1),
        ...,
    ],
)
@pytest.mark.parametrize("declared", ["Int64", "Float32", "Array(Float32)", "Json", 5, None])
def test_encode_value_never_raises(value: object, declared: str) -> None:
    encoded = encode_value(value, declared)
    assert isinstance(encoded, bytes) and encoded
    assert encode_value(value, declared) == encoded  # and is stable


@pytest.mark.parametrize("value", [10**13, -(10**13), 1e300])
def test_timestamps_beyond_the_encodable_range_never_raise(value: float) -> None:
    """Epoch seconds whose microseconds do not fit the int64 of tag ``t`` (a corrupt or
    sentinel value) must still encode: the writer thread hashes every served value."""
    encoded = encode_value(value, "UnixTimestamp")
    assert isinstance(encoded, bytes) and encoded != encode_value(None, "UnixTimestamp")
    assert value_hash(value, "UnixTimestamp") != value_hash(0, "UnixTimestamp")


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | any_float | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=12)
        | st.tuples(children, children)
        | st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), children, max_size=4)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=30,
)
declared_types = st.sampled_from(
    ["Int32", "Int64", "Float32", "Float64", "String", "Bytes", "Bool", "UnixTimestamp",
     "Array(Float32)", "Array(Int64)", "Array(Array(Float32))", "Map", "Struct", "Json",
     "Invalid", "Nonsense("]
)  # fmt: skip


@slow
@given(json_like, declared_types)
def test_arbitrary_values_encode_and_hash(value: object, declared: str) -> None:
    assert isinstance(encode_value(value, declared), bytes)
    assert 0 <= value_hash(value, declared) < 2**64


# --- rows and schemas ---------------------------------------------------------------------

feature_values = st.one_of(
    st.tuples(st.just("Int64"), st.integers(-(2**53) + 1, 2**53 - 1)),
    st.tuples(st.just("String"), st.text(max_size=8)),
    st.tuples(st.just("Float64"), st.floats(allow_nan=False)),
    st.tuples(st.just("Float32"), st.floats(width=32, allow_nan=False)),
)
feature_rows = st.dictionaries(
    st.text(min_size=1, max_size=8), feature_values, min_size=1, max_size=6
)


def _row_hash(row: dict[str, tuple[str, object]]) -> int:
    """The row hash of ``{name: (declared, value)}``, as a served view row is hashed."""
    hashes = {name: value_hash(value, declared) for name, (declared, value) in row.items()}
    return row_hash(hashes, schema_fingerprint({name: t for name, (t, _) in row.items()}))


def _changed(declared: str, value: object) -> object:
    """A value that differs from ``value`` at the declared precision."""
    if declared == "Int64":
        assert isinstance(value, int)
        return value + 1 if value < 2**53 - 1 else value - 1
    if declared == "String":
        assert isinstance(value, str)
        return value + "x"
    assert isinstance(value, float)
    if math.isinf(value):
        return 0.0
    towards = -math.inf if value > 0 else math.inf  # never past the largest finite value
    if declared == "Float32":
        return float(np.nextafter(np.float32(value), np.float32(towards)))
    return float(np.nextafter(value, towards))


@given(feature_rows, st.data())
def test_row_hash_changes_when_any_single_value_changes(
    row: dict[str, tuple[str, object]], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(row)), label="changed feature")
    declared, value = row[name]
    changed = dict(row)
    changed[name] = (declared, _changed(declared, value))
    assert _row_hash(changed) != _row_hash(row)


@given(feature_rows, st.randoms(use_true_random=False))
def test_row_hash_ignores_feature_order(row: dict[str, tuple[str, object]], rnd: object) -> None:
    items = list(row.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    assert _row_hash(dict(items)) == _row_hash(row)


def test_row_hash_layout_matches_the_docstring() -> None:
    """xxh3_64 over the value hashes (u64le, features in name order), seeded with the
    schema fingerprint."""
    a, b = value_hash(1, "Int64"), value_hash("x", "String")
    fingerprint = schema_fingerprint({"a": "Int64", "b": "String"})
    data = a.to_bytes(8, "little") + b.to_bytes(8, "little")
    assert row_hash({"b": b, "a": a}, fingerprint) == xxhash.xxh3_64_intdigest(data, fingerprint)


def test_row_hash_sees_declared_types_names_and_swaps() -> None:
    base = {"a": ("Int64", 1), "b": ("Int64", 2)}
    assert _row_hash({"a": ("Int32", 1), "b": ("Int64", 2)}) != _row_hash(base)
    assert _row_hash({"a": ("Int64", 2), "b": ("Int64", 1)}) != _row_hash(base)
    assert _row_hash({"a": ("Int64", 1), "c": ("Int64", 2)}) != _row_hash(base)
    assert _row_hash({"a": ("Int64", 1)}) != _row_hash(base)
    assert _row_hash({"ab": ("String", "c")}) != _row_hash({"a": ("String", "bc")})


def test_schema_fingerprint() -> None:
    schema = {"ctr": "Float32", "sessions": "Int64", "country": "String"}
    base = schema_fingerprint(schema)
    assert schema_fingerprint(dict(reversed(list(schema.items())))) == base
    assert schema_fingerprint({**schema, "ctr": "Float64"}) != base
    assert schema_fingerprint({**schema, "device": "String"}) != base
    assert schema_fingerprint({"ab": "String"}) != schema_fingerprint({"a": "bString"})
    expected = xxhash.xxh3_64_intdigest(_u32(1) + b"a" + _u32(5) + b"Int64")
    assert schema_fingerprint({"a": "Int64"}) == expected


@given(
    st.dictionaries(st.text(max_size=6), st.sampled_from(["Int64", "Float32", "String"])),
    st.data(),
)
def test_schema_fingerprint_changes_when_a_type_changes(
    schema: dict[str, str], data: st.DataObject
) -> None:
    assume(schema)
    name = data.draw(st.sampled_from(sorted(schema)))
    new_type = data.draw(st.sampled_from(["Int64", "Float32", "String"]).filter(
        lambda t: t != schema[name]
    ))  # fmt: skip
    assert schema_fingerprint({**schema, name: new_type}) != schema_fingerprint(schema)


def _mixed_row() -> dict[str, tuple[str, object]]:
    return {
        "seen": ("UnixTimestamp", datetime(2024, 5, 1, 12, 30)),
        "tags": ("Set(String)", frozenset(f"t{i}" for i in range(30))),
        "attrs": ("Map", {f"k{i}": i for i in range(30)}),
        "ctr": ("Float32", 0.1),
        "name": ("String", "zoë"),
    }


_CHILD = """
import json
from tests.unit.test_hashing import _mixed_row, _row_hash
from feast_parity.parity.hashing import value_hash
row = _mixed_row()
print(json.dumps([_row_hash(row), {k: value_hash(v, t) for k, (t, v) in row.items()}]))
"""


def test_hashes_are_identical_across_processes() -> None:
    results = []
    # Different set iteration orders and local time zones (POSIX TZ strings need no tzdata):
    # naive datetimes mean UTC, never local time.
    for hash_seed, tz in (("1", "UTC0"), ("2", "IST-5:30")):
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONHASHSEED=hash_seed, TZ=tz)
        out = subprocess.run(
            [sys.executable, "-c", _CHILD],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        results.append(json.loads(out))
    row = _mixed_row()
    here = [_row_hash(row), {k: value_hash(v, t) for k, (t, v) in row.items()}]
    assert results == [here, here]


# --- keyed hashes of redacted features ----------------------------------------------------


def test_keyed_hash_is_the_first_8_bytes_of_hmac_sha256() -> None:
    encoding = encode_value(42, "Int64")
    digest = hmac.new(b"secret", encoding, hashlib.sha256).digest()
    assert keyed_hash(b"secret", encoding) == int.from_bytes(digest[:8], "little")
    assert keyed_hash(b"other", encoding) != keyed_hash(b"secret", encoding)
    assert keyed_hash(b"secret", encoding) != value_hash(42, "Int64")


# --- signed storage and hex ---------------------------------------------------------------


@given(st.integers(0, 2**64 - 1))
def test_signed_round_trip(h: int) -> None:
    s = to_signed64(h)
    assert -(2**63) <= s < 2**63
    assert (s - h) % 2**64 == 0
    assert from_signed64(s) == h
    assert hash_hex(h) == hash_hex(s)
    text = hash_hex(h)
    assert len(text) == 16 and text == text.lower() and int(text, 16) == h


def test_signed_boundaries() -> None:
    assert to_signed64(2**63 - 1) == 2**63 - 1
    assert to_signed64(2**63) == -(2**63)
    assert to_signed64(2**64 - 1) == -1
    assert hash_hex(0) == "0" * 16
    assert hash_hex(2**64 - 1) == "f" * 16


@pytest.mark.parametrize(
    ("func", "value"),
    [
        (to_signed64, -1),
        (to_signed64, 2**64),
        (from_signed64, 2**63),
        (from_signed64, -(2**63) - 1),
        (hash_hex, 2**64),
        (hash_hex, -(2**63) - 1),
    ],
)
def test_out_of_range_values_raise(func: object, value: int) -> None:
    with pytest.raises(ValueError):
        func(value)  # type: ignore[operator]
