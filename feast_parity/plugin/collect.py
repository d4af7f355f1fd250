"""On the writer thread: request snapshots -> per-view log batches (log format v3).

:class:`BatchCollector` is the writer's collector (:mod:`feast_parity.store.writer`). For each
snapshot it decodes the response protobuf once, reads each served column of the sampled rows
once, and appends the rows to one :class:`~feast_parity.parity.samplelog.BatchBuilder` per view;
canonical values and hashes are computed per column when the writer flushes. Each projection of
a view in a request (an alias, a join-key map) becomes its own log rows, keyed by the view's own
join keys, so the check looks them up offline as the view.
"""

from __future__ import annotations

import operator
import os
import socket
from collections.abc import Sequence
from typing import Any, NamedTuple

from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.type_map import feast_value_type_to_python_type
from xxhash import xxh3_64_intdigest

from feast_parity.parity.samplelog import BatchBuilder
from feast_parity.plugin.hook import RequestSnapshot
from feast_parity.plugin.registry import (
    ViewCatalog,
    input_columns,
    served_columns,
    udf_fingerprint,
)

NULL_TIMESTAMP = -9223372036854775808  # Feast's NULL_TIMESTAMP_INT_VALUE (int64 min)
_WHICH = operator.methodcaller("WhichOneof", "val")
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
    feature_names: tuple[str, ...]  # the features, sorted
    join_keys: tuple[str, ...]  # the view's own join keys, in log order
    key_sources: list[int]  # per join key, its index in plan.key_names
    request_fields: list[tuple[str, int]]  # (request field, index in plan.extra_names)
    udf_fingerprint: str | None
    input_only: frozenset[str] = frozenset()  # read for on-demand views only, not returned


def read_values(
    result: Any, rows: Sequence[int] | None
) -> tuple[list[Any], list[int], list[str | None]]:
    """(values, statuses, protobuf kinds) of the sampled rows of one column.

    Scalars and lists are read from the protobuf field as Feast's converter would return them;
    maps, structs, JSON and other kinds go through Feast's own converter."""
    values_pb, statuses_pb = result.values, result.statuses
    if rows is not None and len(rows) != len(values_pb):
        values_pb = [values_pb[i] for i in rows]
        statuses = [statuses_pb[i] for i in rows]
    else:
        statuses = list(statuses_pb)
    fast = _read_one_scalar_kind(values_pb)
    if fast is not None:
        return fast[0], statuses, fast[1]
    kinds: list[str | None] = list(map(_WHICH, values_pb))
    values: list[Any] = []
    for v, kind in zip(values_pb, kinds):
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
    return values, statuses, kinds


def _read_one_scalar_kind(values_pb: Sequence[Any]) -> tuple[list[Any], list[str | None]] | None:
    """Values and kinds of a column whose every value is of its first value's scalar kind.

    The common case, read in C: reading a oneof field that is not set gives the field's
    default (0, "", False), so only values equal to the default are asked their kind. None when
    the column is of another shape (nulls, lists, mixed kinds).

    >>> from feast.protos.feast.types.Value_pb2 import Value
    >>> _read_one_scalar_kind([Value(int64_val=3), Value(int64_val=0)])
    ([3, 0], ['int64_val', 'int64_val'])
    >>> _read_one_scalar_kind([Value(int64_val=3), Value()]) is None
    True
    """
    if not values_pb:
        return None
    kind = values_pb[0].WhichOneof("val")
    if kind not in _SCALAR_KINDS:
        return None
    values = list(map(operator.attrgetter(kind), values_pb))
    if not all(values):
        for value, pb in zip(values, values_pb):
            if not value and pb.WhichOneof("val") != kind:
                return None
    return values, [kind] * len(values)


