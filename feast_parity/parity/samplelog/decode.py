"""Decoding v3 batches into ServedRows, and flat tables for people (the reader's half)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feast_parity.parity.columns import CanonicalColumn, canonical_column, plain_array
from feast_parity.parity.samplelog.encode import _key_array, _loose_array
from feast_parity.parity.samplelog.format import (
    _SCALAR_ARROW,
    KEY_PREFIX,
    META_DECLARED,
    META_ON_DEMAND,
    META_REDACTED,
    META_VIEW,
    TIME,
    LogFormatError,
    arrow_type,
    batch_version,
)
from feast_parity.parity.served import NO_TIME, ServedFeature, ServedRows


def _times(array: pa.Array) -> np.ndarray:
    micros = pc.cast(pc.cast(array, TIME), pa.int64())
    return pc.fill_null(micros, NO_TIME).to_numpy(zero_copy_only=False).astype(np.int64)


def object_array(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow column as a numpy object array of the Python values ``to_pylist`` gives (None
    for null), built without a Python call per value: strings through their distinct values,
    numbers and bools through numpy.

    >>> object_array(pa.chunked_array([["a", None], ["a"]])).tolist()
    ['a', None, 'a']
    >>> object_array(pa.array([2**62 + 1, None])).tolist()
    [4611686018427387905, None]
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if pa.types.is_dictionary(kind):
        dictionary = array.dictionary
        distinct = (
            dictionary.to_numpy(zero_copy_only=False).astype(object)
            if pa.types.is_string(dictionary.type) or pa.types.is_large_string(dictionary.type)
            else object_array(dictionary)
        )
        indices = array.indices.fill_null(0).to_numpy(zero_copy_only=False)
        out = distinct[indices] if len(distinct) else np.full(len(array), None, dtype=object)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = pc.dictionary_encode(array)
        if len(encoded.dictionary) * 2 > len(array):  # mostly distinct: one str per value
            return array.to_numpy(zero_copy_only=False).astype(object)
        array = encoded
        distinct = encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
        indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        out = distinct[indices] if len(distinct) else np.full(len(array), None, dtype=object)
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        out = array.fill_null(False if pa.types.is_boolean(kind) else 0).to_numpy(
            zero_copy_only=False
        )
        out = out.astype(object)
    else:
        out = np.empty(len(array), dtype=object)
        for index, value in enumerate(array.to_pylist()):  # lists stay one object each
            out[index] = value
        return out
    if array.null_count:
        out[array.is_null().to_numpy(zero_copy_only=False)] = None
    return out


def decode_batch(
    batch: pa.RecordBatch | pa.Table, first_sample_id: int | np.ndarray = 0
) -> ServedRows:
    """A v3 batch (or a table of batches of one view) as :class:`ServedRows`; sample ids count
    from ``first_sample_id``, or are given one per row."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    batch_version(table.schema)
    metadata = table.schema.metadata or {}
    try:
        view = metadata[META_VIEW].decode("utf-8", "surrogatepass")
        declared: dict[str, str] = json.loads(metadata[META_DECLARED])
        redacted = set(json.loads(metadata.get(META_REDACTED, b"[]")))
        on_demand = metadata.get(META_ON_DEMAND) == b"1"
        n = table.num_rows
        col = table.column
        names = set(table.column_names)
        features = {}
        for name in sorted(declared):
            if f"status:{name}" not in names:
                continue
            status = pc.fill_null(col(f"status:{name}"), 0).to_numpy(zero_copy_only=False)
            kinds = object_array(col(f"kind:{name}"))
            hashes = col(f"hash:{name}").to_numpy(zero_copy_only=False).astype(np.uint64)
            if name in redacted:
                values = canonical_column([None] * n, declared[name])
            elif (
                declared[name] != "Json"
                and arrow_type(declared[name]) == pa.string()
                and (declared[name] not in _SCALAR_ARROW)
            ):  # Map, Struct: JSON text of the served dict (a Json cell is parsed as Json)
                texts = col(f"value:{name}").to_pylist()
                values = canonical_column([_from_json_text(t) for t in texts], declared[name])
            else:
                values = canonical_column(col(f"value:{name}"), declared[name])
            if name not in redacted:
                if f"other:{name}" in names:
                    values = _with_others(values, col(f"other:{name}").to_pylist())
            features[name] = ServedFeature(
                declared[name],
                values,
                status.astype(np.int8),
                hashes,
                kinds,
                {declared[name]: int((status != 0).sum())},
                name in redacted,
                pc.fill_null(col(f"input_only:{name}"), False).to_numpy(zero_copy_only=False)
                if f"input_only:{name}" in names
                else None,
            )
        keys = {
            c[len(KEY_PREFIX) :]: object_array(col(c))
            for c in table.column_names
            if c.startswith(KEY_PREFIX)
        }
        request_data = {
            c[len("request:") :]: object_array(col(c))
            for c in table.column_names
            if c.startswith("request:")
        }
        context = {
            c[len("context:") :]: object_array(col(c))
            for c in table.column_names
            if c.startswith("context:")
        }
        udf = object_array(col("udf_fingerprint")) if "udf_fingerprint" in names else None
        full_names = (
            pc.fill_null(col("full_feature_names"), False).to_numpy(zero_copy_only=False)
            if "full_feature_names" in names
            else None
        )
        return ServedRows(
            feature_view=view,
            sample_ids=np.arange(first_sample_id, first_sample_id + n, dtype=np.int64)
            if isinstance(first_sample_id, int)
            else np.asarray(first_sample_id, dtype=np.int64),
            request_id=object_array(col("request_id")),
            request_time=_times(col("request_time")),
            event_time=_times(col("event_time")),
            keys=keys,
            entity_key_hash=col("entity_key_hash").to_numpy(zero_copy_only=False).astype(np.uint64),
            feature_service=object_array(col("feature_service")),
            features=features,
            row_hash=col("row_hash").to_numpy(zero_copy_only=False).astype(np.uint64),
            writer=object_array(col("writer")),
            request_data=request_data,
            udf_fingerprint=udf,
            on_demand=on_demand,
            context=context,
            full_feature_names=full_names,
        )
    except (KeyError, ValueError, TypeError, pa.ArrowException) as exc:
        raise LogFormatError(f"damaged sample-log batch: {type(exc).__name__}: {exc}") from None


