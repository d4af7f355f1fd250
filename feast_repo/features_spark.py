"""The demo's feature definitions with Spark sources (``offline_store: type: spark``).

The same views as ``features.py``; their sources are ``SparkSource`` over the Parquet files
``generate_data.py`` writes, so the check can run with ``--engine spark`` (docs/spark.md).
"""

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float32, Float64, Int64, String
from feast.value_type import ValueType

DATA_DIR = Path(__file__).parent / "data"

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
video = Entity(name="video", join_keys=["video_id"], value_type=ValueType.INT64)

user_engagement_source = SparkSource(
    name="user_engagement_source",
    path=str(DATA_DIR / "user_engagement.parquet"),
    file_format="parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

video_stats_source = SparkSource(
    name="video_stats_source",
    path=str(DATA_DIR / "video_stats.parquet"),
    file_format="parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

user_engagement = FeatureView(
    name="user_engagement",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[
        Field(name="click_through_rate", dtype=Float32),
        Field(name="watch_minutes", dtype=Float64),
        Field(name="sessions", dtype=Int64),
        Field(name="country", dtype=String),
        Field(name="device", dtype=String),
    ],
    source=user_engagement_source,
    owner="recs-team@example.com",
    tags={"parity.freshness_slo": "12h", "team": "recs"},
)

video_stats = FeatureView(
    name="video_stats",
    entities=[video],
    ttl=timedelta(days=1),
    schema=[
        Field(name="popularity", dtype=Float64),
        Field(name="age_days", dtype=Int64),
        Field(name="category", dtype=String),
    ],
    source=video_stats_source,
    owner="recs-team@example.com",
    tags={"team": "recs"},
)


@on_demand_feature_view(
    sources=[user_engagement, video_stats],
    schema=[Field(name="affinity_score", dtype=Float64)],
    mode="python",
)
def ranking_signals(inputs: dict) -> dict:
    """Click-through rate weighted by popularity: what the ranker multiplies in."""
    return {
        "affinity_score": [
            (ctr or 0.0) * (pop or 0.0)
            for ctr, pop in zip(inputs["click_through_rate"], inputs["popularity"])
        ]
    }


ranking_model_v1 = FeatureService(
    name="ranking_model_v1",
    features=[user_engagement, video_stats, ranking_signals],
    owner="recs-team@example.com",
)
