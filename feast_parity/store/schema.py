"""Tables of the parity store, and their creation and migration (store schema versions).

Version 1 held the JSON-cell sample log without ``writer``/``seed``; version 2 added both;
version 3 adds ``parity_sample_batches`` (the columnar log: one row of Arrow IPC bytes per
written batch). Older stores are migrated in place by :func:`ensure_schema` (DDL only: old rows
stay readable as they are); a store written by a newer version is refused.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from feast_parity.parity.metrics import stored_feature_metrics
from feast_parity.parity.samplelog import LOG_VERSION, NewerLogError

logger = logging.getLogger("feast_parity")

STORE_VERSION = LOG_VERSION
metadata = sa.MetaData()

samples_v2_table = sa.Table(
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

sample_batches_table = sa.Table(
    "parity_sample_batches",
    metadata,
    sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("log_version", sa.Integer, nullable=False),
    sa.Column("feature_view", sa.String(255), nullable=False),
    sa.Column("min_request_time", sa.Float, nullable=False),
    sa.Column("max_request_time", sa.Float, nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("writer", sa.String(64), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Index("ix_parity_batches_time", "max_request_time", "min_request_time"),
    sa.Index("ix_parity_batches_view_time", "feature_view", "max_request_time"),
)

meta_table = sa.Table(
    "parity_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# --- check runs -----------------------------------------------------------------------------

runs_table = sa.Table(
    "parity_runs",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("window_start", sa.String(40), nullable=False),
    sa.Column("window_end", sa.String(40), nullable=False),
    sa.Column("generated_at", sa.String(40), nullable=False),
    sa.Column("samples", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("report", sa.Text, nullable=False),
)

feature_metrics_table = sa.Table(
    "parity_feature_metrics",
    metadata,
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("window_end", sa.String(40), nullable=False),
    sa.Column("feature", sa.String(512), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("compared", sa.BigInteger, nullable=False),
    # one column per stored metric of the metrics table (parity/metrics.py)
    *[sa.Column(name, sa.Float) for name in stored_feature_metrics()],
    sa.UniqueConstraint("run_id", "feature", name="uq_parity_feature_metrics"),
)

view_metrics_table = sa.Table(
    "parity_view_metrics",
    metadata,
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("window_end", sa.String(40), nullable=False),
    sa.Column("feature_view", sa.String(255), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("served_lag_p50", sa.Float),
    sa.Column("served_lag_p95", sa.Float),
    sa.Column("served_lag_p99", sa.Float),
    sa.Column("materialization_lag_seconds", sa.Float),
    sa.Column("source_lag_seconds", sa.Float),
    sa.UniqueConstraint("run_id", "feature_view", name="uq_parity_view_metrics"),
)

findings_table = sa.Table(
    "parity_findings",
    metadata,
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("feature", sa.String(512)),
    sa.Column("feature_view", sa.String(255)),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("evidence", sa.Text, nullable=False),
)

# --- training datasets and freshness history --------------------------------------------------

training_datasets_table = sa.Table(
    "parity_training_datasets",
    metadata,
    sa.Column("dataset_id", sa.String(32), primary_key=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("feature_refs", sa.Text, nullable=False),
    sa.Column("entity_start", sa.Float),
    sa.Column("entity_end", sa.Float),
    sa.Column("row_count", sa.BigInteger, nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("profile", sa.Text, nullable=False),
    sa.Index("ix_parity_training_project_time", "project", "created_at"),
)

freshness_runs_table = sa.Table(
    "parity_freshness_runs",
    metadata,
    sa.Column("run_at", sa.Float, nullable=False),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("feature_view", sa.String(255), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("slo_seconds", sa.Float),
    sa.Column("served_lag_p95", sa.Float),
    sa.Column("materialization_lag_seconds", sa.Float),
    sa.Column("source_lag_seconds", sa.Float),
    sa.Index("ix_parity_freshness_view_time", "feature_view", "run_at"),
)


# --- alerts -----------------------------------------------------------------------------------

alerts_table = sa.Table(
    "parity_alerts",
    metadata,
    sa.Column("alert_id", sa.String(32), primary_key=True),
    sa.Column("project", sa.String(255), nullable=False, index=True),
    sa.Column("signal", sa.String(64), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("target_kind", sa.String(20), nullable=False),
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("severity", sa.String(12), nullable=False),
    sa.Column("peak_severity", sa.String(12), nullable=False),
    sa.Column("first_abnormal_at", sa.String(40), nullable=False),
    sa.Column("opened_at", sa.String(40), nullable=False),
    sa.Column("opened_run_id", sa.String(32), nullable=False),
    sa.Column("last_abnormal_at", sa.String(40), nullable=False),
    sa.Column("resolved_at", sa.String(40)),
    sa.Column("resolved_run_id", sa.String(32)),
    sa.Column("abnormal_runs", sa.Integer, nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("baseline_mean", sa.Float),
    sa.Column("baseline_std", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("corroboration", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

alert_events_table = sa.Table(
    "parity_alert_events",
    metadata,
    sa.Column("alert_id", sa.String(32), nullable=False, index=True),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("event", sa.String(20), nullable=False),
    sa.Column("severity", sa.String(12), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("message", sa.Text, nullable=False),
    sa.UniqueConstraint("alert_id", "run_id", "event", name="uq_parity_alert_events"),
)

_SCHEMA_LOCK_KEY = 0x70617269747931  # "parity1": PostgreSQL advisory lock of schema creation


def _detect_version(conn: sa.Connection) -> int:
    """Version of a store that predates the meta table: v1 lacked the ``writer`` column."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("parity_samples")}
    return 2 if "writer" in columns else 1


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


def _migrate_v2_to_v3(conn: sa.Connection) -> None:
    sample_batches_table.create(conn, checkfirst=True)


MIGRATIONS = {1: _migrate_v1_to_v2, 2: _migrate_v2_to_v3}  # version -> step to version + 1


def ensure_schema(engine: sa.Engine, *, attempts: int = 5) -> None:
    """Create the tables on first use, migrate older ones, refuse newer ones.

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
                    version = _detect_version(conn) if had_samples else STORE_VERSION
                    conn.execute(
                        meta_table.insert().values(key="log_schema_version", value=str(version))
                    )
                else:
                    try:
                        version = int(found)
                    except ValueError:
                        raise NewerLogError(
                            f"unreadable store schema version {found!r} in parity_meta"
                        ) from None
                if version > STORE_VERSION:
                    raise NewerLogError(
                        f"the sample log was written by a newer feast-parity (log schema "
                        f"v{version}, this version reads up to v{STORE_VERSION}): "
                        "upgrade feast-parity"
                    )
                while version < STORE_VERSION:
                    MIGRATIONS[version](conn)
                    version += 1
                    conn.execute(
                        meta_table.update()
                        .where(meta_table.c.key == "log_schema_version")
                        .values(value=str(version))
                    )
                    logger.warning("feast-parity: migrated the parity store to schema v%d", version)
            return
        except sa.exc.DBAPIError as exc:
            lost_race = isinstance(exc, (sa.exc.IntegrityError, sa.exc.ProgrammingError)) or (
                "already exists" in str(exc.orig)
            )
            if not lost_race or exc.connection_invalidated or attempt == attempts - 1:
                raise  # e.g. the store is unreachable: no point in retrying here
            time.sleep(0.02 * (attempt + 1))
