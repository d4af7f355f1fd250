"""Reading a window of the sample log, whatever wrote it, as ServedRows per view.

A window may span three places: JSON-cell rows of log v1/v2 (``parity_samples``), v3 batches in
the SQL store (``parity_sample_batches``) and v3 Parquet files (``parity.sample_log``).
:class:`SampleLog` reads all of them, one feature view at a time in chunks of about
``chunk_rows`` rows, so memory stays bounded whatever the window's size. Damaged rows and
batches are skipped and counted (:class:`~feast_parity.parity.samplelog.v2.Skipped`); a batch
of a newer log version raises :class:`~feast_parity.parity.samplelog.NewerLogError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from feast_parity.parity.samplelog import (
    LogFormatError,
    NewerLogError,
    batch_version,
    batch_view,
    decode_batch,
    from_ipc,
)
from feast_parity.parity.samplelog.format import KEY_PREFIX, TIME
from feast_parity.parity.samplelog.screen import NO_REQUEST_TIME, unusable_rows
from feast_parity.parity.samplelog.v2 import Skipped, decode_rows
from feast_parity.parity.served import ServedRows, concat_rows
from feast_parity.store.schema import sample_batches_table, samples_v2_table
from feast_parity.store.sinks import hour_label, plain_view

# sample ids of v3 rows: batch id (SQL) or file number (Parquet) times this, plus the row
BATCH_ID_STRIDE = 1 << 24
# More rows than any writer puts in one batch (batch_size is at most 1,000,000, plus one
# request's rows): a stored batch claiming more is not believed. Its payload, when it decodes,
# says how many rows it holds; when it does not, it counts as one skipped row.
MAX_BATCH_ROWS = 10_000_000


def _epoch(value: datetime | float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    return float(value)


@dataclass
class ViewWindow:
    """What one view of a window holds: rows per source (estimates for v3 batches)."""

    feature_view: str
    rows: int = 0


class SampleLog:
    """The sample log of one repo: the parity store's SQL tables and, when configured, the
    Parquet dataset of ``parity.sample_log``."""

    def __init__(
        self,
        engine: sa.Engine,
        parquet: tuple[Any, str] | None = None,
        registry_types: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.engine = engine
        self.parquet = parquet  # (pyarrow filesystem, root path)
        self.registry_types = registry_types or {}
        self._listing: dict[tuple[datetime, datetime], dict[str, list[str]]] = {}

    # -- what is there --

    def views(self, since: datetime, until: datetime) -> dict[str, int]:
        """Rows per feature view in the window (v3 counts are of the batches overlapping it)."""
        start, end = _epoch(since), _epoch(until)
        out: dict[str, int] = {}
        v2 = samples_v2_table
        v3 = sample_batches_table
        with self.engine.connect() as conn:
            query = (
                sa.select(v2.c.feature_view, sa.func.count())
                .where(v2.c.request_time >= start, v2.c.request_time < end)
                .group_by(v2.c.feature_view)
            )
            for view, count in conn.execute(query):
                out[str(view)] = out.get(str(view), 0) + int(count)
            claimed = sa.case((v3.c.rows > MAX_BATCH_ROWS, 1), else_=v3.c.rows)
            query = (
                sa.select(v3.c.feature_view, sa.func.sum(claimed))
                .where(v3.c.max_request_time >= start, v3.c.min_request_time < end)
                .group_by(v3.c.feature_view)
            )
            for view, count in conn.execute(query):
                out[str(view)] = out.get(str(view), 0) + int(count or 0)
        for view, files in self._parquet_files(since, until).items():
            filesystem = self.parquet[0]  # type: ignore[index]
            rows = sum([parquet_rows(filesystem, f) for f in files])
            out[view] = out.get(view, 0) + rows
        return out

    # -- reading --

    def iter_keys(
        self, view: str, since: datetime, until: datetime, chunk_rows: int = 200_000
    ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """The view's join keys and served event times in the window, without decoding
        features (v3); logs before v3 are decoded whole."""
        from feast_parity.parity.samplelog import decode_keys

        for rows, _ in self._v2(view, since, until, chunk_rows):
            if rows is not None:
                yield rows.keys, rows.event_time
        table = sample_batches_table
        start, end = _epoch(since), _epoch(until)
        query = (
            sa.select(table.c.payload)
            .where(table.c.feature_view == view)
            .where(table.c.max_request_time >= start, table.c.min_request_time < end)
        )
        with self.engine.connect() as conn:
            for (payload,) in conn.execution_options(stream_results=True, yield_per=64).execute(
                query
            ):
                try:
                    yield decode_keys(_usable(from_ipc(payload)))
                except NewerLogError:
                    raise
                except LogFormatError:
                    continue
        files = self._parquet_files(since, until).get(view, [])
        columns: list[str] | None = None
        if files:
            import pyarrow.parquet as pq

            try:  # the key columns, as the first file names them
                schema = pq.read_schema(files[0], filesystem=self.parquet[0])  # type: ignore[index]
                columns = [c for c in schema.names if c.startswith(KEY_PREFIX) or c == "event_time"]
            except (LogFormatError, OSError, pa.ArrowException):
                columns = None

        def read(path: str) -> pa.Table | None:
            for wanted in (columns, None) if columns else (None,):
                try:
                    return self._read_parquet(path, wanted)
                except NewerLogError:
                    raise
                except (LogFormatError, OSError, pa.ArrowException):
                    continue  # another file's columns, or damaged: the values pass counts it
            return None

        for table in _prefetch(read, files):
            if table is not None:
                try:
                    yield decode_keys(_usable(table))
                except (LogFormatError, pa.ArrowException):
                    continue

    def iter_view(
        self, view: str, since: datetime, until: datetime, chunk_rows: int = 50_000
    ) -> Iterator[tuple[ServedRows | None, Skipped]]:
        """ServedRows of ``view`` in the window, in chunks, with what each chunk skipped."""
        yield from self._v2(view, since, until, chunk_rows)
        yield from self._v3_sql(view, since, until, chunk_rows)
        yield from self._v3_parquet(view, since, until, chunk_rows)

    def _v2(
        self, view: str, since: datetime, until: datetime, chunk_rows: int
    ) -> Iterator[tuple[ServedRows | None, Skipped]]:
        table = samples_v2_table
        query = (
            sa.select(table)
            .where(table.c.feature_view == view)
            .where(table.c.request_time >= _epoch(since), table.c.request_time < _epoch(until))
            .order_by(table.c.sample_id)
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(
                query
            )
            while True:
                rows = result.fetchmany(chunk_rows)
                if not rows:
                    break
                mappings = [dict(r._mapping) for r in rows]
                decoded, skipped = decode_rows(mappings, self.registry_types)
                yield decoded.get(view), skipped

    def _v3_sql(
        self, view: str, since: datetime, until: datetime, chunk_rows: int
    ) -> Iterator[tuple[ServedRows | None, Skipped]]:
        table = sample_batches_table
        start, end = _epoch(since), _epoch(until)
        query = (
            sa.select(table.c.batch_id, table.c.rows, table.c.payload)
            .where(table.c.feature_view == view)
            .where(table.c.max_request_time >= start, table.c.min_request_time < end)
            .order_by(table.c.batch_id)
        )

        def parts() -> Iterator[_Part]:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=64).execute(query)
                for batch_id, rows, payload in result:
                    first_id = batch_id * BATCH_ID_STRIDE
                    try:
                        yield _Part(from_ipc(payload), first_id, int(rows or 1), "")
                    except NewerLogError:
                        raise
                    except LogFormatError:
                        yield _Part(
                            None,
                            first_id,
                            int(rows or 1),
                            "damaged v3 batch (unreadable Arrow data)",
                        )

        yield from _decoded_chunks(parts(), since, until, chunk_rows)

    def parquet_files(self, since: datetime, until: datetime) -> dict[str, list[str]]:
        """The window's Parquet files per view, in the order the check reads them (a file's
        place in its view's list numbers its sample ids, :func:`parquet_first_id`)."""
        return self._parquet_files(since, until)

    def _parquet_files(self, since: datetime, until: datetime) -> dict[str, list[str]]:
        """The window's files per view, listed once per window: the keys pass and the values
        pass of a check then see the same files even while writers add new ones."""
        if self.parquet is None:
            return {}
        cached = self._listing.get((since, until))
        if cached is not None:
            return cached
        import pyarrow.fs as pafs

        filesystem, root = self.parquet
        info = filesystem.get_file_info(root)  # a refused or failed request raises: never empty
        if info.type != pafs.FileType.Directory:
            return {}
        first = hour_label(int((_epoch(since) or 0.0) * 1_000_000))
        last = hour_label(int((_epoch(until) or 0.0) * 1_000_000))
        out: dict[str, list[str]] = {}
        for entry in filesystem.get_file_info(pafs.FileSelector(root, recursive=True)):
            if entry.type != pafs.FileType.File or not entry.path.endswith(".parquet"):
                continue
            parts = entry.path[len(root) :].strip("/").split("/")
            if len(parts) != 3 or parts[2].startswith("."):
                continue
            view_part, hour_part = parts[0], parts[1]
            if not view_part.startswith("feature_view=") or not hour_part.startswith("hour="):
                continue
            hour = hour_part[len("hour=") :]
            if first <= hour <= last:
                value = view_part[len("feature_view=") :]
                out.setdefault(value, []).append(entry.path)
        by_view: dict[str, list[str]] = {}
        for value, files in out.items():
            view = plain_view(value)
            if view is None:  # a long name's hashed directory: its files name the view
                view = _view_named_by(filesystem, files) or value
            by_view.setdefault(view, []).extend(files)
        for files in by_view.values():
            files.sort()
        self._listing[(since, until)] = by_view
        return by_view

    def _read_parquet(self, path: str, columns: list[str] | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        table = pq.read_table(path, filesystem=self.parquet[0], columns=columns)  # type: ignore[index]
        batch_version(table.schema)
        return table

    def _v3_parquet(
        self, view: str, since: datetime, until: datetime, chunk_rows: int
    ) -> Iterator[tuple[ServedRows | None, Skipped]]:
        files = self._parquet_files(since, until).get(view, [])
        if not files:
            return
        filesystem = self.parquet[0]  # type: ignore[index]

        def read(item: tuple[int, str]) -> _Part:
            number, path = item
            first_id = parquet_first_id(number)
            try:
                return _Part(self._read_parquet(path), first_id, 0, "")
            except NewerLogError:
                raise
            except (LogFormatError, OSError, pa.ArrowException):
                # rows where the file's footer still says how many, else the file counts one
                rows = max(parquet_rows(filesystem, path), 1)
                return _Part(None, first_id, rows, f"damaged Parquet file {os.path.basename(path)}")

        parts = _prefetch(read, list(enumerate(files)))
        yield from _decoded_chunks(parts, since, until, chunk_rows)


def _view_named_by(filesystem: Any, files: list[str]) -> str | None:
    """The view named in the metadata of the first readable file of a hashed partition."""
    import pyarrow.parquet as pq

    for path in sorted(files):
        try:
            return batch_view(pq.read_schema(path, filesystem=filesystem))
        except (LogFormatError, OSError, pa.ArrowException):
            continue
    return None


def parquet_first_id(number: int) -> int:
    """The sample id of the first row of a view's ``number``-th Parquet file of a window (SQL
    batches count from 0, files from 2**40: ids grow in the order the check reads rows)."""
    return (1 << 40) + number * BATCH_ID_STRIDE


@dataclass
class _Part:
    """One stored batch or file of a view: its table, or None when it could not be read."""

    table: pa.Table | None
    first_id: int
    rows: int  # rows it held, for the skip count of an unreadable one
    damage: str


def _prefetch(read: Any, items: list[Any], ahead: int = 8) -> Iterator[Any]:
    """``map(read, items)`` in order, reading up to ``ahead`` items in threads: Parquet reads
    release the GIL, so one file is read while the one before is decoded."""
    from concurrent.futures import ThreadPoolExecutor

    if len(items) <= 1:
        yield from map(read, items)
        return
    with ThreadPoolExecutor(max_workers=min(4, len(items))) as pool:
        futures = [pool.submit(read, item) for item in items[:ahead]]
        for index in range(len(items)):
            result = futures[index].result()
            futures[index] = None  # type: ignore[call-overload]
            if index + ahead < len(items):
                futures.append(pool.submit(read, items[index + ahead]))
            yield result


def _in_window(table: pa.Table, since: datetime, until: datetime) -> np.ndarray:
    """Rows of a v3 table whose request time is in ``[since, until)``."""
    micros = pc.cast(pc.cast(table.column("request_time"), TIME), pa.int64())
    micros = pc.fill_null(micros, np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
    start = int(round(_epoch(since) * 1e6))  # type: ignore[operator]
    end = int(round(_epoch(until) * 1e6))  # type: ignore[operator]
    return (micros >= start) & (micros < end)


def _decoded_chunks(
    parts: Iterator[_Part], since: datetime, until: datetime, chunk_rows: int
) -> Iterator[tuple[ServedRows | None, Skipped]]:
    """ServedRows of about ``chunk_rows`` rows from stored batches or files, in order.

    Consecutive tables with the same schema are concatenated before they are decoded, so a
    window of thousands of small files costs a few decodes; a group that does not decode is
    decoded table by table, and only the damaged ones are skipped."""
    skipped = Skipped()
    group: list[tuple[pa.Table, np.ndarray, _Part]] = []
    group_rows = 0
    decoded: list[ServedRows] = []
    decoded_rows = 0

    def decode_group() -> None:
        nonlocal decoded_rows, group_rows
        if not group:
            return
        group_rows = 0
        try:
            tables = [t for t, _, _ in group]
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            rows = [decode_batch(table, np.concatenate([ids for _, ids, _ in group]))]
        except LogFormatError:
            rows = []
            for table, ids, part in group:
                try:
                    rows.append(decode_batch(table, ids))
                except LogFormatError:
                    skipped.add_ids(part.damage or "damaged v3 batch", ids)
        group.clear()
        for part_rows in rows:
            if len(part_rows):
                decoded.append(part_rows)
                decoded_rows += len(part_rows)

    for part in parts:
        table = part.table
        if table is not None:
            try:
                inside = _in_window(table, since, until)
                unusable = unusable_rows(table)
            except (KeyError, pa.ArrowException):
                table = None
        if table is None:
            _skip_damaged(skipped, part)
            continue
        ids = part.first_id + np.arange(table.num_rows, dtype=np.int64)
        keep = inside
        for reason, mask in unusable.items():
            # a row without a request time is in no window: counted wherever its batch is read
            skipped.add_ids(reason, ids[mask if reason == NO_REQUEST_TIME else mask & inside])
            keep = keep & ~mask
        if not keep.all():
            kept = np.flatnonzero(keep)
            table, ids = table.take(pa.array(kept, pa.int64())), ids[kept]
        if table.num_rows == 0:
            continue
        if group and not table.schema.equals(group[0][0].schema, check_metadata=True):
            decode_group()
        group.append((table, ids, part))
        group_rows += table.num_rows
        if decoded_rows + group_rows >= chunk_rows:
            decode_group()
            yield concat_rows(decoded), skipped
            decoded, decoded_rows, skipped = [], 0, Skipped()
    decode_group()
    if decoded or skipped.total:
        yield (concat_rows(decoded) if decoded else None), skipped


def _skip_damaged(skipped: Skipped, part: _Part) -> None:
    """Count the rows of a batch or file that does not read, in constant time: the rows it
    claims, unless that is more than a batch can hold (then one row, the claim named)."""
    reason = part.damage or "damaged v3 batch (no request times)"
    rows = max(part.rows, 1)
    if rows > MAX_BATCH_ROWS:
        reason, rows = f"{reason}; claims {rows:,} rows, counted as one", 1
    skipped.add(reason, part.first_id, rows)


def _usable(table: pa.Table) -> pa.Table:
    """``table`` without its rows that cannot be compared (counted by the values pass)."""
    unusable = unusable_rows(table)
    if not unusable:
        return table
    bad = np.logical_or.reduce(list(unusable.values()))
    return table.take(pa.array(np.flatnonzero(~bad), pa.int64()))


def parquet_rows(filesystem: Any, path: str) -> int:
    """Rows a Parquet file's footer counts (0 when even the footer does not read)."""
    import pyarrow.parquet as pq

    try:
        with filesystem.open_input_file(path) as handle:
            return int(pq.ParquetFile(handle).metadata.num_rows)
    except (OSError, pa.ArrowException):
        return 0


def read_samples(
    store: str | sa.Engine,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    feature_view: str | None = None,
    sample_log: str | None = None,
) -> pa.Table:
    """The sample log of a window as one Arrow table (``rows_table`` of every view), from a
    parity store URL or engine and, when given, a ``parity.sample_log`` location.

    >>> read_samples("sqlite://").num_rows
    0
    """
    from feast_parity.parity.samplelog import rows_table
    from feast_parity.store.engine import open_store
    from feast_parity.store.sinks import open_location

    engine = open_store(store) if isinstance(store, str) else store
    # a bucket that does not exist raises SampleLogLocationError, never reads as empty
    log = SampleLog(engine, open_location(sample_log) if sample_log else None)
    start = since or datetime(1970, 1, 1, tzinfo=timezone.utc)
    end = until or datetime(9999, 1, 1, tzinfo=timezone.utc)
    views = [feature_view] if feature_view else sorted(log.views(start, end))
    tables = []
    for view in views:
        for rows, _ in log.iter_view(view, start, end):
            if rows is not None and len(rows):
                tables.append(rows_table(rows))
    if not tables:
        return pa.table({"feature_view": pa.array([], pa.string())})
    return pa.concat_tables(tables, promote_options="permissive")
