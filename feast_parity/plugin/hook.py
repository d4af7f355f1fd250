"""The serving hook: on the request thread, decide which rows to sample and queue a snapshot.

Per ``get_online_features`` call the request thread only (1) finds the request's *plan* (key
columns, request data and layout, resolved once per request shape from the same request context
Feast resolves), (2) hashes each row's canonical entity key (:mod:`feast_parity.parity.sampling`)
*before* Feast reads, and, when a row is sampled, (3) queues an immutable copy of the response:
its serialized protobuf, or only the sampled rows of a large response. When the request asks for
on-demand views whose inputs it does not ask for itself, Feast reads those inputs from the online
store, feeds them to the transformation and drops them from the response: for a sampled request
the hook keeps a reference to the dropped input columns (:func:`capture_dropped_inputs`), so the
log holds what the transformation was fed. Decoding, hashing and writing happen on the writer
thread (:mod:`feast_parity.plugin.collect`). The hook never raises into the caller and never
waits on I/O; while the sample store is down it drops sampled rows (counted) before copying
anything.
"""

from __future__ import annotations

import contextvars
import itertools
import operator
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from feast.feature_service import FeatureService
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse

from feast_parity.parity.sampling import EntityKeyError, Sampler
from feast_parity.store.writer import SampleWriter, Snapshot


