"""Columns of canonical values, built and hashed vectorised: the engine's unit of comparison.

A :class:`CanonicalColumn` holds one feature's values for many rows in canonical form
(:mod:`feast_parity.parity.canonical`): numbers, bools and timestamps as numpy arrays with a
null mask, everything else as an object array of canonical Python values. Built from whatever a
side delivers (Arrow arrays from the sample log or an offline store, pandas columns, lists), it
gives value hashes (the same bytes as :func:`feast_parity.parity.hashing.encode_canonical`,
hashed with a vectorised xxh3 for fixed-width kinds) and row-wise equality.

>>> a = canonical_column([1.0, None, 3.0], "Int64")
>>> b = canonical_column(pa.array([1, None, 4]), "Int64")
>>> equal(a, b).tolist()
[True, True, False]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feast_parity.parity.canonical import MapItems, Other, Seconds, base_type, canonical_value
from feast_parity.parity.hashing import (
    F32_NAN_BITS,
    F64_NAN_BITS,
    NULL_ENCODING,
    encode_canonical,
    keyed_hash,
)
from feast_parity.parity.xxh3 import xxh3_64_fixed

__all__ = ["CanonicalColumn", "canonical_column", "concat", "equal", "row_hashes"]

NUMERIC_TYPES = frozenset({"Int32", "Int64", "Float32", "Float64"})
_NULL_HASH = np.uint64(0)  # filled in below, once xxh3 is importable
_U64 = np.uint64


@dataclass
class CanonicalColumn:
    """One feature's canonical values for n rows.

    ``kind`` is ``int`` (int64), ``float`` (float64; float32 features hold float32-rounded
    values), ``bool``, ``time`` (int64 UTC seconds) or ``object`` (canonical Python values).
    ``null`` marks missing rows (their ``values`` entry is meaningless for numpy kinds).
    """

    declared: str
    kind: str
    values: np.ndarray
    null: np.ndarray
    redact_key: bytes | None = None
    _hashes: np.ndarray | None = field(default=None, repr=False)
    strings: bool = False  # every non-null value is a plain str (hashed per distinct value)

    def __len__(self) -> int:
        return int(self.null.shape[0])

    def hashes(self) -> np.ndarray:
        """uint64 value hash per row (null rows hash as ``N``); keyed when redacted."""
        if self._hashes is None:
            self._hashes = _hash_column(self)
        return self._hashes

    def take(self, index: np.ndarray) -> CanonicalColumn:
        hashes = None if self._hashes is None else self._hashes[index]
        return CanonicalColumn(
            self.declared,
            self.kind,
            self.values[index],
            self.null[index],
            self.redact_key,
            hashes,
            self.strings,
        )

    def set_null(self, rows: np.ndarray) -> None:
        """Mark ``rows`` (a boolean mask) as null: no offline row answered them."""
        if not rows.any():
            return
        self.null = self.null | rows
        if self.kind == "object":
            self.values = self.values.copy()
            self.values[rows] = None
        self._hashes = None

    def value(self, i: int) -> Any:
        """The canonical Python value of row ``i`` (None when null)."""
        if self.null[i]:
            return None
        v = self.values[i]
        if self.kind == "int":
            return int(v)
        if self.kind == "float":
            return float(v)
        if self.kind == "bool":
            return bool(v)
        if self.kind == "time":
            return Seconds(int(v))
        return v

    def numbers(self) -> np.ndarray:
        """float64 values with NaN for nulls and for values that are not numbers (a string
        served for an Int64 feature: schema divergence reports it, statistics skip it)."""
        if self.kind in ("int", "float", "time", "bool"):
            out = self.values.astype(np.float64)
        else:
            out = np.asarray(
                [
                    float(v)
                    if isinstance(v, (int, float)) and not isinstance(v, (bool, Other))
                    else np.nan
                    for v in self.values.tolist()
                ],
                dtype=np.float64,
            )
        out[self.null] = np.nan
        return out


def _null_mask_from_arrow(array: pa.Array) -> np.ndarray:
    if array.null_count == 0:
        return np.zeros(len(array), dtype=bool)
    return array.is_null().to_numpy(zero_copy_only=False)


def _arrow(values: Any) -> pa.Array | None:
    """An Arrow array of the values when they already are one (or a typed numpy array)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind in "iufbM":
        return pa.array(values, from_pandas=True)
    if type(values).__name__ == "Series" and getattr(values, "dtype", None) is not None:
        dtype = values.dtype
        kind = getattr(dtype, "kind", "O")
        if kind in "iufbM" or str(dtype).startswith(("datetime64", "Int", "Float", "boolean")):
            try:
                return pa.Array.from_pandas(values)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                return None
    return None


