"""Samples that Feast reads: a window of one feature service's samples in Feast's logging schema.

Feast's Python feature server writes no feature logs (only the Go server does), so
``feast monitor run --source-type log`` and ``retrieve_feature_service_logs`` have nothing to
read for Python users. :func:`export_feature_service_log` turns the sample log's rows served
through one feature service into Feast's own logging schema (``FeatureServiceLoggingSource``:
join keys, ``{view}__{feature}`` with ``__timestamp`` and ``__status``, request-source fields,
``__log_timestamp``, ``__log_date``, ``__request_id``) and writes them with Feast's
``write_logged_features`` into the service's logging destination.

One logged row is one request row, across the service's views: the log's rows of each view are
joined on their request row key (request id + the row's entity key hash). A request is exported
whole, in one write, so requests already in the destination for the window (same request id
and log time) are not written again, and re-exporting a window never duplicates, whatever
columns the service gained or lost since: only those two columns, which every logged row has,
are read back. What cannot be read back is an error, never taken for an empty destination
(that would write every row again). Redacted features were never logged raw: they export as
nulls, with their served status. A value that does not fit the logging schema's Arrow type (a
type change served) exports as null and is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from feast_parity.parity.canonical import Other, Seconds
from feast_parity.parity.served import NO_TIME, ServedRows, concat_rows
from feast_parity.parity.transformation import request_row_keys
from feast_parity.plugin.errors import CheckError


@dataclass
class FeastLogExport:
    """What an export wrote: rows written, rows already there, values that did not fit."""

    feature_service: str
    destination: str
    rows: int = 0
    already_logged: int = 0
    unfit: dict[str, int] = field(default_factory=dict)  # log column -> values exported as null
    redacted: list[str] = field(default_factory=list)  # log columns exported as nulls


def _plain(value: Any) -> Any:
    """A canonical value as Arrow takes it: tuples as lists, seconds as datetimes."""
    if value is None or isinstance(value, Other):
        return None
    if isinstance(value, Seconds):
        return datetime.fromtimestamp(int(value), tz=timezone.utc)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _values(rows: ServedRows, name: str, index: np.ndarray) -> list[Any]:
    """The served values of feature ``name`` at ``index`` (-1: the row was not logged)."""
    feature = rows.features.get(name)
    if feature is None:
        return [None] * len(index)
    column = feature.values
    out: list[Any] = []
    for i in index.tolist():
        if i < 0 or column.null[i] or not feature.requested[i]:
            out.append(None)
        elif column.kind == "time":
            out.append(datetime.fromtimestamp(int(column.values[i]), tz=timezone.utc))
        elif column.kind in ("int", "float", "bool"):
            out.append(column.values[i].item())
        else:
            out.append(_plain(column.values[i]))
    return out


def _array(values: list[Any], arrow_type: pa.DataType, column: str, export: FeastLogExport) -> Any:
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        fitted = []
        for value in values:
            try:
                pa.array([value], type=arrow_type)
                fitted.append(value)
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                fitted.append(None)
                export.unfit[column] = export.unfit.get(column, 0) + 1
        return pa.array(fitted, type=arrow_type)


def _read_view(sample_log: Any, view: str, since: datetime, until: datetime) -> ServedRows | None:
    parts = [rows for rows, _ in sample_log.iter_view(view, since, until) if rows is not None]
    parts = [p for p in parts if len(p)]
    return concat_rows(parts) if parts else None


def logging_table(
    store: Any, service: Any, per_view: dict[str, ServedRows], export: FeastLogExport
) -> tuple[pa.Table, list[str]]:
    """Feast's logging table of ``service`` from each projection's served rows (the rows
    already filtered to that service), and its join-key and request-field columns."""
    from feast.feature_logging import FeatureServiceLoggingSource

    schema = FeatureServiceLoggingSource(service, store.project).get_schema(store.registry)
    keyed = {
        alias: request_row_keys(rows.request_id, rows.entity_key_hash)
        for alias, rows in per_view.items()
    }
    # every request row once, oldest first
    first_seen: dict[int, tuple[int, str]] = {}  # request row -> (request time us, request id)
    for alias, rows in per_view.items():
        for i, key in enumerate(keyed[alias].tolist()):
            time_us = int(rows.request_time[i])
            if key not in first_seen or time_us < first_seen[key][0]:
                first_seen[key] = (time_us, str(rows.request_id[i]))
    order = sorted(first_seen, key=lambda k: (first_seen[k][0], k))
    position = {key: j for j, key in enumerate(order)}
    index = {}
    for alias, keys in keyed.items():
        at = np.full(len(order), -1, dtype=np.int64)
        for i, key in enumerate(keys.tolist()):
            at[position[key]] = i
        index[alias] = at

    columns: dict[str, Any] = {}
    key_names: list[str] = []
    times = [first_seen[k][0] for k in order]
    for projection in service.feature_view_projections:
        alias = projection.name_to_use()
        rows = per_view.get(alias)
        at = index.get(alias, np.full(len(order), -1, dtype=np.int64))
        for source, arrow_name in _key_columns(projection, rows):
            if arrow_name in schema.names and arrow_name not in columns:
                values = [None if i < 0 else source[i] for i in at.tolist()]
                columns[arrow_name] = _array(
                    values, schema.field(arrow_name).type, arrow_name, export
                )
                key_names.append(arrow_name)
        for feature in projection.features:
            name = f"{alias}__{feature.name}"
            if rows is not None and rows.features.get(feature.name) is not None:
                served = rows.features[feature.name]
                if served.redacted:
                    export.redacted.append(name)
                values = [None] * len(order) if served.redacted else _values(rows, feature.name, at)
                status = [0 if i < 0 else int(served.status[i]) for i in at.tolist()]
                event = [
                    None
                    if i < 0 or rows.event_time[i] == NO_TIME
                    else datetime.fromtimestamp(int(rows.event_time[i]) // 1_000_000, timezone.utc)
                    for i in at.tolist()
                ]
            else:
                values, status, event = [None] * len(order), [0] * len(order), [None] * len(order)
            columns[name] = _array(values, schema.field(name).type, name, export)
            columns[f"{name}__timestamp"] = pa.array(
                event, type=schema.field(f"{name}__timestamp").type
            )
            columns[f"{name}__status"] = pa.array(status, type=pa.int32())
    log_times = [datetime.fromtimestamp(t / 1e6, tz=timezone.utc) for t in times]
    columns["__log_timestamp"] = pa.array(log_times, type=schema.field("__log_timestamp").type)
    columns["__log_date"] = pa.array([t.date() for t in log_times], type=pa.date32())
    columns["__request_id"] = pa.array([first_seen[k][1] for k in order], type=pa.string())
    arrays = [columns.get(f.name, pa.nulls(len(order), type=f.type)) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema), key_names


def _key_columns(projection: Any, rows: ServedRows | None) -> list[tuple[Sequence[Any], str]]:
    """(values, logging column) of a projection's join keys and request-source inputs."""
    if rows is None:
        return []
    out: list[tuple[Sequence[Any], str]] = []
    for key, values in rows.keys.items():
        out.append((list(values), projection.join_key_map.get(key, key)))
    for name, values in rows.request_data.items():
        out.append((list(values), name))
    return out


