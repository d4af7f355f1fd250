"""Point-in-time offline values of sampled rows, through Feast's own offline store.

Two ways, one answer (proven equal to Feast's ``get_historical_features`` by
tests/e2e/test_point_in_time.py):

* **local** (file and DuckDB offline stores, whose data is read into this process anyway): the
  view's rows of the window are pulled once per view with ``pull_all_from_table_or_query``,
  kept for the sampled entities only, and joined point-in-time here (:mod:`parity.pit`). One
  pass instead of one retrieval per chunk, and created-timestamp ties broken as materialization
  breaks them (the Dask store's own join does not, docs/feast_facts.md O4).
* **feast** (every other store: PostgreSQL, Spark, BigQuery, ...): one
  ``get_historical_features`` per view and chunk, pushed into the store's engine, so only the
  sampled entities' rows ever leave it.

For a chunk of one view's sampled rows the check needs, per row, the point-in-time offline row
at the request time (its values and its event time) and the one at the served event time. Both
come from one ``get_historical_features`` of the repo's own offline store (file/Dask, DuckDB,
PostgreSQL, Spark, ...), so Feast's semantics hold by construction: ttl, created-timestamp
tie-breaks, field mappings, time zones, entityless views. To learn the matched row's event time,
the retrieval uses a copy of the view whose schema also lists the source's timestamp column as a
``UnixTimestamp`` feature: offline stores return it like any feature.

The entity dataframe holds each distinct (entity, time) once and carries a row id of ours; the
answers are joined back on it, never on position (the Dask store drops unmatched rows and
reorders the rest). :func:`entity_frame` is the one helper that builds such a frame.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from feast_parity.parity.columns import CanonicalColumn, canonical_column
from feast_parity.parity.served import NO_TIME, ServedRows
from feast_parity.parity.view import OfflineRows
from feast_parity.plugin.registry import ViewInfo

ROW_ID = "__parity_row"
TIME_COLUMN = "__parity_time"


@dataclass
class EntityFrame:
    """A deduplicated entity dataframe and, per input row, the row id its answer has."""

    frame: pd.DataFrame
    row_ids: np.ndarray  # int64, one per input row

    def answers(self, table: pa.Table) -> pa.Table:
        """A retrieval's answers joined back by row id: one row per input row, in input order
        (rows the store dropped are nulls)."""
        return _reindex(table, len(self.frame)).take(pa.array(self.row_ids, type=pa.int64()))


def _coerce_keys(values: np.ndarray, dtype: str | None) -> list[Any]:
    """Join key values as the entity's declared type wants them (a client may send "42")."""
    out = values.tolist()
    if dtype in ("Int64", "Int32"):
        coerced = []
        for v in out:
            if isinstance(v, str) and v.lstrip("-").isdigit():
                coerced.append(int(v))
            else:
                coerced.append(v)
        return coerced
    if dtype == "String":
        return [v if v is None or isinstance(v, str) else str(v) for v in out]
    return out


def entity_frame(
    keys: Mapping[str, Sequence[Any]],
    times_us: np.ndarray,
    *,
    time_column: str = TIME_COLUMN,
    extra: Mapping[str, Sequence[Any]] | None = None,
    distinct_times: bool = False,
) -> EntityFrame:
    """Distinct (keys, time[, extra]) rows with a row id column :data:`ROW_ID`.

    ``distinct_times`` shifts each frame row's time by its own microsecond, so that an offline
    store that keeps one row per (entity of one source view, time) (Dask, joining an on-demand
    view's sources) cannot collapse rows that differ in another view's key.
    """
    columns: dict[str, Any] = {k: list(v) for k, v in keys.items()}
    columns.update({k: list(v) for k, v in (extra or {}).items()})
    columns[time_column] = pd.to_datetime(np.asarray(times_us, dtype="datetime64[us]"), utc=True)
    full = pd.DataFrame(columns)
    hashable = full.copy()
    for name in hashable.columns:
        if hashable[name].dtype == object:  # lists, bytes, mixed spellings: group by repr
            hashable[name] = hashable[name].map(repr)
    codes = hashable.groupby(list(hashable.columns), sort=False, dropna=False).ngroup()
    codes = codes.to_numpy(dtype=np.int64)
    first = np.unique(codes, return_index=True)[1] if len(codes) else np.zeros(0, np.int64)
    frame = full.iloc[first].reset_index(drop=True)
    if distinct_times and len(frame):
        frame[time_column] = frame[time_column] + pd.to_timedelta(np.arange(len(frame)), unit="us")
    frame[ROW_ID] = np.arange(len(frame), dtype=np.int64)
    return EntityFrame(frame, np.asarray(codes, dtype=np.int64))


