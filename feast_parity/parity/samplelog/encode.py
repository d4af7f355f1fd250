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


@dataclass
class _Chunk:
    features: tuple[str, ...]
    request_id: str
    request_time: float
    service: str | None
    projection: str
    keys: list[tuple[Any, ...]]
    key_hashes: list[int]
    event_times: list[float | None]
    values: dict[str, list[Any]]
    statuses: dict[str, list[int]]
    kinds: dict[str, list[str | None]]
    request_data: dict[str, list[Any]]
    udf_fingerprint: str | None
    context: dict[str, list[Any]]


@dataclass
class BatchBuilder:
    """Rows of one view, gathered by the writer thread, turned into one batch at flush.

    Canonical values, hashes and row hashes are computed column by column in :meth:`to_batch`,
    once per flush, not per value as rows arrive.
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
    chunks: list[_Chunk] = field(default_factory=list)
    rows: int = 0

    def add(
        self,
        *,
        features: Sequence[str],
        request_id: str,
        request_time: float,
        service: str | None,
        projection: str,
        keys: list[tuple[Any, ...]],
        key_hashes: list[int],
        event_times: list[float | None],
        values: dict[str, list[Any]],
        statuses: dict[str, list[int]],
        kinds: dict[str, list[str | None]],
        request_data: dict[str, list[Any]] | None = None,
        udf_fingerprint: str | None = None,
        context: dict[str, list[Any]] | None = None,
    ) -> None:
        """Add the sampled rows of one request (``keys`` in ``join_keys`` order; ``context``:
        the request's other join keys, by name)."""
        self.chunks.append(
            _Chunk(
                tuple(sorted(features)),
                request_id,
                request_time,
                service,
                projection,
                keys,
                key_hashes,
                event_times,
                values,
                statuses,
                kinds,
                request_data or {},
                udf_fingerprint,
                context or {},
            )
        )
        self.rows += len(keys)

    def to_batch(self) -> pa.RecordBatch:
        chunks = self.chunks
        n = self.rows
        sizes = [len(c.keys) for c in chunks]
        arrays: dict[str, pa.Array] = {}

        def repeat(values: Sequence[Any], arrow: pa.DataType) -> pa.Array:
            return pa.array([v for v, k in zip(values, sizes) for _ in range(k)], type=arrow)

        arrays["request_id"] = repeat([c.request_id for c in chunks], pa.string())
        times = np.repeat(np.asarray([c.request_time for c in chunks], dtype=np.float64), sizes)
        arrays["request_time"] = pa.array(np.round(times * 1e6).astype(np.int64)).cast(TIME)
        arrays["feature_service"] = repeat([c.service for c in chunks], pa.string())
        arrays["projection"] = repeat([c.projection for c in chunks], pa.string())
        arrays["entity_key_hash"] = pa.array(
            [h for c in chunks for h in c.key_hashes], type=pa.uint64()
        )
        event = [t for c in chunks for t in c.event_times]
        arrays["event_time"] = pa.array(
            [None if t is None else int(round(t * 1e6)) for t in event], type=pa.int64()
        ).cast(TIME)
        hashes: dict[str, np.ndarray] = {}
        feature_arrays: dict[str, pa.Array] = {}
        for name in sorted(self.declared):
            if not any(name in c.values for c in chunks):
                continue
            declared = self.declared[name]
            served = [v for c, k in zip(chunks, sizes) for v in c.values.get(name, [None] * k)]
            status = [s for c, k in zip(chunks, sizes) for s in c.statuses.get(name, [None] * k)]
            kinds = [s for c, k in zip(chunks, sizes) for s in c.kinds.get(name, [None] * k)]
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
            feature_arrays[f"status:{name}"] = pa.array(status, type=pa.int8())
            feature_arrays[f"hash:{name}"] = pa.array(hashes[name], type=pa.uint64())
            feature_arrays[f"kind:{name}"] = pa.array(kinds, type=pa.string())
        row_hash = np.zeros(n, dtype=np.uint64)
        fingerprints = np.zeros(n, dtype=np.uint64)
        start = 0
        for layout, rows in _layouts(chunks, sizes).items():
            fingerprint = schema_fingerprint({f: self.declared[f] for f in layout})
            fingerprints[rows] = fingerprint
            if layout:
                row_hash[rows] = row_hashes([hashes[f][rows] for f in layout], fingerprint)
        del start
        arrays["row_hash"] = pa.array(row_hash, type=pa.uint64())
        arrays["schema_fingerprint"] = pa.array(fingerprints, type=pa.uint64())
        arrays["sample_rate"] = pa.array(np.full(n, self.sample_rate, dtype=np.float64))
        arrays["seed"] = pa.array(np.full(n, self.seed, dtype=np.uint64))
        arrays["writer"] = pa.array([self.writer] * n, type=pa.string())
        for i, key in enumerate(self.join_keys):
            arrays[f"key:{key}"] = _key_array([k[i] for c in chunks for k in c.keys])
        arrays.update(feature_arrays)
        for name in sorted({r for c in chunks for r in c.context} - set(self.join_keys)):
            values = [v for c, k in zip(chunks, sizes) for v in c.context.get(name, [None] * k)]
            arrays[f"context:{name}"] = _key_array(values)
        request_names = sorted({r for c in chunks for r in c.request_data})
        for name in request_names:
            values = [
                v for c, k in zip(chunks, sizes) for v in c.request_data.get(name, [None] * k)
            ]
            arrays[f"request:{name}"] = _loose_array(values)
        if self.on_demand:
            arrays["udf_fingerprint"] = repeat([c.udf_fingerprint for c in chunks], pa.string())
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


def _layouts(chunks: Sequence[_Chunk], sizes: Sequence[int]) -> dict[tuple[str, ...], np.ndarray]:
    """Row indexes per requested-feature set."""
    out: dict[tuple[str, ...], list[int]] = {}
    start = 0
    for c, k in zip(chunks, sizes):
        out.setdefault(c.features, []).extend(range(start, start + k))
        start += k
    return {layout: np.asarray(rows, dtype=np.int64) for layout, rows in out.items()}


def _key_array(values: list[Any]) -> pa.Array:
    types = {type(v) for v in values}
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
