"""Fault injection into a real demo repo's online store, through Feast's own write path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from feast import FeatureStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values

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
