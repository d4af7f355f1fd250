"""The sample log format (v3): Arrow record batches with typed columns per feature.

One batch holds sampled rows of one feature view, as one writer flushed them. Every sink (SQL
rows of Arrow IPC bytes, a Parquet dataset) stores these batches unchanged, and every reader turns
them back into :class:`~feast_parity.parity.served.ServedRows` with :func:`decode_batch`. This
module is the only place that knows the column layout (docs/sample_log.md):

=======================  ========================  ===========================================
column                   type                      meaning
=======================  ========================  ===========================================
``request_id``           string                    one id per ``get_online_features`` call
``request_time``         timestamp[us, UTC]        when the call started
``feature_service``      string (null for refs)    the service asked for
``projection``           string                    the view's name in the request (alias)
``entity_key_hash``      uint64                    xxh3 of the canonical entity key (sampling)
``event_time``           timestamp[us, UTC]        the served row's event time (null: none)
``row_hash``             uint64                    hash of the requested features' values
``schema_fingerprint``   uint64                    hash of their names and declared types
``sample_rate``          float64                   the rate in force
``seed``                 uint64                    the sampling seed in force
``writer``               string                    host:pid of the serving process
``key:<join key>``       int64 / string / ...      the view's entity key as the request spelled it
``context:<join key>``   int64 / string / ...      the request's other join keys (cohorts)
``value:<feature>``      the declared type's        the served value (JSON text for Map, Json,
                         Arrow type                Struct; null when redacted)
``status:<feature>``     int8                      Feast FieldStatus; null: not requested
``other:<feature>``      string (only if needed)   JSON text of a served value that does not
                                                   fit the declared type (then value is null)
``hash:<feature>``       uint64                    value hash (keyed HMAC when redacted)
``kind:<feature>``       string                    protobuf value kind served (``float_val``)
``request:<field>``      typed                     request-source inputs (on-demand views)
``udf_fingerprint``      string                    transformation the serving process ran
=======================  ========================  ===========================================

The batch's schema metadata holds the log version, the view, the declared types, the redacted
features and whether the view is on-demand. A reader refuses a version newer than
:data:`LOG_VERSION` (:class:`NewerLogError`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feast_parity.parity.canonical import base_type, element_type
from feast_parity.parity.columns import CanonicalColumn, canonical_column, row_hashes
from feast_parity.parity.hashing import schema_fingerprint
from feast_parity.parity.served import NO_TIME, ServedFeature, ServedRows

LOG_VERSION = 3
META_VERSION = b"feast_parity.log_version"
META_VIEW = b"feast_parity.feature_view"
META_DECLARED = b"feast_parity.declared"
META_REDACTED = b"feast_parity.redacted"
META_ON_DEMAND = b"feast_parity.on_demand"

TIME = pa.timestamp("us", tz="UTC")
_SCALAR_ARROW = {
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "Bool": pa.bool_(),
    "String": pa.string(),
    "Uuid": pa.string(),
    "TimeUuid": pa.string(),
    "Decimal": pa.string(),
    "Bytes": pa.binary(),
    "PdfBytes": pa.binary(),
    "ImageBytes": pa.binary(),
    "UnixTimestamp": TIME,
}


class LogFormatError(ValueError):
    """A batch that is not a readable sample-log batch (damaged bytes, missing columns)."""


class NewerLogError(LogFormatError):
    """A batch written by a newer feast-parity: refuse rather than misread it."""


def arrow_type(declared: str) -> pa.DataType:
    """Arrow type of a feature's ``value:`` column.

    >>> arrow_type("Float32"), arrow_type("Array(Int64)"), arrow_type("Json")
    (DataType(float), ListType(list<item: int64>), DataType(string))
    """
    if declared in _SCALAR_ARROW:
        return _SCALAR_ARROW[declared]
    if base_type(declared) in ("Array", "Set"):
        inner = element_type(declared)
        if inner in _SCALAR_ARROW:
            return pa.list_(_SCALAR_ARROW[inner])
    return pa.string()  # Map, Json, Struct and anything else: canonical JSON text


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"$b": bytes(value).hex()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return repr(value)


def json_text(value: Any) -> str | None:
    """Canonical JSON text of a served Map/Json/Struct value (sorted keys, compact)."""
    if value is None:
        return None
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError):
        return json.dumps(repr(value))


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


# --- reading ----------------------------------------------------------------------------------


def batch_version(schema: pa.Schema) -> int:
    """The log version a batch was written with; :class:`NewerLogError` when it is too new."""
    metadata = schema.metadata or {}
    raw = metadata.get(META_VERSION)
    try:
        version = int(raw) if raw is not None else -1
    except ValueError:
        raise LogFormatError(f"unreadable log version {raw!r}") from None
    if version > LOG_VERSION:
        raise NewerLogError(
            f"the sample log holds batches of log version {version}; this feast-parity reads "
            f"up to version {LOG_VERSION}: upgrade feast-parity"
        )
    if version != LOG_VERSION:
        raise LogFormatError(f"not a sample-log batch (log version {raw!r})")
    return version


def _times(array: pa.Array) -> np.ndarray:
    micros = pc.cast(pc.cast(array, TIME), pa.int64())
    return pc.fill_null(micros, NO_TIME).to_numpy(zero_copy_only=False).astype(np.int64)


def decode_batch(batch: pa.RecordBatch | pa.Table, first_sample_id: int = 0) -> ServedRows:
    """A v3 batch (or a table of batches of one view) as :class:`ServedRows`."""
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
            kinds = np.asarray(col(f"kind:{name}").to_pylist(), dtype=object)
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
            )
        keys = {
            c[len("key:") :]: np.asarray(col(c).to_pylist(), dtype=object)
            for c in table.column_names
            if c.startswith("key:")
        }
        request_data = {
            c[len("request:") :]: np.asarray(col(c).to_pylist(), dtype=object)
            for c in table.column_names
            if c.startswith("request:")
        }
        context = {
            c[len("context:") :]: np.asarray(col(c).to_pylist(), dtype=object)
            for c in table.column_names
            if c.startswith("context:")
        }
        udf = (
            np.asarray(col("udf_fingerprint").to_pylist(), dtype=object)
            if "udf_fingerprint" in names
            else None
        )
        return ServedRows(
            feature_view=view,
            sample_ids=np.arange(first_sample_id, first_sample_id + n, dtype=np.int64),
            request_id=np.asarray(col("request_id").to_pylist(), dtype=object),
            request_time=_times(col("request_time")),
            event_time=_times(col("event_time")),
            keys=keys,
            entity_key_hash=col("entity_key_hash").to_numpy(zero_copy_only=False).astype(np.uint64),
            feature_service=np.asarray(col("feature_service").to_pylist(), dtype=object),
            features=features,
            row_hash=col("row_hash").to_numpy(zero_copy_only=False).astype(np.uint64),
            writer=np.asarray(col("writer").to_pylist(), dtype=object),
            request_data=request_data,
            udf_fingerprint=udf,
            on_demand=on_demand,
            context=context,
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
            c[len("key:") :]: np.asarray(table.column(c).to_pylist(), dtype=object)
            for c in table.column_names
            if c.startswith("key:")
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


def batch_view(schema: pa.Schema) -> str:
    """The feature view a batch belongs to."""
    metadata = schema.metadata or {}
    if META_VIEW not in metadata:
        raise LogFormatError("sample-log batch without a feature view")
    return metadata[META_VIEW].decode("utf-8", "surrogatepass")


def to_ipc(batch: pa.RecordBatch) -> bytes:
    """A batch as Arrow IPC stream bytes (what the SQL sink stores)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def from_ipc(payload: bytes) -> pa.Table:
    """Inverse of :func:`to_ipc`; :class:`LogFormatError` on damaged bytes."""
    try:
        return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    except (pa.ArrowException, OSError, TypeError) as exc:
        raise LogFormatError(f"damaged sample-log batch bytes: {exc}") from None


def _plain(value: Any) -> Any:
    """A canonical value as a plain Python value for an Arrow column (maps as dicts)."""
    from feast_parity.parity.canonical import MapItems, Seconds

    if type(value) is Seconds:
        return int(value) * 1_000_000
    if isinstance(value, MapItems):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


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
        columns[f"key:{name}"] = _key_array(values.tolist())
    for name, feature in sorted(rows.features.items()):
        column = feature.values
        if column.kind in ("int", "float", "bool"):
            values_array = pa.array(column.values, mask=column.null)
        elif column.kind == "time":
            values_array = pa.array(column.values * 1_000_000, pa.int64(), mask=column.null).cast(
                TIME
            )
        else:
            from feast_parity.parity.canonical import Other

            others = [v if isinstance(v, Other) else None for v in column.values.tolist()]
            plain = [
                None if column.null[i] or others[i] is not None else _plain(column.values[i])
                for i in range(n)
            ]
            try:
                values_array = pa.array(plain)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                values_array = pa.array([json_text(v) for v in plain], pa.string())
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
