"""Stored check runs and their per-feature / per-view metrics, for trends and detectors.

A run's id is deterministic per (project, window), and storing a run first deletes any earlier
run with the same id in the same transaction, so re-running a window never duplicates metrics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from feast_parity.parity.samplelog import metadata

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
    sa.Column("mismatch_rate", sa.Float),
    sa.Column("stale_rate", sa.Float),
    sa.Column("silent_default_rate", sa.Float),
    sa.Column("online_null_rate", sa.Float),
    sa.Column("offline_null_rate", sa.Float),
    sa.Column("psi", sa.Float),
    sa.Column("ks_statistic", sa.Float),
    sa.Column("ks_pvalue", sa.Float),
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

METRICS = (
    "mismatch_rate",
    "stale_rate",
    "silent_default_rate",
    "online_null_rate",
    "offline_null_rate",
    "psi",
    "ks_statistic",
    "ks_pvalue",
)


def store_run(engine: sa.Engine, report: Mapping[str, Any]) -> None:
    """Store (or replace) a run, its metrics and findings in one transaction."""
    metadata.create_all(engine, checkfirst=True)
    run_id = report["run_id"]
    end = report["window"]["end"]
    with engine.begin() as conn:
        for table in (findings_table, view_metrics_table, feature_metrics_table):
            conn.execute(table.delete().where(table.c.run_id == run_id))
        conn.execute(runs_table.delete().where(runs_table.c.run_id == run_id))
        conn.execute(
            runs_table.insert().values(
                run_id=run_id,
                project=report["project"],
                window_start=report["window"]["start"],
                window_end=end,
                generated_at=report["generated_at"],
                samples=report["samples"],
                status=report["status"],
                report=json.dumps(report, default=str),
            )
        )
        if report["features"]:
            conn.execute(
                feature_metrics_table.insert(),
                [
                    {
                        "run_id": run_id,
                        "window_end": end,
                        "feature": f["feature"],
                        "status": f["status"],
                        "compared": f["compared"],
                        **{m: f.get(m) for m in METRICS},
                    }
                    for f in report["features"]
                ],
            )
        if report["feature_views"]:
            conn.execute(
                view_metrics_table.insert(),
                [
                    {
                        "run_id": run_id,
                        "window_end": end,
                        "feature_view": v["feature_view"],
                        "status": v["status"],
                        "served_lag_p50": v["served_lag_seconds"].get("p50"),
                        "served_lag_p95": v["served_lag_seconds"].get("p95"),
                        "served_lag_p99": v["served_lag_seconds"].get("p99"),
                        "materialization_lag_seconds": v.get("materialization_lag_seconds"),
                        "source_lag_seconds": v.get("source_lag_seconds"),
                    }
                    for v in report["feature_views"]
                ],
            )
        if report["findings"]:
            conn.execute(
                findings_table.insert(),
                [
                    {
                        "run_id": run_id,
                        "kind": f["kind"],
                        "feature": f.get("feature"),
                        "feature_view": f.get("feature_view"),
                        "severity": f["severity"],
                        "message": f["message"],
                        "evidence": json.dumps(f.get("evidence"), default=str),
                    }
                    for f in report["findings"]
                ],
            )


def load_runs(engine: sa.Engine, project: str | None = None) -> list[dict[str, Any]]:
    """Stored runs, oldest window first (the report JSON of each)."""
    metadata.create_all(engine, checkfirst=True)
    query = sa.select(runs_table.c.report).order_by(runs_table.c.window_end)
    if project is not None:
        query = query.where(runs_table.c.project == project)
    with engine.connect() as conn:
        return [json.loads(r) for r in conn.execute(query).scalars()]
