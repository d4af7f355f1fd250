"""Canonical encoding and hashing of feature values, served and offline alike.

A served value and the offline value it should equal must hash identically even when they
come in different Python shapes (``int`` vs ``numpy.int64``, list vs ``numpy.ndarray``,
naive vs aware UTC datetime, ``-0.0`` vs ``0.0``, NaNs with different payloads), and must hash
differently when the value or its kind really changed. ``encode_value`` never raises: it runs
on the serving path. Pure module (stdlib, numpy, xxhash).

Every encoding starts with a one-byte tag and is self-delimiting (fixed width or
length-prefixed), so concatenations (arrays, maps, rows) are unambiguous:

==========  =====================================================================
tag         payload
==========  =====================================================================
``N``       none (``None``, ``NaT``)
``?``       1 byte, 0 or 1
``i``       int64 little-endian (any integer that fits)
``I``       u32le length + decimal digits (integers outside int64)
``f``       float32 little-endian (declared ``Float32``)
``d``       float64 little-endian (anything else)
``s``       u32le length + utf-8
``b``       u32le length + bytes
``t``       int64 little-endian UTC epoch microseconds
``a``       u32le count + encoded elements (list, tuple, ndarray)
``S``       u32le count + encoded elements sorted by encoding (set, frozenset)
``m``       u32le count + (encoded key, encoded value) pairs sorted by key encoding
``o``       u32le length + utf-8 ``repr`` (anything else)
==========  =====================================================================
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence, Set
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import xxhash

__all__ = [
    "encode_value",
    "from_signed64",
    "hash_hex",
    "row_and_value_hashes",
    "row_hash",
    "schema_fingerprint",
    "to_signed64",
    "value_hash",
]

_hash = xxhash.xxh3_64_intdigest
_U32 = struct.Struct("<I").pack
_TAGGED_LEN = struct.Struct("<cI").pack
_TAGGED_I64 = struct.Struct("<cq").pack
_TAGGED_F32 = struct.Struct("<cf").pack
_TAGGED_F64 = struct.Struct("<cd").pack

_NULL = b"N"
_TRUE = b"?\x01"
_FALSE = b"?\x00"
_F32_ZERO = _TAGGED_F32(b"f", 0.0)
_F64_ZERO = _TAGGED_F64(b"d", 0.0)
_F32_NAN_BITS = 0x7FC00000
_F64_NAN_BITS = 0x7FF8000000000000
_F32_NAN = b"f" + _F32_NAN_BITS.to_bytes(4, "little")
_F64_NAN = b"d" + _F64_NAN_BITS.to_bytes(8, "little")
_F32_POS_INF = _TAGGED_F32(b"f", float("inf"))
_F32_NEG_INF = _TAGGED_F32(b"f", float("-inf"))
# Largest magnitude that rounds to (signed) zero in float32: ties-to-even at 2**-150.
_F32_ZERO_LIMIT = 2.0**-150
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U64_MASK = 2**64 - 1

_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# Packed (itemsize 1 + width) records: the same bytes as the scalar encodings, element-wise.
_F32_RECORDS = np.dtype([("tag", "S1"), ("value", "<f4")])
_F64_RECORDS = np.dtype([("tag", "S1"), ("value", "<f8")])
_I64_RECORDS = np.dtype([("tag", "S1"), ("value", "<i8")])
_BOOL_RECORDS = np.dtype([("tag", "S1"), ("value", "u1")])
_VECTORIZE_MIN = 8  # shorter Python lists are cheaper element by element

_PREFIX_CACHE: dict[tuple[str, str], bytes] = {}
_PREFIX_CACHE_MAX = 4096


def _element_type(declared: str) -> str:
    if declared.startswith("Array(") and declared.endswith(")"):
        return declared[6:-1]
    return declared


def _f32(value: float) -> bytes:
    if value != value:
        return _F32_NAN
    if -_F32_ZERO_LIMIT <= value <= _F32_ZERO_LIMIT:  # rounds to +-0 in float32
        return _F32_ZERO
    try:
        return _TAGGED_F32(b"f", value)
    except OverflowError:  # finite but beyond float32: what a float32 cast stores
        return _F32_POS_INF if value > 0 else _F32_NEG_INF


def _f64(value: float) -> bytes:
    if value != value:
        return _F64_NAN
    if value == 0.0:
        return _F64_ZERO
    return _TAGGED_F64(b"d", value)


def _int(value: int) -> bytes:
    if _I64_MIN <= value <= _I64_MAX:
        return _TAGGED_I64(b"i", value)
    digits = str(value).encode("ascii")
    return _TAGGED_LEN(b"I", len(digits)) + digits


def _str(value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return _TAGGED_LEN(b"s", len(data)) + data


def _bytes(value: bytes | bytearray | memoryview) -> bytes:
    data = bytes(value)
    return _TAGGED_LEN(b"b", len(data)) + data


def _datetime(value: datetime) -> bytes:
    if value != value:  # pandas.NaT is a datetime instance
        return _NULL
    if value.tzinfo is None or value.utcoffset() is None:
        micros = (value - _EPOCH_NAIVE) // _MICROSECOND  # naive means UTC
    else:
        micros = (value - _EPOCH_AWARE) // _MICROSECOND
    return _TAGGED_I64(b"t", int(micros))


def _datetime64(value: np.datetime64) -> bytes:
    if np.isnat(value):
        return _NULL
    return _TAGGED_I64(b"t", int(value.astype("datetime64[us]").astype(np.int64)))


def _other(value: object) -> bytes:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break serving
        text = f"<unrepresentable {type(value).__module__}.{type(value).__qualname__}>"
    data = text.encode("utf-8", "surrogatepass")
    return _TAGGED_LEN(b"o", len(data)) + data


def _records(tag: bytes, values: np.ndarray, dtype: np.dtype[Any]) -> bytes:
    out = np.empty(values.shape[0], dtype=dtype)
    out["tag"] = tag
    out["value"] = values
    return out.tobytes()


def _float_records(values: np.ndarray, element_type: str) -> bytes:
    with np.errstate(over="ignore", invalid="ignore"):
        if element_type == "Float32":
            floats = values.astype("<f4")
            nan_bits, tag, dtype = _F32_NAN_BITS, b"f", _F32_RECORDS
            bits = floats.view("<u4")
        else:
            floats = values.astype("<f8")
            nan_bits, tag, dtype = _F64_NAN_BITS, b"d", _F64_RECORDS
            bits = floats.view("<u8")
        floats += 0.0  # -0.0 + 0.0 == +0.0; a fresh copy, so the caller's array is untouched
        bits[np.isnan(floats)] = nan_bits
    return _records(tag, floats, dtype)


def _ndarray(value: np.ndarray, declared: str) -> bytes:
    if value.ndim == 0:
        return _encode(value[()], declared)
    element_type = _element_type(declared)
    header = _TAGGED_LEN(b"a", value.shape[0])
    kind = value.dtype.kind
    if value.ndim == 1:
        if kind == "f":
            return header + _float_records(value, element_type)
        if kind in "iu":
            if kind == "u" and value.size and value.max() > _I64_MAX:
                return header + b"".join([_int(v) for v in value.tolist()])
            return header + _records(b"i", value.astype("<i8"), _I64_RECORDS)
        if kind == "b":
            return header + _records(b"?", value.astype("u1"), _BOOL_RECORDS)
        if kind in "USO":
            return header + _elements(value.tolist(), element_type)
    # datetime64 (NaT is null), complex, multi-dimensional: element by element.
    return header + _elements(value, element_type)


def _elements(values: Iterable[object], element_type: str) -> bytes:
    return b"".join([_encode(v, element_type) for v in values])


def _sequence(value: Sequence[object], declared: str) -> bytes:
    n = len(value)
    if n >= _VECTORIZE_MIN:
        types = set(map(type, value))
        if types == {float}:
            return _ndarray(np.array(value, dtype=np.float64), declared)
        if types == {int}:
            try:
                as_array = np.array(value, dtype=np.int64)
            except OverflowError:
                pass
            else:
                return _ndarray(as_array, declared)
    return _TAGGED_LEN(b"a", n) + _elements(value, _element_type(declared))


def _set(value: Set[object], declared: str) -> bytes:
    element_type = _element_type(declared)
    encoded = sorted([_encode(v, element_type) for v in value])
    return _TAGGED_LEN(b"S", len(encoded)) + b"".join(encoded)


def _mapping(value: Mapping[object, object], declared: str) -> bytes:
    pairs = sorted([(_encode(k, "Invalid"), _encode(v, declared)) for k, v in value.items()])
    return _TAGGED_LEN(b"m", len(pairs)) + b"".join([k + v for k, v in pairs])


def _encode(value: object, declared: str) -> bytes:
    t = type(value)
    # Exact types first: the common serving-path values, one comparison each.
    if t is float:
        return _f32(value) if declared == "Float32" else _f64(value)  # type: ignore[arg-type]
    if t is int:
        return _int(value)  # type: ignore[arg-type]
    if t is str:
        return _str(value)  # type: ignore[arg-type]
    if value is None:
        return _NULL
    if t is bool:
        return _TRUE if value else _FALSE
    # Subclasses and numpy scalars; bool before int because bool subclasses int.
    if isinstance(value, (bool, np.bool_)):
        return _TRUE if value else _FALSE
    if isinstance(value, (int, np.integer)):
        return _int(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return _f32(v) if declared == "Float32" else _f64(v)
    if isinstance(value, str):
        return _str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(value)
    if isinstance(value, datetime):
        return _datetime(value)
    if isinstance(value, np.datetime64):
        return _datetime64(value)
    if isinstance(value, np.ndarray):
        return _ndarray(value, declared)
    if isinstance(value, (list, tuple)):
        return _sequence(value, declared)
    if isinstance(value, Mapping):
        return _mapping(value, declared)
    if isinstance(value, Set):
        return _set(value, declared)
    if isinstance(value, Sequence):  # e.g. protobuf repeated fields
        return _sequence(value, declared)
    return _other(value)


def encode_value(value: object, declared_type: str) -> bytes:
    """Canonical bytes of a feature value; equal bytes iff the values are the same value.

    The *value's* kind decides the encoding (a float under ``Int64`` stays a float, so a
    type change is visible); the declared type only sets float width and array element type.
    Never raises: unknown or broken objects fall back to their ``repr``.

    >>> encode_value(np.int32(7), "Int32") == encode_value(7, "Int64")
    True
    >>> encode_value(7.0, "Int64") == encode_value(7, "Int64")
    False
    >>> encode_value(float("nan"), "Float64") == encode_value(-np.float64("nan"), "Float64")
    True
    """
    if type(declared_type) is not str:
        declared_type = str(declared_type)  # e.g. a feast.types object: str() is its name
    try:
        return _encode(value, declared_type)
    except Exception:  # RecursionError (self-containing list), exotic subclasses...
        return _other(value)


def value_hash(value: object, declared_type: str) -> int:
    """xxh3_64 of ``encode_value``: an unsigned 64-bit int.

    >>> value_hash(-0.0, "Float64") == value_hash(0.0, "Float64")
    True

    Float32 features are compared at float32 precision, so the float64 rounding noise of a
    float32 round trip does not count as a mismatch; under Float64 it does:

    >>> value_hash(0.1, "Float32") == value_hash(float(np.float32(0.1)), "Float32")
    True
    >>> value_hash(0.1, "Float64") == value_hash(float(np.float32(0.1)), "Float64")
    False
    """
    return _hash(encode_value(value, declared_type))


def _prefix(name: str, declared: str) -> bytes:
    key = (name, declared)
    prefix = _PREFIX_CACHE.get(key)
    if prefix is None:
        name_b = name.encode("utf-8", "surrogatepass")
        type_b = declared.encode("utf-8", "surrogatepass")
        prefix = _U32(len(name_b)) + name_b + _U32(len(type_b)) + type_b
        if len(_PREFIX_CACHE) >= _PREFIX_CACHE_MAX:
            _PREFIX_CACHE.clear()
        _PREFIX_CACHE[key] = prefix
    return prefix


def row_and_value_hashes(
    features: Mapping[str, tuple[str, object]],
) -> tuple[int, dict[str, int]]:
    """``(row_hash(features), {name: value_hash(value, type)})`` in one pass.

    The row hash covers, in sorted name order, each feature's length-prefixed name, declared
    type and encoded value, so it is independent of the order features are given in.
    """
    parts: list[bytes] = []
    value_hashes: dict[str, int] = {}
    for name in sorted(features):
        declared, value = features[name]
        if type(declared) is not str:
            declared = str(declared)
        encoded = encode_value(value, declared)
        value_hashes[name] = _hash(encoded)
        parts.append(_prefix(name, declared))
        parts.append(_U32(len(encoded)))
        parts.append(encoded)
    return _hash(b"".join(parts)), value_hashes


def row_hash(features: Mapping[str, tuple[str, object]]) -> int:
    """Hash of a whole feature row: feature name -> (declared type, value)."""
    parts: list[bytes] = []
    for name in sorted(features):
        declared, value = features[name]
        if type(declared) is not str:
            declared = str(declared)
        encoded = encode_value(value, declared)
        parts.append(_prefix(name, declared))
        parts.append(_U32(len(encoded)))
        parts.append(encoded)
    return _hash(b"".join(parts))


def schema_fingerprint(fields: Mapping[str, str]) -> int:
    """Hash of sorted (name, declared type) pairs: changes when a field or its type does.

    >>> schema_fingerprint({"a": "Int64", "b": "Float32"}) == schema_fingerprint(
    ...     {"b": "Float32", "a": "Int64"})
    True
    """
    return _hash(b"".join([_prefix(name, str(fields[name])) for name in sorted(fields)]))


def to_signed64(h: int) -> int:
    """Unsigned 64-bit hash as the signed value a SQL BIGINT can store.

    >>> to_signed64(2**64 - 1), to_signed64(2**63), to_signed64(5)
    (-1, -9223372036854775808, 5)
    """
    if not 0 <= h <= _U64_MASK:
        raise ValueError(f"not an unsigned 64-bit value: {h}")
    return h - 2**64 if h > _I64_MAX else h


def from_signed64(s: int) -> int:
    """Inverse of ``to_signed64``: a BIGINT read back as the unsigned hash.

    >>> from_signed64(-1) == 2**64 - 1
    True
    """
    if not _I64_MIN <= s <= _I64_MAX:
        raise ValueError(f"not a signed 64-bit value: {s}")
    return s & _U64_MASK


def hash_hex(h: int) -> str:
    """16 lowercase hex digits of a hash; a negative (signed BIGINT) hash is read as unsigned.

    >>> hash_hex(255), hash_hex(-1)
    ('00000000000000ff', 'ffffffffffffffff')
    """
    if h < 0:
        h = from_signed64(h)
    elif h > _U64_MASK:
        raise ValueError(f"not a 64-bit value: {h}")
    return f"{h:016x}"
