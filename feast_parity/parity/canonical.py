"""Canonical forms of feature values per declared Feast type: the one equality rule.

The same value reaches the check in different shapes on each side: serving returns what Feast's
protobuf converter makes of the online row, training reads what the offline store's dataframe
holds. A ``Json`` feature is served parsed and read offline as a string; a ``Struct`` is a dict
whose integers pandas may have widened to floats; an ``Int64`` column with gaps is float64
offline; float ``NaN`` is written online as a null; ``UnixTimestamp`` is stored online in whole
seconds. :func:`canonical_value` maps every shape to one canonical Python value, so that two
values are the same feature value exactly when their canonical forms are equal. Hashing
(:mod:`feast_parity.parity.hashing`), comparison and cohorts all use these forms.

Rules (docs/checks.md "Canonical forms"):

============================  ================================================================
declared type                 canonical form
============================  ================================================================
Int32, Int64                  ``int``; an integral float (pandas widening) becomes ``int``;
                              beyond 2**53, the int of the nearest double
Float32                       ``float`` rounded to float32; ``-0.0`` is ``0.0``; NaN is null
Float64                       ``float``; ``-0.0`` is ``0.0``; NaN is null
String, Uuid, Decimal         ``str``
Bytes (and Pdf/Image bytes)   ``bytes``
Bool                          ``bool``
UnixTimestamp                 ``Seconds``: UTC epoch seconds, truncated like Feast's online write
Array(T), Set(T)              ``tuple`` of canonical elements (sets sorted by their encoding);
                              in a float array NaN and null elements are both ``NAN``
Map, Struct, Json             parsed JSON (a string is parsed first): objects become
                              ``MapItems`` (key-sorted pairs), arrays tuples, numbers as
                              doubles (an integral one as ``int``); a Struct whose fields are
                              all null is null
anything else                 ``repr`` text (``Other``)
============================  ================================================================

Nulls (``None``, ``NaN`` scalars, ``NaT``, pandas ``NA``) are ``None``.

>>> canonical_value(7.0, "Int64"), canonical_value(float("nan"), "Float32")
(7, None)
>>> text, parsed = '{"b": 1.0, "a": [1, 2]}', {"a": [1, 2], "b": 1}
>>> canonical_value(text, "Json") == canonical_value(parsed, "Json")
True
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np

__all__ = [
    "NAN",
    "MapItems",
    "Other",
    "Seconds",
    "base_type",
    "canonical_value",
    "canonical_values",
    "element_type",
    "type_family",
]

NAN = float("nan")
"""The one NaN of canonical arrays: tuples compare elements by identity first, so arrays that
hold NaN at the same place compare equal."""


class Seconds(int):
    """A UnixTimestamp value: UTC epoch seconds (an ``int`` that remembers it is a time)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Seconds({int(self)})"


class MapItems(tuple):  # type: ignore[type-arg]
    """A map, struct or JSON object: ``(key, value)`` pairs sorted by key."""

    __slots__ = ()


class Other(str):
    """A value of no known kind, kept as its ``repr``: equal only to the same ``repr``."""

    __slots__ = ()


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_INT_TYPES = frozenset({"Int32", "Int64"})
_FLOAT_TYPES = frozenset({"Float32", "Float64"})
_STRING_TYPES = frozenset({"String", "Uuid", "TimeUuid", "Decimal"})
_BYTES_TYPES = frozenset({"Bytes", "PdfBytes", "ImageBytes"})
_JSON_TYPES = frozenset({"Map", "Json", "ScalarMap"})


def base_type(declared: str) -> str:
    """``Array(Int64)`` -> ``Array``, ``Struct({a: Int64})`` -> ``Struct``, ``Int64`` -> ``Int64``.

    >>> base_type("Array(Float32)"), base_type("Struct({a: Int64})"), base_type("Json")
    ('Array', 'Struct', 'Json')
    """
    head, _, _ = declared.partition("(")
    return head


def element_type(declared: str) -> str:
    """The element type of ``Array(T)`` / ``Set(T)``; the type itself otherwise.

    >>> element_type("Array(Float32)"), element_type("Int64")
    ('Float32', 'Int64')
    """
    head = base_type(declared)
    if head in ("Array", "Set") and declared.endswith(")"):
        return declared[len(head) + 1 : -1]
    return declared


