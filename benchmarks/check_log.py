"""The check benchmark's data: a demo-shaped Feast repo and sample logs of N log rows.

The repo is the demo's (``feast_parity.demo.make_demo_repo``: views ``user_engagement`` (5
features) and ``video_stats`` (3), the on-demand view ``ranking_signals`` (1), the feature service
``ranking_model_v1``), with more users and videos, and ``feast apply`` run through Feast's CLI.

A log of N log rows is N / 3 ranking request rows (one user against 10 videos per request), each
logged once per view of the service, exactly as ``ParityProvider`` logs it: the rows of one
request go through :class:`feast_parity.parity.samplelog.BatchBuilder` the way
``feast_parity.plugin.collect.BatchCollector.add`` feeds it, one builder per view and writer
flush (``--batch-size`` log rows per flush, the plugin's ``batch_size``), and each flush goes
through the plugin's own sink (:class:`feast_parity.store.sinks.ParquetSink` or ``SqlSink``).
Request times are spread over the window; each served row is the offline row current at its
request time (event time = that snapshot), so the check and Feast find the same rows; in 1% of
the request rows ``watch_minutes`` and ``country`` (user_engagement) and ``popularity``
(video_stats, and so the served ``affinity_score``) were served changed (planted mismatches).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

USERS, VIDEOS, DAYS = 100_000, 10_000, 3
WINDOW_HOURS = 12
SNAPSHOT_HOURS = 6  # feast_repo/generate_data.py
ROWS_PER_REQUEST = 10
FIRST_USER, FIRST_VIDEO = 1001, 50001
PERTURBED = 0.01
SERVICE = "ranking_model_v1"
VIEWS = ("user_engagement", "video_stats", "ranking_signals")
USER_FEATURES = {
    "click_through_rate": ("Float32", "float_val"),
    "country": ("String", "string_val"),
    "device": ("String", "string_val"),
    "sessions": ("Int64", "int64_val"),
    "watch_minutes": ("Float64", "double_val"),
}
VIDEO_FEATURES = {
    "age_days": ("Int64", "int64_val"),
    "category": ("String", "string_val"),
    "popularity": ("Float64", "double_val"),
}
ODFV_FEATURES = {"affinity_score": ("Float64", "double_val")}
PLANTED = ("user_engagement:watch_minutes", "user_engagement:country", "video_stats:popularity")
FEATURE_COLUMNS = [
    *(f"user_engagement:{f}" for f in USER_FEATURES),
    *(f"video_stats:{f}" for f in VIDEO_FEATURES),
    "ranking_signals:affinity_score",
]
WRITER = "bench-host:4242"
PLAIN_YAML = "feature_store_plain.yaml"


@dataclass
class Repo:
    path: Path
    end: datetime  # the last snapshot; the window is [end - WINDOW_HOURS, end)

    @property
    def since(self) -> datetime:
        return self.end - timedelta(hours=WINDOW_HOURS)

    @property
    def until(self) -> datetime:
        return self.end

    @property
    def samples(self) -> Path:
        return self.path / "data" / "samples"

    @property
    def parity_db(self) -> Path:
        return self.path / "data" / "parity.db"


def build_repo(path: Path, users: int = USERS, videos: int = VIDEOS) -> Repo:
    """The demo repo with ``users`` x ``videos``, applied; plus a plain-Feast config beside it."""
    from feast_parity import demo

    if path.exists():
        shutil.rmtree(path)
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    demo.make_demo_repo(
        path,
        users=users,
        videos=videos,
        days=DAYS,
        end=end,
        sample_rate=1.0,
        store_url=f"sqlite:///{(path / 'data' / 'parity.db').resolve()}",
        parity_extra={"sample_log": "data/samples"},
    )
    demo.feast_apply(path)
    config = yaml.safe_load((path / "feature_store.yaml").read_text())
    config["provider"] = "local"
    config.pop("parity", None)
    (path / PLAIN_YAML).write_text(yaml.safe_dump(config, sort_keys=False))
    (path / "bench_repo.json").write_text(json.dumps({"end": end.isoformat()}))
    return Repo(path, end)


def open_repo(path: Path) -> Repo:
    meta = json.loads((path / "bench_repo.json").read_text())
    return Repo(path, datetime.fromisoformat(meta["end"]))


def _offline(repo: Repo) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    data = repo.path / "data"
    users = pd.read_parquet(data / "user_engagement.parquet")
    videos = pd.read_parquet(data / "video_stats.parquet")
    stamps_us = np.unique(pd.DatetimeIndex(users["event_timestamp"]).as_unit("us").asi8)
    return users, videos, stamps_us


@dataclass
class LogInfo:
    rows: int  # log rows
    request_rows: int
    requests: int
    batches: int
    files: int
    bytes: int
    planted: dict[str, int]
    seconds: float


def write_log(
    repo: Repo,
    n_log_rows: int,
    out: Path,
    *,
    sink: str = "parquet",
    batch_size: int = 500,
    seed: int = 1,
) -> LogInfo:
    """Write a fresh sample log of about ``n_log_rows`` rows; save both sides for Evidently.

    ``out`` receives ``values.parquet``: per request row, the served (``cur__``) and offline
    (``ref__``) value of each of the 9 features; ``entities.parquet``: the request rows as an
    entity dataframe (``user_id``, ``video_id``, ``event_timestamp`` = request time); and
    ``log.json`` (sizes and what was planted).
    """
    import xxhash
    from feast import FeatureStore

    from feast_parity.parity.samplelog import BatchBuilder
    from feast_parity.parity.sampling import Sampler
    from feast_parity.plugin.registry import udf_fingerprint
    from feast_parity.store.sinks import ParquetSink, SqlSink

    started = time.perf_counter()
    if repo.samples.exists():
        shutil.rmtree(repo.samples)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{repo.parity_db}{suffix}").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(repo_path=str(repo.path))
    fingerprint = udf_fingerprint(store.get_on_demand_feature_view("ranking_signals"))
    users_df, videos_df, stamps = _offline(repo)
    n_users = int(users_df["user_id"].nunique())
    n_videos = int(videos_df["video_id"].nunique())
    n_snapshots = len(stamps)

    requests = max(1, n_log_rows // (len(VIEWS) * ROWS_PER_REQUEST))
    n = requests * ROWS_PER_REQUEST
    rng = np.random.default_rng(seed)
    since_s, until_s = repo.since.timestamp(), repo.until.timestamp()
    times = np.sort(np.round(rng.uniform(since_s, until_s, requests), 6))
    user_index = rng.integers(0, n_users, requests)
    base = rng.integers(0, n_videos, requests)
    step = rng.integers(1, max(2, n_videos // ROWS_PER_REQUEST), requests)
    video_index = (base[:, None] + step[:, None] * np.arange(ROWS_PER_REQUEST)) % n_videos
    video_index = video_index.reshape(-1)
    row_user = np.repeat(user_index, ROWS_PER_REQUEST)
    row_time = np.repeat(times, ROWS_PER_REQUEST)
    # the snapshot current at request time: the last one at or before it
    stamp_s = stamps / 1e6
    snap = np.searchsorted(stamp_s, row_time, side="right") - 1
    assert (snap >= 0).all() and (snap < n_snapshots).all()
    # demo generate_data: frames per snapshot, concatenated; row = snapshot * count + entity
    user_rows = snap * n_users + row_user
    video_rows = snap * n_videos + video_index
    assert (users_df["user_id"].to_numpy()[user_rows] == FIRST_USER + row_user).all()
    assert (videos_df["video_id"].to_numpy()[video_rows] == FIRST_VIDEO + video_index).all()
    event_s = stamp_s[snap]

    offline: dict[str, np.ndarray] = {}
    for name in USER_FEATURES:
        offline[f"user_engagement:{name}"] = users_df[name].to_numpy()[user_rows]
    for name in VIDEO_FEATURES:
        offline[f"video_stats:{name}"] = videos_df[name].to_numpy()[video_rows]
    ctr = offline["user_engagement:click_through_rate"].astype(np.float64)
    offline["ranking_signals:affinity_score"] = ctr * offline["video_stats:popularity"]
    served = {k: v.copy() for k, v in offline.items()}
    planted = {}
    for ref in PLANTED:
        hit = rng.random(n) < PERTURBED
        planted[ref] = int(hit.sum())
        if ref.endswith("country"):
            served[ref] = np.where(hit, "XX", served[ref]).astype(object)
        else:
            served[ref] = np.where(hit, np.round(served[ref] * 1.5 + 1.0, 4), served[ref])
    # served on-demand output: computed from the served inputs, as the serving process did
    served["ranking_signals:affinity_score"] = ctr * served["video_stats:popularity"]

    # both sides for Evidently (not timed)
    frame = {f"cur__{k}": v for k, v in served.items()} | {
        f"ref__{k}": v for k, v in offline.items()
    }
    pd.DataFrame(frame).to_parquet(out / "values.parquet", index=False)
    # the request rows as an entity dataframe, for one Feast retrieval of the same rows
    pd.DataFrame(
        {
            "user_id": FIRST_USER + row_user,
            "video_id": FIRST_VIDEO + video_index,
            "event_timestamp": pd.to_datetime(
                np.round(row_time * 1e6).astype(np.int64), unit="us", utc=True
            ),
        }
    ).to_parquet(out / "entities.parquet", index=False)

    # Python values as the writer thread reads them from the response protobuf
    py = {k: v.tolist() for k, v in served.items()}
    user_ids = (FIRST_USER + row_user).tolist()
    video_ids = (FIRST_VIDEO + video_index).tolist()
    sampler = Sampler(1.0, 42)
    _, canonical = sampler.sample_columns(("user_id", "video_id"), [user_ids, video_ids])
    key_hashes = [xxhash.xxh3_64_intdigest(k) for k in canonical]
    event_py = event_s.tolist()
    prefix = "0badc0de-feed-4bee-8a11-"

    def builders() -> dict[str, BatchBuilder]:
        common = {"sample_rate": 1.0, "seed": 42, "writer": WRITER}
        return {
            "user_engagement": BatchBuilder(
                "user_engagement",
                {k: t for k, (t, _) in USER_FEATURES.items()},
                ("user_id",),
                **common,
            ),
            "video_stats": BatchBuilder(
                "video_stats",
                {k: t for k, (t, _) in VIDEO_FEATURES.items()},
                ("video_id",),
                **common,
            ),
            "ranking_signals": BatchBuilder(
                "ranking_signals",
                {k: t for k, (t, _) in ODFV_FEATURES.items()},
                ("user_id", "video_id"),
                on_demand=True,
                **common,
            ),
        }

    if sink == "parquet":
        target: Any = ParquetSink(str(repo.samples), writer=WRITER)
    else:
        target = SqlSink(f"sqlite:///{repo.parity_db}", writer=WRITER)
    per_flush = max(1, -(-batch_size // (len(VIEWS) * ROWS_PER_REQUEST)))
    batches = 0
    current = builders()
    k = ROWS_PER_REQUEST
    ones = [1] * k
    for q in range(requests):
        a, b = q * k, (q + 1) * k
        rid = f"{prefix}{q:012x}"
        t = float(times[q])
        users_q, videos_q = user_ids[a:b], video_ids[a:b]
        events = event_py[a:b]
        hashes = key_hashes[a:b]
        for view, features in (
            ("user_engagement", USER_FEATURES),
            ("video_stats", VIDEO_FEATURES),
            ("ranking_signals", ODFV_FEATURES),
        ):
            if view == "user_engagement":
                keys = {"user_id": users_q}
                context = {"video_id": videos_q}
            elif view == "video_stats":
                keys = {"video_id": videos_q}
                context = {"user_id": users_q}
            else:
                keys = {"user_id": users_q, "video_id": videos_q}
                context = {}
            current[view].add(
                features=sorted(features),
                request_id=rid,
                request_time=t,
                service=SERVICE,
                projection=view,
                keys=keys,
                key_hashes=hashes,
                event_times=[None] * k if view == "ranking_signals" else events,
                values={f: py[f"{view}:{f}"][a:b] for f in features},
                statuses={f: ones for f in features},
                kinds={f: [kind] * k for f, (_, kind) in features.items()},
                udf_fingerprint=fingerprint if view == "ranking_signals" else None,
                context=context,
            )
        if (q + 1) % per_flush == 0 or q == requests - 1:
            flushed = [b.to_batch() for b in current.values() if b.rows]
            target.write(flushed)
            batches += len(flushed)
            current = builders()
    target.close()
    if sink == "parquet":
        files = [p for p in repo.samples.rglob("*.parquet")]
        size = sum(p.stat().st_size for p in files)
    else:
        files = [repo.parity_db]
        size = sum(
            Path(f"{repo.parity_db}{s}").stat().st_size
            for s in ("", "-wal")
            if Path(f"{repo.parity_db}{s}").exists()
        )
    info = LogInfo(
        rows=n * len(VIEWS),
        request_rows=n,
        requests=requests,
        batches=batches,
        files=len(files),
        bytes=size,
        planted=planted,
        seconds=time.perf_counter() - started,
    )
    (out / "log.json").write_text(json.dumps(info.__dict__))
    return info
