"""``ParityProvider``: Feast's passthrough provider with a sampling hook on online reads.

Registered with ``provider: feast_parity.ParityProvider`` in ``feature_store.yaml``. On every
``get_online_features`` (sync or async) the request thread only decides, per entity row, whether
to sample it (one xxhash per row) and, when some row is sampled, queues an immutable copy of the
response (its serialized protobuf). Decoding values, hashing and writing happen on the sample
log's writer thread. The hook never raises into the caller and never waits on I/O.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from feast.feature_service import FeatureService
from feast.infra.passthrough_provider import PassthroughProvider
from feast.online_response import OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.repo_config import RepoConfig
from feast.type_map import feast_value_type_to_python_type

from feast_parity.parity.hashing import row_and_value_hashes, schema_fingerprint, to_signed64
from feast_parity.parity.samplelog import SampleWriter, Snapshot, dumps, encode_json_value
from feast_parity.parity.sampling import Sampler, canonical_entity_key
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


@dataclass(frozen=True)
class _RequestSnapshot:
    """Everything the writer thread needs, captured without decoding on the request thread."""

    response_bytes: bytes
    feature_types: Mapping[str, Any]
    sampled_rows: list[int]
    join_keys: list[dict[str, Any]]
    request_time: float
    request_id: str
    features: Any  # list of refs, or the FeatureService object
    full_feature_names: bool
    project: str


def _columnar_keys(entity_rows: Any) -> Mapping[str, Sequence[Any]]:
    """Entity rows as {key: column}; Feast accepts a list of dicts or a dict of columns."""
    if isinstance(entity_rows, Mapping):
        return entity_rows
    if not entity_rows:
        return {}
    names = list(entity_rows[0].keys())
    return {name: [row.get(name) for row in entity_rows] for name in names}


class ParityProvider(PassthroughProvider):
    """PassthroughProvider that logs deterministic samples of what it serves."""

    def __init__(self, config: RepoConfig):
        super().__init__(config)
        self.parity_config = ParityConfig.from_repo_config(config)
        self.sampler = Sampler(self.parity_config.sample_rate, self.parity_config.seed)
        self._writer: SampleWriter | None = None
        self._writer_lock = threading.Lock()
        self._registry: Any = None
        self._column_cache: dict[Any, list[ServedColumn]] = {}
        self._writer_id = f"{socket.gethostname()}:{os.getpid()}"[:64]

    # -- the sample log writer, created on first use --

    @property
    def writer(self) -> SampleWriter:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    cfg = self.parity_config
                    self._writer = SampleWriter(
                        cfg.store_url(getattr(self.repo_config, "repo_path", None)),
                        self._snapshot_rows,
                        queue_size=cfg.queue_size,
                        batch_size=cfg.batch_size,
                        flush_interval=cfg.flush_interval_seconds,
                    )
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
        return {**self._writer.stats.as_dict(), "queue_depth": self._writer.queue_depth}

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

    # -- offline retrieval hook: training lineage (feast_parity.plugin.lineage) --

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
        if not self.parity_config.enabled or self.sampler.threshold == 0:
            return
        try:
            columns = _columnar_keys(entity_rows)
            served = set(response.proto.metadata.feature_names.val)
            key_columns = {k: v for k, v in columns.items() if k in served}
            if not key_columns:
                return
            decisions = self.sampler.decide_rows(key_columns)
            sampled = [i for i, chosen in enumerate(decisions) if chosen]
            if not sampled:
                return
            self._registry = registry
            snapshot = _RequestSnapshot(
                response_bytes=response.proto.SerializeToString(),
                feature_types=dict(getattr(response, "_feature_types", {}) or {}),
                sampled_rows=sampled,
                join_keys=[{k: v[i] for k, v in key_columns.items()} for i in sampled],
                request_time=request_time,
                request_id=str(uuid.uuid4()),
                features=features if isinstance(features, FeatureService) else list(features),
                full_feature_names=full_feature_names,
                project=project,
            )
            self.writer.submit(Snapshot(rows=len(sampled), payload=snapshot))
        except Exception as exc:  # EntityKeyError (mixed key kinds) included: count, log once
            self.writer.record_hook_error(exc)

    # -- writer thread: snapshot -> sample log rows --

    def _served_columns(self, snap: _RequestSnapshot) -> list[ServedColumn]:
        if isinstance(snap.features, FeatureService):
            key: Any = ("service", snap.features.name, snap.full_feature_names)
        else:
            key = ("refs", tuple(snap.features), snap.full_feature_names)
        cached = self._column_cache.get(key)
        if cached is None:
            cached = resolve_served_columns(
                self._registry, snap.project, snap.features, snap.full_feature_names
            )
            self._column_cache[key] = cached
        return cached

    def _snapshot_rows(self, snap: _RequestSnapshot) -> list[dict[str, Any]]:
        proto = GetOnlineFeaturesResponse.FromString(snap.response_bytes)
        position = {name: i for i, name in enumerate(proto.metadata.feature_names.val)}
        by_view: dict[str, list[tuple[ServedColumn, int]]] = {}
        for column in self._served_columns(snap):
            if column.output_name in position:
                by_view.setdefault(column.feature_view, []).append(
                    (column, position[column.output_name])
                )
        service = snap.features.name if isinstance(snap.features, FeatureService) else None
        # the schema of a view's served columns is the same for every row of the snapshot
        fingerprints = {
            view: to_signed64(schema_fingerprint({c.feature: c.declared_type for c, _ in cols}))
            for view, cols in by_view.items()
        }
        rows: list[dict[str, Any]] = []
        for row_index, join_keys in zip(snap.sampled_rows, snap.join_keys):
            entity_key = {k: encode_json_value(v) for k, v in join_keys.items()}
            entity_key_hash = to_signed64(_key_hash(join_keys))
            for view, cols in by_view.items():
                typed: dict[str, tuple[str, Any]] = {}
                cells: dict[str, list[Any]] = {}
                event_time: float | None = None
                for column, pos in cols:
                    result = proto.results[pos]
                    proto_value = result.values[row_index]
                    value = feast_value_type_to_python_type(
                        proto_value, snap.feature_types.get(column.output_name)
                    )
                    status = int(result.statuses[row_index])
                    ts = result.event_timestamps[row_index]
                    if ts.seconds or ts.nanos:
                        seen = ts.seconds + ts.nanos / 1e9
                        event_time = seen if event_time is None else max(event_time, seen)
                    typed[column.feature] = (column.declared_type, value)
                    cells[column.feature] = [
                        encode_json_value(value),
                        status,
                        "",
                        ONLINE_TYPE_NAMES.get(proto_value.WhichOneof("val"), "other"),
                        column.declared_type,
                    ]
                row_hash, value_hashes = row_and_value_hashes(typed)
                for name, cell in cells.items():
                    cell[2] = f"{value_hashes[name]:016x}"
                rows.append(
                    {
                        "log_version": 1,
                        "request_id": snap.request_id,
                        "request_time": snap.request_time,
                        "feature_service": service,
                        "entity_key": dumps(entity_key),
                        "entity_key_hash": entity_key_hash,
                        "feature_view": view,
                        "event_time": event_time,
                        "row_hash": to_signed64(row_hash),
                        "schema_fingerprint": fingerprints[view],
                        "features": dumps(cells),
                        "sample_rate": self.parity_config.sample_rate,
                        "seed": self.parity_config.seed,
                        "writer": self._writer_id,
                    }
                )
        return rows


def _key_hash(join_keys: Mapping[str, Any]) -> int:
    import xxhash

    return xxhash.xxh3_64_intdigest(canonical_entity_key(join_keys))