def _derived_view(view: Any) -> tuple[Any, str]:
    """A copy of the view that also serves its source's timestamp column as a feature."""
    from feast import Field
    from feast.types import UnixTimestamp

    timestamp_field = view.batch_source.timestamp_field
    derived = copy.deepcopy(view)
    if timestamp_field not in {f.name for f in derived.features}:
        derived.features = [*derived.features, Field(name=timestamp_field, dtype=UnixTimestamp)]
    return derived, timestamp_field


def _times_of(table: pa.Table, column: str) -> np.ndarray:
    """int64 UTC microseconds of a time column (NO_TIME for nulls); naive times are UTC.
    Some stores hand a timestamp feature back as ISO text: it is parsed."""
    array = table.column(column)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        parsed = pd.to_datetime(
            pd.Series(array.to_pylist(), dtype=object), utc=True, format="ISO8601"
        )
        array = pa.chunked_array([pa.Array.from_pandas(parsed)])
    if not pa.types.is_timestamp(array.type):
        array = pc.cast(array, pa.timestamp("us", tz="UTC"))
    micros = pc.cast(pc.cast(array, pa.timestamp("us", tz=array.type.tz)), pa.int64())
    return pc.fill_null(micros, NO_TIME).to_numpy(zero_copy_only=False).astype(np.int64)


LOCAL_STORES = ("file", "duckdb")


@dataclass
class PulledRows:
    """A view's offline rows over a window, for the sampled entities only."""

    table: pa.Table  # feature columns named as the view's features
    entity: np.ndarray  # int64 entity code per row
    time: np.ndarray  # int64 UTC microseconds
    created: np.ndarray | None
    index: Any  # pandas Index / MultiIndex of sampled entity keys -> code


def _key_index(keys: Mapping[str, Sequence[Any]], names: list[str]) -> Any:
    if not names:
        return pd.Index([0])
    if len(names) == 1:
        return pd.Index(pd.unique(np.asarray(keys[names[0]], dtype=object)))
    frame = pd.DataFrame({n: list(keys[n]) for n in names}).drop_duplicates()
    return pd.MultiIndex.from_frame(frame)


def _codes(index: Any, keys: Mapping[str, Sequence[Any]], names: list[str], n: int) -> np.ndarray:
    if not names:
        return np.zeros(n, dtype=np.int64)
    if len(names) == 1:
        return index.get_indexer(np.asarray(keys[names[0]], dtype=object)).astype(np.int64)
    probe = pd.MultiIndex.from_arrays([np.asarray(keys[k], dtype=object) for k in names])
    return index.get_indexer(probe).astype(np.int64)


