"""Shared test support: the demo repo's time anchor, serving by feature refs, fault injection
into the online store through Feast's own write path, and reading what the check found."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values

from feast_parity import demo

BATCH_REFS = [
    "user_engagement:click_through_rate",
    "user_engagement:watch_minutes",
    "user_engagement:sessions",
    "user_engagement:country",
    "user_engagement:device",
    "video_stats:popularity",
    "video_stats:age_days",
    "video_stats:category",
]


def now_hour() -> datetime:
    """The demo data's last snapshot time: now, floored to the hour."""
    return datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def serve_refs(
    repo: Path, requests: int, seed: int = 1, users: int = 300, videos: int = 100
) -> None:
    """Serve requests of 10 distinct (user, video) pairs by feature refs, then flush the log;
    fail if the sample log dropped anything (a fault test must see every sampled row)."""
    store = FeatureStore(repo_path=str(repo))
    rng = np.random.default_rng(seed)
    for _ in range(requests):
        user_ids = rng.choice(users, size=10, replace=False) + demo.FIRST_USER
        video_ids = rng.choice(videos, size=10, replace=False) + demo.FIRST_VIDEO
        rows = [{"user_id": int(u), "video_id": int(v)} for u, v in zip(user_ids, video_ids)]
        store.get_online_features(BATCH_REFS, entity_rows=rows)
    provider = store._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert not any(v for k, v in stats.items() if "drop" in k or "error" in k), stats


def fails(report: dict) -> list[tuple[str, str]]:
    """(kind, feature or view) of every fail finding, sorted."""
    return sorted(
        (f["kind"], f.get("feature") or f.get("feature_view"))
        for f in report["findings"]
        if f["severity"] == "fail"
    )


def feature(report: dict, name: str) -> dict:
    """The report's row of one feature ref."""
    return next(f for f in report["features"] if f["feature"] == name)


SOURCES = {
    "user_engagement": ("user_engagement.parquet", "user_id"),
    "video_stats": ("video_stats.parquet", "video_id"),
}


def latest_rows(repo: Path, view: str) -> pd.DataFrame:
    """The newest source row per entity, as materialization wrote it online."""
    file_name, key = SOURCES[view]
    frame = pd.read_parquet(repo / "data" / file_name)
    return frame.sort_values("event_timestamp").groupby(key).tail(1).reset_index(drop=True)


def write_online(
    repo: Path,
    view_name: str,
    rows: pd.DataFrame,
    override: Callable[[str, Any], ValueProto | None] | None = None,
) -> int:
    """Write ``rows`` to the online store with their own event timestamps.

    ``override(feature, value)`` may return a ValueProto to write instead of the normal
    conversion (to plant a value of another type).
    """
    store = FeatureStore(repo_path=str(repo))
    view = store.get_feature_view(view_name)
    key = SOURCES[view_name][1]
    batch = []
    for record in rows.to_dict("records"):
        entity = EntityKeyProto(
            join_keys=[key], entity_values=[ValueProto(int64_val=int(record[key]))]
        )
        values = {}
        for field in view.features:
            planted = override(field.name, record[field.name]) if override else None
            if planted is None:
                planted = python_values_to_proto_values(
                    [record[field.name]], field.dtype.to_value_type()
                )[0]
            values[field.name] = planted
        ts: datetime = pd.Timestamp(record["event_timestamp"]).to_pydatetime()
        batch.append((entity, values, ts, ts))
    online = store.config.online_store
    if getattr(online, "skip_dedup", None) is False:
        # Redis keeps the stored row when a write carries the same event time (Feast's write
        # dedup), so a fault planted at the row's own event time would be dropped silently. A
        # faulty writer would have written it first; here it replaces the row, so dedup is off
        # for this store instance only (a fresh FeatureStore per call).
        online.skip_dedup = True
    provider = store._get_provider()
    provider.online_write_batch(store.config, view, batch, progress=None)
    return len(batch)


# -- the planted faults several tests share --------------------------------------------------------


def skew_a_tenth(repo: Path) -> pd.DataFrame:
    """Serve ``watch_minutes * 1.5 + 1`` for every user with ``user_id % 10 == 3`` (true skew,
    not a fill value); returns the rows written."""
    rows = latest_rows(repo, "user_engagement")
    tenth = rows[rows["user_id"] % 10 == 3].copy()
    tenth["watch_minutes"] = tenth["watch_minutes"] * 1.5 + 1.0
    write_online(repo, "user_engagement", tenth)
    return tenth


def zero_a_fifth(repo: Path) -> pd.DataFrame:
    """Serve the fill value ``click_through_rate = 0.0`` for every fifth user."""
    rows = latest_rows(repo, "user_engagement")
    fifth = rows[rows["user_id"] % 5 == 0].copy()
    fifth["click_through_rate"] = np.float32(0.0)
    write_online(repo, "user_engagement", fifth)
    return fifth


def age_days_as_string(repo: Path) -> None:
    """Write every video's ``age_days`` online as a string (a type change on one side)."""

    def as_string(name: str, value: Any) -> ValueProto | None:
        return ValueProto(string_val=str(value)) if name == "age_days" else None

    write_online(repo, "video_stats", latest_rows(repo, "video_stats"), override=as_string)


def stall_video_stats(repo: Path, days: int = 3) -> None:
    """Materialize ``video_stats`` only up to ``days`` ago and ``user_engagement`` up to now
    (a repo built with ``materialize=False``)."""
    from datetime import timedelta

    now = datetime.now(timezone.utc)
    demo.materialize(repo, end=now - timedelta(days=days), views=["video_stats"], days=6)
    demo.materialize(repo, end=now, views=["user_engagement"], days=6)
