"""Where the writer puts sample-log batches: SQL rows of Arrow IPC bytes, or a Parquet dataset.

Both sinks take the batches of one writer flush (one per feature view, in the v3 format of
:mod:`feast_parity.parity.samplelog`) and store each as it is:

* :class:`SqlSink` (``parity.store``, SQLite or PostgreSQL): one row per batch with its view and
  request-time range, all batches of a flush in one transaction, so a window is read without
  any per-row decoding;
* :class:`ParquetSink` (``parity.sample_log``: a directory, or a ``file://``, ``s3://`` or
  ``gs://`` URI): one file per view and hour per flush under
  ``feature_view=<view>/hour=<YYYY-MM-DDTHH>/`` (:func:`partition_value`: bounded, so any
  Feast name fits a file system's 255-byte limit), named after the writer, so many processes
  and hosts write side by side without locks or contention. A flush is all or nothing: every
  file is written under a hidden temporary name first, and renamed only when all are written.

A sink raises on failure; the writer counts the rows as dropped and tries again later.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
import xxhash

from feast_parity.parity.samplelog import LOG_VERSION, TIME, batch_view, to_ipc
from feast_parity.store.engine import create_engine, redact_url
from feast_parity.store.schema import ensure_schema, sample_batches_table


class SampleSink(Protocol):
    def write(self, batches: Sequence[pa.RecordBatch]) -> None: ...

    def probe(self) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


def _time_range(batch: pa.RecordBatch) -> tuple[float, float]:
    micros = pc.cast(batch.column("request_time"), pa.int64())
    bounds = pc.min_max(micros).as_py()
    return bounds["min"] / 1e6, bounds["max"] / 1e6


class SqlSink:
    """Batches as rows of ``parity_sample_batches`` in the parity store."""

    def __init__(self, url: str, writer: str = "unknown") -> None:
        self.url = url
        self.writer = writer[:64]
        self._engine: sa.Engine | None = None

    def describe(self) -> str:
        return redact_url(self.url)

    def _ready(self) -> sa.Engine:
        if self._engine is None:
            engine = create_engine(self.url)
            ensure_schema(engine)
            self._engine = engine
        return self._engine

    def probe(self) -> None:
        with self._ready().connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def write(self, batches: Sequence[pa.RecordBatch]) -> None:
        rows = []
        for batch in batches:
            if batch.num_rows == 0:
                continue
            start, end = _time_range(batch)
            rows.append(
                {
                    "log_version": LOG_VERSION,
                    "feature_view": batch_view(batch.schema)[:255],
                    "min_request_time": start,
                    "max_request_time": end,
                    "rows": batch.num_rows,
                    "writer": self.writer,
                    "payload": to_ipc(batch),
                }
            )
        if not rows:
            return
        try:
            with self._ready().begin() as conn:
                conn.execute(sample_batches_table.insert(), rows)
        except Exception:
            self.close()  # a fresh engine next time: the old pool may hold dead connections
            raise

    def close(self) -> None:
        if self._engine is not None:
            try:
                self._engine.dispose()
            except Exception:
                pass
            self._engine = None


class SampleLogLocationError(OSError):
    """The sample log's location cannot be used: a bucket that does not exist, credentials
    the server refuses, an endpoint that does not answer. The message is one line."""


OBJECT_STORES = ("s3", "gcs")  # pyarrow filesystem types with buckets
_REFUSED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "FORBIDDEN")
_AWS_ERROR = re.compile(r"AWS Error ([A-Z_]+)(?: \(HTTP status (\d+)\))? during (\w+) operation")


def resolve_filesystem(
    location: str, base_dir: str | os.PathLike[str] | None = None
) -> tuple[Any, str]:
    """(pyarrow filesystem, path) of a ``parity.sample_log`` location: a directory relative to
    the repo, an absolute path, or any URI pyarrow understands (``file://``, ``s3://``, ...).
    An ``s3://`` URI takes its endpoint, region and credentials from the URI's query
    (``?endpoint_override=...&region=...``) or else the usual AWS environment
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ...), as pyarrow does."""
    import pyarrow.fs as pafs

    if "://" in location:
        return pafs.FileSystem.from_uri(location)
    path = (
        location
        if os.path.isabs(location) or base_dir is None
        else os.path.join(base_dir, location)
    )
    return pafs.LocalFileSystem(), os.path.abspath(path)


def endpoint_of(filesystem: Any) -> str:
    """Where an object-store filesystem sends its requests, for messages: the endpoint
    override (``AWS_ENDPOINT_URL`` or the URI's), else the provider and region."""
    try:
        options = filesystem.__reduce__()[1][0]  # the options pyarrow pickles it with
    except Exception:
        options = {}
    endpoint = options.get("endpoint_override") if isinstance(options, dict) else None
    if endpoint:
        return str(endpoint)
    region = getattr(filesystem, "region", "") or ""
    name = {"s3": "AWS S3", "gcs": "Google Cloud Storage"}.get(filesystem.type_name, "")
    return f"{name} {region}".strip() or filesystem.type_name


def explain_store_error(exc: BaseException, filesystem: Any, bucket: str) -> str:
    """One line saying why an object store refused a request, from pyarrow's message."""
    text = str(exc)
    endpoint = endpoint_of(filesystem)
    match = _AWS_ERROR.search(text)
    code = match.group(1) if match else ""
    status = match.group(2) if match else None
    detail = text.split(" operation: ", 1)[-1] if match else text
    detail = re.sub(r"\s*\(Request ID: [^)]*\)", "", detail).strip()
    detail = (detail.splitlines() or [""])[0].rstrip(".")
    curl = re.match(r"curlCode: \d+, ([^;]+)", detail)
    if curl:  # "curlCode: 7, Could not connect to server; Details: ..."
        detail = curl.group(1).strip()
    if code == "NO_SUCH_BUCKET" or "not found. To create buckets" in text:
        return f"bucket {bucket!r} does not exist (endpoint {endpoint})"
    if code in _REFUSED or status == "403":
        shown = f"{code}: {detail}" if detail and detail != "No response body" else code
        return (
            f"the server refused the credentials for bucket {bucket!r} "
            f"({shown}; endpoint {endpoint})"
        )
    if code == "NETWORK_CONNECTION":
        return f"cannot connect to endpoint {endpoint} ({detail})"
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return first


def check_bucket(filesystem: Any, root: str) -> None:
    """On an object store, raise :class:`SampleLogLocationError` unless the bucket of ``root``
    exists and the credentials are accepted (a missing prefix is fine: nothing logged yet).
    pyarrow reports a missing bucket as a path not found, so without this a bucket that
    does not exist reads as an empty window."""
    import pyarrow.fs as pafs

    if filesystem.type_name not in OBJECT_STORES:
        return
    bucket = bucket_of(root)
    try:
        info = filesystem.get_file_info(bucket)
    except OSError as head_error:
        error: OSError = head_error
        try:  # HEAD says only "403": a listing names the cause (unknown key, wrong secret)
            filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        except OSError as listing_error:
            error = listing_error
        raise SampleLogLocationError(explain_store_error(error, filesystem, bucket)) from None
    if info.type == pafs.FileType.NotFound:
        raise SampleLogLocationError(
            f"bucket {bucket!r} does not exist (endpoint {endpoint_of(filesystem)})"
        )


def bucket_of(root: str) -> str:
    """The bucket of an object-store path (``bucket/prefix/...``)."""
    return root.strip("/").split("/", 1)[0]


def open_location(location: str, base_dir: str | os.PathLike[str] | None = None) -> tuple[Any, str]:
    """:func:`resolve_filesystem`, then :func:`check_bucket`: a location the log can be read
    from, or :class:`SampleLogLocationError` (one line)."""
    filesystem, root = resolve_filesystem(location, base_dir)
    check_bucket(filesystem, root)
    return filesystem, root


def _hour_partitions(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    micros = pc.cast(batch.column("request_time"), pa.int64()).to_numpy(zero_copy_only=False)
    hours = micros // 3_600_000_000
    out = {}
    for hour in np.unique(hours):
        label = np.datetime64(int(hour), "h").astype(str)  # 2026-12-02T04
        out[label] = np.flatnonzero(hours == hour)
    return out


_PARQUET_OPTIONS: dict[str, Any] = {"coerce_timestamps": "us", "compression": "zstd"}

# A directory entry may hold 255 bytes on every common file system (ext4, xfs, APFS, NTFS) and
# an object-store key part far more; "feature_view=" plus this leaves room to spare.
MAX_PLAIN_VALUE = 200
_PREFIX_CHARS = 96
HASHED_MARK = "@"  # quote(safe="") escapes "@" (as %40): a plain value never holds one
MAX_WRITER_CHARS = 100


def _quoted_prefix(text: str, limit: int) -> str:
    """The URL-quoted form of the longest prefix of ``text`` (whole characters) that quotes to
    at most ``limit`` characters."""
    out: list[str] = []
    size = 0
    for char in text:
        piece = quote(char, safe="")
        if size + len(piece) > limit:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def partition_value(view: str) -> str:
    """The ``feature_view=`` directory value of a view: the URL-quoted name when it takes at
    most :data:`MAX_PLAIN_VALUE` bytes; else a readable prefix of it, ``@`` and the 128-bit
    xxh3 of the name (bounded, and never equal to a plain value: quoting escapes ``@``). The
    files under a hashed value name their view in their own metadata (:func:`plain_view`).

    >>> partition_value("user_engagement")
    'user_engagement'
    >>> value = partition_value("名" * 28)   # 84 UTF-8 bytes, 252 quoted characters
    >>> prefix, digest = value.split("@")
    >>> prefix == "%E5%90%8D" * 10, len(digest)   # whole characters only, then the hash
    (True, 32)
    """
    quoted = quote(view, safe="")
    if len(quoted) <= MAX_PLAIN_VALUE:
        return quoted
    digest = xxhash.xxh3_128_hexdigest(view.encode("utf-8", "surrogatepass"))
    return f"{_quoted_prefix(view, _PREFIX_CHARS)}{HASHED_MARK}{digest}"


def plain_view(value: str) -> str | None:
    """The view name of a ``feature_view=`` value, or None for a hashed one (its files say)."""
    from urllib.parse import unquote

    return None if HASHED_MARK in value else unquote(value)


class ParquetSink:
    """Batches as Parquet files of a dataset partitioned by view and hour."""

    def __init__(self, location: str, writer: str = "unknown", base_dir: str | None = None) -> None:
        self.location = location
        self.base_dir = base_dir
        self._resolved: tuple[Any, str] | None = None  # resolved on the writer thread
        self.writer = writer
        self._token = uuid.uuid4().hex[:8]  # two processes with one host:pid (containers)
        self._seq = itertools.count()
        self._writer_part = _quoted_prefix(writer, MAX_WRITER_CHARS)

    def describe(self) -> str:
        return self.location

    @property
    def filesystem(self) -> Any:
        return self._where()[0]

    @property
    def root(self) -> str:
        return self._where()[1]

    def _where(self) -> tuple[Any, str]:
        if self._resolved is None:
            self._resolved = resolve_filesystem(self.location, self.base_dir)
        return self._resolved

    def probe(self) -> None:
        """A real write: a small hidden file, written and deleted. Creating a directory that
        exists succeeds on a read-only or full file system; this does not. On an object
        store the bucket is checked first (:func:`check_bucket`), so the failure says why."""
        check_bucket(self.filesystem, self.root)
        self.filesystem.create_dir(self.root, recursive=True)
        path = f"{self.root}/.probe-{self._token}.tmp"
        with self.filesystem.open_output_stream(path) as out:
            out.write(b"feast-parity probe\n" * 64)
        self.filesystem.delete_file(path)

    def write(self, batches: Sequence[pa.RecordBatch]) -> None:
        """Write the files of one flush, all or nothing: each under a hidden temporary name
        (readers skip names starting with ``.``), then every one renamed; on a failure the
        temporary files are deleted and the error raised, so no file of the flush is left."""
        import pyarrow.parquet as pq

        written: list[tuple[str, str, pa.Table]] = []  # (temporary, final, table)
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                value = partition_value(batch_view(batch.schema))
                for hour, rows in _hour_partitions(batch).items():
                    part = batch.take(pa.array(rows)) if len(rows) != batch.num_rows else batch
                    directory = f"{self.root}/feature_view={value}/hour={hour}"
                    self.filesystem.create_dir(directory, recursive=True)
                    name = f"{self._writer_part}-{self._token}-{next(self._seq):08d}.parquet"
                    temporary = f"{directory}/.{name}.tmp"
                    table = pa.Table.from_batches([part])
                    written.append((temporary, f"{directory}/{name}", table))
                    pq.write_table(table, temporary, filesystem=self.filesystem, **_PARQUET_OPTIONS)
            self._publish(written)
        except BaseException as exc:
            self._remove([t for t, _, _ in written] + [f for _, f, _ in written])
            if isinstance(exc, OSError) and self.filesystem.type_name in OBJECT_STORES:
                # the writer logs this line once per outage: say why (no bucket, refused keys)
                reason = explain_store_error(exc, self.filesystem, bucket_of(self.root))
                raise SampleLogLocationError(reason) from exc
            raise

    def _publish(self, written: list[tuple[str, str, pa.Table]]) -> None:
        import pyarrow.parquet as pq

        for temporary, final, table in written:
            try:
                self.filesystem.move(temporary, final)
            except OSError:  # object stores without rename: the temp name is ignored later
                pq.write_table(table, final, filesystem=self.filesystem, **_PARQUET_OPTIONS)
                self.filesystem.delete_file(temporary)

    def _remove(self, paths: list[str]) -> None:
        """Delete what a failed flush left (best effort: the file system may be failing)."""
        for path in paths:
            try:
                self.filesystem.delete_file(path)
            except Exception:
                pass

    def close(self) -> None:
        pass


def hour_label(micros: int) -> str:
    """The ``hour=`` partition value of a UTC microsecond time."""
    hour = datetime.fromtimestamp(micros // 3_600_000_000 * 3600, tz=timezone.utc)
    return hour.strftime("%Y-%m-%dT%H")


__all__ = [
    "OBJECT_STORES",
    "TIME",
    "ParquetSink",
    "SampleLogLocationError",
    "SampleSink",
    "SqlSink",
    "check_bucket",
    "endpoint_of",
    "explain_store_error",
    "hour_label",
    "open_location",
    "partition_value",
    "plain_view",
    "resolve_filesystem",
]