class OfflineReader:
    """Offline answers for chunks of sampled rows (see the module docstring)."""

    def __init__(
        self, store: Any, redaction: Mapping[str, bytes] | None = None, *, join: str = "auto"
    ) -> None:
        self.store = store
        self.redaction = dict(redaction or {})  # "view:feature" -> HMAC key
        kind = getattr(store.config.offline_store, "type", "")
        self.local = join == "local" or (join == "auto" and kind in LOCAL_STORES)
        if kind == "spark":
            quiet_query_errors()
        self.pulled: dict[str, PulledRows | None] = {}
        # Whether a view's retrieval needs prefixed column names: SQL stores select the
        # timestamp column twice (as itself and as our feature) and need the prefix to tell
        # them apart, Dask and ibis look the timestamp up by its bare name. Learnt per view.
        self._full_names: dict[str, bool] = {}

    def _retrieve(self, view: Any, refs: list[str], frame: pd.DataFrame) -> pa.Table:
        """The derived view's retrieval, columns named by feature (prefix removed)."""
        table, full = self.retrieve_as(view, refs, frame, lambda job: job.to_arrow())
        if full:
            prefix = f"{view.name}__"
            table = table.rename_columns(
                [c[len(prefix) :] if c.startswith(prefix) else c for c in table.column_names]
            )
        return table

    def retrieve_as(
        self, view: Any, refs: list[str], entity_df: Any, fetch: Callable[[Any], Any]
    ) -> tuple[Any, bool]:
        """``fetch`` of the repo's ``get_historical_features`` job (``to_arrow()``, or
        ``to_spark_df()`` for the Spark engine), and whether its columns carry the view's
        prefix: learnt per view, trying bare names first."""
        known = self._full_names.get(view.name)
        modes = [known] if known is not None else [False, True]
        error: Exception | None = None
        offline_store = self.store._get_provider().offline_store
        for full in modes:
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # Feast prints its timestamp
                    result = fetch(
                        offline_store.get_historical_features(
                            config=self.store.config,
                            feature_views=[view],
                            feature_refs=refs,
                            entity_df=entity_df,
                            registry=self.store.registry,
                            project=self.store.project,
                            full_feature_names=full,
                        )
                    )
            except Exception as exc:
                error = exc
                continue
            self._full_names[view.name] = full
            return result, full
        assert error is not None
        raise error

    def batch_view(self, info: ViewInfo, served: ServedRows, features: list[str]) -> OfflineRows:
        """Offline rows at request time and at served event time for a batch or stream view."""
        pulled = self.pulled.get(info.name)
        if pulled is not None:
            return self._local_view(info, served, features, pulled)
        return self._feast_view(info, served, features)

    # -- local: one pull per view and window --

    def pull(
        self,
        info: ViewInfo,
        features: list[str],
        keys: Mapping[str, Sequence[Any]],
        oldest_event_us: int | None,
        since: Any,
        until: Any,
    ) -> None:
        """Pull the view's rows that point-in-time lookups of the window can reach, once."""
        view = info.view
        source = view.batch_source
        mapping = dict(source.field_mapping or {})
        reverse = {v: k for k, v in mapping.items()}
        dtypes = {c.name: str(c.dtype) for c in view.entity_columns}
        names = list(info.join_keys)
        coerced = {k: _coerce_keys(np.asarray(keys[k], dtype=object), dtypes.get(k)) for k in names}
        start = None
        if info.ttl_seconds > 0:
            start = since - timedelta(seconds=info.ttl_seconds)
            if oldest_event_us is not None:
                oldest = pd.Timestamp(oldest_event_us, unit="us", tz="UTC").to_pydatetime()
                start = min(start, oldest)
        job = self.store._get_provider().offline_store.pull_all_from_table_or_query(
            config=self.store.config,
            data_source=source,
            join_key_columns=[reverse.get(k, k) for k in names],
            feature_name_columns=[reverse.get(f, f) for f in features],
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column or None,
            start_date=start,
            end_date=until + timedelta(seconds=1),
        )
        table = job.to_arrow()
        table = table.rename_columns([mapping.get(c, c) for c in table.column_names])
        index = _key_index(coerced, names)
        row_keys = {
            k: _coerce_keys(np.asarray(table.column(k).to_pylist(), dtype=object), dtypes.get(k))
            for k in names
        }
        entity = _codes(index, row_keys, names, table.num_rows)
        keep = np.flatnonzero(entity >= 0)
        table = table.take(pa.array(keep, type=pa.int64()))
        created_field = source.created_timestamp_column
        self.pulled[info.name] = PulledRows(
            table,
            entity[keep],
            _times_of(table, source.timestamp_field),
            _times_of(table, created_field)
            if created_field and created_field in table.column_names
            else None,
            index,
        )

    def _local_view(
        self, info: ViewInfo, served: ServedRows, features: list[str], pulled: PulledRows
    ) -> OfflineRows:
        from feast_parity.parity.pit import point_in_time

        view = info.view
        dtypes = {c.name: str(c.dtype) for c in view.entity_columns}
        names = list(info.join_keys)
        n = len(served)
        keys = {k: _coerce_keys(served.keys[k], dtypes.get(k)) for k in names}
        entity = _codes(pulled.index, keys, names, n)
        ttl = int(info.ttl_seconds * 1e6)
        at_request = point_in_time(
            pulled.entity, pulled.time, pulled.created, entity, served.request_time, ttl=ttl
        )
        has_ts = served.has_event_time
        served_at = np.where(has_ts, (served.event_time // 1_000_000) * 1_000_000 + 999_999, 0)
        at_served = point_in_time(
            pulled.entity, pulled.time, pulled.created, entity, served_at, ttl=ttl
        )
        at_served[~has_ts] = -1
        at_request[entity < 0] = -1
        at_served[entity < 0] = -1
        offline = OfflineRows(
            _pick_times(pulled.time, at_request), {}, _pick_times(pulled.time, at_served), {}
        )
        for name in features:
            if name not in pulled.table.column_names:
                offline.missing.add(name)
                continue
            column = pulled.table.column(name)
            offline.offline_types[name] = arrow_type_name(column.type)
            for target, rows in ((offline.at_request, at_request), (offline.at_served, at_served)):
                picked = self._column(info, name, column, rows)
                target[name] = picked
        return offline

    # -- feast: one retrieval per view and chunk --

    def _feast_view(self, info: ViewInfo, served: ServedRows, features: list[str]) -> OfflineRows:
        view = info.view
        derived, timestamp_field = _derived_view(view)
        dtypes = {c.name: str(c.dtype) for c in view.entity_columns}
        keys = {k: _coerce_keys(served.keys[k], dtypes.get(k)) for k in info.join_keys}
        n = len(served)
        has_ts = served.has_event_time
        # rows at request time, then rows at served event time, in one frame
        both_keys = {k: [*v, *[v[i] for i in np.flatnonzero(has_ts)]] for k, v in keys.items()}
        # at the served event time: the end of its second, as online stores may have dropped
        # its sub-second part (the row found is compared at whole seconds, parity/view.py)
        served_at = (served.event_time[has_ts] // 1_000_000) * 1_000_000 + 999_999
        times = np.concatenate([served.request_time, served_at])
        frame = entity_frame(both_keys, times)
        refs = [f"{view.name}:{f}" for f in features] + [f"{view.name}:{timestamp_field}"]
        table = self._retrieve(derived, refs, frame.frame)
        by_id = _reindex(table, len(frame.frame))
        ids = frame.row_ids
        request_ids, served_ids = ids[:n], np.full(n, -1, dtype=np.int64)
        served_ids[has_ts] = ids[n:]
        event_times = _times_of(by_id, timestamp_field)
        at_request_time = event_times[request_ids]
        at_served_time = np.where(served_ids >= 0, event_times[np.maximum(served_ids, 0)], NO_TIME)
        offline = OfflineRows(at_request_time, {}, at_served_time, {})
        for name in features:
            if name not in by_id.column_names:
                offline.missing.add(name)
                continue
            column = by_id.column(name)
            offline.offline_types[name] = arrow_type_name(column.type)
            offline.at_request[name] = self._column(info, name, column, request_ids)
            offline.at_served[name] = self._column(info, name, column, served_ids)
        return offline

    def input_values(
        self,
        info: ViewInfo,
        keys: Mapping[str, Sequence[Any]],
        times_us: np.ndarray,
        features: list[str],
    ) -> tuple[pa.Table, np.ndarray]:
        """The view's offline rows current at ``times_us`` for ``keys`` (the view's join keys),
        as the offline store types them, and each row's event time (NO_TIME: no row).

        No ttl: an online store serves its row however old (docs/feast_facts.md), and this is
        what an on-demand view read as its input at serving time."""
        n = len(times_us)
        names = list(info.join_keys)
        dtypes = {c.name: str(c.dtype) for c in info.view.entity_columns}
        coerced = {k: _coerce_keys(np.asarray(keys[k], dtype=object), dtypes.get(k)) for k in names}
        pulled = self.pulled.get(info.name)
        if pulled is not None:
            from feast_parity.parity.pit import point_in_time

            entity = _codes(pulled.index, coerced, names, n)
            rows = point_in_time(
                pulled.entity, pulled.time, pulled.created, entity, times_us, ttl=0
            )
            rows[entity < 0] = -1
            table, event = pulled.table, _pick_times(pulled.time, rows)
        else:
            derived, timestamp_field = _derived_view(info.view)
            derived.ttl = timedelta(0)  # 0: no age limit, as online
            frame = entity_frame(coerced, times_us)
            refs = [f"{info.view.name}:{f}" for f in features]
            refs.append(f"{info.view.name}:{timestamp_field}")
            table = _reindex(self._retrieve(derived, refs, frame.frame), len(frame.frame))
            rows = frame.row_ids
            event = _times_of(table, timestamp_field)[rows]
            event[rows < 0] = NO_TIME
        index = pa.array(np.maximum(rows, 0), type=pa.int64(), mask=rows < 0)
        columns = {}
        for name in features:
            if name in table.column_names:
                column = table.column(name)
                columns[name] = column.take(index) if len(column) else pa.nulls(n, column.type)
        return pa.table(columns) if columns else pa.table({}), event

    def _column(
        self, info: ViewInfo, name: str, column: pa.ChunkedArray, take: np.ndarray
    ) -> CanonicalColumn:
        """Canonical values of ``column`` at rows ``take`` (-1: no row, null)."""
        missing = take < 0
        if len(column) == 0:
            picked: Any = pa.nulls(len(take), column.type)
        else:
            index = pa.array(np.maximum(take, 0), type=pa.int64(), mask=missing)
            picked = column.take(index)
        declared = info.declared.get(name, "Invalid")
        result = canonical_column(
            picked, declared, redact_key=self.redaction.get(f"{info.name}:{name}")
        )
        result.set_null(missing)
        return result


def _pick_times(times: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """times[rows], NO_TIME where rows is -1 (no offline row)."""
    if len(times) == 0:
        return np.full(len(rows), NO_TIME, dtype=np.int64)
    return np.where(rows >= 0, times[np.maximum(rows, 0)], NO_TIME)


def _reindex(table: pa.Table, rows: int) -> pa.Table:
    """The answers ordered by row id, one per id (rows the store dropped become nulls)."""
    ids = table.column(ROW_ID).to_numpy(zero_copy_only=False).astype(np.int64)
    # several answers for one id cannot come from Feast; keep the first of each
    order = np.full(rows, -1, dtype=np.int64)
    order[ids[::-1]] = np.arange(len(ids) - 1, -1, -1)
    present = order >= 0
    index = pa.array(np.where(present, order, 0), type=pa.int64(), mask=~present)
    return table.take(index)


def arrow_type_name(arrow: pa.DataType) -> str:
    """Offline column type as the report names it (float32, int64, list<string>, ...)."""
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        return f"list<{arrow_type_name(arrow.value_type)}>"
    names = {
        pa.float32(): "float32",
        pa.float64(): "float64",
        pa.int32(): "int32",
        pa.int64(): "int64",
        pa.string(): "string",
        pa.large_string(): "string",
        pa.binary(): "bytes",
        pa.large_binary(): "bytes",
        pa.bool_(): "bool",
    }
    if arrow in names:
        return names[arrow]
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    if pa.types.is_struct(arrow):
        return "struct"
    if pa.types.is_map(arrow):
        return "map"
    if pa.types.is_null(arrow):
        return "null"
    return str(arrow)


def quiet_query_errors() -> None:
    """Silence PySpark's JSON log of every failed query's analysis (Feast's Spark store fails
    one by design when the check tries bare feature names first); errors still raise."""
    import logging

    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)
