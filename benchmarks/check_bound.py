"""The bound the check is held against: the least work that answers "did serving match offline?".

For the demo-shaped sample log of ``check_log.py`` (a Parquet dataset, one directory per view):

1. **read**: the window's rows of each view, only the columns needed (keys, request time, the
   ``value:`` columns), with ``pyarrow.dataset`` and a filter on ``request_time``;
2. **join**: one DuckDB ``ASOF LEFT JOIN`` per view of the rows with the view's offline Parquet
   source on the join key and ``request_time >= event_timestamp`` (the on-demand view joins both
   sources and recomputes ``affinity_score = click_through_rate * popularity``); ttl is applied
   to the joined event time afterwards;
3. **compare**: every feature, served vs offline, in numpy (``==`` with null == null, Float32
   compared as float32).

It does no classification, drift, fill values, cohorts or report: a floor, not a competitor.

    .venv/bin/python benchmarks/check_bound.py REPO   # prints one JSON line
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_log import ODFV_FEATURES, USER_FEATURES, VIDEO_FEATURES, open_repo  # noqa: E402

TTL = timedelta(days=1)  # both batch views of the demo
ROW = "__row"


def _read(root: Path, view: str, columns: list[str], since: datetime, until: datetime) -> pa.Table:
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(root / f"feature_view={view}"), format="parquet", partitioning="hive")
    window = (ds.field("request_time") >= pa.scalar(since, pa.timestamp("us", "UTC"))) & (
        ds.field("request_time") < pa.scalar(until, pa.timestamp("us", "UTC"))
    )
    table = dataset.to_table(columns=columns, filter=window)
    return table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))


def _source(path: Path, key: str, features: list[str], since: datetime, until: datetime) -> Any:
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(path), format="parquet")
    reach = (ds.field("event_timestamp") >= pa.scalar(since - TTL)) & (
        ds.field("event_timestamp") <= pa.scalar(until)
    )
    return dataset.to_table(columns=[key, "event_timestamp", *features], filter=reach)


def _ordered(joined: pa.Table, n: int, name: str) -> np.ndarray:
    """A joined column in the log's row order (DuckDB returns its own order)."""
    rows = joined.column(ROW).to_numpy()
    values = joined.column(name).to_numpy(zero_copy_only=False)
    out = np.empty(n, dtype=values.dtype)
    out[rows] = values
    return out


def _same(served: np.ndarray, offline: np.ndarray) -> np.ndarray:
    if served.dtype.kind == "f" or offline.dtype.kind == "f":
        served = served.astype(np.float64)
        offline = offline.astype(np.float64)
        return (served == offline) | (np.isnan(served) & np.isnan(offline))
    return served == offline


def bound(repo_path: Path) -> dict[str, Any]:
    import duckdb

    repo = open_repo(repo_path)
    since, until = repo.since, repo.until
    data = repo.path / "data"
    timings = {"read_seconds": 0.0, "join_seconds": 0.0, "compare_seconds": 0.0}
    mismatches: dict[str, int] = {}
    rows = 0
    started = time.perf_counter()
    con = duckdb.connect()

    t = time.perf_counter()
    users = _source(data / "user_engagement.parquet", "user_id", list(USER_FEATURES), since, until)
    videos = _source(data / "video_stats.parquet", "video_id", list(VIDEO_FEATURES), since, until)
    con.register("users", users)
    con.register("videos", videos)
    timings["read_seconds"] += time.perf_counter() - t

    plans = (
        ("user_engagement", ["key:user_id"], USER_FEATURES),
        ("video_stats", ["key:video_id"], VIDEO_FEATURES),
        ("ranking_signals", ["key:user_id", "key:video_id"], ODFV_FEATURES),
    )
    for view, keys, features in plans:
        t = time.perf_counter()
        values = [f"value:{f}" for f in features]
        log = _read(repo.samples, view, [*keys, "request_time", *values], since, until)
        con.register("log", log)
        n = log.num_rows
        rows += n
        timings["read_seconds"] += time.perf_counter() - t

        t = time.perf_counter()
        if view == "user_engagement":
            sql = (
                "SELECT l.__row, s.event_timestamp AS offline_time, l.request_time, "
                + ", ".join(f"s.{f}" for f in features)
                + ' FROM log l ASOF LEFT JOIN users s ON l."key:user_id" = s.user_id '
                "AND l.request_time >= s.event_timestamp"
            )
        elif view == "video_stats":
            sql = (
                "SELECT l.__row, s.event_timestamp AS offline_time, l.request_time, "
                + ", ".join(f"s.{f}" for f in features)
                + ' FROM log l ASOF LEFT JOIN videos s ON l."key:video_id" = s.video_id '
                "AND l.request_time >= s.event_timestamp"
            )
        else:
            sql = (
                "SELECT l.__row, l.request_time, u.event_timestamp AS offline_time, "
                "v.event_timestamp AS offline_time_2, "
                "CAST(u.click_through_rate AS DOUBLE) * v.popularity AS affinity_score "
                'FROM log l ASOF LEFT JOIN users u ON l."key:user_id" = u.user_id '
                "AND l.request_time >= u.event_timestamp "
                'ASOF LEFT JOIN videos v ON l."key:video_id" = v.video_id '
                "AND l.request_time >= v.event_timestamp"
            )
        joined = con.sql(sql).to_arrow_table()
        con.unregister("log")
        timings["join_seconds"] += time.perf_counter() - t

        t = time.perf_counter()
        request = log.column("request_time").cast(pa.int64()).to_numpy()
        order = joined.column(ROW).to_numpy()
        ttl_us = int(TTL.total_seconds() * 1e6)
        expired = np.zeros(n, dtype=bool)  # no offline row within ttl: nothing to compare
        for column in ("offline_time", "offline_time_2"):
            if column in joined.column_names:
                micros = joined.column(column).cast(pa.timestamp("us", "UTC")).cast(pa.int64())
                offline_us = np.empty(n, dtype=np.int64)
                offline_us[order] = micros.fill_null(-(2**62)).to_numpy()
                expired |= request - offline_us > ttl_us
        for feature in features:
            served = log.column(f"value:{feature}").to_numpy(zero_copy_only=False)
            offline = _ordered(joined, n, feature)
            if features[feature][0] == "Float32":
                served = served.astype(np.float32)
                offline = offline.astype(np.float32)
            differs = ~_same(served, offline) & ~expired
            mismatches[f"{view}:{feature}"] = int(differs.sum())
        timings["compare_seconds"] += time.perf_counter() - t
    con.close()
    return {
        "seconds": time.perf_counter() - started,
        "rows": rows,
        "timings": timings,
        "mismatches": mismatches,
    }


def main() -> None:
    result = bound(Path(sys.argv[1]))
    from common import peak_rss_mb

    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
