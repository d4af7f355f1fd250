"""The sample log format (v3): its columns, types, versions and byte form.

Arrow record batches with typed columns per feature.

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
``kind:<feature>``       dictionary<int8, string>  protobuf value kind served (``float_val``)
``request:<field>``      typed                     request-source inputs (on-demand views)
``udf_fingerprint``      string                    transformation the serving process ran
``full_feature_names``   bool (on-demand views)    the request's ``full_feature_names``
=======================  ========================  ===========================================

The batch's schema metadata holds the log version, the view, the declared types, the redacted
features and whether the view is on-demand. A reader refuses a version newer than
:data:`LOG_VERSION` (:class:`NewerLogError`).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from feast_parity.parity.canonical import base_type, element_type

LOG_VERSION = 3
META_VERSION = b"feast_parity.log_version"
META_VIEW = b"feast_parity.feature_view"
META_DECLARED = b"feast_parity.declared"
META_REDACTED = b"feast_parity.redacted"
META_ON_DEMAND = b"feast_parity.on_demand"

KEY_PREFIX = "key:"  # a join-key column is ``key:<join key>``
TIME = pa.timestamp("us", tz="UTC")
KIND = pa.dictionary(pa.int8(), pa.string())  # the kind: columns
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


def batch_view(schema: pa.Schema) -> str:
    """The feature view a batch belongs to."""
    metadata = schema.metadata or {}
    if META_VIEW not in metadata:
        raise LogFormatError("sample-log batch without a feature view")
    return metadata[META_VIEW].decode("utf-8", "surrogatepass")


_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


def to_ipc(batch: pa.RecordBatch) -> bytes:
    """A batch as Arrow IPC stream bytes, zstd-compressed (what the SQL sink stores): a third
    of the uncompressed size (docs/performance.md). Readers decompress by themselves."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=_IPC_OPTIONS) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def from_ipc(payload: bytes) -> pa.Table:
    """Inverse of :func:`to_ipc`; :class:`LogFormatError` on damaged bytes."""
    try:
        return pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    except (pa.ArrowException, OSError, TypeError) as exc:
        raise LogFormatError(f"damaged sample-log batch bytes: {exc}") from None