def type_family(type_name: str | None) -> str | None:
    """Coarse family of a declared, online or offline type name, for schema comparison.

    >>> type_family("Float32"), type_family("float64"), type_family("int64"), type_family("Json")
    ('float', 'float', 'int', 'json')
    >>> type_family("Array(String)"), type_family("list<string>"), type_family("null")
    ('list', 'list', None)
    """
    if type_name is None or type_name in ("null", ""):
        return None
    name = type_name.lower()
    if name.startswith(("array", "list", "set")):
        return "list"
    if name.startswith("float") or name == "double":
        return "float"
    if name.startswith(("int", "uint")):
        return "int"
    if name in ("string", "str", "large_string", "uuid", "timeuuid", "decimal"):
        return "string"
    if name.startswith("bool"):
        return "bool"
    if name in ("bytes", "binary", "large_binary", "pdfbytes", "imagebytes"):
        return "bytes"
    if name.startswith(("unixtimestamp", "timestamp", "datetime")):
        return "timestamp"
    if name.startswith(("map", "struct", "json", "scalarmap")):
        return "map" if name.startswith("scalarmap") else name.split("(")[0].split("<")[0]
    return name


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    if isinstance(value, (np.floating, np.datetime64, np.timedelta64)):
        return bool(np.isnan(value))
    try:  # pandas.NA / NaT without importing pandas
        return type(value).__name__ in ("NAType", "NaTType")
    except Exception:  # pragma: no cover - exotic objects
        return False


