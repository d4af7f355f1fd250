"""Canonical encoding and hashing of feature values, served and offline alike.

Values are first brought to their canonical form (:mod:`feast_parity.parity.canonical`), then
encoded here; two values hash alike exactly when their canonical forms are equal. Every
encoding starts with a one-byte tag and is self-delimiting (fixed width or length-prefixed), so
concatenations (arrays, maps) are unambiguous:

==========  =====================================================================
tag         payload
==========  =====================================================================
``N``       none
``?``       1 byte, 0 or 1
``i``       int64 little-endian (any integer that fits)
``I``       u32le length + decimal digits (integers outside int64)
``f``       float32 little-endian (element type ``Float32``); NaN as 0x7fc00000
``d``       float64 little-endian (anything else); NaN as 0x7ff8000000000000
``s``       u32le length + utf-8
``b``       u32le length + bytes
``t``       int64 little-endian UTC epoch microseconds (whole seconds, see canonical)
``T``       u32le length + decimal digits (microseconds outside int64)
``a``       u32le count + encoded elements (arrays, sets in canonical order)
``m``       u32le count + (encoded key, encoded value) pairs in key order
``o``       u32le length + utf-8 ``repr`` (a value of no known kind)
==========  =====================================================================

The value hash is ``xxh3_64`` of the encoding. The row hash of a view row is ``xxh3_64`` over
the value hashes (u64le, features in name order) seeded with the schema fingerprint of those
features, so it changes when any value, name or declared type does. Redacted features use a
keyed hash instead (:func:`keyed_hash`): the first 8 bytes of HMAC-SHA256 over the encoding.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Mapping
from typing import Any

import xxhash

from feast_parity.parity.canonical import MapItems, Other, Seconds, canonical_value, element_type

__all__ = [
    "encode_canonical",
    "encode_value",
    "from_signed64",
    "hash_hex",
    "keyed_hash",
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

NULL_ENCODING = b"N"
_TRUE = b"?\x01"
_FALSE = b"?\x00"
F32_NAN_BITS = 0x7FC00000
F64_NAN_BITS = 0x7FF8000000000000
_F32_NAN = b"f" + F32_NAN_BITS.to_bytes(4, "little")
_F64_NAN = b"d" + F64_NAN_BITS.to_bytes(8, "little")
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U64_MASK = 2**64 - 1


def _float(value: float, single: bool) -> bytes:
    if value != value:
        return _F32_NAN if single else _F64_NAN
    value += 0.0
    if single:
        try:
            return _TAGGED_F32(b"f", value)
        except OverflowError:  # beyond float32: what a float32 column stores
            return _TAGGED_F32(b"f", float("inf") if value > 0 else float("-inf"))
    return _TAGGED_F64(b"d", value)


def _int(value: int) -> bytes:
    if _I64_MIN <= value <= _I64_MAX:
        return _TAGGED_I64(b"i", value)
    digits = str(value).encode("ascii")
    return _TAGGED_LEN(b"I", len(digits)) + digits


def _text(tag: bytes, value: str) -> bytes:
    data = value.encode("utf-8", "surrogatepass")
    return _TAGGED_LEN(tag, len(data)) + data


def encode_canonical(value: Any, declared: str) -> bytes:
    """Bytes of a canonical value (the output of ``canonical_value``) of type ``declared``.

    >>> encode_canonical(None, "Int64"), encode_canonical(True, "Bool")
    (b'N', b'?\\x01')
    >>> encode_canonical(1, "Int64") == b"i" + (1).to_bytes(8, "little")
    True
    """
    if value is None:
        return NULL_ENCODING
    t = type(value)
    if t is float:
        return _float(value, element_type(declared) == "Float32")
    if t is int:
        return _int(value)
    if t is str:
        return _text(b"s", value)
    if t is bool:
        return _TRUE if value else _FALSE
    if t is Seconds:
        micros = int(value) * 1_000_000
        if _I64_MIN <= micros <= _I64_MAX:
            return _TAGGED_I64(b"t", micros)
        digits = str(micros).encode("ascii")  # beyond int64 microseconds: never raises
        return _TAGGED_LEN(b"T", len(digits)) + digits
    if t is bytes:
        return _TAGGED_LEN(b"b", len(value)) + value
    if t is Other:
        return _text(b"o", value)
    if t is MapItems:
        parts = [_text(b"s", k) + encode_canonical(v, "Json") for k, v in value]
        return _TAGGED_LEN(b"m", len(parts)) + b"".join(parts)
    if t is tuple:
        inner = element_type(declared)
        return _TAGGED_LEN(b"a", len(value)) + b"".join([encode_canonical(v, inner) for v in value])
    # not canonical (a caller's raw value): canonicalise first
    return encode_canonical(canonical_value(value, declared), declared)


def encode_value(value: Any, declared_type: str) -> bytes:
    """Canonical bytes of any value of a feature: equal bytes iff the same feature value.

    Never raises (it runs on the serving path's writer thread).

    >>> import numpy as np
    >>> encode_value(np.int32(7), "Int32") == encode_value(7.0, "Int64")
    True
    >>> encode_value(float("nan"), "Float64") == encode_value(None, "Float64")
    True
    >>> encode_value('{"a": 1}', "Json") == encode_value({"a": 1.0}, "Json")
    True
    """
    if type(declared_type) is not str:
        declared_type = str(declared_type)
    return encode_canonical(canonical_value(value, declared_type), declared_type)


def value_hash(value: Any, declared_type: str) -> int:
    """xxh3_64 of ``encode_value``: an unsigned 64-bit int.

    Float32 features are compared at float32 precision, so the float64 rounding noise of a
    float32 round trip does not count as a mismatch; under Float64 it does:

    >>> import numpy as np
    >>> value_hash(0.1, "Float32") == value_hash(float(np.float32(0.1)), "Float32")
    True
    >>> value_hash(0.1, "Float64") == value_hash(float(np.float32(0.1)), "Float64")
    False
    """
    return _hash(encode_value(value, declared_type))


def keyed_hash(key: bytes, encoding: bytes) -> int:
    """The value hash of a redacted feature: HMAC-SHA256(key, encoding), first 8 bytes (u64le).
    Without the key, the hash says nothing about the value, even for a small set of values."""
    digest = hmac.new(key, encoding, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "little")


def _prefix(name: str, declared: str) -> bytes:
    name_b = name.encode("utf-8", "surrogatepass")
    type_b = declared.encode("utf-8", "surrogatepass")
    return _U32(len(name_b)) + name_b + _U32(len(type_b)) + type_b


def schema_fingerprint(fields: Mapping[str, str]) -> int:
    """Hash of sorted (name, declared type) pairs: changes when a field or its type does.

    >>> schema_fingerprint({"a": "Int64", "b": "Float32"}) == schema_fingerprint(
    ...     {"b": "Float32", "a": "Int64"})
    True
    """
    return _hash(b"".join([_prefix(name, str(fields[name])) for name in sorted(fields)]))


def row_hash(value_hashes: Mapping[str, int], fingerprint: int) -> int:
    """Hash of one view row from its features' value hashes (any order) and the schema
    fingerprint of those features. The vectorised form is ``columns.row_hashes``.

    >>> h = {"a": value_hash(1, "Int64"), "b": value_hash("x", "String")}
    >>> row_hash(h, 7) == row_hash(dict(reversed(list(h.items()))), 7) != row_hash(h, 8)
    True
    """
    data = b"".join([int(value_hashes[k]).to_bytes(8, "little") for k in sorted(value_hashes)])
    return _hash(data, fingerprint & _U64_MASK)


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
