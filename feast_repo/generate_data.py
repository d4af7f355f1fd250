"""Write the demo's source data: deterministic, seeded, no downloads.

Every 6 hours over the last ``--days`` days, one row per user and one per video. The last
snapshot is at ``--end`` (default: now, floored to the hour), so materializing up to now makes
the online store fresh.

    python feast_repo/generate_data.py --users 1000 --videos 300 --days 14
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

COUNTRIES = ["US", "BR", "IN", "DE", "JP", "FR", "GB", "MX"]
DEVICES = ["ios", "android", "web", "tv"]
CATEGORIES = ["music", "gaming", "news", "sports", "education", "comedy"]
SNAPSHOT_HOURS = 6


def snapshot_times(end: datetime, days: int) -> pd.DatetimeIndex:
    """Snapshot times every 6 hours, ending exactly at ``end``."""
    count = days * 24 // SNAPSHOT_HOURS
    return pd.DatetimeIndex(
        [end - timedelta(hours=SNAPSHOT_HOURS * i) for i in range(count - 1, -1, -1)]
    )


def user_engagement(users: int, times: pd.DatetimeIndex, rng: np.random.Generator) -> pd.DataFrame:
    user_ids = np.arange(1001, 1001 + users, dtype=np.int64)
    country = rng.choice(COUNTRIES, size=users, p=[0.3, 0.15, 0.15, 0.1, 0.1, 0.08, 0.07, 0.05])
    device = rng.choice(DEVICES, size=users)
    base_ctr = rng.beta(2, 30, size=users)
    base_minutes = rng.gamma(2.0, 20.0, size=users)
    frames = []
    for ts in times:
        frames.append(
            pd.DataFrame(
                {
                    "user_id": user_ids,
                    "click_through_rate": np.clip(
                        base_ctr * rng.lognormal(0, 0.1, users), 0, 1
                    ).astype(np.float32),
                    "watch_minutes": np.round(base_minutes * rng.lognormal(0, 0.2, users), 3),
                    "sessions": rng.poisson(3, users).astype(np.int64) + 1,
                    "country": country,
                    "device": device,
                    "event_timestamp": ts,
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    df["created"] = df["event_timestamp"]
    return df


def video_stats(videos: int, times: pd.DatetimeIndex, rng: np.random.Generator) -> pd.DataFrame:
    video_ids = np.arange(50001, 50001 + videos, dtype=np.int64)
    category = rng.choice(CATEGORIES, size=videos)
    base_pop = rng.pareto(2.5, size=videos) + 0.1
    published = times[0] - pd.to_timedelta(rng.integers(0, 365, size=videos), unit="D")
    frames = []
    for ts in times:
        frames.append(
            pd.DataFrame(
                {
                    "video_id": video_ids,
                    "popularity": np.round(base_pop * rng.lognormal(0, 0.05, videos), 4),
                    "age_days": np.asarray((ts - published).days, dtype=np.int64),
                    "category": category,
                    "event_timestamp": ts,
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    df["created"] = df["event_timestamp"]
    return df


def generate(
    data_dir: Path,
    users: int = 1000,
    videos: int = 300,
    days: int = 14,
    end: datetime | None = None,
    seed: int = 7,
) -> datetime:
    """Write both Parquet sources into ``data_dir``; return the last snapshot time."""
    if end is None:
        end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    rng = np.random.default_rng(seed)
    times = snapshot_times(end, days)
    data_dir.mkdir(parents=True, exist_ok=True)
    # microsecond timestamps: Spark (the Spark offline store, features_spark.py) rejects
    # nanosecond ones, and every other store reads either
    micros = {"coerce_timestamps": "us", "allow_truncated_timestamps": True}
    user_engagement(users, times, rng).to_parquet(data_dir / "user_engagement.parquet", **micros)
    video_stats(videos, times, rng).to_parquet(data_dir / "video_stats.parquet", **micros)
    return end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    end = generate(args.data_dir, args.users, args.videos, args.days, seed=args.seed)
    print(f"wrote {args.data_dir} (last snapshot {end.isoformat()})")


if __name__ == "__main__":
    main()
