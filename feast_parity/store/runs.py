"""Stored check runs and their per-feature / per-view metrics, for trends and detectors.

A run's id is deterministic per (project, window), and storing a run first deletes any earlier
run with the same id in the same transaction, so re-running a window never duplicates metrics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from feast_parity.parity.metrics import stored_feature_metrics
from feast_parity.store.schema import (
    feature_metrics_table,
    findings_table,
    runs_table,
    view_metrics_table,
)

METRICS = stored_feature_metrics()  # the metrics table's stored feature columns


def _lock_run(conn: sa.Connection, run_id: str) -> None:
    """Serialise writers of one run id: two checks of one window replace each other's rows in
    turn instead of racing into the unique constraints (PostgreSQL advisory lock; SQLite
    serialises writing transactions itself)."""
    if conn.dialect.name == "postgresql":
        key = int(run_id[:15], 16)  # 60 bits of the run id: fits a signed BIGINT
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def store_run(engine: sa.Engine, report: Mapping[str, Any]) -> None:
    """Store (or replace) a run, its metrics and findings in one transaction."""
    run_id = report["run_id"]
    end = report["window"]["end"]
    with engine.begin() as conn:
        _lock_run(conn, run_id)
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
    query = sa.select(runs_table.c.report).order_by(runs_table.c.window_end)
    if project is not None:
        query = query.where(runs_table.c.project == project)
    with engine.connect() as conn:
        return [json.loads(r) for r in conn.execute(query).scalars()]
