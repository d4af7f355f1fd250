"""On-demand outputs recomputed row by row with Feast's own transformation, as each path feeds it.

For each sampled row of an on-demand view the transformation is run twice, through
``OnDemandFeatureView.transform_arrow`` (the call both of Feast's paths make), on inputs
arranged as each path arranges them (docs/feast_facts.md T6):

1. **as serving fed it**: the inputs the online store served in the same request (logged as
   rows of their input views, also when Feast dropped them from the response, plugin/hook.py)
   and the logged request data, named as the online response names them. A served output that
   differs from this recomputation was computed by other code: ``transformation_divergence``.
   Rows whose inputs were not logged (logs older than input capture, redacted inputs) and rows
   of ``write_to_online_store`` views (computed at write time) are fed instead the offline row
   current when serving read it: the row's own event time for written rows, else the end of the
   view's last materialization before the request (batch views) or the request time (stream).
2. **as training feeds it**: each input view's point-in-time row at the request time (within
   its ttl: what ``get_historical_features`` joins) and the request data, named as the repo's
   offline store names them. Where the served output equals (1) but differs from (2), the
   inputs moved it: the row is attributed to each input that fed training another value, by
   how (its row was stale, expired or online only, its value differed, it was a default), or
   to a request field that a stored input of the same name shadows on one path only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from feast_parity.parity.canonical import Other
from feast_parity.parity.columns import CanonicalColumn, canonical_column, plain_array
from feast_parity.parity.served import NO_TIME, ServedRows
from feast_parity.parity.transformation import (
    SHADOWED,
    ServedInput,
    ServedInputs,
    request_row_keys,
)
from feast_parity.parity.view import OfflineRows
from feast_parity.plugin.offline import OfflineReader, arrow_type_name
from feast_parity.plugin.registry import ViewCatalog, ViewInfo

# offline stores whose point-in-time join accepts a feature named like an entity-dataframe
# column under bare feature names (it renames the feature ``<name>__``); the others refuse
# such a retrieval, so training reads them with full feature names (feast_facts T6)
BARE_NAME_STORES = frozenset({"file"})


@dataclass
class Source:
    """One source view of an on-demand view, as its transformation reads it."""

    info: ViewInfo
    name: str  # the projection name: inputs are named "<name>__<feature>" and "<feature>"
    features: list[str]
    key_map: dict[str, str]  # the view's join key -> the request's column


def sources_of(view: Any, catalog: ViewCatalog) -> tuple[list[Source], list[str]]:
    """(source views, request fields) of an on-demand view; unknown views are left out."""
    sources = []
    for projection in (getattr(view, "source_feature_view_projections", None) or {}).values():
        info = catalog.get(projection.name)
        if info is None:
            continue
        sources.append(
            Source(
                info,
                projection.name,
                [f.name for f in projection.features],
                dict(projection.join_key_map or {}),
            )
        )
    fields = [
        field.name
        for source in (getattr(view, "source_request_sources", None) or {}).values()
        for field in source.schema
    ]
    return sources, fields


@dataclass
class Shadow:
    """A request field named like a stored input, over one chunk (see ShadowTally)."""

    feature: str  # "view:feature" of the stored input
    active: np.ndarray  # the request carried the field and the stored input was read
    differs: np.ndarray  # ... and the two values differ
    fed_apart: np.ndarray  # ... and serving and training fed the transformation different ones
    request: np.ndarray  # object: the request's values
    stored: np.ndarray  # object: the stored values


@dataclass
class Recomputed:
    """The recomputation of one chunk of an on-demand view's rows."""

    offline: OfflineRows | None  # outputs as serving's inputs give them (at request = at served)
    recomputed: np.ndarray  # bool: the row's outputs were recomputed
    inputs_known: np.ndarray  # bool: every input was logged: recomputed from what serving fed
    inputs_agree: np.ndarray  # bool: ... and training would have fed the same inputs
    error: str | None = None  # why nothing was recomputed, or the transformation's error
    failed_rows: int = 0  # rows whose transformation raised
    unfit_request: dict[str, int] | None = None  # request field -> values not of its type
    trained: np.ndarray | None = None  # bool: compared with training's computation
    training: dict[str, CanonicalColumn] = field(default_factory=dict)  # output -> training's
    untrainable: np.ndarray | None = None  # bool: training has no row of some input
    causes: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (kind, input)
    shadows: dict[str, Shadow] = field(default_factory=dict)  # request field -> its rows


