"""The sample log: served feature vectors in a SQL table, written off the serving path.

Serving hands a snapshot to :meth:`SampleWriter.submit`, which only appends to a bounded queue
(never blocks, never raises). A daemon thread turns snapshots into rows and inserts them in
batches. When the queue is full or the database fails, rows are dropped and counted in
:class:`WriterStats`; the next batch tries the database again, so logging resumes by itself.

One row per (served entity row, feature view). Table layout is documented in docs/sample_log.md.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, NamedTuple

import pyarrow as pa
import sqlalchemy as sa

logger = logging.getLogger("feast_parity")

# v1: the first layout (no `writer` and `seed` columns; feature cells of 4 fields, without the
#     declared type). v2: adds both columns and the 5th cell field. Older logs are migrated in
#     place by ensure_schema (DDL only: old cells stay readable as they are).
LOG_SCHEMA_VERSION = 2

metadata = sa.MetaData()

samples_table = sa.Table(
    "parity_samples",
    metadata,
    sa.Column("sample_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("log_version", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("request_time", sa.Float, nullable=False),
    sa.Column("feature_service", sa.String(255)),
    sa.Column("entity_key", sa.Text, nullable=False),
    sa.Column("entity_key_hash", sa.BigInteger, nullable=False),
    sa.Column("feature_view", sa.String(255), nullable=False),
    sa.Column("event_time", sa.Float),
    sa.Column("row_hash", sa.BigInteger, nullable=False),
    sa.Column("schema_fingerprint", sa.BigInteger, nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("sample_rate", sa.Float, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("writer", sa.String(64), nullable=False),
    sa.Index("ix_parity_samples_time", "request_time"),
    sa.Index("ix_parity_samples_view_time", "feature_view", "request_time"),
)

meta_table = sa.Table(
    "parity_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

SAMPLE_COLUMNS = [c.name for c in samples_table.columns]


def create_engine(url: str, *, connect_timeout: float = 3.0) -> sa.Engine:
    """An engine for the sample store; SQLite in WAL mode so readers never block the writer."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    if url.startswith("postgresql"):
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return sa.create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": int(connect_timeout)}
        )
    return sa.create_engine(url)


_SCHEMA_LOCK_KEY = 0x70617269747931  # "parity1": PostgreSQL advisory lock of schema creation


def ensure_schema(engine: sa.Engine, *, attempts: int = 5) -> None:
    """Create the tables on first use and record the log schema version.

    Safe when several processes start at once: on PostgreSQL creation runs under a
    transaction-scoped advisory lock; elsewhere (SQLite) a creation that lost the race to
    another process ("table already exists") is retried and then finds the tables.
    """
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY}
                    )
                had_samples = sa.inspect(conn).has_table("parity_samples")
                metadata.create_all(conn, checkfirst=True)
                found = conn.execute(
                    sa.select(meta_table.c.value).where(meta_table.c.key == "log_schema_version")
                ).scalar()
                if found is None:
                    version = _detect_version(conn) if had_samples else LOG_SCHEMA_VERSION
                    conn.execute(
                        meta_table.insert().values(key="log_schema_version", value=str(version))
                    )
                else:
                    version = int(found)
                if version > LOG_SCHEMA_VERSION:
                    raise LogSchemaError(
                        f"the sample log was written by a newer feast-parity (log schema "
                        f"v{version}, this version reads up to v{LOG_SCHEMA_VERSION}): "
                        "upgrade feast-parity"
                    )
                while version < LOG_SCHEMA_VERSION:
                    MIGRATIONS[version](conn)
                    version += 1
                    conn.execute(
                        meta_table.update()
                        .where(meta_table.c.key == "log_schema_version")
                        .values(value=str(version))
                    )
                    logger.warning("feast-parity: migrated the sample log to schema v%d", version)
            return
        except sa.exc.DBAPIError as exc:
            lost_race = isinstance(exc, (sa.exc.IntegrityError, sa.exc.ProgrammingError)) or (
                "already exists" in str(exc.orig)
            )
            if not lost_race or exc.connection_invalidated or attempt == attempts - 1:
                raise  # e.g. the store is unreachable: no point in retrying here
            time.sleep(0.02 * (attempt + 1))


class LogSchemaError(RuntimeError):
    """The sample log's schema version is newer than this code can read."""


