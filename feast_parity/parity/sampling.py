"""Deterministic sampling of entity keys on the serving path.

Whether an entity is sampled must depend only on its key and a seed, never on the process,
the dict order of the request or whether the client spelled an id as ``42`` or ``"42"``:
the offline side later re-derives the same sample to compare served values with offline
ones. Pure module (stdlib, numpy, xxhash) so it can be tested without Feast.

Canonical key layout, for each join key in sorted name order::

    u32le len(name) | name utf-8 | tag (1 byte) | u32le len(payload) | payload

with tag ``i`` (decimal digits of an integer), ``s`` (utf-8 string), ``b`` (bytes) or
``?`` (bool, ``1``/``0``). Every field is length-prefixed, so the encoding is injective.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import xxhash

__all__ = [
    "SAMPLE_SPACE",
    "EntityKeyError",
    "Sampler",
    "canonical_entity_key",
    "sample_threshold",
    "should_sample",
]

SAMPLE_SPACE = 2**64
"""Size of the hash space: xxh3_64 digests are uniform on ``[0, SAMPLE_SPACE)``."""

_hash = xxhash.xxh3_64_intdigest
_LEN = struct.Struct("<I").pack
_HDR = struct.Struct("<cI").pack
_TAG_INT = b"i"
_TAG_STR = b"s"
_TAG_BYTES = b"b"
_TAG_BOOL = b"?"
_TRUE = _HDR(_TAG_BOOL, 1) + b"1"
_FALSE = _HDR(_TAG_BOOL, 1) + b"0"
# Canonical decimal spelling of an integer: what str(int) prints. "-0" is not canonical.
_canonical_int_str = re.compile(r"0|-?[1-9][0-9]*").fullmatch
_KIND_NAMES = {_TAG_INT[0]: "int", _TAG_STR[0]: "str", _TAG_BYTES[0]: "bytes", _TAG_BOOL[0]: "bool"}
_NAME_CACHE_MAX = 1024
# Encoded (name, value) parts of int and str key columns, kept across requests: entity ids
# repeat (popular items, one user against many candidates), and a dict hit is a fraction of
# the cost of encoding. Bounded per join key; cleared when full.
_VALUE_CACHE_MAX = 16_384


class EntityKeyError(ValueError):
    """An entity key value that has no canonical encoding (float, None, mixed kinds...)."""


def _unsupported(name: str, value: object) -> EntityKeyError:
    return EntityKeyError(
        f"join key {name!r}: unsupported entity key type {type(value).__qualname__} "
        f"(value {value!r}); entity keys must be int, str, bytes or bool"
    )


def _encode_int(name: str, value: int) -> bytes:
    try:
        digits = str(int(value)).encode("ascii")
    except ValueError as exc:  # beyond sys.get_int_max_str_digits()
        raise EntityKeyError(f"join key {name!r}: integer key too large to encode") from exc
    return _HDR(_TAG_INT, len(digits)) + digits


def _encode_str(value: str) -> bytes:
    if _canonical_int_str(value):
        # Same bytes as the int: ASCII, so len(str) == len(bytes).
        return _HDR(_TAG_INT, len(value)) + value.encode("ascii")
    data = value.encode("utf-8", "surrogatepass")
    return _HDR(_TAG_STR, len(data)) + data


def _encode_key_value(name: str, value: object) -> bytes:
    """Tagged, length-prefixed payload of one join key value (without the name)."""
    t = type(value)
    if t is int:
        return _encode_int(name, value)  # type: ignore[arg-type]
    if t is str:
        return _encode_str(value)  # type: ignore[arg-type]
    # Slow path: subclasses and numpy scalars. bool before int: bool subclasses int.
    if isinstance(value, (bool, np.bool_)):
        return _TRUE if value else _FALSE
    if isinstance(value, (int, np.integer)):
        return _encode_int(name, value)  # type: ignore[arg-type]
    if isinstance(value, str):
        return _encode_str(str.__str__(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _HDR(_TAG_BYTES, len(data)) + data
    raise _unsupported(name, value)


def _encode_name(name: object) -> bytes:
    if not isinstance(name, str):
        raise EntityKeyError(f"join key names must be str, got {type(name).__qualname__}")
    data = name.encode("utf-8", "surrogatepass")
    return _LEN(len(data)) + data


def canonical_entity_key(join_keys: Mapping[str, object]) -> bytes:
    """Canonical bytes of an entity key: independent of dict order and of ``42`` vs ``"42"``.

    >>> canonical_entity_key({"b": 1, "a": "x"}) == canonical_entity_key({"a": "x", "b": "1"})
    True
    >>> canonical_entity_key({"id": 42}) == canonical_entity_key({"id": "042"})
    False
    """
    names = list(join_keys)
    for name in names:
        if not isinstance(name, str):
            raise EntityKeyError(f"join key names must be str, got {type(name).__qualname__}")
    names.sort()
    return b"".join(
        [_encode_name(name) + _encode_key_value(name, join_keys[name]) for name in names]
    )


def sample_threshold(rate: float) -> int:
    """Integer threshold ``t`` with ``digest < t`` exactly iff ``digest < rate * 2**64``.

    ``ceil`` (not ``int``) keeps that equivalence exact even for rates below ``2**-12``,
    where ``rate * 2**64`` has a fractional part; multiplying by ``2**64`` is exact.

    >>> sample_threshold(0.0), sample_threshold(1.0) == 2**64, sample_threshold(2.0**-70)
    (0, True, 1)
    """
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:  # also rejects NaN
        raise ValueError(f"sampling rate must be within [0, 1], got {rate!r}")
    return min(max(math.ceil(rate * 2.0**64), 0), SAMPLE_SPACE)


def _check_seed(seed: int) -> int:
    # xxhash silently reduces seeds modulo 2**64: -1 and 2**64 - 1 would be the same sample.
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {type(seed).__qualname__}")
    seed = int(seed)
    if not 0 <= seed < SAMPLE_SPACE:
        raise ValueError(f"seed must be within [0, 2**64), got {seed}")
    return seed


def should_sample(key_bytes: bytes, seed: int, rate: float) -> bool:
    """Whether ``xxh3_64(key_bytes, seed) < rate * 2**64``; rate 0 samples nothing, 1 all."""
    return _hash(key_bytes, _check_seed(seed)) < sample_threshold(rate)


class Sampler:
    """Sampling decision for a fixed rate and seed, with the threshold computed once.

    >>> Sampler(1.0, seed=7).decide({"user_id": 3}), Sampler(0.0, seed=7).decide({"user_id": 3})
    (True, False)
    """

    __slots__ = ("_names", "_values", "rate", "seed", "threshold")

    def __init__(self, rate: float, seed: int) -> None:
        self.threshold = sample_threshold(rate)
        self.rate = float(rate)
        self.seed = _check_seed(seed)
        self._names: dict[str, bytes] = {}
        self._values: dict[tuple[str, type], dict[object, bytes]] = {}

    def __repr__(self) -> str:
        return f"Sampler(rate={self.rate!r}, seed={self.seed!r})"

    def _name(self, name: str) -> bytes:
        encoded = self._names.get(name)
        if encoded is None:
            encoded = _encode_name(name)
            if len(self._names) >= _NAME_CACHE_MAX:
                self._names.clear()
            self._names[name] = encoded
        return encoded

    def _column(self, name: str, column: Sequence[object] | np.ndarray) -> list[bytes]:
        """``name + value`` parts of one key column, from the cache for int and str columns."""
        values = _column_values(name, column)
        types = set(map(type, values))
        if len(types) != 1 or not (int in types or str in types):
            return _encode_column(name, self._name(name), values, types)
        cache = self._values.get((name, types.pop()))
        if cache is None:
            cache = self._values[(name, type(values[0]))] = {}
        parts = list(map(cache.get, values))
        if None in parts:
            missing = list({v for v, p in zip(values, parts) if p is None})
            encoded = dict(zip(missing, _encode_column(name, self._name(name), missing)))
            parts = [encoded[v] if p is None else p for v, p in zip(values, parts)]
            if len(cache) + len(encoded) > _VALUE_CACHE_MAX:
                cache.clear()  # bounded memory: a hot key set refills it within a few requests
            cache.update(encoded)
        return parts  # type: ignore[return-value]

    def decide(self, join_keys: Mapping[str, object]) -> bool:
        """Whether this entity key is sampled."""
        if len(join_keys) == 1:
            for name, value in join_keys.items():
                key = self._name(name) + _encode_key_value(name, value)
        else:
            try:
                names = sorted(join_keys)
            except TypeError:
                names = list(join_keys)  # a non-str name: _name raises the proper error
            enc, nm = _encode_key_value, self._name
            key = b"".join([nm(name) + enc(name, join_keys[name]) for name in names])
        return _hash(key, self.seed) < self.threshold

    def decide_rows(self, rows: Mapping[str, Sequence[object] | np.ndarray]) -> list[bool]:
        """Decisions for column-oriented entity rows (join key -> values), as Feast passes them.

        All columns must have the same length. A column whose values are of different kinds
        (ints and non-numeric strings, ints and floats...) raises ``EntityKeyError``.
        """
        names = list(rows)
        for name in names:
            if not isinstance(name, str):
                raise EntityKeyError(f"join key names must be str, got {type(name).__qualname__}")
        names.sort()
        columns = [self._column(name, rows[name]) for name in names]
        if not columns:
            return []
        lengths = {len(column) for column in columns}
        if len(lengths) > 1:
            sizes = ", ".join(f"{n!r}: {len(c)}" for n, c in zip(names, columns, strict=False))
            raise EntityKeyError(f"entity columns have different lengths ({sizes})")
        seed, threshold, h = self.seed, self.threshold, _hash
        keys = columns[0] if len(columns) == 1 else map(b"".join, zip(*columns, strict=True))
        return [h(key, seed) < threshold for key in keys]

    def sample_rows(
        self, rows: Mapping[str, Sequence[object] | np.ndarray]
    ) -> tuple[list[int], list[bytes]]:
        """Indexes of the sampled rows and their canonical entity keys, in row order.

        Same decisions and errors as :meth:`decide_rows`; the keys are the bytes of
        :func:`canonical_entity_key` for each sampled row, so the caller need not encode again.
        """
        names = list(rows)
        for name in names:
            if not isinstance(name, str):
                raise EntityKeyError(f"join key names must be str, got {type(name).__qualname__}")
        names.sort()
        return self.sample_columns(names, [rows[name] for name in names])

    def sample_columns(
        self, names: Sequence[str], columns: Sequence[Sequence[object] | np.ndarray]
    ) -> tuple[list[int], list[bytes]]:
        """:meth:`sample_rows` for join key ``names`` already checked (str) and sorted, and
        their ``columns`` in the same order: the serving hook resolves names once per plan."""
        parts = [self._column(name, column) for name, column in zip(names, columns)]
        if not parts:
            return [], []
        if len(parts) == 1:
            keys = parts[0]
        else:
            first = len(parts[0])
            for part in parts:
                if len(part) != first:
                    sizes = ", ".join(
                        f"{n!r}: {len(c)}" for n, c in zip(names, parts, strict=False)
                    )
                    raise EntityKeyError(f"entity columns have different lengths ({sizes})")
            if len(parts) == 2:
                keys = list(map(bytes.__add__, *parts))
            else:
                keys = list(map(b"".join, zip(*parts)))
        seed, threshold, h = self.seed, self.threshold, _hash
        if threshold >= SAMPLE_SPACE:
            return list(range(len(keys))), keys
        chosen = [i for i, key in enumerate(keys) if h(key, seed) < threshold]
        return chosen, [keys[i] for i in chosen]


def _column_values(name: str, values: Sequence[object] | np.ndarray) -> Sequence[object]:
    if type(values) is list or type(values) is tuple:  # skip the slow ABC check
        return values
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise EntityKeyError(f"entity column {name!r} must be one-dimensional")
        if values.dtype.kind in "iubUS":
            # Python ints/bools/strs/bytes: the fast paths below.
            as_list: list[object] = values.tolist()
            return as_list
        return list(values)  # object/float/...: per element, so errors name the value
    if isinstance(values, (str, bytes, bytearray)) or not isinstance(values, Sequence):
        raise EntityKeyError(
            f"entity column {name!r} must be a sequence of values, got {type(values).__qualname__}"
        )
    return values


def _encode_column(
    name: str,
    prefix: bytes,
    column: Sequence[object] | np.ndarray,
    types: set[type] | None = None,
) -> list[bytes]:
    """``prefix + payload`` per value; rejects columns mixing value kinds."""
    values = _column_values(name, column)
    if types is None:
        types = set(map(type, values))
    if types == {int}:  # the common case: int64 ids, often repeated (one user, many items)
        hdr = _HDR
        try:
            # mypy checks a try body against the declared union, not the narrowed dict
            encoded: dict[object, bytes] | list[bytes] = {}
            for v in set(values):
                d = b"%d" % v  # type: ignore[str-format]  # types == {int}: every v is an int
                encoded[v] = prefix + hdr(_TAG_INT, len(d)) + d  # type: ignore[call-overload]
            return [encoded[v] for v in values]  # type: ignore[call-overload]
        except ValueError:
            pass  # a huge int: the slow path raises the proper error
    encode: Callable[[str, object], bytes] = _encode_key_value
    if len(types) <= 1:
        return [prefix + encode(name, v) for v in values]
    seen = ", ".join(sorted({t.__qualname__ for t in types}))
    try:
        encoded = [prefix + encode(name, v) for v in values]
    except EntityKeyError as exc:  # e.g. ints and floats: name every type in the column
        raise EntityKeyError(
            f"entity column {name!r} mixes value kinds (Python types {seen}): {exc}"
        ) from exc
    tag_at = len(prefix)
    tags = {e[tag_at] for e in encoded}
    # str is the one Python type that yields two kinds: "42" is an int, "abc" a str. A
    # column of strings is one kind; ints next to non-numeric strings are two.
    if len(tags) > 1 and not all(isinstance(v, str) for v in values):
        kinds = ", ".join(sorted(_KIND_NAMES[t] for t in tags))
        raise EntityKeyError(
            f"entity column {name!r} mixes value kinds ({kinds}; Python types {seen})"
        )
    return encoded
