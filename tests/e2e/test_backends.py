"""The sample -> check cycle and the planted faults on real backends (PostgreSQL, Redis).

Four configurations of the demo repo, each built for real (``feast apply``, materialize, serve
through the plugin, run the check):

- ``pg_store``: the sample log and the check results on PostgreSQL; online SQLite, offline file.
- ``redis_online``: the online store on Redis (a project name of its own, keys removed after).
- ``pg_online``: the online store on PostgreSQL (Feast's postgres online store).
- ``pg_offline``: the offline store on PostgreSQL (``feast_repo/features_postgres.py``:
  ``PostgreSQLSource`` tables loaded from the generated data); online SQLite.

Faults are planted through Feast's provider ``online_write_batch`` (``tests/faults.py``), so they
reach whichever online store the repo uses. To keep the file's runtime bounded, three faults that
cannot interact share one repo (``test_combined_faults``), each on other features or another view:

- value mismatch: ``user_engagement:watch_minutes`` changed for users with ``user_id % 10 == 3``;
- silent default: ``user_engagement:click_through_rate`` served as 0.0 for ``user_id % 5 == 0``
  (a disjoint set of users: ``% 10 == 3`` implies ``% 5 == 3``), other features of those rows
  rewritten unchanged;
- staleness: the whole ``video_stats`` view materialized only up to three days ago.

Schema divergence rewrites every ``video_stats`` row at its newest event time, which would undo
the staleness, so it has a repo of its own. Every configuration runs the clean repo and the
combined faults; the schema divergence runs on ``redis_online`` and ``pg_offline``.

PostgreSQL and Redis are CI's (``.ci/run`` starts both) or embedded ones started for the run
(tests/services.py); a service that does not answer fails the test with a message, never skips it.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from feast import FeatureStore
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feast_parity import demo
from feast_parity.plugin.check import run_check
from tests import services
from tests.faults import (
    BATCH_REFS,
    fails,
    feature,
    latest_rows,
    now_hour,
    write_online,
)
from tests.faults import serve_refs as _serve_refs

BACKENDS = ("pg_store", "redis_online", "pg_online", "pg_offline")
USERS, VIDEOS, DAYS = 300, 100, 5


def redis_address() -> str:
    """``host:port`` of the run's Redis (CI's on :6379, else an embedded one)."""
    return services.redis_address()[0]


def redis_client() -> Any:
    """A client of the run's Redis, or a test failure that says it does not answer."""
    import redis

    host, _, port = redis_address().rpartition(":")
    client = redis.Redis(host=host, port=int(port), socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"Redis at {host}:{port} is not reachable ({exc})")
    return client


@dataclass
class Backend:
    """One configuration of the demo repo; ``build()`` returns an applied, materialized repo."""

    name: str
    tmp_path: Path
    project: str
    pg_url: str | None = None
    built: list[Path] = field(default_factory=list)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"project": self.project, "sample_rate": 1.0}
        if self.name == "pg_store":
            config["store_url"] = self.pg_url
        elif self.name == "redis_online":
            config["online_store"] = {
                "type": "redis",
                "connection_string": redis_address(),
            }
        elif self.name == "pg_online":
            config["online_store"] = demo.postgres_store_config(self.pg_url)
        elif self.name == "pg_offline":
            config["offline_store"] = demo.postgres_store_config(self.pg_url)
            config["features"] = "features_postgres.py"
        return config

    def build(self, *, materialize: bool = True) -> Path:
        repo = self.tmp_path / f"repo{len(self.built) + 1}"
        demo.make_demo_repo(
            repo, users=USERS, videos=VIDEOS, days=DAYS, end=now_hour(), **self.config()
        )
        if self.name == "pg_offline":
            counts = demo.load_sources_to_postgres(repo, self.pg_url)
            assert counts == {
                "user_engagement": USERS * DAYS * 4,
                "video_stats": VIDEOS * DAYS * 4,
            }
        demo.feast_apply(repo)
        if materialize:
            demo.materialize(repo, days=DAYS + 1)
        self.built.append(repo)
        return repo

    def assert_in_use(self, repo: Path, report: dict[str, Any]) -> None:
        """The backend under test really holds the data (not a silent fallback to SQLite/files)."""
        if self.name == "pg_store":
            assert not (repo / "data" / "parity.db").exists()
            engine = sa.create_engine(self.pg_url)
            with engine.connect() as conn:
                # the v3 log: one row of Arrow IPC bytes per written batch
                logged = conn.execute(
                    sa.text("select coalesce(sum(rows), 0) from parity_sample_batches")
                ).scalar()
                legacy = conn.execute(sa.text("select count(*) from parity_samples")).scalar()
                runs = conn.execute(
                    sa.text("select count(*) from parity_runs where run_id = :r"),
                    {"r": report["run_id"]},
                ).scalar()
                metrics = conn.execute(
                    sa.text("select count(*) from parity_feature_metrics")
                ).scalar()
            engine.dispose()
            assert logged == report["samples"] > 0 and legacy == 0
            assert runs == 1 and metrics == len(report["features"])
        elif self.name == "redis_online":
            keys = list(redis_client().scan_iter(match=b"*" + self.project.encode(), count=1000))
            assert len(keys) >= USERS + VIDEOS
        elif self.name == "pg_online":
            engine = sa.create_engine(self.pg_url)
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(f'select count(*) from "{self.project}_user_engagement"')
                ).scalar()
            engine.dispose()
            assert rows and rows >= USERS
        elif self.name == "pg_offline":
            store = FeatureStore(repo_path=str(repo))
            source = store.get_feature_view("user_engagement").batch_source
            assert type(source).__name__ == "PostgreSQLSource"
            assert store.config.offline_store.type == "postgres"
            assert (repo / "data" / "parity.db").exists()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    name = request.param
    project = f"parity_{name}_{uuid.uuid4().hex[:8]}"
    pg_url = request.getfixturevalue("postgres_url") if name.startswith("pg_") else None
    client = redis_client() if name == "redis_online" else None
    yield Backend(name, tmp_path, project, pg_url)
    if client is not None:
        pattern = b"*" + project.encode()
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
        assert not list(client.scan_iter(match=pattern, count=1000))
        client.close()