def _identities(table: pa.Table) -> list[tuple[str, int]]:
    """(request id, log time in us) of each row: the request a logged row belongs to."""
    if table.num_rows == 0:
        return []
    ids = table.column("__request_id").to_pylist()
    micros = table.column("__log_timestamp").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return list(zip(ids, micros.to_pylist()))


def _file_root(store: Any, destination: Any) -> tuple[Any, str] | None:
    """(filesystem, path) of a file logging destination; None for other destinations."""
    from feast.infra.offline_stores.file_source import FileLoggingDestination, FileSource

    from feast_parity.store.sinks import resolve_filesystem

    if not isinstance(destination, FileLoggingDestination):
        return None
    return resolve_filesystem(
        FileSource.get_uri_for_file_path(store.config.repo_path, destination.path)
    )


def _nothing_logged_yet(exc: BaseException) -> bool:
    """Whether a warehouse's read error says the table is not there yet (the first export
    creates it)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return "notfound" in text or "not found" in text or "does not exist" in text


def _read_file_log(root: tuple[Any, str], since: datetime, until: datetime) -> pa.Table:
    """``__request_id`` and ``__log_timestamp`` of a file destination's rows in the window.

    Read as a Parquet dataset, not through Feast's file offline store: that one takes the
    columns of one file for all, and fails on the files written before the service gained a
    view (docs/feast_facts.md). Every logged file has these two columns."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    filesystem, path = root
    if filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        return pa.table({"__request_id": pa.array([], pa.string())})  # nothing logged yet
    dataset = ds.dataset(path, filesystem=filesystem, format="parquet", partitioning="hive")
    stamp = pa.timestamp("us", tz="UTC")
    when = ds.field("__log_timestamp")
    window = (when >= pa.scalar(since, stamp)) & (when < pa.scalar(until, stamp))
    return dataset.to_table(columns=["__request_id", "__log_timestamp"], filter=window)