def read_event_times(result: Any, rows: Sequence[int] | None, n: int) -> list[float]:
    """Event times (epoch seconds) of the sampled rows of one column, 0.0 where there is none.

    Feast gives every feature of a view the view row's timestamp, so one column per view is
    read (docs/feast_facts.md); join keys and on-demand outputs carry no timestamps."""
    stamps_pb = result.event_timestamps
    if rows is not None and len(rows) != len(stamps_pb) and len(stamps_pb):
        stamps = [stamps_pb[i] for i in rows]
    else:
        stamps = list(stamps_pb)
    times = [s.seconds + s.nanos / 1e9 for s in stamps]
    return times + [0.0] * (n - len(times)) if len(times) < n else times


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
        catalog = ViewCatalog(
            plan.registry, plan.project, views=plan.served_views, service=plan.served_service
        )
        features = plan.features if plan.service is not None else list(plan.features)
        columns = served_columns(catalog, features, plan.full_feature_names)
        captured: set[str] = set()
        if snap.inputs is not None:  # on-demand inputs Feast read and dropped (plugin/hook.py)
            kept = set(snap.inputs.metadata.feature_names.val)
            # only of on-demand views whose outputs the caller received: a python-mode view
            # asked with full feature names returns none (docs/feast_facts.md T6)
            returned = [c for c in columns if c.output_name in names]
            extra = [
                c
                for c in input_columns(catalog, returned, plan.full_feature_names)
                if c.output_name in kept
            ]
            captured = {c.output_name for c in extra}
            columns += extra
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
            # a feature served twice in one projection (cannot happen in Feast): the last
            features = list(
                {c.feature: (c.feature, position[c.output_name]) for c in group}.values()
            )
            out.append(
                _Layout(
                    group[0].feature_view,
                    projection,
                    bool(info and info.on_demand),
                    declared,
                    features,
                    tuple(sorted(f for f, _ in features)),
                    join_keys,
                    sources,
                    request_fields,
                    udf_fingerprint(info.view) if info is not None and info.on_demand else None,
                    frozenset(c.feature for c in group if c.output_name in captured),
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
        results: Any = proto.results
        if snap.inputs is not None:
            names += tuple(snap.inputs.metadata.feature_names.val)
            results = [*results, *snap.inputs.results]
        key_hashes = list(map(xxh3_64_intdigest, snap.canonical_keys))
        n = len(key_hashes)
        key_columns = list(zip(*snap.key_values)) if n else [()] * len(snap.plan.key_names)
        extra_columns = list(zip(*snap.extra_values)) if n else [()] * len(snap.plan.extra_names)
        added = 0
        for layout in self._layouts(snap, names):
            values: dict[str, list[Any]] = {}
            statuses: dict[str, list[int]] = {}
            kinds: dict[str, list[str | None]] = {}
            for feature, pos in layout.features:
                values[feature], statuses[feature], kinds[feature] = read_values(
                    results[pos], snap.rows
                )
            if layout.features:
                times = read_event_times(results[layout.features[0][1]], snap.rows, n)
            else:
                times = [0.0] * n
            self._builder(layout).add(
                # the row hash covers what the caller received, not inputs read for on-demand
                # views only
                features=tuple(f for f in layout.feature_names if f not in layout.input_only),
                request_id=snap.request_id,
                request_time=snap.request_time,
                service=snap.plan.service,
                projection=layout.projection,
                keys={key: key_columns[i] for key, i in zip(layout.join_keys, layout.key_sources)},
                key_hashes=key_hashes,
                event_times=[t if t > 0 else None for t in times],
                values=values,
                statuses=statuses,
                kinds=kinds,
                request_data={name: extra_columns[i] for name, i in layout.request_fields},
                udf_fingerprint=layout.udf_fingerprint,
                context={
                    name: key_columns[i]
                    for i, name in enumerate(snap.plan.key_names)
                    if name not in layout.join_keys
                },
                full_feature_names=snap.plan.full_feature_names,
                input_only=layout.input_only,
            )
            added += n
        return added

    def take(self) -> list[Any]:
        builders, self._builders = self._builders, {}
        return [b.to_batch() for b in builders.values() if b.rows]

    def discard(self) -> None:
        self._builders = {}