def test_clean_repo_has_no_findings(backend: Backend) -> None:
    repo = backend.build()
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 40, users=USERS, videos=VIDEOS)
    assert store._get_provider().flush_samples()
    report = run_check(repo)
    backend.assert_in_use(repo, report)
    assert [f for f in report["findings"] if f["severity"] in ("warn", "fail")] == []
    assert report["samples"] == 40 * 10 * 3
    for ref in BATCH_REFS:
        result = feature(report, ref)
        assert result["compared"] == 400, result
        assert result["mismatch_rate"] == 0.0 and result["stale_rate"] == 0.0, result
        assert result["silent_default_rate"] == 0.0 and not result["schema"]["diverged"], result
        assert result["psi"] == 0.0 and result["status"] == "ok", result
    ctr = feature(report, "user_engagement:click_through_rate")
    assert ctr["schema"]["online"] == "float32" and ctr["schema"]["offline"] == "float32"
    affinity = feature(report, "ranking_signals:affinity_score")
    # on-demand: compared as distributions at request time (docs/checks.md), not row by row
    assert affinity["rows"] == affinity["offline_rows"] == 400, affinity
    assert affinity["psi"] == 0.0 and affinity["status"] == "ok", affinity
    # one row per batch view with samples (the on-demand view's row says it is on-demand)
    views = {v["feature_view"]: v for v in report["feature_views"] if not v["on_demand"]}
    assert set(views) == {"user_engagement", "video_stats"}
    assert [v["feature_view"] for v in report["feature_views"] if v["on_demand"]] == [
        "ranking_signals"
    ]
    for view in views.values():
        assert view["status"] == "ok" and view["materialization_lag_seconds"] < 600
        assert view["source_lag_seconds"] is not None


