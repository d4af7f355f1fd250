"""Encoding sampled rows as one v3 batch per view and flush (the writer thread's half).

Rows arrive request by request (:meth:`BatchBuilder.add`); canonical values, value hashes and
row hashes are computed column by column in :meth:`BatchBuilder.to_batch`, once per flush.
The columns are those of :mod:`feast_parity.parity.samplelog.format`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from feast_parity.parity.columns import CanonicalColumn, canonical_column, row_hashes
from feast_parity.parity.hashing import schema_fingerprint
from feast_parity.parity.samplelog.format import (
    _SCALAR_ARROW,
    KEY_PREFIX,
    KIND,
    LOG_VERSION,
    META_DECLARED,
    META_ON_DEMAND,
    META_REDACTED,
    META_VERSION,
    META_VIEW,
    TIME,
    arrow_type,
    json_text,
)


def _value_array(
    column: CanonicalColumn, served: Sequence[Any], declared: str
) -> tuple[pa.Array, pa.Array | None]:
    """The ``value:`` column, and an ``other:`` column of JSON text for the rows whose served
    value does not fit the declared type (a bool served for an Int64): nothing is lost."""
    target = arrow_type(declared)
    mask = column.null
    if column.kind in ("int", "float", "bool"):
        return pa.array(column.values, mask=mask).cast(target), None
    if column.kind == "time":
        return pa.array(column.values * 1_000_000, type=pa.int64(), mask=mask).cast(TIME), None
    if target == pa.string() and declared not in _SCALAR_ARROW:
        # JSON text: a served Json value already is (collect.read_values keeps it as text)
        texts = [v if isinstance(v, str) and declared == "Json" else json_text(v) for v in served]
        return pa.array(texts, type=pa.string()), None
    values = [None if mask[i] else column.values[i] for i in range(len(column))]
    if pa.types.is_list(target):
        values = [None if v is None else [_list_element(e) for e in v] for v in values]
    try:
        return pa.array(values, type=target), None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        pass
    fitting: list[Any] = []
    others: list[str | None] = []
    for value, raw in zip(values, served):
        try:
            pa.array([value], type=target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            fitting.append(None)
            others.append(json_text(raw))
        else:
            fitting.append(value)
            others.append(None)
    return pa.array(fitting, type=target), pa.array(others, type=pa.string())


def _list_element(value: Any) -> Any:
    from feast_parity.parity.canonical import Seconds

    if type(value) is Seconds:
        return int(value) * 1_000_000
    return value


def _extend(
    columns: dict[str, list[Any]], given: Mapping[str, Sequence[Any]], before: int, k: int
) -> None:
    """Append one request's ``k`` rows to per-name columns, None where a name is absent.

    >>> columns = {"a": [1]}
    >>> _extend(columns, {"b": [2, 3]}, before=1, k=2)
    >>> columns
    {'a': [1, None, None], 'b': [None, 2, 3]}
    """
    for name, values in given.items():
        column = columns.get(name)
        if column is None:
            column = columns[name] = [None] * before
        column.extend(values)
    if len(given) != len(columns):
        padding = [None] * k
        for name, column in columns.items():
            if name not in given:
                column.extend(padding)


@dataclass
class BatchBuilder:
    """Rows of one view, gathered by the writer thread, turned into one batch at flush.

    :meth:`add` only appends a request's columns to the builder's (a few list extends);
    canonical values, hashes and row hashes are computed column by column in
    :meth:`to_batch`, once per flush, not per value as rows arrive.
    """

    feature_view: str
    declared: Mapping[str, str]  # every feature of the view that may be logged
    join_keys: tuple[str, ...]
    sample_rate: float
    seed: int
    writer: str
    redacted: frozenset[str] = frozenset()
    redact_key: bytes | None = None
    on_demand: bool = False
    rows: int = 0
    # per request
    _sizes: list[int] = field(default_factory=list)
    _requests: list[tuple[str, float, str | None, str, str | None, bool]] = field(
        default_factory=list
    )
    _layouts: dict[tuple[str, ...], list[int]] = field(default_factory=dict)
    # per row
    _keys: dict[str, list[Any]] = field(default_factory=dict)
    _key_hashes: list[int] = field(default_factory=list)
    _event_times: list[float | None] = field(default_factory=list)
    _values: dict[str, list[Any]] = field(default_factory=dict)
    _statuses: dict[str, list[Any]] = field(default_factory=dict)
    _kinds: dict[str, list[Any]] = field(default_factory=dict)
    _request_data: dict[str, list[Any]] = field(default_factory=dict)
    _context: dict[str, list[Any]] = field(default_factory=dict)
    _input_only: dict[str, list[Any]] = field(default_factory=dict)

    def add(
        self,
        *,
        features: Sequence[str],
        request_id: str,
        request_time: float,
        service: str | None,
        projection: str,
        keys: Mapping[str, Sequence[Any]],
        key_hashes: list[int],
        event_times: list[float | None],
        values: dict[str, list[Any]],
        statuses: dict[str, list[int]],
        kinds: dict[str, list[str | None]],
        request_data: Mapping[str, Sequence[Any]] | None = None,
        udf_fingerprint: str | None = None,
        context: Mapping[str, Sequence[Any]] | None = None,
        full_feature_names: bool = False,
        input_only: frozenset[str] = frozenset(),
    ) -> None:
        """Add the sampled rows of one request: ``keys``, the view's join key columns by name;
        ``context``, the request's other join keys by name; ``features`` sorted;
        ``input_only``, the features Feast read only for on-demand views (not returned)."""
        before, k = self.rows, len(key_hashes)
        self._layouts.setdefault(tuple(features), []).append(len(self._sizes))
        self._sizes.append(k)
        self._requests.append(
            (request_id, request_time, service, projection, udf_fingerprint, full_feature_names)
        )
        _extend(self._keys, keys, before, k)
        self._key_hashes.extend(key_hashes)
        self._event_times.extend(event_times)
        if len(values) == len(self._values) and all(f in self._values for f in values):
            for name, served in values.items():  # the usual request: the same features again
                self._values[name].extend(served)
                self._statuses[name].extend(statuses[name])
                self._kinds[name].extend(kinds[name])
        else:
            _extend(self._values, values, before, k)
            _extend(self._statuses, statuses, before, k)
            _extend(self._kinds, kinds, before, k)
        if input_only or self._input_only:
            _extend(self._input_only, {name: [True] * k for name in input_only}, before, k)
        if request_data or self._request_data:
            _extend(self._request_data, request_data or {}, before, k)
        if context or self._context:
            _extend(self._context, context or {}, before, k)
        self.rows = before + k

    def to_batch(self) -> pa.RecordBatch:
        n, sizes = self.rows, np.asarray(self._sizes, dtype=np.int64)
        request_ids, request_times, services, projections, udfs, full_names = zip(*self._requests)
        arrays: dict[str, pa.Array] = {}

        request_of_row = pa.array(np.repeat(np.arange(len(sizes)), sizes))

        def repeat(values: Sequence[Any], arrow: pa.DataType) -> pa.Array:
            return pa.array(values, type=arrow).take(request_of_row)

        arrays["request_id"] = repeat(request_ids, pa.string())
        times = np.repeat(np.asarray(request_times, dtype=np.float64), sizes)
        arrays["request_time"] = pa.array(np.round(times * 1e6).astype(np.int64)).cast(TIME)
        arrays["feature_service"] = repeat(services, pa.string())
        arrays["projection"] = repeat(projections, pa.string())
        arrays["entity_key_hash"] = pa.array(self._key_hashes, type=pa.uint64())
        event = np.asarray(
            [np.nan if t is None else t for t in self._event_times], dtype=np.float64
        )
        arrays["event_time"] = pa.array(
            np.round(np.nan_to_num(event) * 1e6).astype(np.int64), mask=np.isnan(event)
        ).cast(TIME)
        hashes: dict[str, np.ndarray] = {}
        feature_arrays: dict[str, pa.Array] = {}
        for name in sorted(self.declared):
            if name not in self._values:
                continue
            declared = self.declared[name]
            served = self._values[name]
            redacted = name in self.redacted
            column = canonical_column(
                served, declared, redact_key=self.redact_key if redacted else None
            )
            hashes[name] = column.hashes()
            if redacted:
                feature_arrays[f"value:{name}"] = pa.nulls(n, arrow_type(declared))
            else:
                value_array, other = _value_array(column, served, declared)
                feature_arrays[f"value:{name}"] = value_array
                if other is not None:
                    feature_arrays[f"other:{name}"] = other
            feature_arrays[f"status:{name}"] = pa.array(self._statuses[name], type=pa.int8())
            feature_arrays[f"hash:{name}"] = pa.array(hashes[name], type=pa.uint64())
            feature_arrays[f"kind:{name}"] = _kind_array(self._kinds[name])
            if name in self._input_only:
                feature_arrays[f"input_only:{name}"] = pa.array(
                    self._input_only[name], type=pa.bool_()
                )
        row_hash = np.zeros(n, dtype=np.uint64)
        fingerprints = np.zeros(n, dtype=np.uint64)
        request_index = np.repeat(np.arange(len(sizes)), sizes)
        for layout, requests in self._layouts.items():
            rows = np.flatnonzero(np.isin(request_index, requests))
            fingerprint = schema_fingerprint({f: self.declared[f] for f in layout})
            fingerprints[rows] = fingerprint
            if layout:
                row_hash[rows] = row_hashes([hashes[f][rows] for f in layout], fingerprint)
        arrays["row_hash"] = pa.array(row_hash, type=pa.uint64())
        arrays["schema_fingerprint"] = pa.array(fingerprints, type=pa.uint64())
        arrays["sample_rate"] = pa.array(np.full(n, self.sample_rate, dtype=np.float64))
        arrays["seed"] = pa.array(np.full(n, self.seed, dtype=np.uint64))
        arrays["writer"] = pa.array([self.writer], type=pa.string()).take(np.zeros(n, np.int64))
        for key in self.join_keys:
            arrays[KEY_PREFIX + key] = _key_array(self._keys.get(key, [None] * n))
        arrays.update(feature_arrays)
        for name in sorted(set(self._context) - set(self.join_keys)):
            arrays[f"context:{name}"] = _key_array(self._context[name])
        for name in sorted(self._request_data):
            arrays[f"request:{name}"] = _loose_array(self._request_data[name])
        if self.on_demand:
            arrays["udf_fingerprint"] = repeat(udfs, pa.string())
            arrays["full_feature_names"] = repeat(full_names, pa.bool_())
        metadata = {
            META_VERSION: str(LOG_VERSION).encode(),
            META_VIEW: self.feature_view.encode("utf-8", "surrogatepass"),
            META_DECLARED: json.dumps(dict(self.declared), sort_keys=True).encode(),
            META_REDACTED: json.dumps(sorted(self.redacted)).encode(),
            META_ON_DEMAND: b"1" if self.on_demand else b"0",
        }
        return pa.RecordBatch.from_arrays(
            list(arrays.values()), names=list(arrays), metadata=metadata
        )


def _kind_array(kinds: list[str | None]) -> pa.Array:
    """The ``kind:`` column, dictionary-encoded: a column holds a handful of distinct kinds,
    most often one (counted in C, the kinds being the same interned str objects)."""
    if kinds and kinds[0] is not None and kinds.count(kinds[0]) == len(kinds):
        indices = pa.array(np.zeros(len(kinds), dtype=np.int8))
        return pa.DictionaryArray.from_arrays(indices, pa.array([kinds[0]], pa.string()))
    return pa.array(kinds, type=pa.string()).dictionary_encode().cast(KIND)


def _key_array(values: list[Any]) -> pa.Array:
    types = set(map(type, values))
    if types <= {int, bool} and bool not in types:
        try:
            return pa.array(values, type=pa.int64())
        except OverflowError:
            return pa.array([str(v) for v in values], type=pa.string())
    if types <= {str}:
        return pa.array(values, type=pa.string())
    if types <= {bytes}:
        return pa.array(values, type=pa.binary())
    if types <= {bool}:
        return pa.array(values, type=pa.bool_())
    return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _loose_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else json_text(v) for v in values], type=pa.string())