class Plan:
    """What one kind of request needs, resolved once: key columns, request data, layouts.

    Requests with the same features, ``full_feature_names``, project and entity-row keys share
    a plan while the registry is unchanged. The request thread reads ``key_names``,
    ``getters``, ``extra_names`` and ``input_names``; the writer thread fills ``layouts`` on
    first use and is the only one to touch them.

    A row key is a join key only when it is a join key of a view the request reads and not a
    field of a request source the request needs (Feast takes such a field for request data,
    whatever views share its name): ``{"user_id": 1, "income": 52.0}`` with ``income`` a
    request field and a feature name logs ``income`` as request data.
    """

    __slots__ = (
        "extra_getters",
        "extra_names",
        "features",
        "full_feature_names",
        "getters",
        "input_names",
        "key_names",
        "layouts",
        "leading",
        "project",
        "registry",
        "registry_ts",
        "service",
        "served_service",
        "served_views",
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
        input_names: frozenset[str] = frozenset(),
        leading: int = 0,
        served_views: tuple[Any, ...] = (),
        served_service: Any = None,
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
        # response names of on-demand inputs that Feast reads and then drops from the response,
        # and how many columns (join keys, request data) come before Feast's feature columns
        self.input_names = input_names
        self.leading = leading
        self.registry = registry  # what the writer resolves anything else against
        self.registry_ts = registry_ts
        # the views and the feature service Feast served with (taken when the plan is made):
        # the writer logs with them even if the registry changed since
        self.served_views = served_views
        self.served_service = served_service
        self.layouts: dict[tuple[str, ...], Any] = {}


class RequestSnapshot(NamedTuple):
    """Everything the writer thread needs, captured without decoding on the request thread.

    ``response`` is an immutable copy: the serialized response (``rows`` are row indexes into
    it), or, when few rows of a large response are sampled, a new response message holding only
    those rows (``rows`` is None), so a 500-row request with one sampled row copies one row.
    ``inputs`` holds the sampled rows of the on-demand inputs Feast dropped from the response
    (None when there were none).
    """

    plan: Plan
    response: bytes | GetOnlineFeaturesResponse
    rows: list[int] | None
    key_values: list[tuple[Any, ...]]  # per sampled row, values of plan.key_names (sorted)
    canonical_keys: list[bytes]  # per sampled row, its canonical entity key (sampling.py)
    extra_values: list[tuple[Any, ...]]  # per sampled row, values of plan.extra_names
    request_time: float
    request_id: str
    inputs: GetOnlineFeaturesResponse | None = None


class HookFailure(NamedTuple):
    """A request the hook could not decide on (mixed key kinds, say): counted only once Feast
    has served it, as Feast itself rejects most such requests."""

    error: Exception
    writer: SampleWriter | None
    dropped: None = None


class Decision(NamedTuple):
    """A request's sampling decision, taken before Feast reads (see :meth:`ServingHook.decide`)."""

    plan: Plan
    columnar: bool
    columns: list[list[Any]]  # key columns of the request rows, in plan.key_names order
    sampled: list[int]
    canonical: list[bytes]
    n_rows: int
    writer: SampleWriter
    dropped: list[tuple[int, str, Any]] | None  # filled by Feast's drop of unrequested columns


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


# --- the columns Feast drops: on-demand inputs the request did not ask for ----------------------

_DROPPED: contextvars.ContextVar[list[tuple[int, str, Any]] | None] = contextvars.ContextVar(
    "feast_parity_dropped", default=None
)
_install_lock = threading.Lock()
_installed: list[Any] = []


def install_capture() -> None:
    """Wrap Feast's ``_drop_unneeded_columns`` (once per process) so that, inside
    :func:`capture_dropped_inputs`, the columns it removes are remembered by reference first.

    Feast reads an on-demand view's inputs into the response, runs the transformation, then
    removes every column the request did not ask for; the wrapper costs one context-variable
    read per request, and only a sampled request with unrequested inputs keeps anything (the
    removed messages themselves, not copies)."""
    with _install_lock:
        if _installed:
            return
        from feast import utils

        original = utils._drop_unneeded_columns

        def drop_unneeded_columns(response: Any, requested: Any) -> Any:
            box = _DROPPED.get()
            if box is not None:
                names = response.metadata.feature_names.val
                results = response.results
                box.extend(
                    (i, name, results[i]) for i, name in enumerate(names) if name not in requested
                )
            return original(response, requested)

        utils._drop_unneeded_columns = drop_unneeded_columns  # type: ignore[assignment]
        _installed.append(original)


@contextmanager
def capture_dropped_inputs(decision: Decision | HookFailure | None) -> Iterator[None]:
    """Inside, Feast's dropped columns go to ``decision.dropped`` (when the decision has a
    sampled row and its plan has inputs to keep); otherwise nothing happens."""
    if decision is None or decision.dropped is None:
        yield
        return
    token = _DROPPED.set(decision.dropped)
    try:
        yield
    finally:
        _DROPPED.reset(token)


def copy_rows(
    proto: GetOnlineFeaturesResponse, rows: list[int], results: Any = None
) -> GetOnlineFeaturesResponse:
    """A new response message with only ``rows`` of ``proto`` (values are copied); with
    ``results`` given, of those ``(name, FeatureVector)`` pairs instead of proto's columns."""
    out = GetOnlineFeaturesResponse()
    if results is None:
        out.metadata.feature_names.val.extend(proto.metadata.feature_names.val)
        results = proto.results
    else:
        out.metadata.feature_names.val.extend(name for name, _ in results)
        results = [vector for _, vector in results]
    add = out.results.add
    for result in results:
        copy = add()
        values, statuses, stamps = result.values, result.statuses, result.event_timestamps
        copy.values.extend([values[i] for i in rows])
        copy.statuses.extend([statuses[i] for i in rows])
        if len(stamps):
            copy.event_timestamps.extend([stamps[i] for i in rows])
    return out


class ServingHook:
    """Sampling decisions and snapshots for one provider (one ``parity:`` configuration)."""

    def __init__(self, sampler: Sampler, writer: Any) -> None:
        self.sampler = sampler
        self._writer = writer  # a zero-argument callable returning the SampleWriter
        self._plans: dict[Any, Plan] = {}

    def decide(
        self,
        features: Any,
        entity_rows: Any,
        registry: Any,
        project: str,
        full_feature_names: bool,
    ) -> Decision | HookFailure | None:
        """Which rows of a request to sample, before Feast reads; None when none is (or the
        sample store cannot take them: counted as dropped). Never raises, never does I/O."""
        writer: SampleWriter | None = None
        try:
            columnar = type(entity_rows) is not list and isinstance(entity_rows, Mapping)
            if columnar:
                row_keys = tuple(entity_rows)
            elif entity_rows:
                row_keys = tuple(entity_rows[0])
            else:
                return None
            is_service = isinstance(features, FeatureService)
            features_key = features.name if is_service else tuple(features)
            registry_ts = getattr(registry, "cached_registry_proto_created", None)
            cache_key = (is_service, features_key, full_feature_names, project, row_keys)
            plan = self._plans.get(cache_key)
            if plan is None or plan.registry_ts != registry_ts:
                plan = _new_plan(
                    features if is_service else features_key,
                    full_feature_names,
                    project,
                    row_keys,
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
                return None
            writer = self._writer()
            if writer.store_down:  # nothing is copied while the store cannot take it
                writer.drop_sampled(len(sampled))
                return None
            dropped: list[tuple[int, str, Any]] | None = [] if plan.input_names else None
            return Decision(plan, columnar, columns, sampled, canonical, n_rows, writer, dropped)
        except Exception as exc:  # EntityKeyError (mixed key kinds) included: see observe
            return HookFailure(exc, writer)

    def observe(
        self,
        decision: Decision | HookFailure,
        entity_rows: Any,
        response: Any,
        request_time: float,
    ) -> None:
        """Queue the snapshot of a sampled request (or count the decision's failure, now that
        Feast served the request). Never raises, never does I/O."""
        if isinstance(decision, HookFailure):
            self._hook_error(decision.writer, decision.error)
            return
        try:
            plan, sampled = decision.plan, decision.sampled
            proto = response.proto
            if decision.n_rows >= ROW_COPY_MIN_ROWS_PER_SAMPLE * len(sampled):
                copy: bytes | GetOnlineFeaturesResponse = copy_rows(proto, sampled)
                rows: list[int] | None = None
            else:
                copy, rows = proto.SerializeToString(), sampled
            inputs = None
            if decision.dropped:
                kept = [
                    (name, vector)
                    for position, name, vector in decision.dropped
                    if position >= plan.leading and name in plan.input_names
                ]
                if kept:
                    inputs = copy_rows(proto, sampled, kept)
            extra: list[tuple[Any, ...]] = []
            if plan.extra_names:
                if decision.columnar:
                    extra_columns = [entity_rows[k] for k in plan.extra_names]
                else:
                    extra_columns = [list(map(get, entity_rows)) for get in plan.extra_getters]
                extra = [tuple([c[i] for c in extra_columns]) for i in sampled]
            columns = decision.columns
            request_id = f"{_request_prefix}{next(_request_counter):012x}"
            snapshot = RequestSnapshot(
                plan,
                copy,
                rows,
                [tuple([c[i] for c in columns]) for i in sampled]
                if columns
                else [()] * len(sampled),
                decision.canonical,
                extra,
                request_time,
                request_id,
                inputs,
            )
            decision.writer.submit(Snapshot(len(sampled), snapshot))
            response.parity_request_id = request_id
        except Exception as exc:
            self._hook_error(decision.writer, exc)

    def _hook_error(self, writer: SampleWriter | None, exc: Exception) -> None:
        try:
            (writer or self._writer()).record_hook_error(exc)
        except Exception:  # the writer itself cannot start: serving goes on regardless
            pass


def _join_key_names(keys: Any) -> set[str]:
    """Join key names of Feast's request context (on-demand views add Entity objects)."""
    out = set()
    for key in keys:
        name = key if isinstance(key, str) else getattr(key, "join_key", None)
        if isinstance(name, str):
            out.add(name)
    return out


def _new_plan(
    features: Any,
    full_feature_names: bool,
    project: str,
    row_keys: tuple[Any, ...],
    registry: Any,
    registry_ts: Any,
) -> Plan:
    """The plan of a request shape, from Feast's own request context (the same cached call
    Feast makes for the read): what Feast takes for join keys and request data, and which
    columns it reads for on-demand views only to drop them."""
    from feast import utils

    asked = list(features) if isinstance(features, tuple) else features
    context = utils._get_cached_request_context(registry, project, asked, full_feature_names)
    entity_names, join_keys = context[2], _join_key_names(context[4])
    grouped_refs, requested, needed = context[5], context[6], context[7]
    key_names: list[str] = []
    leading_keys: set[str] = set()
    for name in row_keys:
        if not isinstance(name, str):
            if name in join_keys or name in needed:
                raise EntityKeyError(f"join key names must be str, got {type(name).__qualname__}")
            continue
        if name in needed:  # Feast's order: request data first, whatever else shares its name
            leading_keys.add(name)
        elif name in join_keys:
            key_names.append(name)
            leading_keys.add(name)
        elif name in entity_names:  # an entity name for its join key (deprecated in Feast)
            leading_keys.add(entity_names[name])
    extra = tuple(sorted(str(k) for k in row_keys if k not in key_names))
    inputs = set()
    if context[1]:  # on-demand views: the source features Feast reads, minus those requested
        for view, names in grouped_refs:
            prefix = view.projection.name_to_use().replace(":", "__")
            for feature in names:
                output = f"{prefix}__{feature}" if full_feature_names else feature
                if output not in requested:
                    inputs.add(output)
    served_service = None
    if isinstance(features, FeatureService):  # Feast serves the registry's version of it
        try:
            served_service = registry.get_feature_service(features.name, project, True)
        except Exception:
            served_service = features
    return Plan(
        features,
        full_feature_names,
        project,
        tuple(sorted(key_names)),
        extra,
        registry,
        registry_ts,
        frozenset(inputs),
        len(leading_keys),
        (*(view for view, _ in grouped_refs), *context[1]),
        served_service,
    )


def now() -> float:
    """The request time the hook records (time.time, UTC epoch seconds)."""
    return time.time()