def _objects(values: Any) -> list[Any]:
    if hasattr(values, "to_pylist"):
        return list(values.to_pylist())
    if isinstance(values, np.ndarray):
        return values.tolist() if values.dtype.kind not in "OMm" else list(values)
    if type(values).__name__ == "Series":
        return list(values.astype(object))
    return list(values)


def _object_column(values: Any, declared: str) -> CanonicalColumn:
    memo: dict[Any, Any] = {}
    out: list[Any] = []
    for v in _objects(values):
        t = type(v)
        if v is None or t is str or t is int or t is bytes or t is bool:
            key = (t, v)
            c = memo.get(key, memo)
            if c is memo:
                c = memo[key] = canonical_value(v, declared)
        else:
            c = canonical_value(v, declared)
        out.append(c)
    array = np.empty(len(out), dtype=object)
    array[:] = out
    null = np.fromiter((c is None for c in out), dtype=bool, count=len(out))
    return CanonicalColumn(declared, "object", array, null)


def _as_double_ints(values: np.ndarray) -> np.ndarray:
    """Ints beyond 2**53 as the int of their nearest double (canonical.DOUBLE_EXACT)."""
    big = np.abs(values) > 2**53
    if not big.any():
        return values
    out = values.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = values[big].astype(np.float64)
    # 2**63 itself does not fit int64: clip to the largest double below it (canonical._int)
    rounded = np.clip(rounded, -(2.0**63), float(2**63 - 1024))
    out[big] = rounded.astype(np.int64)
    return out