def _detect_version(conn: sa.Connection) -> int:
    """Version of a log that predates the meta table: v1 lacked the `writer` column."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("parity_samples")}
    return LOG_SCHEMA_VERSION if "writer" in columns else 1


def _migrate_v1_to_v2(conn: sa.Connection) -> None:
    columns = {c["name"] for c in sa.inspect(conn).get_columns("parity_samples")}
    if "writer" not in columns:
        conn.execute(
            sa.text(
                "ALTER TABLE parity_samples "
                "ADD COLUMN writer VARCHAR(64) NOT NULL DEFAULT 'unknown'"
            )
        )
    if "seed" not in columns:
        conn.execute(
            sa.text("ALTER TABLE parity_samples ADD COLUMN seed BIGINT NOT NULL DEFAULT 0")
        )


MIGRATIONS = {1: _migrate_v1_to_v2}  # version -> the step that brings it to version + 1


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe to print or log."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1] if "@" in url else url


# --- JSON encoding of typed values -------------------------------------------------------------


def encode_json_value(value: Any) -> Any:
    """A JSON-able form of a served value that :func:`decode_json_value` turns back.

    NaN and infinities stay floats (Python's json writes them as NaN/Infinity); bytes and
    timestamps get a one-key tag so they are not confused with strings.

    >>> encode_json_value(b"ab"), encode_json_value(float("nan"))
    ({'$b': 'YWI='}, nan)
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return {"$ts": value.timestamp()}
    if isinstance(value, date):
        return {
            "$ts": datetime(value.year, value.month, value.day, tzinfo=timezone.utc).timestamp()
        }
    if isinstance(value, Mapping):
        return {"$map": {str(k): encode_json_value(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [encode_json_value(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return encode_json_value(value.tolist())
    return {"$repr": repr(value)}


def decode_json_value(value: Any) -> Any:
    """Inverse of :func:`encode_json_value`."""
    if isinstance(value, dict):
        if "$b" in value:
            return base64.b64decode(value["$b"])
        if "$ts" in value:
            return datetime.fromtimestamp(value["$ts"], tz=timezone.utc)
        if "$map" in value:
            return {k: decode_json_value(v) for k, v in value["$map"].items()}
        if "$repr" in value:
            return value["$repr"]
    if isinstance(value, list):
        return [decode_json_value(v) for v in value]
    return value


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=True)


# --- the background writer ---------------------------------------------------------------------

INSERT_COLUMNS = SAMPLE_COLUMNS[1:]
"""Column order of the row tuples a writer's ``prepare`` returns (``sample_id`` is generated)."""


@dataclass
class WriterStats:
    """Counters of the hook and the writer; exported to Prometheus by the plugin."""

    sampled_rows: int = 0  # entity rows chosen by the sampler
    written_rows: int = 0  # of those, rows whose log entries reached the store
    written_log_rows: int = 0  # log rows (one per entity row and feature view)
    dropped_queue_full: int = 0
    dropped_store_error: int = 0
    hook_errors: int = 0
    store_errors: int = 0
    # Reentrant: a SIGTERM handler may flush on a thread that was inside submit().
    _lock: Any = field(default_factory=threading.RLock, repr=False)

    @property
    def dropped_rows(self) -> int:
        return self.dropped_queue_full + self.dropped_store_error

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "sampled_rows": self.sampled_rows,
                "written_rows": self.written_rows,
                "written_log_rows": self.written_log_rows,
                "dropped_rows": self.dropped_rows,
                "dropped_queue_full": self.dropped_queue_full,
                "dropped_store_error": self.dropped_store_error,
                "hook_errors": self.hook_errors,
                "store_errors": self.store_errors,
            }


@dataclass
class Snapshot:
    """What the request thread hands over: opaque payload plus how many rows it will become."""

    rows: int
    payload: Any


class _SnapshotQueue(deque):  # type: ignore[type-arg]
    """The writer's queue: a deque (append/popleft need no lock) that knows its bound."""

    maxsize: int

    def qsize(self) -> int:
        return len(self)


_YIELD_SECONDS = 0.0001
_live_writers: weakref.WeakSet[SampleWriter] = weakref.WeakSet()


def _raw_insert_sql(engine: sa.Engine) -> str | None:
    """A plain DBAPI ``INSERT`` for positional row tuples, or None for unknown paramstyles."""
    style = getattr(engine.dialect, "paramstyle", None)
    marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(style or "")
    if marker is None:
        return None
    return (
        f"INSERT INTO {samples_table.name} ({', '.join(INSERT_COLUMNS)}) "
        f"VALUES ({', '.join([marker] * len(INSERT_COLUMNS))})"
    )


def insert_rows(engine: sa.Engine, rows: Sequence[Sequence[Any]]) -> None:
    """Insert row tuples (``INSERT_COLUMNS`` order) in one transaction.

    SQLite and psycopg take the rows through the driver's ``executemany`` directly: SQLAlchemy's
    per-row parameter processing costs several times the insert itself, on the writer thread,
    while it holds the GIL that serving threads need.
    """
    if not rows:
        return
    sql = _raw_insert_sql(engine)
    if sql is None:
        with engine.begin() as conn:
            conn.execute(samples_table.insert(), [dict(zip(INSERT_COLUMNS, r)) for r in rows])
        return
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()
        raw.commit()
    except BaseException:
        try:
            raw.rollback()
        except Exception:  # the connection is gone: nothing to roll back
            pass
        raise
    finally:
        raw.close()


class SampleWriter:
    """Bounded queue plus one daemon thread that writes sample rows in batches.

    ``prepare`` turns a snapshot payload into rows: tuples in ``INSERT_COLUMNS`` order (or
    mappings of column name to value). It runs on the writer thread, so the serving thread only
    pays for one uncontended lock and a ``deque.append``.
    """

    def __init__(
        self,
        url: str,
        prepare: Callable[[Any], Sequence[Sequence[Any] | Mapping[str, Any]]],
        *,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        engine_factory: Callable[[str], sa.Engine] = create_engine,
    ) -> None:
        self.url = url
        self.prepare = prepare
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.stats = WriterStats()
        self._lock = self.stats._lock  # one lock: counters, queue bound, pending count
        self._queue = _SnapshotQueue()
        self._queue.maxsize = queue_size
        self._engine_factory = engine_factory
        self._engine: sa.Engine | None = None
        self._store_failing = False
        self._hook_error_logged = False
        self._paused = threading.Event()
        # A plain lock as a wake-up signal: released = "look at the queue". Cheaper than an
        # Event (a Python-level Condition) on the serving thread, and the wait is one C call.
        self._signal = threading.Lock()
        self._signal.acquire()
        self._flush_requested = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # snapshots submitted and not yet written or dropped
        self._closed = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="feast-parity-writer", daemon=True)
        self._thread.start()
        _live_writers.add(self)

    # -- serving side: never blocks, never raises --

    def submit(self, snapshot: Snapshot) -> bool:
        """Queue a snapshot; on a full queue drop it and count its rows."""
        rows = snapshot.rows
        q = self._queue
        with self._lock:
            self.stats.sampled_rows += rows
            if self._closed or len(q) >= q.maxsize:
                self.stats.dropped_queue_full += rows
                return False
            self._pending += 1
            idle = not q
            q.append(snapshot)
        if idle:  # the writer may be asleep; while it is busy it picks new snapshots up itself
            self._wake()
        return True

    def _wake(self) -> None:
        try:
            self._signal.release()
        except RuntimeError:  # already released: a wake-up is pending
            pass

    def record_hook_error(self, exc: BaseException) -> None:
        """Count an exception of the hook; log the first one only."""
        self.stats.add("hook_errors")
        if not self._hook_error_logged:
            self._hook_error_logged = True
            logger.warning("feast-parity: sampling hook failed (logged once): %r", exc)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def counters(self) -> dict[str, int]:
        """The counters and the queue depth, read together (consistent with each other)."""
        with self._lock:
            return {**self.stats.as_dict(), "queue_depth": len(self._queue)}

    # -- control --

    def pause(self) -> None:
        """Stall the writer thread (used by tests and maintenance): submissions keep queueing."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()
        self._wake()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted snapshot is written or dropped; True when drained."""
        deadline = time.monotonic() + timeout
        self._flush_requested.set()
        self._wake()
        try:
            with self._idle:
                while self._pending > 0:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    self._idle.wait(min(remaining, 0.1))
            return True
        finally:
            self._flush_requested.clear()

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then stop the thread."""
        if self._closed:
            return
        self._paused.clear()
        self.flush(timeout)
        with self._lock:
            self._closed = True
        self._stopping = True
        self._wake()
        self._thread.join(timeout=2.0)
        if self._engine is not None and not self._thread.is_alive():
            self._engine.dispose()

    # -- writer thread --

    def _engine_or_none(self) -> sa.Engine | None:
        if self._engine is None:
            engine = self._engine_factory(self.url)
            ensure_schema(engine)
            self._engine = engine
        return self._engine

    def _run(self) -> None:
        q = self._queue
        batch: list[Any] = []
        batch_snapshots = 0
        batch_entity_rows = 0
        batch_started = 0.0  # when the batch's first snapshot was taken from the queue
        while True:
            if self._paused.is_set():
                self._signal.acquire(timeout=0.01)
                continue
            with self._lock:  # so counters() sees a snapshot either queued or taken
                item = q.popleft() if q else None
            if item is not None:
                if not batch_snapshots:
                    batch_started = time.monotonic()
                try:
                    batch.extend(self.prepare(item.payload))
                    batch_entity_rows += item.rows
                except Exception as exc:  # a bug in prepare must not kill the thread
                    self.record_hook_error(exc)
                    self.stats.add("dropped_store_error", item.rows)
                batch_snapshots += 1
                if q:
                    # A backlog: hand the GIL over between snapshots. A serving thread waiting
                    # for it would otherwise wait for CPython's switch interval (5 ms).
                    time.sleep(_YIELD_SECONDS)
            # Commit by size or age, not whenever the queue runs dry: at normal traffic that
            # would make every snapshot its own transaction. flush() asks for an early write.
            now = time.monotonic()
            if batch_snapshots and (
                len(batch) >= self.batch_size
                or now - batch_started >= self.flush_interval
                or (not q and (self._flush_requested.is_set() or self._stopping))
            ):
                self._write(batch, batch_snapshots, batch_entity_rows)
                batch, batch_snapshots, batch_entity_rows = [], 0, 0
            if q:
                continue
            if self._stopping:
                return
            # Nothing queued: sleep until a submit, a flush, or the batch's age limit. A submit
            # that came after the check above left the signal released: no wake-up is lost.
            if batch_snapshots:
                wait = batch_started + self.flush_interval - time.monotonic()
                self._signal.acquire(timeout=max(0.001, wait))
            else:
                self._signal.acquire(timeout=1.0)

    def _write(self, batch: list[Any], snapshots: int, entity_rows: int) -> None:
        """Insert one batch; counters are in sampled entity rows, like ``submit``."""
        try:
            if batch:
                if isinstance(batch[0], Mapping):
                    batch = [tuple(row[c] for c in INSERT_COLUMNS) for row in batch]
                engine = self._engine_or_none()
                assert engine is not None
                insert_rows(engine, batch)
                self.stats.add("written_log_rows", len(batch))
                if self._store_failing:
                    self._store_failing = False
                    logger.warning("feast-parity: sample store %s is back", redact_url(self.url))
            # rows whose response held no feature column are accounted as written (nothing to log)
            self.stats.add("written_rows", entity_rows)
        except Exception as exc:
            with self._lock:
                self.stats.store_errors += 1
                self.stats.dropped_store_error += entity_rows
            if not self._store_failing:
                self._store_failing = True
                logger.warning(
                    "feast-parity: sample store %s failed, dropping rows until it returns: %s",
                    redact_url(self.url),
                    type(exc).__name__,
                )
            if self._engine is not None:
                try:
                    self._engine.dispose()
                except Exception:
                    pass
                self._engine = None
        finally:
            with self._idle:
                self._pending -= snapshots
                self._idle.notify_all()


def flush_all_writers(timeout: float = 10.0) -> bool:
    """Flush every live writer of this process (shared deadline); True when all drained."""
    deadline = time.monotonic() + timeout
    drained = True
    for writer in list(_live_writers):
        try:
            drained = writer.flush(max(0.0, deadline - time.monotonic())) and drained
        except Exception:
            drained = False
    return drained


@atexit.register
def _flush_all_writers() -> None:
    for writer in list(_live_writers):
        try:
            writer.close(timeout=10.0)
        except Exception:  # interpreter is exiting: never raise here
            pass


# --- SIGTERM: flush, then terminate as before ----------------------------------------------------

_sigterm_lock = threading.Lock()
_sigterm_installed = False
SIGTERM_FLUSH_SECONDS = 10.0


def install_sigterm_flush() -> bool:
    """Make SIGTERM flush the sample writers before the process goes on to terminate.

    Installed at most once per process, and only from the main thread (Python allows signal
    handlers nowhere else) when SIGTERM has Python's default disposition or a Python handler:

    * default disposition: the handler flushes (at most ``SIGTERM_FLUSH_SECONDS``), restores
      the default and sends SIGTERM to the process again, which then dies of SIGTERM exactly
      as it would have (same exit status for the supervisor);
    * a Python handler (a server's graceful shutdown, say): the handler flushes, then calls it.

    An ignored SIGTERM (``SIG_IGN``) or a handler installed outside Python is left alone.
    Returns whether our handler is installed (now or before).
    """
    global _sigterm_installed
    import signal

    with _sigterm_lock:
        if _sigterm_installed:
            return True
        if threading.current_thread() is not threading.main_thread():
            return False
        try:
            previous = signal.getsignal(signal.SIGTERM)
        except (AttributeError, ValueError):  # no SIGTERM on this platform
            return False
        if previous is signal.SIG_IGN or previous is None:
            return False
        chained = previous if callable(previous) else None

        def _on_sigterm(signum: int, frame: Any) -> None:
            try:
                flush_all_writers(SIGTERM_FLUSH_SECONDS)
            except Exception:  # never let a flush problem stop the shutdown
                pass
            if chained is not None:
                chained(signum, frame)
                return
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        try:
            signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):  # not the main interpreter, or an embedded runtime
            return False
        _sigterm_installed = True
        return True


# --- reading back ------------------------------------------------------------------------------


def _time_bounds(
    since: datetime | float | None, until: datetime | float | None
) -> tuple[float | None, float | None]:
    def to_epoch(value: datetime | float | None) -> float | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            return value.timestamp()
        return float(value)

    return to_epoch(since), to_epoch(until)


def _select(
    since: datetime | float | None,
    until: datetime | float | None,
    feature_view: str | None,
) -> sa.Select[Any]:
    start, end = _time_bounds(since, until)
    query = sa.select(samples_table).order_by(samples_table.c.sample_id)
    if start is not None:
        query = query.where(samples_table.c.request_time >= start)
    if end is not None:
        query = query.where(samples_table.c.request_time < end)
    if feature_view is not None:
        query = query.where(samples_table.c.feature_view == feature_view)
    return query


RAW_SCHEMA = pa.schema(
    [
        ("sample_id", pa.int64()),
        ("log_version", pa.int32()),
        ("request_id", pa.string()),
        ("request_time", pa.timestamp("us", tz="UTC")),
        ("feature_service", pa.string()),
        ("entity_key", pa.string()),
        ("entity_key_hash", pa.int64()),
        ("feature_view", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("row_hash", pa.int64()),
        ("schema_fingerprint", pa.int64()),
        ("features", pa.string()),
        ("sample_rate", pa.float64()),
        ("seed", pa.int64()),
        ("writer", pa.string()),
    ]
)


def _rows_to_arrow(rows: Sequence[Any]) -> pa.Table:
    """Fetched rows (in ``samples_table`` column order) -> an Arrow table of RAW_SCHEMA, built
    column by column (``zip(*rows)``), times as microseconds since the epoch."""
    import pyarrow.compute as pc

    if not rows:
        return RAW_SCHEMA.empty_table()
    position = {name: i for i, name in enumerate(rows[0]._mapping.keys())}
    columns = list(zip(*rows))
    arrays = []
    for fld in RAW_SCHEMA:
        values = columns[position[fld.name]]
        if pa.types.is_timestamp(fld.type):
            seconds = pa.array(values, pa.float64())
            micros = pc.round(pc.multiply(seconds, 1_000_000.0))
            arrays.append(micros.cast(pa.int64()).cast(fld.type))
        else:
            arrays.append(pa.array(values, fld.type))
    return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA)


def iter_sample_chunks(
    store: str | sa.Engine,
    *,
    since: datetime | float | None = None,
    until: datetime | float | None = None,
    feature_view: str | None = None,
    chunk_rows: int = 50_000,
) -> Iterator[pa.Table]:
    """Stream the raw log in Arrow chunks, oldest first; memory stays bounded by chunk_rows."""
    engine = create_engine(store) if isinstance(store, str) else store
    ensure_schema(engine)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(
            _select(since, until, feature_view)
        )
        while True:
            rows = result.fetchmany(chunk_rows)
            if not rows:
                break
            yield _rows_to_arrow(rows)


def read_samples(
    store: str | sa.Engine,
    *,
    since: datetime | float | None = None,
    until: datetime | float | None = None,
    feature_view: str | None = None,
) -> pa.Table:
    """The raw sample log of a window as one Arrow table (``features`` is a JSON column).

    For typed per-feature columns of one feature view, use :func:`read_feature_samples`.
    """
    chunks = list(iter_sample_chunks(store, since=since, until=until, feature_view=feature_view))
    if not chunks:
        return RAW_SCHEMA.empty_table()
    return pa.concat_tables(chunks)


class FeatureCell(NamedTuple):
    """One served feature of one sampled row, as the log keeps it."""

    value: Any
    status: int  # Feast FieldStatus: 1 PRESENT, 2 NULL_VALUE, 3 NOT_FOUND, 4 OUTSIDE_MAX_AGE
    value_hash: str  # 16 hex chars of xxh3_64 over the canonical encoding
    online_type: str  # the protobuf value kind served, e.g. "float32", "null"
    declared_type: str  # the registry's type name at serving time


def decode_features(features_json: str) -> dict[str, FeatureCell]:
    """``features`` column -> {feature name: FeatureCell}."""
    raw = json.loads(features_json)
    return {
        name: FeatureCell(
            decode_json_value(v[0]),
            int(v[1]),
            str(v[2]),
            str(v[3]),
            str(v[4]) if len(v) > 4 else "",
        )
        for name, v in raw.items()
    }


def read_feature_samples(
    store: str | sa.Engine,
    feature_view: str,
    *,
    since: datetime | float | None = None,
    until: datetime | float | None = None,
) -> pa.Table:
    """Samples of one feature view, one column per join key and per feature.

    Per feature ``f`` there are ``f`` (the served value, typed by Arrow inference),
    ``f__status`` (Feast FieldStatus number), ``f__hash`` and ``f__online_type``.
    """
    raw = read_samples(store, since=since, until=until, feature_view=feature_view)
    out: dict[str, list[Any]] = {
        "request_id": raw.column("request_id").to_pylist(),
        "request_time": raw.column("request_time").to_pylist(),
        "feature_service": raw.column("feature_service").to_pylist(),
        "event_time": raw.column("event_time").to_pylist(),
        "row_hash": raw.column("row_hash").to_pylist(),
        "schema_fingerprint": raw.column("schema_fingerprint").to_pylist(),
    }
    keys = [json.loads(k) for k in raw.column("entity_key").to_pylist()]
    decoded = [decode_features(f) for f in raw.column("features").to_pylist()]
    key_names = sorted({k for row in keys for k in row})
    for name in key_names:
        out[name] = [row.get(name) for row in keys]
    feature_names = sorted({f for row in decoded for f in row})
    for name in feature_names:
        cells = [row.get(name) for row in decoded]
        out[name] = [c.value if c else None for c in cells]
        out[f"{name}__status"] = [c.status if c else None for c in cells]
        out[f"{name}__hash"] = [c.value_hash if c else None for c in cells]
        out[f"{name}__online_type"] = [c.online_type if c else None for c in cells]
    arrays = {}
    for name, values in out.items():
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arrays[name] = pa.array([None if v is None else repr(v) for v in values], pa.string())
    return pa.table(arrays)


def count_samples(
    store: str | sa.Engine,
    *,
    since: datetime | float | None = None,
    until: datetime | float | None = None,
) -> int:
    """Number of log rows in a window (for progress bars and empty-window messages)."""
    engine = create_engine(store) if isinstance(store, str) else store
    ensure_schema(engine)
    start, end = _time_bounds(since, until)
    query = sa.select(sa.func.count()).select_from(samples_table)
    if start is not None:
        query = query.where(samples_table.c.request_time >= start)
    if end is not None:
        query = query.where(samples_table.c.request_time < end)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)