def test_combined_faults(backend: Backend) -> None:
    """Value mismatch (watch_minutes, a tenth of users), silent 0.0 (click_through_rate, a fifth
    of users, disjoint from the tenth) and a view materialized three days ago (video_stats)."""
    now = datetime.now(timezone.utc)
    repo = backend.build(materialize=False)
    demo.materialize(repo, end=now - timedelta(days=3), views=["video_stats"], days=DAYS + 1)
    demo.materialize(repo, end=now, views=["user_engagement"], days=DAYS + 1)
    rows = latest_rows(repo, "user_engagement")
    tenth = rows[rows["user_id"] % 10 == 3].copy()
    tenth["watch_minutes"] = tenth["watch_minutes"] * 1.5 + 1.0
    fifth = rows[rows["user_id"] % 5 == 0].copy()
    fifth["click_through_rate"] = np.float32(0.0)
    assert not set(tenth["user_id"]) & set(fifth["user_id"])
    write_online(repo, "user_engagement", tenth)
    write_online(repo, "user_engagement", fifth)
    serve_refs(repo, 100)
    report = run_check(repo)
    backend.assert_in_use(repo, report)

    watch = feature(report, "user_engagement:watch_minutes")
    assert watch["mismatch_rate"] == pytest.approx(0.1, abs=0.04)
    ctr = feature(report, "user_engagement:click_through_rate")
    assert ctr["silent_default_rate"] == pytest.approx(0.2, abs=0.06)
    assert ctr["fill_values"] == [0.0]
    for name in ("sessions", "country", "device"):
        result = feature(report, f"user_engagement:{name}")
        assert result["mismatch_rate"] == 0.0 and result["silent_default_rate"] == 0.0, result
    popularity = feature(report, "video_stats:popularity")
    assert popularity["stale_rate"] > 0.95 and popularity["mismatch_rate"] == 0.0
    views = {v["feature_view"]: v for v in report["feature_views"]}
    assert views["video_stats"]["stale_lag_seconds"]["p50"] == pytest.approx(
        3 * 86400, abs=6 * 3600
    )

    failing = fails(report)
    assert ("value_mismatch", "user_engagement:watch_minutes") in failing
    assert ("silent_default", "user_engagement:click_through_rate") in failing
    # staleness is one cause of the whole view: one view-level finding naming its features
    assert ("stale_serving", "video_stats") in failing
    stale = next(f for f in report["findings"] if f["kind"] == "stale_serving")
    assert "video_stats:popularity" in stale["evidence"]["features"]
    assert ("freshness_slo", "video_stats") in failing
    for kind, target in failing:
        if target == "user_engagement:watch_minutes":
            assert kind == "value_mismatch"
        else:
            assert target == "user_engagement:click_through_rate" or target.startswith(
                "video_stats"
            ), (kind, target)
    assert views["user_engagement"]["status"] == "ok"
    # the feature row keeps its contract field stale_lag_seconds (docs/checks.md)
    assert popularity["stale_lag_seconds"]["p50"] == pytest.approx(3 * 86400, abs=6 * 3600)


@pytest.mark.parametrize("backend", ["redis_online", "pg_offline"], indirect=True)
def test_schema_divergence_when_online_type_changes(backend: Backend) -> None:
    repo = backend.build()
    rows = latest_rows(repo, "video_stats")

    def as_string(name: str, value: Any) -> ValueProto | None:
        return ValueProto(string_val=str(value)) if name == "age_days" else None

    write_online(repo, "video_stats", rows, override=as_string)
    serve_refs(repo, 40)
    report = run_check(repo)
    backend.assert_in_use(repo, report)
    age = feature(report, "video_stats:age_days")
    assert age["schema"]["diverged"] is True
    assert age["schema"]["online"] == "string" and age["schema"]["declared"] == "Int64"
    assert age["schema"]["offline"] == "int64"
    assert ("schema_divergence", "video_stats:age_days") in fails(report)
    assert all(t == "video_stats:age_days" for _, t in fails(report))


def test_postgres_variant_defines_the_same_features() -> None:
    """``features_postgres.py`` differs from ``features.py`` only in its sources."""

    def load(name: str) -> Any:
        spec = importlib.util.spec_from_file_location(
            f"_demo_{name}", demo.DEMO_SOURCE / f"{name}.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    file_repo, pg_repo = load("features"), load("features_postgres")
    for view in ("user_engagement", "video_stats"):
        a, b = getattr(file_repo, view), getattr(pg_repo, view)
        assert [(f.name, f.dtype) for f in a.features] == [(f.name, f.dtype) for f in b.features]
        assert (a.ttl, a.tags, a.entities) == (b.ttl, b.tags, b.entities)
        assert a.batch_source.timestamp_field == b.batch_source.timestamp_field
        assert a.batch_source.created_timestamp_column == b.batch_source.created_timestamp_column
        assert type(b.batch_source).__name__ == "PostgreSQLSource"
        assert b.batch_source.get_table_query_string().strip('"') == view
        assert set(demo.POSTGRES_SOURCE_TYPES[view]) == {
            *[f.name for f in b.features],
            *[getattr(pg_repo, entity).join_key for entity in b.entities],
        }
    assert [f.name for f in pg_repo.ranking_signals.features] == ["affinity_score"]
    assert {p.name for p in pg_repo.ranking_model_v1.feature_view_projections} == {
        p.name for p in file_repo.ranking_model_v1.feature_view_projections
    }
    ignored = (demo.DEMO_SOURCE / ".feastignore").read_text()
    assert "features_postgres.py" in ignored


def serve_refs(repo: Path, requests: int, seed: int = 1) -> None:
    _serve_refs(repo, requests, seed, users=USERS, videos=VIDEOS)