def _float(value: Any, single: bool) -> float | None:
    if isinstance(value, (complex, np.complexfloating)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if number != number:
        return None
    if single:
        with np.errstate(over="ignore"):
            number = float(np.float32(number))
    return number + 0.0  # -0.0 -> 0.0


def _seconds(value: Any) -> Seconds | None:
    """UTC epoch seconds the way Feast's online write computes them (``int(ts.timestamp())``)."""
    if isinstance(value, dt.datetime):
        if value != value:  # pandas.NaT
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        micros = (value - _EPOCH) // dt.timedelta(microseconds=1)
        return Seconds(int(micros / 1_000_000) if micros < 0 else micros // 1_000_000)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        micros = int(value.astype("datetime64[us]").astype(np.int64))
        return Seconds(int(micros / 1_000_000) if micros < 0 else micros // 1_000_000)
    if isinstance(value, dt.date):
        return Seconds(
            int(
                (
                    dt.datetime(value.year, value.month, value.day) - _EPOCH.replace(tzinfo=None)
                ).total_seconds()
            )
        )
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return Seconds(int(value))
    if isinstance(value, (float, np.floating)):
        return None if value != value else Seconds(int(value))
    return None


DOUBLE_EXACT = 2**53


_LARGEST_BELOW_2_63 = 2**63 - 1024  # the largest double below 2**63 (fits int64)


def _int(number: int) -> int:
    """An integer as Feast's paths can carry it: beyond 2**53 only as the nearest double
    (materializing an Int64 column with nulls, and pandas frames, go through float64);
    from 2**63 on, the largest double an int64 holds.

    >>> _int(2**62 + 1) == 2**62, _int(7)
    (True, 7)
    """
    if abs(number) <= DOUBLE_EXACT:
        return number
    if number >= _LARGEST_BELOW_2_63:
        return _LARGEST_BELOW_2_63
    if number <= -(2**63):
        return -(2**63)
    return int(float(number))


def _json_like(value: Any) -> Any:
    """Parsed-JSON canonical form: objects as sorted pairs, arrays as tuples, integral floats
    as ints (JSON does not tell ``1`` from ``1.0``), NaN/None as None."""
    t = type(value)
    if value is None or t is Seconds or t is Other or isinstance(value, (bool, str)):
        return value
    if t is MapItems:  # already canonical: keep it a map
        return MapItems(sorted((k, _json_like(v)) for k, v in value))
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        # JSON numbers are doubles to most producers and to Feast's own struct path (an int
        # field with nulls goes through float64): large ints compare as the double they are
        return _int(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if number != number:
            return None
        if number.is_integer() and abs(number) < 2**63:
            return int(number)
        return number + 0.0
    if isinstance(value, Mapping):
        return MapItems(sorted((str(k), _json_like(v)) for k, v in value.items()))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (dt.datetime, np.datetime64)):
        return _seconds(value)
    if isinstance(value, np.ndarray):
        return tuple(_json_like(v) for v in value.tolist())
    if isinstance(value, (list, tuple)):
        return tuple(_json_like(v) for v in value)
    if isinstance(value, AbstractSet):
        return tuple(sorted((_json_like(v) for v in value), key=repr))
    return Other(repr(value))


def _parse_json(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return Other(value)  # not JSON: compared as the text it is
    return value


def _element(value: Any, declared: str) -> Any:
    """Canonical array element: like a scalar, except that in a float array NaN stays NaN and
    a null element is NaN too (Arrow conversions of offline frames turn NaN into null)."""
    if declared in _FLOAT_TYPES and (
        value is None or (isinstance(value, (float, np.floating)) and value != value)
    ):
        return NAN
    return canonical_value(value, declared)


def _sequence(value: Any) -> list[Any] | None:
    if isinstance(value, np.ndarray):
        return value.tolist() if value.dtype.kind not in "Mm" else list(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (str, bytes, Mapping)):
        return None
    if isinstance(value, Sequence) or hasattr(value, "__iter__"):
        try:
            return list(value)
        except TypeError:
            return None
    return None


def canonical_value(value: Any, declared: str) -> Any:
    """The canonical form of one value of a feature of type ``declared`` (see module doc).

    Never raises: a value that fits no rule is kept as its ``repr`` (``Other``), so it is equal
    only to itself and a type change stays visible.

    >>> canonical_value(-0.0, "Float64"), canonical_value(np.float32(0.1), "Float32")
    (0.0, 0.10000000149011612)
    >>> canonical_value(np.array([1.0, np.nan]), "Array(Float64)")
    (1.0, nan)
    >>> canonical_value(dt.datetime(2026, 1, 1, 0, 0, 0, 999999), "UnixTimestamp")
    Seconds(1767225600)
    """
    try:
        return _canonical(value, declared)
    except Exception:  # RecursionError, broken __float__ ...: equal only to itself
        try:
            return Other(repr(value))
        except Exception:
            return Other(f"<unrepresentable {type(value).__qualname__}>")


def _canonical(value: Any, declared: str) -> Any:
    if type(value) is Other:  # equal only to itself, under every type
        return value
    head = base_type(declared)
    if head in ("Array", "Set"):
        if value is None or (not isinstance(value, (np.ndarray, list, tuple)) and _is_null(value)):
            return None
        items = _sequence(value)
        if items is None:
            return Other(repr(value))
        inner = element_type(declared)
        elements = tuple(_element(v, inner) for v in items)
        if head == "Set":
            return tuple(sorted(elements, key=repr))
        return elements
    if _is_null(value):
        return None
    if declared in _INT_TYPES:
        if isinstance(value, (bool, np.bool_)):
            return Other(repr(value))
        if isinstance(value, (int, np.integer)):
            return _int(int(value))
        if isinstance(value, (float, np.floating)):
            number = float(value)
            if number.is_integer() and abs(number) < 2**63:
                return _int(int(number))
            return number + 0.0
        return Other(repr(value))
    if declared in _FLOAT_TYPES:
        if isinstance(value, (str, bytes, bool, np.bool_)):
            return Other(repr(value))
        as_float = _float(value, declared == "Float32")
        return Other(repr(value)) if as_float is None else as_float
    if declared in _STRING_TYPES:
        if isinstance(value, str):
            return str.__str__(value)
        if type(value).__name__ in ("UUID", "Decimal"):  # Feast's converter for Uuid/Decimal
            return str(value)
        return Other(repr(value))
    if declared in _BYTES_TYPES:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        return Other(repr(value))
    if declared == "Bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        return Other(repr(value))
    if declared in ("UnixTimestamp", "ZonedTimestamp"):
        seconds = _seconds(value)
        return Other(repr(value)) if seconds is None else seconds
    if head == "Struct":
        parsed = _json_like(_parse_json(value))
        if isinstance(parsed, MapItems) and all(v is None for _, v in parsed):
            return None  # Feast serves a null struct as a struct of nulls (feast_facts V6)
        return parsed
    if declared in _JSON_TYPES:
        return _json_like(_parse_json(value))
    return _json_like(value)


def canonical_values(values: Any, declared: str) -> list[Any]:
    """:func:`canonical_value` of every element of a sequence, array or Arrow array; each
    distinct hashable input is canonicalised once."""
    if hasattr(values, "to_pylist"):
        values = values.to_pylist()
    elif isinstance(values, np.ndarray):
        values = values.tolist() if values.dtype.kind not in "OMm" else list(values)
    out: list[Any] = []
    memo: dict[Any, Any] = {}
    for value in values:
        t = type(value)
        if t is str or t is int or t is bytes or value is None:
            key = (t, value)
            found = memo.get(key, memo)
            if found is memo:
                found = memo[key] = canonical_value(value, declared)
            out.append(found)
        else:
            out.append(canonical_value(value, declared))
    return out


def is_nan_free_float(value: Any) -> bool:
    """Whether a canonical scalar is a finite-or-infinite float (not NaN): used by magnitude."""
    return isinstance(value, float) and not math.isnan(value)
