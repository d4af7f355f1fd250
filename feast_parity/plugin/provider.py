"""``ParityProvider``: Feast's passthrough provider with a sampling hook on online reads.

Registered with ``provider: feast_parity.ParityProvider`` in ``feature_store.yaml``. On every
``get_online_features`` (sync or async) the request thread only decides, per entity row, whether
to sample it (one xxhash per row) and, when some row is sampled, queues an immutable copy of the
response (its serialized protobuf, or only the sampled rows of a large response). Decoding
values, hashing and writing happen on the sample log's writer thread, which reads each response
column once per snapshot and encodes each distinct value once. The hook never raises into the
caller and never waits on I/O. Costs and their limits: docs/performance.md "Serving overhead".
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import operator
import os
import socket
import struct
import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import xxhash
from feast.feature_service import FeatureService
from feast.infra.passthrough_provider import PassthroughProvider
from feast.online_response import OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.repo_config import RepoConfig
from feast.type_map import feast_value_type_to_python_type
from feast.value_type import ValueType

from feast_parity.parity.hashing import encode_value, schema_fingerprint
from feast_parity.parity.samplelog import (
    SampleWriter,
    Snapshot,
    dumps,
    encode_json_value,
    install_sigterm_flush,
)
from feast_parity.parity.sampling import EntityKeyError, Sampler
from feast_parity.plugin.config import ParityConfig
from feast_parity.plugin.registry import ServedColumn, resolve_served_columns

logger = logging.getLogger("feast_parity")

# ValueProto oneof name -> the type name we record as "online type".
ONLINE_TYPE_NAMES = {
    "int32_val": "int32",
    "int64_val": "int64",
    "float_val": "float32",
    "double_val": "float64",
    "string_val": "string",
    "bytes_val": "bytes",
    "bool_val": "bool",
    "unix_timestamp_val": "timestamp",
    "int32_list_val": "list<int32>",
    "int64_list_val": "list<int64>",
    "float_list_val": "list<float32>",
    "double_list_val": "list<float64>",
    "string_list_val": "list<string>",
    "bytes_list_val": "list<bytes>",
    "bool_list_val": "list<bool>",
    "unix_timestamp_list_val": "list<timestamp>",
    "map_val": "map",
    "struct_val": "struct",
    "json_val": "json",
    "null_val": "null",
    None: "null",
}


class _Plan:
    """What one kind of request needs, resolved once: key columns, served columns, layouts.

    Requests with the same features, ``full_feature_names``, project and entity-row keys share
    a plan while the registry is unchanged (the same key Feast's own feature-resolution cache
    uses). The request thread reads ``key_names`` and ``getters``; the writer thread fills
    ``columns`` and ``layouts`` on first use and is the only one to touch them.
    """

    __slots__ = (
        "columns",
        "features",
        "full_feature_names",
        "getters",
        "key_names",
        "layouts",
        "project",
        "registry",
        "registry_ts",
        "service",
    )

    def __init__(
        self,
        features: Any,
        full_feature_names: bool,
        project: str,
        key_names: tuple[str, ...],
        registry: Any,
        registry_ts: Any,
    ) -> None:
        self.features = features  # tuple of refs, or the FeatureService object
        self.service: str | None = features.name if isinstance(features, FeatureService) else None
        self.full_feature_names = full_feature_names
        self.project = project
        # join keys of the request rows that the response serves, sorted (canonical key order)
        self.key_names = key_names
        self.getters = [operator.methodcaller("get", name) for name in key_names]
        self.registry = registry  # what the writer resolves served columns against
        self.registry_ts = registry_ts
        self.columns: list[ServedColumn] | None = None
        self.layouts: dict[tuple[str, ...], list[_ViewLayout]] = {}


class _RequestSnapshot(NamedTuple):
    """Everything the writer thread needs, captured without decoding on the request thread.

    ``response`` is an immutable copy: the serialized response (``rows`` are row indexes into
    it), or, when few rows of a large response are sampled, a new response message holding only
    those rows (``rows`` is None), so a 500-row request with one sampled row copies one row.
    """

    plan: _Plan
    response: bytes | GetOnlineFeaturesResponse
    rows: list[int] | None
    key_values: list[tuple[Any, ...]]  # per sampled row, values of plan.key_names (sorted)
    canonical_keys: list[bytes]  # per sampled row, its canonical entity key (sampling.py)
    feature_types: Mapping[str, Any]
    request_time: float
    request_id: str


# A response with at least this many rows per sampled row is copied row by row (about 2 µs a
# cell) rather than serialized whole (about 0.1 µs a cell); see docs/sample_log.md.
_ROW_COPY_MIN_ROWS_PER_SAMPLE = 24

# --- request ids: a per-process random prefix and a counter, formatted like a UUID --------------

_request_counter = itertools.count()
_request_prefix = ""


def _new_request_prefix() -> None:
    """80 random bits per process (re-drawn in a forked child) + a 48-bit counter: unique."""
    global _request_counter, _request_prefix
    h = os.urandom(10).hex()
    _request_prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-"
    _request_counter = itertools.count()


_new_request_prefix()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_request_prefix)


def _copy_rows(proto: GetOnlineFeaturesResponse, rows: list[int]) -> GetOnlineFeaturesResponse:
    """A new response message with only ``rows`` of ``proto`` (values are copied)."""
    out = GetOnlineFeaturesResponse()
    out.metadata.feature_names.val.extend(proto.metadata.feature_names.val)
    add = out.results.add
    for result in proto.results:
        copy = add()
        values, statuses, stamps = result.values, result.statuses, result.event_timestamps
        copy.values.extend([values[i] for i in rows])
        copy.statuses.extend([statuses[i] for i in rows])
        copy.event_timestamps.extend([stamps[i] for i in rows])
    return out


class ParityProvider(PassthroughProvider):
    """PassthroughProvider that logs deterministic samples of what it serves."""

    def __init__(self, config: RepoConfig):
        super().__init__(config)
        self.parity_config = ParityConfig.from_repo_config(config)
        self.sampler = Sampler(self.parity_config.sample_rate, self.parity_config.seed)
        self._writer: SampleWriter | None = None
        self._writer_lock = threading.Lock()
        self._plans: dict[Any, _Plan] = {}
        self._writer_id = f"{socket.gethostname()}:{os.getpid()}"[:64]
        self._sampling = self.parity_config.enabled and self.sampler.threshold > 0
        if self._sampling:
            # SIGTERM flushes the queue first (main thread, default or Python handler only).
            install_sigterm_flush()

    # -- the sample log writer, created on first use --

    @property
    def writer(self) -> SampleWriter:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    cfg = self.parity_config
                    self._writer_id = f"{socket.gethostname()}:{os.getpid()}"[:64]
                    self._writer = SampleWriter(
                        cfg.store_url(getattr(self.repo_config, "repo_path", None)),
                        self._snapshot_rows,
                        queue_size=cfg.queue_size,
                        batch_size=cfg.batch_size,
                        flush_interval=cfg.flush_interval_seconds,
                    )
                    try:
                        from feast_parity.plugin.metrics import install as install_metrics

                        install_metrics()
                    except Exception as exc:  # metrics must never break serving
                        logger.warning("feast-parity: Prometheus metrics not installed: %r", exc)
        return self._writer

    def parity_stats(self) -> dict[str, int]:
        """Counters of the hook: sampled, written and dropped rows, hook errors, queue depth."""
        if self._writer is None:
            return {
                "sampled_rows": 0,
                "written_rows": 0,
                "written_log_rows": 0,
                "dropped_rows": 0,
                "dropped_queue_full": 0,
                "dropped_store_error": 0,
                "hook_errors": 0,
                "store_errors": 0,
                "queue_depth": 0,
            }
        return self._writer.counters()

    def flush_samples(self, timeout: float = 30.0) -> bool:
        """Block until queued samples are written (for tests, jobs and shutdown hooks)."""
        return True if self._writer is None else self._writer.flush(timeout)

    # -- online retrieval hooks --

    def get_online_features(  # type: ignore[override]
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> OnlineResponse:
        request_time = time.time()
        response = super().get_online_features(
            config=config,
            features=features,
            entity_rows=entity_rows,
            registry=registry,
            project=project,
            full_feature_names=full_feature_names,
            **kwargs,
        )
        self._observe(
            features, entity_rows, response, request_time, registry, project, full_feature_names
        )
        return response

    async def get_online_features_async(  # type: ignore[override]
        self,
        config: RepoConfig,
        features: list[str] | FeatureService,
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> OnlineResponse:
        request_time = time.time()
        response = await super().get_online_features_async(
            config=config,
            features=features,
            entity_rows=entity_rows,
            registry=registry,
            project=project,
            full_feature_names=full_feature_names,
            **kwargs,
        )
        self._observe(
            features, entity_rows, response, request_time, registry, project, full_feature_names
        )
        return response

    async def close(self) -> None:
        """Feast's feature server awaits this at shutdown, after in-flight requests finished:
        flush what they sampled (the SIGTERM handler alone would run before them)."""
        try:
            await super().close()
        finally:
            writer = self._writer
            if writer is not None:
                import asyncio

                await asyncio.get_running_loop().run_in_executor(None, writer.flush, 10.0)

    # -- offline retrieval hook: training lineage (feast_parity.plugin.lineage) --

    def parity_engine(self) -> Any:
        """SQLAlchemy engine of the parity store (created once; used off the serving path)."""
        engine = getattr(self, "_parity_engine", None)
        if engine is None:
            from feast_parity.parity.samplelog import create_engine, ensure_schema

            cfg = self.parity_config
            engine = create_engine(cfg.store_url(getattr(self.repo_config, "repo_path", None)))
            ensure_schema(engine)
            self._parity_engine = engine
        return engine

    def get_historical_features(  # type: ignore[override]
        self,
        config: RepoConfig,
        feature_views: list[Any],
        feature_refs: list[str],
        entity_df: Any,
        registry: Any,
        project: str,
        full_feature_names: bool,
        **kwargs: Any,
    ) -> Any:
        job = super().get_historical_features(
            config,
            feature_views,
            feature_refs,
            entity_df,
            registry,
            project,
            full_feature_names,
            **kwargs,
        )
        from feast_parity.plugin.lineage import record_training_retrieval

        return record_training_retrieval(
            self, job, feature_views, feature_refs, registry, project, full_feature_names
        )

    def _observe(
        self,
        features: Any,
        entity_rows: Any,
        response: OnlineResponse,
        request_time: float,
        registry: Any,
        project: str,
        full_feature_names: bool,
    ) -> None:
        """Decide which rows to sample and queue a snapshot. Never raises, never does I/O."""
        if not self._sampling:
            return
        try:
            columnar = type(entity_rows) is not list and isinstance(entity_rows, Mapping)
            if columnar:
                row_keys = tuple(entity_rows)
            elif entity_rows:
                row_keys = tuple(entity_rows[0])
            else:
                return
            is_service = isinstance(features, FeatureService)
            features_key = features.name if is_service else tuple(features)
            proto = response.proto
            registry_ts = getattr(registry, "cached_registry_proto_created", None)
            cache_key = (is_service, features_key, full_feature_names, project, row_keys)
            plan = self._plans.get(cache_key)
            if plan is None or plan.registry_ts != registry_ts:
                plan = self._new_plan(
                    features if is_service else features_key,
                    full_feature_names,
                    project,
                    row_keys,
                    proto,
                    registry,
                    registry_ts,
                )
                if len(self._plans) >= 256:
                    self._plans.clear()
                self._plans[cache_key] = plan
            if not plan.key_names:
                return
            if columnar:
                columns = [entity_rows[k] for k in plan.key_names]
            else:
                columns = [list(map(get, entity_rows)) for get in plan.getters]
            sampled, canonical = self.sampler.sample_columns(plan.key_names, columns)
            if not sampled:
                return
            n_rows = len(columns[0])
            if n_rows >= _ROW_COPY_MIN_ROWS_PER_SAMPLE * len(sampled):
                copy: bytes | GetOnlineFeaturesResponse = _copy_rows(proto, sampled)
                rows: list[int] | None = None
            else:
                copy, rows = proto.SerializeToString(), sampled
            request_id = f"{_request_prefix}{next(_request_counter):012x}"
            snapshot = _RequestSnapshot(
                plan,
                copy,
                rows,
                [tuple([c[i] for c in columns]) for i in sampled],
                canonical,
                dict(response._feature_types or {}),
                request_time,
                request_id,
            )
            self.writer.submit(Snapshot(len(sampled), snapshot))
            response.parity_request_id = request_id  # type: ignore[attr-defined]
        except Exception as exc:  # EntityKeyError (mixed key kinds) included: count, log once
            self.writer.record_hook_error(exc)

    @staticmethod
    def _new_plan(
        features: Any,
        full_feature_names: bool,
        project: str,
        row_keys: tuple[Any, ...],
        proto: GetOnlineFeaturesResponse,
        registry: Any,
        registry_ts: Any,
    ) -> _Plan:
        served = set(proto.metadata.feature_names.val)
        key_names = [k for k in row_keys if k in served]
        for name in key_names:
            if not isinstance(name, str):
                raise EntityKeyError(f"join key names must be str, got {type(name).__qualname__}")
        return _Plan(
            features, full_feature_names, project, tuple(sorted(key_names)), registry, registry_ts
        )

    # -- writer thread: snapshot -> sample log rows --

    def _layout(self, plan: _Plan, names: tuple[str, ...]) -> list[_ViewLayout]:
        """Per feature view, the served columns of a response with these feature names."""
        layout = plan.layouts.get(names)
        if layout is not None:
            return layout
        if plan.columns is None:
            features = plan.features if plan.service is not None else list(plan.features)
            plan.columns = resolve_served_columns(
                plan.registry, plan.project, features, plan.full_feature_names
            )
        position = {name: i for i, name in enumerate(names)}
        by_view: dict[str, dict[str, tuple[ServedColumn, int]]] = {}
        for column in plan.columns:
            if column.output_name in position:
                # a feature served twice in one view (two aliases): the last one is logged
                by_view.setdefault(column.feature_view, {})[column.feature] = (
                    column,
                    position[column.output_name],
                )
        layout = []
        for view, cols in by_view.items():
            key = self.parity_config.redaction_key()
            redacted = set(self.parity_config.redact)
            columns = [
                _LogColumn.of(column, pos, key if f"{view}:{column.feature}" in redacted else None)
                for column, pos in cols.values()
            ]
            order = sorted(range(len(columns)), key=lambda k: columns[k].feature)
            fingerprint = schema_fingerprint({c.feature: c.declared for c in columns})
            layout.append(_ViewLayout(view, _signed(fingerprint), columns, order))
        if len(plan.layouts) >= 64:
            plan.layouts.clear()
        plan.layouts[names] = layout
        return layout

    def _snapshot_rows(self, snap: _RequestSnapshot) -> list[tuple[Any, ...]]:
        """Sample log rows (``INSERT_COLUMNS`` order) of one snapshot: one per row and view.

        Each proto column is read once for all sampled rows; values of the common scalar kinds
        are taken from the protobuf field as they are (what Feast's converter returns for them)
        and JSON-encoded and hashed once per distinct value; other kinds go through Feast's own
        converter, so the log holds exactly what ``response.to_dict()`` gives the caller.
        """
        plan = snap.plan
        response = snap.response
        proto = (
            GetOnlineFeaturesResponse.FromString(response)
            if isinstance(response, bytes)
            else response
        )
        layout = self._layout(plan, tuple(proto.metadata.feature_names.val))
        rows = snap.rows
        n_sampled = len(snap.canonical_keys)
        results = proto.results
        feature_types = snap.feature_types
        # per sampled row: entity key JSON and hash, shared by the row's views
        key_heads = _key_heads(plan)
        entity_keys = [
            "{" + ",".join([h + _json_key_value(v) for h, v in zip(key_heads, values)]) + "}"
            for values in snap.key_values
        ]
        key_hashes = [_signed(_hash(k)) for k in snap.canonical_keys]
        request_id, request_time, service = snap.request_id, snap.request_time, plan.service
        cfg = self.parity_config
        rate, seed, writer = cfg.sample_rate, cfg.seed, self._writer_id
        out: list[tuple[Any, ...]] = []
        for view in layout:
            texts, parts, times = [], [], []
            for c in view.columns:
                column = _read_column(results[c.pos], rows, c, feature_types.get(c.output_name))
                texts.append(column[0])
                parts.append(column[1])
                times.append(column[2])
            hashed = [parts[k] for k in view.hash_order]  # the row hash's feature-name order
            name, fingerprint = view.view, view.fingerprint
            # rows of one entity (a user against many candidates) repeat their view's cells
            encoded_rows: dict[tuple[str, ...], tuple[str, int]] = {}
            for j, row_texts, row_parts, row_times in zip(
                range(n_sampled), zip(*texts), zip(*hashed), zip(*times)
            ):
                encoded = encoded_rows.get(row_texts)
                if encoded is None:
                    encoded = encoded_rows[row_texts] = (
                        "{" + ",".join(row_texts) + "}",
                        _signed(_hash(b"".join(row_parts))),
                    )
                event_time = max(row_times)
                out.append(
                    (
                        1,
                        request_id,
                        request_time,
                        service,
                        entity_keys[j],
                        key_hashes[j],
                        name,
                        None if event_time == _NO_TIME else event_time,
                        encoded[1],
                        fingerprint,
                        encoded[0],
                        rate,
                        seed,
                        writer,
                    )
                )
        return out


# --- writer-thread helpers ---------------------------------------------------------------------

_hash = xxhash.xxh3_64_intdigest
_U32 = struct.Struct("<I").pack
_I64_MAX = 2**63 - 1
_json_str = json.encoder.encode_basestring_ascii  # what json.dumps uses for str (C version)
# Kinds whose protobuf field value is what Feast's converter returns (string_val unless the
# feature is a UUID, which Feast turns into uuid.UUID).
_DIRECT_KINDS = frozenset(
    {"int64_val", "int32_val", "double_val", "float_val", "string_val", "bool_val", "bytes_val"}
)
_FLOAT_KINDS = frozenset({"double_val", "float_val"})
_UUID, _TIME_UUID = ValueType.UUID, ValueType.TIME_UUID


def _signed(h: int) -> int:
    return h - 2**64 if h > _I64_MAX else h


class _LogColumn(NamedTuple):
    """One served feature column as the writer encodes it."""

    pos: int  # index in the response's results
    output_name: str
    feature: str
    declared: str
    head: str  # '"feature":['
    tails: dict[str | None, str]  # proto kind -> '",<online type>,<declared type>]'
    hash_prefix: bytes  # the row hash's per-feature prefix (hashing.py)
    redact_key: bytes | None = None  # parity.redact: values stored as keyed digests only

    @classmethod
    def of(cls, column: ServedColumn, pos: int, redact_key: bytes | None = None) -> _LogColumn:
        declared = _json_str(column.declared_type)
        tails = {
            kind: f'",{_json_str(online)},{declared}]' for kind, online in ONLINE_TYPE_NAMES.items()
        }
        tails["other"] = f'","other",{declared}]'
        name_b = column.feature.encode("utf-8", "surrogatepass")
        type_b = column.declared_type.encode("utf-8", "surrogatepass")
        return cls(
            pos,
            column.output_name,
            column.feature,
            column.declared_type,
            _json_str(column.feature) + ":[",
            tails,
            _U32(len(name_b)) + name_b + _U32(len(type_b)) + type_b,
            redact_key,
        )


class _ViewLayout(NamedTuple):
    view: str
    fingerprint: int  # signed schema fingerprint of the view's served columns
    columns: list[_LogColumn]  # in response order (the order of the features JSON)
    hash_order: list[int]  # indexes of columns in feature-name order (the row hash's order)


def _key_heads(plan: _Plan) -> list[str]:
    return [_json_str(name) + ":" for name in plan.key_names]


def _json_key_value(value: Any) -> str:
    t = type(value)
    if t is int:
        return int.__repr__(value)
    if t is str:
        return _json_str(value)
    return dumps(encode_json_value(value))


def _json_scalar(kind: str, raw: Any) -> str:
    """JSON text of a direct-kind value, byte for byte what json.dumps writes for it."""
    if kind in _FLOAT_KINDS:
        if raw != raw:
            return "NaN"
        if raw in (float("inf"), float("-inf")):
            return "Infinity" if raw > 0 else "-Infinity"
        return float.__repr__(raw)
    if kind == "string_val":
        return _json_str(raw)
    if kind == "bool_val":
        return "true" if raw else "false"
    if kind == "bytes_val":
        return dumps(encode_json_value(raw))
    return int.__repr__(raw)


def _encode_cell(
    column: _LogColumn, value: Any, json_text: str, kind: str | None, status: int
) -> tuple[str, bytes]:
    """(the cell's JSON text, its part of the row hash) for one served value."""
    encoded = encode_value(value, column.declared)
    value_hash = f"{_hash(encoded):016x}"
    if column.redact_key is not None and value is not None:
        # keyed digest only: neither the value nor an unkeyed hash of it reaches the log
        digest = hmac.new(column.redact_key, encoded, hashlib.sha256).hexdigest()
        json_text, value_hash, encoded = f'{{"$hmac":"{digest}"}}', digest[:16], digest.encode()
    text = (
        f'{column.head}{json_text},{status},"{value_hash}'
        f"{column.tails.get(kind) or column.tails['other']}"
    )
    return text, column.hash_prefix + _U32(len(encoded)) + encoded


_NO_TIME = float("-inf")  # no event timestamp set (NOT_FOUND, on-demand views)


def _read_column(
    result: Any, rows: list[int] | None, column: _LogColumn, feature_type: Any
) -> tuple[list[str], list[bytes], list[float]]:
    """Cell JSON texts, row-hash parts and event times (``_NO_TIME`` if unset) of the sampled
    rows of one response column: read once, each distinct (value, status) encoded once."""
    values, statuses, stamps = result.values, result.statuses, result.event_timestamps
    if rows is not None and len(rows) != len(values):
        if len(rows) == 1:
            (i,) = rows
            values, statuses, stamps = [values[i]], [statuses[i]], [stamps[i]]
        else:
            values = [values[i] for i in rows]
            statuses = [statuses[i] for i in rows]
            stamps = [stamps[i] for i in rows]
    direct = _DIRECT_KINDS
    if feature_type is _UUID or feature_type is _TIME_UUID:  # (hashing an Enum is slow)
        direct = direct - {"string_val"}
    memo: dict[Any, tuple[str, bytes]] = {}
    texts: list[str] = []
    parts: list[bytes] = []
    for value, status in zip(values, statuses):
        kind = value.WhichOneof("val")
        if kind in direct:
            raw = getattr(value, kind)
            if raw or kind not in _FLOAT_KINDS:  # 0.0 and -0.0 are equal keys: not memoized
                key = (kind, raw, status)
                cell = memo.get(key)
                if cell is None:
                    cell = memo[key] = _encode_cell(
                        column, raw, _json_scalar(kind, raw), kind, status
                    )
            else:
                cell = _encode_cell(column, raw, _json_scalar(kind, raw), kind, status)
        elif kind is None:
            cell = memo.get(status)
            if cell is None:
                cell = memo[status] = _encode_cell(column, None, "null", None, status)
        else:
            python_value = feast_value_type_to_python_type(value, feature_type)
            cell = _encode_cell(
                column, python_value, dumps(encode_json_value(python_value)), kind, status
            )
        texts.append(cell[0])
        parts.append(cell[1])
    times = [stamp.seconds + stamp.nanos / 1e9 or _NO_TIME for stamp in stamps]
    return texts, parts, times
