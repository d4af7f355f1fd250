"""Support for the serving end-to-end tests: where a test's sample log goes, and reading it back.

A :class:`Sink` is one place the serving hook writes to, as ``feature_store.yaml`` names it:
the SQL sink (``parity.store``, the default) or the Parquet sink (``parity.sample_log``). Tests
read what was logged only through the public reader, ``feast_parity.read_samples`` (canonical
``value:<f>``, ``status:<f>``, ``hash:<f>``, ``kind:<f>`` and ``key:<join key>`` columns), and
look at the raw v3 batches (``Sink.batches``) only for what that reader does not expose: the log
version, the declared types, ``sample_rate`` and ``seed`` in force when a batch was written.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from feast_parity import read_samples
from feast_parity.parity.samplelog import META_DECLARED, META_VERSION, META_VIEW, from_ipc
from feast_parity.store.engine import open_store
from feast_parity.store.schema import sample_batches_table

SINKS = ("sql", "parquet")
VIEW_KEYS = {
    "user_engagement": ("user_id",),
    "video_stats": ("video_id",),
    "ranking_signals": ("user_id", "video_id"),
}


@dataclass(frozen=True)
class Sink:
    """One sample-log destination: ``config`` goes to ``demo.write_config``."""

    kind: str  # "sql" or "parquet"
    url: str  # the parity store (the SQL sink writes here; with Parquet it stays empty)
    sample_log: str | None  # absolute path of the Parquet dataset (None for the SQL sink)
    config: dict[str, Any] = field(default_factory=dict)

    def table(self, view: str | None = None) -> pa.Table:
        return read_samples(self.url, feature_view=view, sample_log=self.sample_log)

    def rows(self, view: str) -> list[dict[str, Any]]:
        """The log rows of one view (only that view's columns)."""
        return self.table(view).to_pylist()

    def by_view(self, views: Any = VIEW_KEYS) -> dict[str, list[dict[str, Any]]]:
        return {view: self.rows(view) for view in views}

    def request_ids(self) -> Counter[str]:
        """Log rows per request id, over every view."""
        table = self.table()
        if "request_id" not in table.column_names:
            return Counter()
        return Counter(table.column("request_id").to_pylist())

    def batches(self) -> list[pa.Table]:
        """The raw v3 batches as written (SQL rows or Parquet files), in write order."""
        if self.kind == "parquet":
            assert self.sample_log is not None
            root = Path(self.sample_log)
            if not root.exists():
                return []
            files = sorted(p for p in root.rglob("*.parquet") if not p.name.startswith("."))
            return [pq.read_table(p) for p in files]
        engine = open_store(self.url)
        try:
            with engine.connect() as conn:
                payloads = conn.execute(
                    sa.select(sample_batches_table.c.payload).order_by(
                        sample_batches_table.c.batch_id
                    )
                ).scalars()
                return [from_ipc(p) for p in payloads]
        finally:
            engine.dispose()

    def sql_batch_count(self) -> int:
        engine = open_store(self.url)
        try:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        sa.select(sa.func.count()).select_from(sample_batches_table)
                    ).scalar()
                )
        finally:
            engine.dispose()


def make_sink(
    kind: str,
    directory: Path,
    *,
    repo: Path | None = None,
    name: str = "samples",
    store_url: str | None = None,
    parity_extra: dict[str, Any] | None = None,
) -> Sink:
    """A sink of ``kind`` for one test. The SQL sink writes ``store_url`` (default a SQLite
    file in ``directory``); the Parquet sink writes ``<repo>/data/<name>`` given relative to
    the repo (as ``parity.sample_log: data/<name>``) when ``repo`` is given, else
    ``directory/<name>``; its SQL store is a SQLite file of its own that must stay empty."""
    directory.mkdir(parents=True, exist_ok=True)
    extra = dict(parity_extra or {})
    url = store_url or f"sqlite:///{directory / (name + '.db')}"
    if kind == "sql":
        return Sink("sql", url, None, {"store_url": url, "parity_extra": extra})
    if kind != "parquet":
        raise ValueError(kind)
    if repo is not None:
        location, absolute = f"data/{name}", str(repo / "data" / name)
    else:
        location = absolute = str(directory / name)
    extra["sample_log"] = location
    return Sink("parquet", url, absolute, {"store_url": url, "parity_extra": extra})


def batch_meta(batch: pa.Table) -> tuple[int, str, dict[str, str]]:
    """(log version, feature view, declared types) of a raw batch."""
    metadata = batch.schema.metadata or {}
    return (
        int(metadata[META_VERSION]),
        metadata[META_VIEW].decode(),
        json.loads(metadata[META_DECLARED]),
    )


def view_key(row: dict[str, Any], view: str) -> tuple[Any, ...]:
    """The view's join-key values of a log row (``key:<k>`` columns)."""
    return tuple(row[f"key:{k}"] for k in VIEW_KEYS[view])
