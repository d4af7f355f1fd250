"""Training datasets and freshness runs in the parity store.

A training dataset is what one materialized ``get_historical_features`` read: its feature refs,
entity time range and row count, per feature where the value came from (view, source, ttl,
owner, tags, fingerprints, materialization intervals) and its training profile
(:mod:`feast_parity.parity.profiles`). A freshness run is one ``feast-parity freshness`` call:
its lags per view, so lag has a history.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from feast_parity.store.schema import freshness_runs_table, training_datasets_table


def record_dataset(
    engine: sa.Engine,
    *,
    project: str,
    feature_refs: Sequence[str],
    row_count: int,
    entity_start: datetime | None,
    entity_end: datetime | None,
    features: Mapping[str, Mapping[str, Any]],
    profile: Mapping[str, Any],
    created_at: datetime | None = None,
) -> str:
    """Store one training dataset; returns its id."""
    dataset_id = uuid.uuid4().hex
    created = (created_at or datetime.now(timezone.utc)).timestamp()
    with engine.begin() as conn:
        conn.execute(
            training_datasets_table.insert().values(
                dataset_id=dataset_id,
                project=project,
                created_at=created,
                feature_refs=json.dumps(list(feature_refs)),
                entity_start=entity_start.timestamp() if entity_start else None,
                entity_end=entity_end.timestamp() if entity_end else None,
                row_count=int(row_count),
                features=json.dumps(features, default=str),
                profile=json.dumps(profile, default=str),
            )
        )
    return dataset_id


def _dataset_row(row: Any) -> dict[str, Any]:
    mapping = row._mapping
    return {
        "dataset_id": mapping["dataset_id"],
        "project": mapping["project"],
        "created_at": datetime.fromtimestamp(mapping["created_at"], tz=timezone.utc).isoformat(),
        "feature_refs": json.loads(mapping["feature_refs"]),
        "entity_start": _iso(mapping["entity_start"]),
        "entity_end": _iso(mapping["entity_end"]),
        "row_count": mapping["row_count"],
        "features": json.loads(mapping["features"]),
        "profile": json.loads(mapping["profile"]),
    }


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def list_datasets(engine: sa.Engine, project: str) -> list[dict[str, Any]]:
    """Training datasets of a project, newest first."""
    query = (
        sa.select(training_datasets_table)
        .where(training_datasets_table.c.project == project)
        .order_by(training_datasets_table.c.created_at.desc())
    )
    with engine.connect() as conn:
        return [_dataset_row(r) for r in conn.execute(query)]


def record_freshness(engine: sa.Engine, project: str, views: Sequence[Mapping[str, Any]]) -> None:
    """Append one freshness run (one row per view) so lag has a history."""
    now = datetime.now(timezone.utc).timestamp()
    rows = [
        {
            "run_at": now,
            "project": project,
            "feature_view": v["feature_view"],
            "status": v["status"],
            "slo_seconds": v.get("slo_seconds"),
            "served_lag_p95": (v.get("served_lag_seconds") or {}).get("p95"),
            "materialization_lag_seconds": v.get("materialization_lag_seconds"),
            "source_lag_seconds": v.get("source_lag_seconds"),
        }
        for v in views
    ]
    if rows:
        with engine.begin() as conn:
            conn.execute(freshness_runs_table.insert(), rows)


def freshness_history(engine: sa.Engine, project: str, feature_view: str) -> list[dict[str, Any]]:
    """Stored freshness rows of a view, oldest first."""
    query = (
        sa.select(freshness_runs_table)
        .where(freshness_runs_table.c.project == project)
        .where(freshness_runs_table.c.feature_view == feature_view)
        .order_by(freshness_runs_table.c.run_at)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
