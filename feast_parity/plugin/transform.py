"""On-demand outputs recomputed offline, row by row, with Feast's own transformation.

For each sampled row of an on-demand view the inputs are rebuilt as serving had them: each
source view's offline row current at the time serving read it, plus the request data logged
with the row. The time serving read an input row is, in this order of preference:

1. the on-demand row's own event time (``write_to_online_store`` views: the write time);
2. the served event time of the input view's row in the same request, when that request also
   served the input view (its log rows, :class:`~feast_parity.parity.transformation.
   ServedInputs`); those rows' inputs are *known*, and compared with the offline ones;
3. for batch views, the end of the view's last materialization interval before the request
   (what the online store held then); for stream views, the request time.

The outputs come from the registry's current definition through
``OnDemandFeatureView.transform_arrow``, the call ``get_historical_features`` makes, so what
they are compared with is what training computes from the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from feast_parity.parity.canonical import Other
from feast_parity.parity.columns import canonical_column
from feast_parity.parity.served import NO_TIME, ServedRows
from feast_parity.parity.transformation import ServedInputs, request_row_keys
from feast_parity.parity.view import OfflineRows
from feast_parity.plugin.offline import OfflineReader, arrow_type_name
from feast_parity.plugin.registry import ViewCatalog, ViewInfo


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
class Recomputed:
    """The recomputation of one chunk of an on-demand view's rows."""

    offline: OfflineRows | None
    recomputed: np.ndarray  # bool: the row's outputs were recomputed
    inputs_known: np.ndarray  # bool: every input view's row was also served in the request
    inputs_agree: np.ndarray  # bool: ... and equal to the offline input
    error: str | None = None  # why nothing was recomputed, or the transformation's error
    failed_rows: int = 0  # rows whose transformation raised
    unfit_request: dict[str, int] | None = None  # request field -> values not of its type


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


class OnDemandRecompute:
    """Recomputes chunks of on-demand rows (see the module docstring)."""

    def __init__(
        self, reader: OfflineReader, catalog: ViewCatalog, served_inputs: ServedInputs
    ) -> None:
        self.reader = reader
        self.catalog = catalog
        self.served_inputs = served_inputs

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
        columns: dict[str, Any] = {}
        complete = np.ones(n, dtype=bool)  # every input row exists offline
        known = np.ones(n, dtype=bool)
        agree = np.ones(n, dtype=bool)
        for source in sources:
            keys = {}
            for key in source.info.join_keys:
                request_name = source.key_map.get(key, key)
                values = rows.keys.get(request_name)
                if values is None:
                    values = rows.context.get(request_name, np.full(n, None, dtype=object))
                keys[key] = values
            found, served_time, served = self.served_inputs.lookup(
                source.info.name, row_keys, source.features
            )
            if source.info.kind == "stream":
                times = rows.request_time.copy()
            else:
                times = _materialized_until(source.info, rows.request_time)
            times = np.where(found & (served_time != NO_TIME), _end_of_second(served_time), times)
            own = rows.event_time != NO_TIME  # write_to_online_store: computed at write time
            times = np.where(own, _end_of_second(rows.event_time), times)
            table, event = self.reader.input_values(source.info, keys, times, source.features)
            complete &= event != NO_TIME
            # the input row was served in the request: its event time names the row, so the
            # offline row read is that row, and its served features are compared with it
            known &= found & (served_time != NO_TIME)
            for feature in source.features:
                if feature not in table.column_names:
                    complete[:] = False
                    continue
                column = table.column(feature)
                columns[f"{source.name}__{feature}"] = column
                if feature not in served:
                    continue
                hashes, null, requested = served[feature]
                offline = canonical_column(
                    column,
                    source.info.declared.get(feature, "Invalid"),
                    redact_key=self.reader.redaction.get(f"{source.info.name}:{feature}"),
                )
                same = (null & offline.null) | (
                    ~null & ~offline.null & (hashes == offline.hashes())
                )
                agree &= same | ~requested
        unfit: dict[str, int] = {}
        for name in request_fields:
            values = rows.request_data[name]
            declared = request_type(info.view, name)
            if declared is not None:
                canonical = canonical_column(list(values), declared)
                bad = sum(1 for v in canonical.values.tolist() if isinstance(v, Other))
                if bad:
                    unfit[name] = bad
            columns[name] = _request_array(values)
        for name in sorted({*rows.keys, *rows.context}):
            if name not in columns:
                source_values = rows.keys.get(name, rows.context.get(name))
                columns[name] = _request_array(source_values)
        outputs, failed, error = self._transform(info, pa.table(columns), complete, features)
        recomputed = complete & ~failed
        offline = OfflineRows(
            np.where(recomputed, rows.request_time, NO_TIME),
            {},
            np.where(recomputed, rows.request_time, NO_TIME),
            {},
        )
        take = np.where(recomputed, np.arange(n), -1)
        for name in features:
            if outputs is None:  # nothing recomputed (raised, or no complete inputs)
                continue
            if name not in outputs.column_names:
                offline.missing.add(name)  # the transformation does not return it
                continue
            column = outputs.column(name)
            offline.offline_types[name] = arrow_type_name(column.type)
            values = self.reader._column(info, name, column, take)
            offline.at_request[name] = values
            offline.at_served[name] = values
        return Recomputed(
            offline,
            recomputed,
            known & recomputed,
            agree & known & recomputed,
            error,
            int((failed & complete).sum()),
            unfit or None,
        )

    def _transform(
        self, info: ViewInfo, table: pa.Table, complete: np.ndarray, features: list[str]
    ) -> tuple[pa.Table | None, np.ndarray, str | None]:
        """Outputs aligned with the rows (null where not computed), rows that failed, and the
        transformation's first error. Rows with a missing input are left out first: serving
        could not have computed them from those inputs either."""
        n = table.num_rows
        failed = np.zeros(n, dtype=bool)
        rows = np.flatnonzero(complete)
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


def request_type(view: Any, field_name: str) -> str | None:
    """The declared type of a request-source field of an on-demand view."""
    for source in (getattr(view, "source_request_sources", None) or {}).values():
        for field in source.schema:
            if field.name == field_name:
                return str(field.dtype)
    return None


def _request_array(values: Any) -> pa.Array:
    """Request values as the request spelled them (what the transformation got at serving)."""
    values = list(values)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