def _numeric_from_arrow(array: pa.Array, declared: str) -> CanonicalColumn | None:
    t = array.type
    null = _null_mask_from_arrow(array)
    if declared in ("Int32", "Int64"):
        if pa.types.is_integer(t):
            raw = pc.fill_null(array, 0).to_numpy(zero_copy_only=False)
            if raw.dtype == np.uint64 and raw.size and int(raw.max()) > 2**63 - 1:
                return None  # beyond int64: the per-value path rounds them as doubles
            values = raw.astype(np.int64)
            return CanonicalColumn(declared, "int", _as_double_ints(values), null)
        if pa.types.is_floating(t):
            floats = pc.fill_null(array, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
            null = null | np.isnan(floats)
            valid = floats[~null]
            if valid.size and not bool(
                np.all(np.mod(valid, 1) == 0) & np.all(np.abs(valid) < 2**63)
            ):
                return None  # real fractions under an int type: the per-value path keeps them
            values = np.where(null, 0.0, floats).astype(np.int64)
            return CanonicalColumn(declared, "int", _as_double_ints(values), null)
        return None
    if declared in ("Float32", "Float64"):
        if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
            return None
        floats = pc.fill_null(array, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        if declared == "Float32":
            with np.errstate(over="ignore"):
                floats = floats.astype(np.float32).astype(np.float64)
        null = null | np.isnan(floats)
        floats = np.where(null, 0.0, floats) + 0.0
        return CanonicalColumn(declared, "float", floats, null)
    if declared == "Bool":
        if not pa.types.is_boolean(t):
            return None
        values = pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool)
        return CanonicalColumn(declared, "bool", values, null)
    if declared in ("UnixTimestamp", "ZonedTimestamp"):
        if pa.types.is_timestamp(t):
            micros = pc.cast(array, pa.timestamp("us", tz=t.tz)).cast(pa.int64())
            m = pc.fill_null(micros, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            seconds = np.where(m < 0, -((-m) // 1_000_000), m // 1_000_000)
            return CanonicalColumn(declared, "time", seconds, null)
        if pa.types.is_integer(t):
            values = pc.fill_null(array, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            return CanonicalColumn(declared, "time", values, null)
        return None
        return None
    return None


def canonical_column(
    values: Any, declared: str, *, redact_key: bytes | None = None
) -> CanonicalColumn:
    """Canonical column of ``values`` (Arrow, numpy, pandas or a sequence) of type ``declared``.

    Fixed-width kinds take a vectorised path when the input is typed; anything else goes value
    by value through :func:`canonical_value` (each distinct plain value once).
    """
    column: CanonicalColumn | None = None
    array = _arrow(values)
    if array is None and type(values) is list and declared in _TYPED_LISTS:
        array = _typed_list(values)  # plain Python numbers or strings: Arrow converts in C
    if (
        array is None
        and declared in _STRING_TYPES
        and isinstance(values, (pa.Array, pa.ChunkedArray))
    ):
        array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if array is not None and declared in NUMERIC_TYPES | {"Bool", "UnixTimestamp"}:
        column = _numeric_from_arrow(array, declared)
    elif declared in _STRING_TYPES:
        column = _strings(values if array is None else array, declared)
    if column is None:
        source = array if array is not None else values
        column = _object_column(source, declared)
        column = _narrow(column)
    column.redact_key = redact_key
    return column


_STRING_TYPES = frozenset({"String"})
_TYPED_LISTS = NUMERIC_TYPES | {"Bool", "String"}
_PLAIN = {
    "Int32": (int,),
    "Int64": (int,),
    "Float32": (float, int),
    "Float64": (float, int),
    "Bool": (bool,),
    "String": (str,),
}


_PLAIN_ARROW = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}


def _typed_list(values: list[Any]) -> pa.Array | None:
    """An Arrow array of a list of plain values of one kind (None allowed), else None: a bool
    among ints or an int under Float64 must take the per-value path, which keeps them apart."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if len(kinds) != 1:
        return None if kinds else pa.nulls(len(values))
    arrow = _PLAIN_ARROW.get(kinds.pop())
    if arrow is None:
        return None
    try:
        return pa.array(values, type=arrow)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None


def _strings(values: Any, declared: str) -> CanonicalColumn | None:
    """A String column whose values are all str (or null): canonical as they are, no per-value
    work (a str's canonical form is itself)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            return None
        null = _null_mask_from_arrow(
            values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        )
        array = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
        return CanonicalColumn(declared, "object", array, null, strings=True)
    import pandas as pd

    array = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if array.dtype != object or array.ndim != 1:
        return None
    if pd.api.types.infer_dtype(array, skipna=True) not in ("string", "empty"):
        return None
    null = pd.isna(array)
    if null.any():
        array = array.copy()
        array[null] = None
    if any(type(v) is not str for v in array[~null][:1]):  # a str subclass (e.g. Other)
        return None
    return CanonicalColumn(declared, "object", array, np.asarray(null, dtype=bool), strings=True)


def _narrow(column: CanonicalColumn) -> CanonicalColumn:
    """An object column whose canonical values are all of one fixed-width kind, as numpy."""
    declared = column.declared
    valid = column.values[~column.null]
    dtype: type[np.generic]
    if declared in ("Int32", "Int64"):
        kind, dtype, ok = "int", np.int64, all(type(v) is int for v in valid)
        if ok and valid.size:
            ok = all(-(2**63) <= v < 2**63 for v in valid)
    elif declared in ("Float32", "Float64"):
        kind, dtype, ok = "float", np.float64, all(type(v) is float for v in valid)
    elif declared == "Bool":
        kind, dtype, ok = "bool", np.bool_, all(type(v) is bool for v in valid)
    elif declared in ("UnixTimestamp", "ZonedTimestamp"):
        kind, dtype, ok = "time", np.int64, all(type(v) is Seconds for v in valid)
    else:
        return column
    if not ok:
        return column
    filled = np.zeros(len(column), dtype=dtype)
    if valid.size:
        filled[~column.null] = np.asarray(
            [int(v) if kind == "time" else v for v in valid], dtype=dtype
        )
    return CanonicalColumn(declared, kind, filled, column.null.copy())


# --- hashing ----------------------------------------------------------------------------------

_RECORDS = {
    "int": np.dtype([("tag", "S1"), ("value", "<i8")]),
    "time": np.dtype([("tag", "S1"), ("value", "<i8")]),
    "float64": np.dtype([("tag", "S1"), ("value", "<f8")]),
    "float32": np.dtype([("tag", "S1"), ("value", "<f4")]),
    "bool": np.dtype([("tag", "S1"), ("value", "u1")]),
}
_TAGS = {"int": b"i", "time": b"t", "float64": b"d", "float32": b"f", "bool": b"?"}


def _fixed_encodings(column: CanonicalColumn) -> np.ndarray:
    """(n, width) uint8 rows: the encoding of each row's value as if none were null."""
    kind = column.kind
    if kind == "float":
        kind = "float32" if column.declared == "Float32" else "float64"
    records = np.empty(len(column), dtype=_RECORDS[kind])
    records["tag"] = _TAGS[kind]
    if kind == "time":
        records["value"] = column.values * 1_000_000
    elif kind == "float32":
        with np.errstate(over="ignore"):
            records["value"] = column.values.astype(np.float32)
        bits = records["value"].view(np.uint32)
        bits[np.isnan(records["value"])] = F32_NAN_BITS
    elif kind == "float64":
        records["value"] = column.values
        bits = records["value"].view(np.uint64)
        bits[np.isnan(records["value"])] = F64_NAN_BITS
    else:
        records["value"] = column.values
    return records.view(np.uint8).reshape(len(column), records.dtype.itemsize)


def _null_hash() -> int:
    import xxhash

    return xxhash.xxh3_64_intdigest(NULL_ENCODING)


_NULL = _null_hash()
_FLAT_TYPES = frozenset({str, int, float, bytes, bool, Seconds, Other, type(None)})
_MAX_SECONDS = (2**63 - 1) // 1_000_000  # seconds whose microseconds fit int64


def _hash_column(column: CanonicalColumn) -> np.ndarray:
    n = len(column)
    if column.redact_key is not None:
        return _keyed_hashes(column)
    if column.strings:
        return _string_hashes(column)
    if column.kind == "object" or (
        column.kind == "time" and n and bool((np.abs(column.values) > _MAX_SECONDS).any())
    ):
        import xxhash

        h = xxhash.xxh3_64_intdigest
        memo: dict[Any, int] = {}
        out = np.empty(n, dtype=np.uint64)
        declared = column.declared
        for i in range(n):
            v = column.value(i)
            t = type(v)
            # memoise flat values only: (True,) == (1,) in Python, not as feature values
            flat = t in _FLAT_TYPES
            found = memo.get((t, v)) if flat else None
            if found is None:
                found = h(encode_canonical(v, declared))
                if flat:
                    memo[(t, v)] = found
            out[i] = found
        return out
    out = xxh3_64_fixed(_fixed_encodings(column)) if n else np.zeros(0, dtype=np.uint64)
    out[column.null] = _U64(_NULL)
    return out


def _string_hashes(column: CanonicalColumn) -> np.ndarray:
    """Hashes of a str column: each distinct value hashed once (Arrow's dictionary encoding)."""
    import xxhash

    encoded = pa.array(column.values, type=pa.large_string()).dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    h = xxhash.xxh3_64_intdigest
    table = np.fromiter(
        (h(encode_canonical(v, column.declared)) for v in distinct),
        dtype=np.uint64,
        count=len(distinct),
    )
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    out = np.full(len(column), np.uint64(_NULL), dtype=np.uint64)
    valid = ~column.null
    out[valid] = table[codes[valid].astype(np.int64)]
    return out


def _keyed_hashes(column: CanonicalColumn) -> np.ndarray:
    key = column.redact_key
    assert key is not None
    out = np.empty(len(column), dtype=np.uint64)
    memo: dict[bytes, int] = {}
    for i in range(len(column)):
        encoding = encode_canonical(column.value(i), column.declared)
        found = memo.get(encoding)
        if found is None:
            found = memo[encoding] = keyed_hash(key, encoding)
        out[i] = found
    return out


def equal(a: CanonicalColumn, b: CanonicalColumn) -> np.ndarray:
    """Row-wise: the two sides hold the same canonical value (null equals null)."""
    if len(a) != len(b):
        raise ValueError(f"columns of different lengths: {len(a)} and {len(b)}")
    if a.kind == b.kind and a.kind != "object" and a.redact_key is None and b.redact_key is None:
        same = (a.values == b.values) | (a.null & b.null)
        return np.asarray(same & (a.null == b.null), dtype=bool)
    return np.asarray(a.hashes() == b.hashes(), dtype=bool)


def concat(columns: Sequence[CanonicalColumn]) -> CanonicalColumn:
    """One column from several of the same declared type (kinds widen to object if needed)."""
    if not columns:
        raise ValueError("concat of no columns")
    first = columns[0]
    if all(c.kind == first.kind for c in columns):
        values = np.concatenate([c.values for c in columns])
        kind = first.kind
    else:
        parts = []
        for c in columns:
            obj = np.empty(len(c), dtype=object)
            obj[:] = [c.value(i) for i in range(len(c))]
            parts.append(obj)
        values, kind = np.concatenate(parts), "object"
    null = np.concatenate([c.null for c in columns])
    hashes = None
    if all(c._hashes is not None for c in columns):
        hashes = np.concatenate([c._hashes for c in columns])  # type: ignore[misc]
    return CanonicalColumn(first.declared, kind, values, null, first.redact_key, hashes)


def row_hashes(value_hashes: Sequence[np.ndarray], fingerprints: np.ndarray | int) -> np.ndarray:
    """Vectorised :func:`feast_parity.parity.hashing.row_hash`: ``value_hashes`` holds one
    uint64 array per feature, in feature-name order."""
    if not value_hashes:
        raise ValueError("a row hash needs at least one feature")
    matrix = np.ascontiguousarray(np.stack([np.asarray(h, dtype="<u8") for h in value_hashes], 1))
    rows = matrix.view(np.uint8).reshape(matrix.shape[0], 8 * matrix.shape[1])
    seeds = (
        np.asarray(fingerprints, dtype=np.uint64)
        if not isinstance(fingerprints, int)
        else fingerprints
    )
    if rows.shape[1] <= 240:
        return xxh3_64_fixed(rows, seeds)
    import xxhash

    per_row = np.broadcast_to(np.asarray(seeds, dtype=np.uint64), (rows.shape[0],))
    return np.fromiter(
        (
            xxhash.xxh3_64_intdigest(rows[i].tobytes(), int(per_row[i]))
            for i in range(rows.shape[0])
        ),
        dtype=np.uint64,
        count=rows.shape[0],
    )


def plain_array(column: CanonicalColumn) -> pa.Array:
    """The column's values as a plain Arrow array (null where null): numbers and bools typed,
    timestamps as UTC microseconds, maps as dicts; what a transformation is fed again, and
    what people read in a flat table. Values of no known kind are null here.

    >>> plain_array(canonical_column([1.5, None], "Float32")).to_pylist()
    [1.5, None]
    >>> plain_array(canonical_column([{"b": 1, "a": [2]}], "Map")).to_pylist()
    [{'a': [2], 'b': 1}]
    """
    if column.kind in ("int", "float", "bool"):
        return pa.array(column.values, mask=column.null)
    if column.kind == "time":
        micros = pa.array(column.values * 1_000_000, pa.int64(), mask=column.null)
        return micros.cast(pa.timestamp("us", tz="UTC"))
    plain = [
        None if column.null[i] or isinstance(v, Other) else _plain(v)
        for i, v in enumerate(column.values.tolist())
    ]
    try:
        return pa.array(plain)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        import json

        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in plain], pa.string()
        )


def _plain(value: Any) -> Any:
    """A canonical value as a plain Python value for an Arrow column (maps as dicts)."""
    if type(value) is Seconds:
        return int(value) * 1_000_000
    if isinstance(value, MapItems):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def is_numeric(declared: str) -> bool:
    return declared in NUMERIC_TYPES


def is_list(declared: str) -> bool:
    return base_type(declared) in ("Array", "Set")
