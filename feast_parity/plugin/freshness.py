"""Freshness of feature views: served, materialization and source lag against the view's SLO.

* served lag: request time - served event time of the sampled rows (p50/p95/p99);
* materialization lag: now - end of the last materialization interval in the registry;
* source lag: now - newest event in the view's offline source, asked through Feast's offline
  store (``pull_latest_from_table_or_query``), never by reading the source behind Feast's back.

The SLO is the view's tag ``parity.freshness_slo`` (``2h``, ``1d``), else 2 x ttl. Used by the
check (per view of its report), ``feast-parity freshness`` and lineage.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from feast_parity.parity.freshness import freshness_status, parse_duration
from feast_parity.parity.stats import percentiles
from feast_parity.plugin.errors import CheckError
from feast_parity.plugin.registry import ViewCatalog

logger = logging.getLogger("feast_parity")

SERVED_LAG_WINDOW = timedelta(hours=24)


def view_slo_seconds(view: Any) -> tuple[float | None, str]:
    """The view's freshness SLO in seconds and where it came from (tag, or 2 x ttl)."""
    tag = (view.tags or {}).get("parity.freshness_slo")
    if tag:
        try:
            return parse_duration(tag), f"tag parity.freshness_slo={tag}"
        except ValueError as exc:
            raise CheckError(f"feature view {view.name}: tag parity.freshness_slo: {exc}") from None
    ttl = view.ttl.total_seconds() if getattr(view, "ttl", None) else 0.0
    if ttl > 0:
        return 2 * ttl, "2 x ttl"
    return None, "none (no tag, ttl 0)"


def materialization_lag_seconds(view: Any, now: datetime) -> float | None:
    """now - end of the last materialization interval recorded in the registry."""
    intervals = getattr(view, "materialization_intervals", None) or []
    if not intervals:
        return None
    end = max(interval[1] for interval in intervals)
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    return max((now - end).total_seconds(), 0.0)


def source_lag_seconds(store: Any, view: Any, now: datetime, lookback: timedelta) -> float | None:
    """now - newest event in the view's offline source, asked through Feast's offline store."""
    import pandas as pd

    source = view.batch_source
    reverse = {v: k for k, v in (source.field_mapping or {}).items()}
    join_keys = [reverse.get(col.name, col.name) for col in view.entity_columns]
    join_keys = [k for k in join_keys if k != "__dummy_id"]
    try:
        provider = store._get_provider()
        job = provider.offline_store.pull_latest_from_table_or_query(
            config=store.config,
            data_source=source,
            join_key_columns=join_keys,
            feature_name_columns=[],
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column or None,
            start_date=now - lookback,
            end_date=now,
        )
        frame = job.to_df()
    except Exception as exc:  # a broken source is reported, not raised
        logger.warning("feast-parity: could not read the source of %s: %s", view.name, exc)
        return None
    if frame.empty:
        return None
    newest = pd.to_datetime(frame[source.timestamp_field], utc=True).max()
    return max((now - newest.to_pydatetime()).total_seconds(), 0.0)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def view_freshness(store: Any, view: Any, now: datetime) -> dict[str, Any]:
    """Materialization and source lag of a view, its SLO and where the SLO came from."""
    slo, slo_source = view_slo_seconds(view)
    lookback = timedelta(seconds=max(4 * (slo or 0.0), 7 * 86400))
    online = bool(getattr(view, "online", True))
    return {
        "materialization_lag_seconds": _round(materialization_lag_seconds(view, now))
        if online
        else None,
        "source_lag_seconds": _round(source_lag_seconds(store, view, now, lookback)),
        "slo_seconds": slo,
        "slo_source": slo_source,
        "ttl_seconds": view.ttl.total_seconds() if getattr(view, "ttl", None) else 0.0,
    }


def served_lag_percentiles(
    sample_log: Any, feature_view: str, now: datetime, window: timedelta = SERVED_LAG_WINDOW
) -> dict[str, float | None]:
    """request time - served event time of a view's samples in the window, p50/p95/p99."""
    lags = []
    for rows, _ in sample_log.iter_view(feature_view, now - window, now + timedelta(seconds=1)):
        if rows is None:
            continue
        has = rows.has_event_time
        lags.append((rows.request_time[has] - rows.event_time[has]) / 1e6)
    return percentiles(np.concatenate(lags) if lags else [])


def freshness(
    store: Any, *, now: datetime | None = None, record: bool = True
) -> list[dict[str, Any]]:
    """Freshness of every batch and stream view, worst first; stored as one run when
    ``record`` (``feast-parity freshness``)."""
    from feast_parity.plugin.session import open_sample_log
    from feast_parity.store.datasets import record_freshness

    now = now or datetime.now(timezone.utc)
    engine, sample_log = open_sample_log(store)
    views = []
    for info in ViewCatalog(store.registry, store.project, allow_cache=False).all():
        if info.on_demand:
            continue
        served = served_lag_percentiles(sample_log, info.name, now)
        lags = view_freshness(store, info.view, now)
        status, ratio = freshness_status(
            lags["slo_seconds"],
            served["p95"],
            lags["materialization_lag_seconds"],
            lags["source_lag_seconds"],
        )
        views.append(
            {
                "feature_view": info.name,
                "served_lag_seconds": served,
                **lags,
                "status": status,
                "over_ratio": ratio,
            }
        )
    rank = {"fail": 0, "warn": 1, "ok": 2}
    views.sort(key=lambda v: (rank[v["status"]], -(v["over_ratio"] or 0.0), v["feature_view"]))
    if record:
        record_freshness(engine, store.project, views)
    engine.dispose()
    return views