def _already_logged(
    store: Any, service: Any, since: datetime, until: datetime
) -> set[tuple[str, int]]:
    """The requests the destination already holds for the window (only ``__request_id`` and
    ``__log_timestamp`` are read: a schema change since the last export cannot break the
    read). An unreadable destination is a CheckError, never an empty one."""
    from feast_parity.store.engine import describe_error

    destination = service.logging_config.destination
    root = _file_root(store, destination)
    try:
        if root is not None:
            return set(_identities(_read_file_log(root, since, until)))
        logged = store._get_provider().offline_store.pull_all_from_table_or_query(
            config=store.config,
            data_source=destination.to_data_source(),
            join_key_columns=[],
            feature_name_columns=["__request_id"],
            timestamp_field="__log_timestamp",
            start_date=since,
            end_date=until,
        )
        return set(_identities(logged.to_arrow()))
    except Exception as exc:
        if root is None and _nothing_logged_yet(exc):
            return set()
        raise CheckError(
            f"cannot read what feature service {service.name!r} already logged in its "
            f"{type(destination).__name__} ({describe_error(exc)}); nothing exported: "
            "writing now could log rows twice"
        ) from None


def export_feature_service_log(
    store: Any, service_name: str, since: datetime, until: datetime
) -> FeastLogExport:
    """Write the window's samples of ``service_name`` into its logging destination."""
    from feast_parity.plugin.session import open_sample_log

    try:
        service = store.get_feature_service(service_name)
    except Exception:
        raise CheckError(f"no feature service {service_name!r} in the registry") from None
    if service.logging_config is None or service.logging_config.destination is None:
        raise CheckError(
            f"feature service {service_name!r} has no logging destination: add "
            "logging_config=LoggingConfig(destination=...) to it and run feast apply"
        )
    destination = service.logging_config.destination
    export = FeastLogExport(service_name, type(destination).__name__)
    engine, sample_log = open_sample_log(store)
    try:
        per_view: dict[str, ServedRows] = {}
        for projection in service.feature_view_projections:
            rows = _read_view(sample_log, projection.name, since, until)
            if rows is None:
                continue
            mine = np.flatnonzero(np.equal(rows.feature_service.astype(object), service_name))
            if len(mine):
                per_view[projection.name_to_use()] = rows.take(mine)
    finally:
        engine.dispose()
    if not per_view:
        return export
    seen = _already_logged(store, service, since, until)
    table, _ = logging_table(store, service, per_view, export)
    if seen:
        mask = np.array([row not in seen for row in _identities(table)], dtype=bool)
        export.already_logged = int((~mask).sum())
        table = table.filter(pa.array(mask))
    if table.num_rows:
        store.write_logged_features(table, service)
    export.rows = table.num_rows
    return export