def decode_keys(batch: pa.RecordBatch | pa.Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Only the view's join keys and served event times of a v3 batch (no feature decoding):
    what a point-in-time pull needs to know which entities and times to fetch."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    batch_version(table.schema)
    try:
        keys = {
            c[len(KEY_PREFIX) :]: object_array(table.column(c))
            for c in table.column_names
            if c.startswith(KEY_PREFIX)
        }
        return keys, _times(table.column("event_time"))
    except (KeyError, pa.ArrowException) as exc:
        raise LogFormatError(f"damaged sample-log batch: {exc}") from None


def _with_others(values: CanonicalColumn, others: list[str | None]) -> CanonicalColumn:
    """Canonical values where the ``other:`` column holds a served value of another type."""
    merged = [
        values.value(i) if text is None else _parse_other(text) for i, text in enumerate(others)
    ]
    return canonical_column(merged, values.declared)


def _untag(value: Any) -> Any:
    """Inverse of ``json_text``'s tags: ``{"$b": hex}`` back to bytes."""
    if isinstance(value, dict):
        if len(value) == 1 and "$b" in value and isinstance(value["$b"], str):
            try:
                return bytes.fromhex(value["$b"])
            except ValueError:
                return value
        return {k: _untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_untag(v) for v in value]
    return value


def _from_json_text(text: str | None) -> Any:
    """A Map/Json/Struct cell of the log back to the served value (None stays None)."""
    if text is None:
        return None
    try:
        return _untag(json.loads(text))
    except ValueError:
        return text


def _parse_other(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def rows_table(rows: ServedRows) -> pa.Table:
    """ServedRows as a flat Arrow table for people and notebooks: one row per sampled row,
    ``key:``, ``value:``, ``status:``, ``hash:`` and ``kind:`` columns as in a v3 batch (values
    in canonical form; JSON text for Map, Json and Struct)."""
    n = len(rows)
    columns: dict[str, pa.Array] = {
        "feature_view": pa.array([rows.feature_view] * n, pa.string()),
        "request_id": pa.array(rows.request_id.tolist(), pa.string()),
        "request_time": pa.array(rows.request_time, pa.int64()).cast(TIME),
        "event_time": pa.array(rows.event_time, pa.int64(), mask=rows.event_time == NO_TIME).cast(
            TIME
        ),
        "feature_service": pa.array(rows.feature_service.tolist(), pa.string()),
        "writer": pa.array(rows.writer.tolist(), pa.string()),
        "row_hash": pa.array(rows.row_hash, pa.uint64()),
        "entity_key_hash": pa.array(rows.entity_key_hash, pa.uint64()),
    }
    for name, values in sorted(rows.keys.items()):
        columns[KEY_PREFIX + name] = _key_array(values.tolist())
    for name, feature in sorted(rows.features.items()):
        column = feature.values
        values_array = plain_array(column)
        if column.kind == "object":
            from feast_parity.parity.canonical import Other

            others = [v if isinstance(v, Other) else None for v in column.values.tolist()]
            if any(o is not None for o in others):
                columns[f"other:{name}"] = pa.array(
                    [None if o is None else str(o) for o in others], pa.string()
                )
        status = feature.status
        columns[f"value:{name}"] = values_array
        columns[f"status:{name}"] = pa.array(status, pa.int8(), mask=status == 0)
        columns[f"hash:{name}"] = pa.array(feature.hashes, pa.uint64())
        columns[f"kind:{name}"] = pa.array(feature.kinds.tolist(), pa.string())
    for name, values in sorted(rows.request_data.items()):
        columns[f"request:{name}"] = _loose_array(values.tolist())
    return pa.table(columns)
