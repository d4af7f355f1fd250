"""The serving hook: on the request thread, decide which rows to sample and queue a snapshot.

Per ``get_online_features`` call the request thread only (1) finds the request's *plan* (key
columns and layout, resolved once per request shape), (2) hashes each row's canonical entity key
(:mod:`feast_parity.parity.sampling`) and, when a row is sampled, (3) queues an immutable copy of
the response: its serialized protobuf, or only the sampled rows of a large response. Decoding,
hashing and writing happen on the writer thread (:mod:`feast_parity.plugin.collect`). The hook
never raises into the caller and never waits on I/O; while the sample store is down it drops
sampled rows (counted) before copying anything.
"""

from __future__ import annotations

import itertools
import operator
import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from feast.feature_service import FeatureService
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse

from feast_parity.parity.sampling import EntityKeyError, Sampler
from feast_parity.store.writer import SampleWriter, Snapshot


class Plan:
    """What one kind of request needs, resolved once: key columns, request data, layouts.

    Requests with the same features, ``full_feature_names``, project and entity-row keys share
    a plan while the registry is unchanged. The request thread reads ``key_names``,
    ``getters`` and ``extra_names``; the writer thread fills ``layouts`` on first use and is the
    only one to touch them.
    """

    __slots__ = (
        "extra_getters",
        "extra_names",
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
        extra_names: tuple[str, ...],
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
        # other entity-row fields: request data of on-demand views
        self.extra_names = extra_names
        self.extra_getters = [operator.methodcaller("get", name) for name in extra_names]
        self.registry = registry  # what the writer resolves served columns against
        self.registry_ts = registry_ts
        self.layouts: dict[tuple[str, ...], Any] = {}


class RequestSnapshot(NamedTuple):
    """Everything the writer thread needs, captured without decoding on the request thread.

    ``response`` is an immutable copy: the serialized response (``rows`` are row indexes into
    it), or, when few rows of a large response are sampled, a new response message holding only
    those rows (``rows`` is None), so a 500-row request with one sampled row copies one row.
    """

    plan: Plan
    response: bytes | GetOnlineFeaturesResponse
    rows: list[int] | None
    key_values: list[tuple[Any, ...]]  # per sampled row, values of plan.key_names (sorted)
    canonical_keys: list[bytes]  # per sampled row, its canonical entity key (sampling.py)
    extra_values: list[tuple[Any, ...]]  # per sampled row, values of plan.extra_names
    request_time: float
    request_id: str


# A response with at least this many rows per sampled row is copied row by row (about 2 us a
# cell) rather than serialized whole (about 0.1 us a cell); see docs/sample_log.md.
ROW_COPY_MIN_ROWS_PER_SAMPLE = 24
PLAN_CACHE_SIZE = 256

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


def copy_rows(proto: GetOnlineFeaturesResponse, rows: list[int]) -> GetOnlineFeaturesResponse:
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


class ServingHook:
    """Sampling decisions and snapshots for one provider (one ``parity:`` configuration)."""

    def __init__(self, sampler: Sampler, writer: Any) -> None:
        self.sampler = sampler
        self._writer = writer  # a zero-argument callable returning the SampleWriter
        self._plans: dict[Any, Plan] = {}

    def observe(
        self,
        features: Any,
        entity_rows: Any,
        response: Any,
        request_time: float,
        registry: Any,
        project: str,
        full_feature_names: bool,
    ) -> None:
        """Decide which rows to sample and queue a snapshot. Never raises, never does I/O."""
        writer: SampleWriter | None = None
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
                plan = _new_plan(
                    features if is_service else features_key,
                    full_feature_names,
                    project,
                    row_keys,
                    proto,
                    registry,
                    registry_ts,
                )
                if len(self._plans) >= PLAN_CACHE_SIZE:
                    self._plans.clear()
                self._plans[cache_key] = plan
            if plan.key_names:
                if columnar:
                    columns = [entity_rows[k] for k in plan.key_names]
                else:
                    columns = [list(map(get, entity_rows)) for get in plan.getters]
                sampled, canonical = self.sampler.sample_columns(plan.key_names, columns)
                n_rows = len(columns[0])
            else:
                # entityless views: every row is the one global entity, whose empty key is
                # sampled (or not) like any other key
                n_rows = len(next(iter(entity_rows.values()))) if columnar else len(entity_rows)
                columns = []
                chosen = self.sampler.decide({})
                sampled = list(range(n_rows)) if chosen else []
                canonical = [b""] * len(sampled)
            if not sampled:
                return
            writer = self._writer()
            if writer.store_down:  # nothing is copied while the store cannot take it
                writer.drop_sampled(len(sampled))
                return
            if n_rows >= ROW_COPY_MIN_ROWS_PER_SAMPLE * len(sampled):
                copy: bytes | GetOnlineFeaturesResponse = copy_rows(proto, sampled)
                rows: list[int] | None = None
            else:
                copy, rows = proto.SerializeToString(), sampled
            extra: list[tuple[Any, ...]] = []
            if plan.extra_names:
                if columnar:
                    extra_columns = [entity_rows[k] for k in plan.extra_names]
                else:
                    extra_columns = [list(map(get, entity_rows)) for get in plan.extra_getters]
                extra = [tuple([c[i] for c in extra_columns]) for i in sampled]
            request_id = f"{_request_prefix}{next(_request_counter):012x}"
            snapshot = RequestSnapshot(
                plan,
                copy,
                rows,
                [tuple([c[i] for c in columns]) for i in sampled]
                if columns
                else [()] * len(sampled),
                canonical,
                extra,
                request_time,
                request_id,
            )
            writer.submit(Snapshot(len(sampled), snapshot))
            response.parity_request_id = request_id
        except Exception as exc:  # EntityKeyError (mixed key kinds) included: count, log once
            try:
                (writer or self._writer()).record_hook_error(exc)
            except Exception:  # the writer itself cannot start: serving goes on regardless
                pass


def _new_plan(
    features: Any,
    full_feature_names: bool,
    project: str,
    row_keys: tuple[Any, ...],
    proto: GetOnlineFeaturesResponse,
    registry: Any,
    registry_ts: Any,
) -> Plan:
    served = set(proto.metadata.feature_names.val)
    key_names = [k for k in row_keys if k in served]
    for name in key_names:
        if not isinstance(name, str):
            raise EntityKeyError(f"join key names must be str, got {type(name).__qualname__}")
    extra = tuple(sorted(str(k) for k in row_keys if k not in served))
    return Plan(
        features,
        full_feature_names,
        project,
        tuple(sorted(key_names)),
        extra,
        registry,
        registry_ts,
    )


def now() -> float:
    """The request time the hook records (time.time, UTC epoch seconds)."""
    return time.time()