def _materialized_until(info: ViewInfo, request_us: np.ndarray) -> np.ndarray:
    """Per request time, the end of the latest materialization interval before it (the
    request time itself when none ended before it)."""
    ends = sorted(
        int(end.timestamp() * 1_000_000)
        for _, end in (getattr(info.view, "materialization_intervals", None) or [])
    )
    if not ends:
        return request_us.copy()
    edges = np.asarray(ends, dtype=np.int64)
    position = np.searchsorted(edges, request_us, side="right") - 1
    return np.where(position >= 0, edges[np.maximum(position, 0)], request_us)


def _end_of_second(micros: np.ndarray) -> np.ndarray:
    """Online stores may keep whole seconds: the row read at t_s is the one current at the
    end of its second (as the batch-view comparison does, parity/view.py)."""
    return (micros // 1_000_000) * 1_000_000 + 999_999


def _seconds(micros: np.ndarray) -> np.ndarray:
    return np.where(micros == NO_TIME, NO_TIME, np.floor_divide(micros, 1_000_000))


@dataclass
class _Input:
    """One input feature of one chunk: what serving fed, what training feeds."""

    source: Source
    feature: str
    served: pa.Array  # what serving fed (the logged value, or the offline stand-in)
    training: pa.Array  # training's point-in-time value at request time (null: no row)
    cause: dict[str, np.ndarray]  # kind -> rows where this input fed training another value

    @property
    def ref(self) -> str:
        return f"{self.source.info.name}:{self.feature}"


@dataclass
class _SourceRead:
    """One source view of a chunk: per row, whether serving's inputs are known (logged, or an
    offline stand-in exists), whether training has a row, and whether every input was logged."""

    available: np.ndarray
    training_row: np.ndarray
    logged: np.ndarray
    inputs: list[_Input]


class OnDemandRecompute:
    """Recomputes chunks of on-demand rows (see the module docstring)."""

    def __init__(
        self, reader: OfflineReader, catalog: ViewCatalog, served_inputs: ServedInputs
    ) -> None:
        self.reader = reader
        self.catalog = catalog
        self.served_inputs = served_inputs
        kind = getattr(reader.store.config.offline_store, "type", "")
        self.training_full_names = kind not in BARE_NAME_STORES

    def recompute(self, info: ViewInfo, rows: ServedRows, features: list[str]) -> Recomputed:
        n = len(rows)
        nothing = np.zeros(n, dtype=bool)
        sources, request_fields = sources_of(info.view, self.catalog)
        missing = [f for f in request_fields if f not in rows.request_data]
        if missing:
            return Recomputed(
                None,
                nothing,
                nothing,
                nothing,
                f"on-demand view {info.name}: request input(s) {', '.join(sorted(missing))} "
                "not in the sample log (logs before v3 do not record request data), so its "
                "outputs cannot be recomputed",
            )
        row_keys = request_row_keys(rows.request_id, rows.entity_key_hash)
        own = rows.event_time != NO_TIME  # write_to_online_store: computed at write time
        complete = np.ones(n, dtype=bool)  # every input row exists as serving read it
        known = ~own  # every input was logged with the request
        has_training = ~own  # training has every input row (point in time, within ttl)
        inputs: list[_Input] = []
        for source in sources:
            read = self._source_inputs(source, rows, row_keys, own)
            inputs.extend(read.inputs)
            complete &= read.available
            has_training &= read.training_row
            known &= read.logged
        unfit: dict[str, int] = {}
        request = {}
        for name in request_fields:
            values = rows.request_data[name]
            declared = request_type(info.view, name)
            if declared is not None:
                canonical = canonical_column(list(values), declared)
                bad = sum(1 for v in canonical.values.tolist() if isinstance(v, Other))
                if bad:
                    unfit[name] = bad
            request[name] = _request_array(values)
        keys = {
            name: _request_array(rows.keys.get(name, rows.context.get(name)))
            for name in sorted({*rows.keys, *rows.context})
        }
        full_names = (
            rows.full_feature_names
            if rows.full_feature_names is not None
            else np.zeros(n, dtype=bool)
        )
        outputs = np.zeros(n, dtype=bool)
        aligned: dict[str, pa.ChunkedArray | pa.Array] = {}
        error, failed = None, np.zeros(n, dtype=bool)
        for flag in (False, True):  # serving's arrangement depends on the request's names
            group = complete & (full_names == flag)
            if not group.any():
                continue
            table = _online_table(keys, request, inputs, full_names=flag)
            out, group_failed, group_error = self._transform(info, table, group, features)
            failed |= group_failed
            error = error or group_error
            if out is not None:
                outputs |= group & ~group_failed
                for name in out.column_names:
                    column = out.column(name)
                    aligned[name] = (
                        column
                        if name not in aligned
                        else _where(group & ~group_failed, column, aligned[name])
                    )
        recomputed = outputs
        offline = OfflineRows(
            np.where(recomputed, rows.request_time, NO_TIME),
            {},
            np.where(recomputed, rows.request_time, NO_TIME),
            {},
        )
        take = np.where(recomputed, np.arange(n), -1)
        for name in features:
            if not aligned:
                continue
            if name not in aligned:
                offline.missing.add(name)  # the transformation does not return it
                continue
            column = aligned[name]
            offline.offline_types[name] = arrow_type_name(column.type)
            values = self.reader._column(info, name, _chunked(column), take)
            offline.at_request[name] = values
            offline.at_served[name] = values
        result = Recomputed(
            offline,
            recomputed,
            known & recomputed,
            nothing,
            error,
            int((failed & complete).sum()),
            unfit or None,
        )
        self._against_training(info, rows, result, inputs, request, keys, has_training)
        return result

    # -- the inputs of one source view --

    def _source_inputs(
        self, source: Source, rows: ServedRows, row_keys: np.ndarray, own: np.ndarray
    ) -> _SourceRead:
        """What serving and training fed from one source view, per feature."""
        n = len(rows)
        info = source.info
        keys = {}
        for key in info.join_keys:
            request_name = source.key_map.get(key, key)
            values = rows.keys.get(request_name)
            if values is None:
                values = rows.context.get(request_name, np.full(n, None, dtype=object))
            keys[key] = values
        found, served_time, served = self.served_inputs.lookup(info.name, row_keys, source.features)
        found &= ~own
        # the stand-in for rows whose input was not logged: the row current when serving read it
        if info.kind == "stream":
            stand_in_time = rows.request_time.copy()
        else:
            stand_in_time = _materialized_until(info, rows.request_time)
        stand_in_time = np.where(
            found & (served_time != NO_TIME), _end_of_second(served_time), stand_in_time
        )
        stand_in_time = np.where(own, _end_of_second(rows.event_time), stand_in_time)
        both = {k: np.concatenate([np.asarray(v, dtype=object)] * 2) for k, v in keys.items()}
        table, event = self.reader.input_values(
            info,
            both,
            np.concatenate([stand_in_time, _end_of_second(rows.request_time)]),
            source.features,
        )
        stand_in_event, training_event = event[:n], event[n:].copy()
        ttl = int(info.ttl_seconds * 1e6)
        if ttl > 0:  # training's join keeps rows within the ttl of the request time
            old = (training_event != NO_TIME) & (training_event < rows.request_time - ttl)
            training_event[old] = NO_TIME
        no_training_row = training_event == NO_TIME
        read = _SourceRead(found | (stand_in_event != NO_TIME), ~no_training_row, own | ~own, [])
        for feature in source.features:
            column = table.column(feature) if feature in table.column_names else pa.nulls(2 * n)
            stand_in, training = column.slice(0, n), column.slice(n, n)
            training = _null_where(training, no_training_row)
            item = served.get(feature)
            logged = found & (
                item.requested & ~_redacted(item) if item is not None else np.zeros(n, bool)
            )
            fed = _fed_values(item, stand_in, logged, info.declared.get(feature, "Invalid"))
            cause = self._causes(
                info, feature, item, training, logged, served_time, training_event, rows
            )
            read.logged &= logged | own
            read.inputs.append(_Input(source, feature, fed, training, cause))
        return read

    def _causes(
        self,
        info: ViewInfo,
        feature: str,
        item: ServedInput | None,
        training: pa.Array,
        logged: np.ndarray,
        served_time: np.ndarray,
        training_event: np.ndarray,
        rows: ServedRows,
    ) -> dict[str, np.ndarray]:
        """kind -> rows where this logged input fed serving another value than training's,
        by the input row's outcome as the batch-view check classifies it (parity/view.py):
        ``stale_serving`` (training's row is newer), ``online_only`` (serving's row is newer
        than any offline row, or training has none within ttl), ``expired_serving`` (training
        has none because the served row is past the ttl), ``silent_default`` (served without a
        value where training has one), ``value_mismatch`` (same row, other value)."""
        n = len(rows)
        if item is None:
            return {}
        declared = info.declared.get(feature, "Invalid")
        offline = canonical_column(
            training, declared, redact_key=self.reader.redaction.get(f"{info.name}:{feature}")
        )
        same = (item.null & offline.null) | (
            ~item.null & ~offline.null & (item.hashes == offline.hashes())
        )
        differs = logged & ~same
        if not differs.any():
            return {}
        t_s, t_o = _seconds(served_time), _seconds(training_event)
        no_row, served_row = t_o == NO_TIME, t_s != NO_TIME
        ttl = int(info.ttl_seconds * 1e6)
        expired = no_row & served_row & (rows.request_time - served_time > ttl)
        if ttl <= 0:
            expired = np.zeros(n, dtype=bool)
        stale = ~no_row & served_row & (t_o > t_s)
        newer = ~no_row & served_row & (t_s > t_o)
        default = ~no_row & ~stale & ~newer & item.null & ~offline.null
        causes = {
            "expired_serving": differs & expired,
            "online_only": differs & ((no_row & ~expired) | newer),
            "stale_serving": differs & stale,
            "silent_default": differs & default,
        }
        causes["value_mismatch"] = differs & ~no_row & ~stale & ~newer & ~default
        return {kind: mask for kind, mask in causes.items() if mask.any()}

    # -- against training --

    def _against_training(
        self,
        info: ViewInfo,
        rows: ServedRows,
        result: Recomputed,
        inputs: list[_Input],
        request: dict[str, pa.Array],
        keys: dict[str, pa.Array],
        has_training: np.ndarray,
    ) -> None:
        """Training's outputs for the recomputed rows, which inputs fed it other values, and
        the request fields that a stored input shadows (see the module docstring)."""
        n = len(rows)
        full_names = (
            rows.full_feature_names
            if rows.full_feature_names is not None
            else np.zeros(n, dtype=bool)
        )
        causes: dict[tuple[str, str], np.ndarray] = {}
        for item in inputs:
            for kind, mask in item.cause.items():
                causes[(kind, item.ref)] = mask
        by_name = {item.feature: item for item in inputs}
        for name, values in request.items():
            item = by_name.get(name)
            if item is None:
                continue
            shadow = self._shadow(info, name, values, item, full_names, result.inputs_known)
            result.shadows[name] = shadow
            if shadow.fed_apart.any():
                causes[(SHADOWED, name)] = shadow.fed_apart
        result.causes = causes
        candidates = result.recomputed & has_training
        result.untrainable = result.recomputed & ~has_training & result.inputs_known
        trained = np.zeros(n, dtype=bool)
        if candidates.any():
            table = _training_table(keys, request, inputs, self.training_full_names)
            outputs = list(result.offline.at_request) if result.offline is not None else []
            out, failed, _ = self._transform(info, table, candidates, outputs)
            if out is not None:
                trained = candidates & ~failed
                take = np.where(trained, np.arange(n), -1)
                for name in out.column_names:
                    result.training[name] = self.reader._column(
                        info, name, _chunked(out.column(name)), take
                    )
        result.trained = trained
        agree = np.ones(n, dtype=bool)
        for mask in causes.values():
            agree &= ~mask
        result.inputs_agree = agree & result.inputs_known

    def _shadow(
        self,
        info: ViewInfo,
        name: str,
        request: pa.Array,
        item: _Input,
        full_names: np.ndarray,
        known: np.ndarray,
    ) -> Shadow:
        """A request field named like a stored input. Serving feeds the stored value under
        bare names, both (request first) under full names; training feeds the request value
        on stores that join bare names, both under full names (feast_facts T6)."""
        declared = request_type(info.view, name) or item.source.info.declared.get(name, "Invalid")
        asked = canonical_column(request, declared)
        stored = canonical_column(item.served, declared)
        active = known & ~asked.null
        differs = active & (asked.hashes() != stored.hashes())
        # what each path feeds under the name: serving with bare names the stored value alone
        # (the feature's column comes last), with full names both (the request's first);
        # training on a bare-name store the request value alone (the feature is renamed),
        # with full names both: only full names on both paths feed the same
        fed_apart = differs & ~(full_names & self.training_full_names)
        return Shadow(
            item.ref,
            active,
            differs,
            fed_apart,
            np.asarray(request.to_pylist(), dtype=object),
            np.asarray(item.served.to_pylist(), dtype=object),
        )

    def _transform(
        self, info: ViewInfo, table: pa.Table, rows_mask: np.ndarray, features: list[str]
    ) -> tuple[pa.Table | None, np.ndarray, str | None]:
        """Outputs aligned with the rows (null where not computed), rows that failed, and the
        transformation's first error. Only ``rows_mask`` rows are fed: rows with a missing
        input were left out first, serving could not have computed them from those either."""
        n = table.num_rows
        failed = np.zeros(n, dtype=bool)
        rows = np.flatnonzero(rows_mask)
        if rows.size == 0:
            return None, failed, None
        subset = table.take(pa.array(rows, type=pa.int64()))
        try:
            out = info.view.transform_arrow(subset, full_feature_names=False)
        except Exception as exc:  # a user's function: anything may come out of it
            failed[rows] = True
            first = str(exc).strip().splitlines()
            return None, failed, f"{type(exc).__name__}: {first[0][:200] if first else ''}"
        aligned = {}
        index = np.full(n, -1, dtype=np.int64)
        index[rows] = np.arange(rows.size)
        position = pa.array(np.maximum(index, 0), type=pa.int64(), mask=index < 0)
        for name in features:
            if name in out.column_names and out.num_rows == rows.size:
                aligned[name] = out.column(name).take(position)
        return (pa.table(aligned) if aligned else None), failed, None


def _online_table(
    keys: dict[str, pa.Array],
    request: dict[str, pa.Array],
    inputs: list[_Input],
    *,
    full_names: bool,
) -> pa.Table:
    """The inputs as Feast's online path hands them over: the response's columns in response
    order (join keys, request data, then features), bare or ``<source>__`` names, one column
    per name with the last one winning, as ``OnlineResponse.to_dict`` builds it."""
    columns: dict[str, pa.Array] = {**keys, **request}
    for item in inputs:
        name = f"{item.source.name}__{item.feature}" if full_names else item.feature
        columns[name] = item.served
    return pa.table(columns)


def _training_table(
    keys: dict[str, pa.Array],
    request: dict[str, pa.Array],
    inputs: list[_Input],
    full_names: bool,
) -> pa.Table:
    """The inputs as Feast's offline path hands them over: the entity dataframe's columns
    (join keys, request data), then each feature as the store's join names it:
    ``<source>__<feature>`` with full names; else the bare name, ``<name>__`` when an entity
    column has that name (the file store's join). Names may repeat, as they do in Feast."""
    names = [*keys, *request]
    arrays = [*keys.values(), *request.values()]
    taken = set(names)
    for item in inputs:
        if full_names:
            name = f"{item.source.name}__{item.feature}"
        else:
            name = f"{item.feature}__" if item.feature in taken else item.feature
        names.append(name)
        arrays.append(item.training)
    return pa.Table.from_arrays(arrays, names=names)


def _fed_values(
    item: ServedInput | None, stand_in: pa.Array, logged: np.ndarray, declared: str
) -> pa.Array:
    """What serving fed the transformation: the logged value where the request row read the
    input, else the offline stand-in."""
    if item is None or not logged.any():
        return stand_in
    served = plain_array(item.values)
    if served.type != stand_in.type and not pa.types.is_null(stand_in.type):
        try:
            served = served.cast(stand_in.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            stand_in = stand_in.cast(served.type) if pa.types.is_null(stand_in.type) else stand_in
    if pa.types.is_null(stand_in.type):
        stand_in = pa.nulls(len(stand_in), served.type)
    if served.type != stand_in.type:  # of other kinds: logged values as text beside text
        return pa.array(
            [
                s if use else o
                for s, o, use in zip(served.to_pylist(), stand_in.to_pylist(), logged.tolist())
            ]
        )
    return _where(logged, served, stand_in)


def _where(mask: np.ndarray, yes: Any, no: Any) -> pa.Array:
    """Row-wise ``yes`` where ``mask`` else ``no`` (Arrow arrays of one type)."""
    import pyarrow.compute as pc

    yes = yes.combine_chunks() if isinstance(yes, pa.ChunkedArray) else yes
    no = no.combine_chunks() if isinstance(no, pa.ChunkedArray) else no
    if yes.type != no.type:
        no = no.cast(yes.type) if pa.types.is_null(no.type) else no
        yes = yes.cast(no.type) if pa.types.is_null(yes.type) else yes
    return pc.if_else(pa.array(mask, type=pa.bool_()), yes, no)


def _null_where(array: pa.Array, mask: np.ndarray) -> pa.Array:
    if not mask.any():
        return array
    return _where(mask, pa.nulls(len(array), array.type), array)


def _chunked(column: Any) -> pa.ChunkedArray:
    return column if isinstance(column, pa.ChunkedArray) else pa.chunked_array([column])


def _redacted(item: ServedInput) -> np.ndarray:
    return np.full(len(item.requested), item.redacted, dtype=bool)


def request_type(view: Any, field_name: str) -> str | None:
    """The declared type of a request-source field of an on-demand view."""
    for source in (getattr(view, "source_request_sources", None) or {}).values():
        for field_ in source.schema:
            if field_.name == field_name:
                return str(field_.dtype)
    return None


def _request_array(values: Any) -> pa.Array:
    """Request values as the request spelled them (what the transformation got at serving)."""
    values = list(values)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
