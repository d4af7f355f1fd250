"""On the writer thread: request snapshots -> per-view log batches (log format v3).

:class:`BatchCollector` is the writer's collector (:mod:`feast_parity.store.writer`). For each
snapshot it decodes the response protobuf once, reads each served column of the sampled rows
once, and appends the rows to one :class:`~feast_parity.parity.samplelog.BatchBuilder` per view;
canonical values and hashes are computed per column when the writer flushes. Each projection of
a view in a request (an alias, a join-key map) becomes its own log rows, keyed by the view's own
join keys, so the check looks them up offline as the view.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any, NamedTuple

from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.type_map import feast_value_type_to_python_type

from feast_parity.parity.samplelog import BatchBuilder
from feast_parity.plugin.hook import RequestSnapshot
from feast_parity.plugin.registry import ViewCatalog, served_columns, udf_fingerprint

NULL_TIMESTAMP = -9223372036854775808  # Feast's NULL_TIMESTAMP_INT_VALUE (int64 min)
_SCALAR_KINDS = frozenset(
    {"int64_val", "int32_val", "double_val", "float_val", "string_val", "bool_val", "bytes_val"}
)
_LIST_KINDS = frozenset(
    {
        "int64_list_val",
        "int32_list_val",
        "double_list_val",
        "float_list_val",
        "string_list_val",
        "bool_list_val",
        "bytes_list_val",
    }
)


def writer_id() -> str:
    """host:pid of this process (re-read after a fork)."""
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


class _Layout(NamedTuple):
    """One projection of one view in responses of one shape."""

    feature_view: str
    projection: str
    on_demand: bool
    declared: dict[str, str]  # every feature of the view (registry types) and served extras
    features: list[tuple[str, int]]  # (feature, index in the response's results)
    join_keys: tuple[str, ...]  # the view's own join keys, in log order
    key_sources: list[int]  # per join key, its index in plan.key_names
    request_fields: list[tuple[str, int]]  # (request field, index in plan.extra_names)
    udf_fingerprint: str | None


def read_values(
    result: Any, rows: Sequence[int] | None
) -> tuple[list[Any], list[int], list[str | None], list[float]]:
    """(values, statuses, protobuf kinds, event times) of the sampled rows of one column.

    Scalars and lists are read from the protobuf field as Feast's converter would return them;
    maps, structs, JSON and other kinds go through Feast's own converter."""
    values_pb, statuses_pb, stamps_pb = result.values, result.statuses, result.event_timestamps
    if rows is not None and len(rows) != len(values_pb):
        values_pb = [values_pb[i] for i in rows]
        statuses = [statuses_pb[i] for i in rows]
        stamps = [stamps_pb[i] for i in rows]
    else:
        statuses, stamps = list(statuses_pb), list(stamps_pb)
    values: list[Any] = []
    kinds: list[str | None] = []
    for v in values_pb:
        kind = v.WhichOneof("val")
        kinds.append(kind)
        if kind is None or kind == "null_val":
            values.append(None)
        elif kind in _SCALAR_KINDS:
            values.append(getattr(v, kind))
        elif kind == "unix_timestamp_val":
            raw = v.unix_timestamp_val
            values.append(None if raw == NULL_TIMESTAMP else raw)
        elif kind in _LIST_KINDS:
            values.append(list(getattr(v, kind).val))
        elif kind == "unix_timestamp_list_val":
            values.append(
                [None if x == NULL_TIMESTAMP else x for x in v.unix_timestamp_list_val.val]
            )
        elif kind == "json_val":
            # the JSON text as stored online: Feast's parsed form cannot tell "5" from 5
            values.append(v.json_val)
        elif kind == "json_list_val":
            values.append(list(v.json_list_val.val))
        else:
            values.append(feast_value_type_to_python_type(v))
    times = [s.seconds + s.nanos / 1e9 for s in stamps]
    if len(times) < len(values):  # a column without event times (join keys, on-demand)
        times = times + [0.0] * (len(values) - len(times))
    return values, statuses, kinds, times


