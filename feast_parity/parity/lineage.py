"""Training datasets and their reference profiles, stored beside the sample log.

A training dataset is what one materialized ``get_historical_features`` read: its feature refs,
entity time range and row count, per feature where the value came from (view, source, ttl,
owner, tags, fingerprints, materialization intervals) and a histogram sketch of the values
training received. The sketch is what "served vs trained-on" drift compares against.
Pure module: SQLAlchemy, numpy and pandas, no Feast.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from feast_parity.parity.samplelog import metadata
from feast_parity.parity.sketches import CategoricalHistogram, NumericHistogram, quantile_edges

NUMERIC_TYPES = {"Int32", "Int64", "Float32", "Float64"}
CATEGORICAL_TYPES = {"String", "Bool"}

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


def profile_column(values: Any, declared_type: str, bins: int = 10) -> dict[str, Any] | None:
    """A JSON-able histogram sketch of one feature's training values (None: type not binned).

    Numeric features get quantile edges of their own values (the pinned PSI binning, 10 bins
    plus two out-of-range bins); strings and bools get their categories plus "other".

    >>> p = profile_column([1.0, 2.0, 3.0, 4.0], "Float64", bins=2)
    >>> p["kind"], p["rows"], p["nulls"]
    ('numeric', 4, 0)
    """
    series = pd.Series(values)
    nulls = int(series.isna().sum())
    valid = series.dropna()
    hist: NumericHistogram | CategoricalHistogram
    if declared_type in NUMERIC_TYPES:
        numbers = pd.to_numeric(valid, errors="coerce").to_numpy(dtype=np.float64)
        finite = numbers[np.isfinite(numbers)]
        if finite.size == 0:
            return {"kind": "numeric", "rows": len(series), "nulls": nulls, "histogram": None}
        hist = NumericHistogram(quantile_edges(finite, bins=bins)).update(numbers)
        return {"kind": "numeric", "rows": len(series), "nulls": nulls, "histogram": hist.to_dict()}
    if declared_type in CATEGORICAL_TYPES:
        labels = np.asarray([str(v) for v in valid], dtype=object)
        hist = CategoricalHistogram(None).update(labels)
        return {
            "kind": "categorical",
            "rows": len(series),
            "nulls": nulls,
            "histogram": hist.to_dict(),
        }
    return None


def histogram_from_profile(profile: Mapping[str, Any]) -> NumericHistogram | CategoricalHistogram:
    """The stored sketch as a histogram object (``from_dict`` of the right class)."""
    if profile["kind"] == "numeric":
        return NumericHistogram.from_dict(profile["histogram"])
    return CategoricalHistogram.from_dict(profile["histogram"])


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
    metadata.create_all(engine, checkfirst=True)
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
    metadata.create_all(engine, checkfirst=True)
    query = (
        sa.select(training_datasets_table)
        .where(training_datasets_table.c.project == project)
        .order_by(training_datasets_table.c.created_at.desc())
    )
    with engine.connect() as conn:
        return [_dataset_row(r) for r in conn.execute(query)]


def latest_dataset_for(datasets: Sequence[Mapping[str, Any]], feature_ref: str) -> dict | None:
    """The newest dataset (of ``list_datasets``) that trained on ``feature_ref``."""
    for dataset in datasets:
        if feature_ref in dataset["features"]:
            return dict(dataset)
    return None


def record_freshness(engine: sa.Engine, project: str, views: Sequence[Mapping[str, Any]]) -> None:
    """Append one freshness run (one row per view) so lag has a history."""
    metadata.create_all(engine, checkfirst=True)
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
    metadata.create_all(engine, checkfirst=True)
    query = (
        sa.select(freshness_runs_table)
        .where(freshness_runs_table.c.project == project)
        .where(freshness_runs_table.c.feature_view == feature_view)
        .order_by(freshness_runs_table.c.run_at)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