class BatchCollector:
    """Gathers snapshots into per-view batch builders; ``take`` returns the batches."""

    def __init__(
        self,
        *,
        sample_rate: float,
        seed: int,
        redact: Sequence[str] = (),
        redact_key: bytes | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.seed = seed
        self.redact = frozenset(redact)
        self.redact_key = redact_key
        self.writer = writer_id()
        self._builders: dict[tuple[str, tuple[tuple[str, str], ...]], BatchBuilder] = {}

    # -- layouts --

    def _layouts(self, snap: RequestSnapshot, names: tuple[str, ...]) -> list[_Layout]:
        plan = snap.plan
        layout = plan.layouts.get(names)
        if layout is not None:
            return layout
        catalog = ViewCatalog(plan.registry, plan.project)
        features = plan.features if plan.service is not None else list(plan.features)
        columns = served_columns(catalog, features, plan.full_feature_names)
        position = {name: i for i, name in enumerate(names)}
        key_index = {name: i for i, name in enumerate(plan.key_names)}
        extra_index = {name: i for i, name in enumerate(plan.extra_names)}
        groups: dict[str, list[Any]] = {}
        for column in columns:
            if column.output_name in position:
                groups.setdefault(column.projection, []).append(column)
        out = []
        for projection, group in groups.items():
            info = catalog.get(group[0].feature_view)
            key_map = dict(group[0].join_key_map)
            join_keys = info.join_keys if info is not None else ()
            if info is not None and info.on_demand:
                # on-demand rows are keyed like the request (all its join keys)
                join_keys = tuple(plan.key_names)
            sources = [key_index.get(key_map.get(k, k), -1) for k in join_keys]
            if any(s < 0 for s in sources):  # a key the request did not carry: log what it did
                join_keys = tuple(plan.key_names)
                sources = list(range(len(join_keys)))
            declared = dict(info.declared) if info is not None else {}
            for column in group:
                declared.setdefault(column.feature, column.declared_type)
            request_fields = []
            if info is not None and info.on_demand:
                for source in (getattr(info.view, "source_request_sources", None) or {}).values():
                    for field in source.schema:
                        if field.name in extra_index:
                            request_fields.append((field.name, extra_index[field.name]))
            out.append(
                _Layout(
                    group[0].feature_view,
                    projection,
                    bool(info and info.on_demand),
                    declared,
                    # a feature served twice in one projection (cannot happen in Feast): last
                    list({c.feature: (c.feature, position[c.output_name]) for c in group}.values()),
                    join_keys,
                    sources,
                    request_fields,
                    udf_fingerprint(info.view) if info is not None and info.on_demand else None,
                )
            )
        if len(plan.layouts) >= 64:
            plan.layouts.clear()
        plan.layouts[names] = out
        return out

    def _builder(self, layout: _Layout) -> BatchBuilder:
        key = (layout.feature_view, tuple(sorted(layout.declared.items())))
        builder = self._builders.get(key)
        if builder is None:
            redacted = frozenset(
                f for f in layout.declared if f"{layout.feature_view}:{f}" in self.redact
            )
            builder = self._builders[key] = BatchBuilder(
                feature_view=layout.feature_view,
                declared=layout.declared,
                join_keys=layout.join_keys,
                sample_rate=self.sample_rate,
                seed=self.seed,
                writer=self.writer,
                redacted=redacted,
                redact_key=self.redact_key if redacted else None,
                on_demand=layout.on_demand,
            )
        return builder

    # -- the Collector protocol --

    def add(self, snap: RequestSnapshot) -> int:
        response = snap.response
        proto = (
            GetOnlineFeaturesResponse.FromString(response)
            if isinstance(response, bytes)
            else response
        )
        names = tuple(proto.metadata.feature_names.val)
        results = proto.results
        key_hashes = [_key_hash(k) for k in snap.canonical_keys]
        added = 0
        for layout in self._layouts(snap, names):
            values: dict[str, list[Any]] = {}
            statuses: dict[str, list[int]] = {}
            kinds: dict[str, list[str | None]] = {}
            latest: list[float] = [0.0] * len(snap.canonical_keys)
            for feature, pos in layout.features:
                v, s, k, t = read_values(results[pos], snap.rows)
                values[feature], statuses[feature], kinds[feature] = v, s, k
                latest = [a if a >= b else b for a, b in zip(latest, t)]
            keys = [tuple([row[i] for i in layout.key_sources]) for row in snap.key_values]
            request_data = {
                name: [row[i] for row in snap.extra_values] for name, i in layout.request_fields
            }
            context = {
                name: [row[i] for row in snap.key_values]
                for i, name in enumerate(snap.plan.key_names)
                if name not in layout.join_keys
            }
            builder = self._builder(layout)
            builder.add(
                features=[f for f, _ in layout.features],
                request_id=snap.request_id,
                request_time=snap.request_time,
                service=snap.plan.service,
                projection=layout.projection,
                keys=keys,
                key_hashes=key_hashes,
                event_times=[t if t > 0 else None for t in latest],
                values=values,
                statuses=statuses,
                kinds=kinds,
                request_data=request_data,
                udf_fingerprint=layout.udf_fingerprint,
                context=context,
            )
            added += len(keys)
        return added

    def take(self) -> list[Any]:
        builders, self._builders = self._builders, {}
        return [b.to_batch() for b in builders.values() if b.rows]

    def discard(self) -> None:
        self._builders = {}


def _key_hash(canonical_key: bytes) -> int:
    import xxhash

    return xxhash.xxh3_64_intdigest(canonical_key)
