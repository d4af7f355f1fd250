"""End-to-end tests of the serving hook against a real, applied and materialized Feast repo.

One demo repo is built per module (``feast apply`` through the real CLI, then materialized into
SQLite), with one feature service added to the demo's definitions: ``ranking_subset`` projects
subsets of two views (``view[["a", "b"]]``). Every test opens its own ``FeatureStore`` on that
repo through its own ``feature_store.yaml`` (``fs_yaml_file``): same registry and online store,
different provider and ``parity:`` block, so the tests never share a sample log.

What is checked is always the sample log against what the caller received, read back with
``feast_parity.read_samples`` (log format v3: one row per sampled entity row and view, keyed by
the view's own join keys; canonical ``value:<f>``, FieldStatus ``status:<f>`` that is NULL where
the request did not ask for ``f``, value hash ``hash:<f>`` and protobuf kind ``kind:<f>``): no
mocks of Feast or of databases. The tests that say so run on both sinks, the SQL store (the
default) and the Parquet dataset of ``parity.sample_log``.

Ported from tests/test_serving_e2e.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from feast import FeatureStore

from feast_parity import demo
from feast_parity.parity.canonical import canonical_value
from feast_parity.parity.hashing import row_hash, schema_fingerprint, value_hash
from feast_parity.parity.samplelog import LOG_VERSION
from feast_parity.parity.sampling import Sampler
from feast_parity.plugin.provider import ParityProvider
from tests.e2e.serving_support import SINKS, VIEW_KEYS, Sink, batch_meta, make_sink, view_key
from tests.faults import now_hour

USERS, VIDEOS, DAYS = 300, 100, 5
FIRST_USER, FIRST_VIDEO = demo.FIRST_USER, demo.FIRST_VIDEO
UNKNOWN_VIDEO = 99_999  # never materialized: Feast answers NOT_FOUND for video_stats
SERVICE = "ranking_model_v1"
SUBSET_SERVICE = "ranking_subset"  # user_engagement[[ctr, country]] + video_stats[[popularity]]
SUBSET_DEFINITION = f'''

{SUBSET_SERVICE} = FeatureService(
    name="{SUBSET_SERVICE}",
    features=[
        user_engagement[["click_through_rate", "country"]],
        video_stats[["popularity"]],
    ],
)
'''
VIEWS = {"user_engagement", "video_stats", "ranking_signals"}
ON_DEMAND_VIEW = "ranking_signals"
JOIN_KEYS = ("user_id", "video_id")
PRESENT, NOT_FOUND = 1, 3  # Feast FieldStatus
SEED = 42
PLUGIN = "feast_parity.ParityProvider"
# The protobuf kind a value served for each declared Feast type must be logged with.
KIND_OF = {
    "Float32": "float_val",
    "Float64": "double_val",
    "Int64": "int64_val",
    "String": "string_val",
}


# --- the shared repo ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoRepo:
    path: Path
    project: str
    snapshot_time: datetime  # event time of the newest rows, i.e. of everything materialized


def _write_config(target_dir: Path, project: str, **config: Any) -> Path:
    """``demo.write_config`` into ``target_dir``, with the module's project name."""
    target_dir.mkdir(parents=True, exist_ok=True)
    path = demo.write_config(target_dir, **config)
    data = yaml.safe_load(path.read_text())
    data["project"] = project
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> DemoRepo:
    """The demo repo plus ``ranking_subset``, applied and materialized once for the module."""
    repo = tmp_path_factory.mktemp("serving_log") / "repo"
    # A project name of our own: the Redis online store (async test) keys by project.
    project = f"parity_e2e_{uuid.uuid4().hex[:10]}"
    end = now_hour()
    demo.make_demo_repo(repo, users=USERS, videos=VIDEOS, days=DAYS, end=end, sample_rate=0.0)
    with (repo / "features.py").open("a") as definitions:
        definitions.write(SUBSET_DEFINITION)
    _write_config(repo, project, sample_rate=0.0)
    demo.feast_apply(repo)
    demo.materialize(repo, days=DAYS + 1)
    return DemoRepo(repo, project, end)


OpenStore = Callable[..., FeatureStore]


@pytest.fixture
def open_store(demo_repo: DemoRepo, tmp_path: Path) -> Iterator[OpenStore]:
    """Factory: open_store(sink=None, provider=..., online_store=..., **parity config).

    The config goes through ``demo.write_config`` (sample_rate, seed, store_url, parity_extra);
    a ``sink`` adds its store URL and ``parity_extra``. Writers of the stores opened here are
    flushed and stopped at teardown.
    """
    opened: list[FeatureStore] = []

    def open_(sink: Sink | None = None, **config: Any) -> FeatureStore:
        config.setdefault("provider", PLUGIN)
        config.setdefault("seed", SEED)
        if sink is not None:
            config.setdefault("store_url", sink.config["store_url"])
            config["parity_extra"] = {
                **sink.config["parity_extra"],
                **config.get("parity_extra", {}),
            }
        path = _write_config(tmp_path / f"config{len(opened)}", demo_repo.project, **config)
        store = FeatureStore(repo_path=str(demo_repo.path), fs_yaml_file=path)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        provider = store._get_provider()
        if isinstance(provider, ParityProvider):
            provider.writer.resume()
            provider.writer.close()


@pytest.fixture
def plain_store(open_store: OpenStore) -> FeatureStore:
    """Feast without the plugin on the same repo: the reference for what must be served."""
    return open_store(provider="local")


# --- requests and what the log must contain ----------------------------------------------------


def ranking_rows(rng: np.random.Generator, user: int, *, unknown_video: bool = False) -> list[dict]:
    """One ranking request: ``user`` against 10 distinct videos (the last one unknown if asked)."""
    videos = [FIRST_VIDEO + int(v) for v in rng.choice(VIDEOS, size=10, replace=False)]
    if unknown_video:
        videos[-1] = UNKNOWN_VIDEO
    return [{"user_id": user, "video_id": video} for video in videos]


def service_columns(store: FeatureStore, name: str = SERVICE) -> dict[str, tuple[str, str]]:
    """Output name -> (feature view, feature) of a service, from the registry."""
    service = store.get_feature_service(name)
    return {
        field.name: (projection.name, field.name)
        for projection in service.feature_view_projections
        for field in projection.features
    }


def declared_types(store: FeatureStore) -> dict[tuple[str, str], str]:
    """(view, feature) -> Feast type name, from the registry."""
    views = [*store.list_feature_views(), *store.list_on_demand_feature_views()]
    return {(view.name, f.name): str(f.dtype) for view in views for f in view.features}


def view_features(types: dict[tuple[str, str], str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for view, feature in sorted(types):
        out[view].append(feature)
    return dict(out)


@dataclass
class Served:
    """One request as the caller made it and what the caller received."""

    rows: list[dict]
    got: dict[str, list[Any]]  # response.to_dict()
    statuses: dict[str, list[int]]  # FieldStatus per output column, from the response proto
    kinds: dict[str, list[str | None]]  # protobuf oneof kind per output column
    columns: dict[str, tuple[str, str]]  # output name -> (view, feature), for every feature
    service: str | None

    @classmethod
    def of(
        cls,
        rows: list[dict],
        response: Any,
        columns: dict[str, tuple[str, str]],
        service: str | None,
    ) -> Served:
        got = response.to_dict()
        served_features = set(got) - set(JOIN_KEYS)
        assert served_features <= set(columns), (
            f"unexpected columns {served_features - set(columns)}"
        )
        assert [got["user_id"], got["video_id"]] == [
            [r["user_id"] for r in rows],
            [r["video_id"] for r in rows],
        ]
        proto = response.proto
        names = proto.metadata.feature_names.val
        statuses = {
            name: [int(s) for s in result.statuses]
            for name, result in zip(names, proto.results, strict=True)
        }
        kinds = {
            name: [v.WhichOneof("val") for v in result.values]
            for name, result in zip(names, proto.results, strict=True)
        }
        columns = {k: v for k, v in columns.items() if k in got}
        return cls(rows, got, statuses, kinds, columns, service)

    @property
    def user(self) -> int:
        (user,) = {row["user_id"] for row in self.rows}
        return user

    def expected(
        self, repo: DemoRepo, types: dict[tuple[str, str], str]
    ) -> Counter[tuple[Any, ...]]:
        """Log rows this request must have produced, as :func:`log_item` spells them: one per
        entity row and served view, every feature of the view with (canonical value, status,
        kind, value hash) as the caller received it, and (None, None, None, None) for the
        view's features this request did not ask for."""
        features_of = view_features(types)
        asked: dict[str, dict[str, str]] = defaultdict(dict)  # view -> feature -> output name
        for name, (view, feature) in self.columns.items():
            asked[view][feature] = name
        out: Counter[tuple[Any, ...]] = Counter()
        for j, row in enumerate(self.rows):
            for view, requested in asked.items():
                cells = {}
                hashes = {}
                for feature in features_of[view]:
                    if feature not in requested:
                        cells[feature] = (None, None, None, None)
                        continue
                    name, declared = requested[feature], types[(view, feature)]
                    value = self.got[name][j]
                    hashes[feature] = value_hash(value, declared)
                    cells[feature] = (
                        canonical_value(value, declared),
                        self.statuses[name][j],
                        self.kinds[name][j],
                        hashes[feature],
                    )
                fingerprint = schema_fingerprint({f: types[(view, f)] for f in requested})
                values = [cells[f][0] for f in requested]
                event_time = (
                    None
                    if view == ON_DEMAND_VIEW or all(v is None for v in values)
                    else repo.snapshot_time
                )
                out[
                    (
                        view,
                        tuple(row[k] for k in VIEW_KEYS[view]),
                        tuple(sorted(cells.items())),
                        row_hash(hashes, fingerprint),
                        event_time,
                        self.service,
                    )
                ] += 1
        return out

    def log_rows(self) -> int:
        views = {view for view, _ in self.columns.values()}
        return len(self.rows) * len(views)


def input_only(row: dict[str, Any], features: list[str]) -> set[str]:
    """Features of a log row that Feast read only for an on-demand view (not returned)."""
    return {f for f in features if row.get(f"input_only:{f}")}


def log_item(row: dict[str, Any], view: str, features: list[str]) -> tuple[Any, ...]:
    """A log row in the form of :meth:`Served.expected` (features read only for on-demand
    views are left out: the caller did not receive them)."""
    cells = {}
    inputs = input_only(row, features)
    for f in features:
        status = None if f in inputs else row.get(f"status:{f}")
        cells[f] = (
            None if f in inputs else row.get(f"value:{f}"),
            status,
            None if f in inputs else row.get(f"kind:{f}"),
            None if status is None else row.get(f"hash:{f}"),
        )
    return (
        view,
        view_key(row, view),
        tuple(sorted(cells.items())),
        row["row_hash"],
        row["event_time"],
        row["feature_service"],
    )


def request_user(records: list[tuple[str, dict[str, Any]]]) -> int:
    """The one user of a request's log rows (video_stats rows carry only the video)."""
    users = {r["key:user_id"] for view, r in records if "user_id" in VIEW_KEYS[view]}
    assert len(users) == 1, f"one request_id groups rows of users {users}"
    return users.pop()


def assert_log_matches(
    log: dict[str, list[dict[str, Any]]],
    served: list[Served],
    repo: DemoRepo,
    types: dict[tuple[str, str], str],
    *,
    complete: bool = True,
    reports_not_found: bool = True,
) -> set[int]:
    """Every log row is one served (entity row, view) with exactly what the caller got.

    Requests are told apart by user (each request of these tests has its own user). With
    ``complete``, every served request must be in the log; returns the indexes found. With
    ``reports_not_found`` (Feast's SQLite online store), the statuses must also be PRESENT for
    known entities and NOT_FOUND for unknown ones.
    """
    index_of_user = {s.user: i for i, s in enumerate(served)}
    assert len(index_of_user) == len(served), "test bug: requests must have distinct users"
    features_of = view_features(types)
    by_request: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for view, rows in log.items():
        for record in rows:
            assert record["feature_view"] == view
            by_request[record["request_id"]].append((view, record))
    found: set[int] = set()
    value_hashes: dict[tuple[str, str, str], int] = {}
    for records in by_request.values():
        index = index_of_user[request_user(records)]
        asked_odfv = ON_DEMAND_VIEW in {view for view, _ in records}
        for view, r in records:
            # inputs read for the on-demand view only: logged, marked, never without it
            marked = input_only(r, features_of[view])
            assert not marked or asked_odfv, (view, marked)
            assert all(r[f"status:{f}"] is not None for f in marked)
        records = [
            (view, r)
            for view, r in records
            if not all(
                r.get(f"status:{f}") is None or r.get(f"input_only:{f}") for f in features_of[view]
            )
        ]
        assert index not in found, f"request {index} was logged under two request ids"
        found.add(index)
        request = served[index]
        assert len({r["request_time"] for _, r in records}) == 1
        logged = Counter(log_item(r, view, features_of[view]) for view, r in records)
        expected = request.expected(repo, types)
        assert logged == expected, (
            f"request {index}: logged rows differ\n missing: {expected - logged}\n"
            f" unexpected: {logged - expected}"
        )
        for view, r in records:
            asked = {f for f in features_of[view] if r.get(f"status:{f}") is not None}
            asked -= input_only(r, features_of[view])
            if reports_not_found:
                status = expected_status(view, *_user_video(r, view, request))
                assert {r[f"status:{f}"] for f in asked} == {status}, (view, r)
            for feature in asked:
                value = r[f"value:{feature}"]
                declared = types[(view, feature)]
                kind = r[f"kind:{feature}"]
                assert kind == (None if value is None else KIND_OF[declared]), (view, feature)
                # The same value of a feature always hashes the same.
                hash_key = (view, feature, repr(value))
                assert (
                    value_hashes.setdefault(hash_key, r[f"hash:{feature}"]) == r[f"hash:{feature}"]
                )
    if complete:
        assert found == set(range(len(served))), "some served requests are not in the log"
    return found


def _user_video(row: dict[str, Any], view: str, request: Served) -> tuple[int, int]:
    user = row.get("key:user_id", request.user)
    video = row.get("key:video_id", FIRST_VIDEO)  # user_engagement rows: the video is moot
    return user, video


def expected_status(view: str, user: int, video: int) -> int:
    if view == "user_engagement":
        return PRESENT if FIRST_USER <= user < FIRST_USER + USERS else NOT_FOUND
    if view == "video_stats":
        return PRESENT if FIRST_VIDEO <= video < FIRST_VIDEO + VIDEOS else NOT_FOUND
    return PRESENT  # the on-demand view is computed for every row


def flush_and_read(
    store: FeatureStore, sink: Sink
) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    provider = store._get_provider()
    assert isinstance(provider, ParityProvider)
    assert provider.flush_samples(timeout=60), "sample writer did not drain"
    return provider.parity_stats(), sink.by_view()


def total(log: dict[str, list[Any]]) -> int:
    return sum(len(rows) for rows in log.values())


def assert_batches_record_the_settings(
    sink: Sink, types: dict[tuple[str, str], str], sample_rate: float
) -> None:
    """Each raw batch says its log version, its view's declared types, rate and seed."""
    batches = sink.batches()
    assert batches, "nothing was written"
    for batch in batches:
        version, view, declared = batch_meta(batch)
        assert version == LOG_VERSION == 3
        want = {f: t for (v, f), t in types.items() if v == view}
        assert {f: declared[f] for f in want} == want, view
        assert set(batch.column("sample_rate").to_pylist()) == {sample_rate}
        assert set(batch.column("seed").to_pylist()) == {SEED}


# --- 1. every served row, exactly as served --------------------------------------------------


@pytest.mark.parametrize("sink_kind", SINKS)
def test_rate_one_logs_exactly_what_every_caller_received(
    demo_repo: DemoRepo, open_store: OpenStore, tmp_path: Path, sink_kind: str
) -> None:
    if sink_kind == "sql":
        # Relative SQLite URL: must land in the repo's data/ directory, not in the cwd.
        url = f"sqlite:///{demo_repo.path / 'data' / 'parity_rate_one.db'}"
        sink = Sink(
            "sql", url, None, {"store_url": "sqlite:///data/parity_rate_one.db", "parity_extra": {}}
        )
    else:
        # Relative Parquet location: must land in the repo's data/ directory too.
        sink = make_sink("parquet", tmp_path, repo=demo_repo.path, name="samples_rate_one")
    store = open_store(sink, sample_rate=1.0)
    columns = service_columns(store)
    assert {view for view, _ in columns.values()} == VIEWS
    types = declared_types(store)
    service = store.get_feature_service(SERVICE)
    rng = np.random.default_rng(1)

    served = []
    for i in range(30):
        rows = ranking_rows(rng, FIRST_USER + i, unknown_video=i % 7 == 3)
        response = store.get_online_features(service, entity_rows=rows)
        served.append(Served.of(rows, response, columns, SERVICE))

    # A plain list of refs with full feature names (no feature service recorded).
    refs = [
        "user_engagement:click_through_rate",
        "user_engagement:country",
        "video_stats:popularity",
        "video_stats:age_days",
        "ranking_signals:affinity_score",
    ]
    full_names = {
        f"{view}__{feature}": (view, feature) for view, feature in (ref.split(":") for ref in refs)
    }
    rows = ranking_rows(rng, FIRST_USER + 30, unknown_video=True)
    response = store.get_online_features(refs, entity_rows=rows, full_feature_names=True)
    list_request = Served.of(rows, response, full_names, None)
    # Feast 0.67 drops python-mode on-demand outputs under full_feature_names (plain Feast
    # too); whatever it serves, the log must hold exactly that.
    assert {"user_engagement", "video_stats"} <= {v for v, _ in list_request.columns.values()}
    served.append(list_request)

    # What the caller got is what the scenario needs: float32 values, unknown video.
    unknown = served[3]
    assert unknown.got["popularity"][-1] is None and unknown.got["category"][-1] is None
    assert unknown.got["affinity_score"][-1] == 0.0
    ctr = served[0].got["click_through_rate"]
    assert all(v == float(np.float32(v)) for v in ctr), "click_through_rate is float32"

    stats, log = flush_and_read(store, sink)
    served_rows = sum(len(s.rows) for s in served)
    assert assert_log_matches(log, served, demo_repo, types) == set(range(len(served)))
    request_ids = {r["request_id"] for rows in log.values() for r in rows}
    assert len(request_ids) == len(served)
    assert total(log) == sum(s.log_rows() for s in served)
    assert_batches_record_the_settings(sink, types, 1.0)
    assert stats["sampled_rows"] == stats["written_rows"] == served_rows
    assert stats["written_log_rows"] == total(log)
    assert stats["dropped_rows"] == stats["hook_errors"] == stats["store_errors"] == 0

    if sink_kind == "parquet":
        # one dataset partitioned by view and hour, in the repo; nothing in the SQL store
        root = Path(sink.sample_log or "")
        assert root.is_dir() and root.parent == demo_repo.path / "data"
        partitions = {p.parent.parent.name for p in root.rglob("*.parquet")}
        assert partitions == {f"feature_view={v}" for v in VIEWS}
        hours = {p.parent.name for p in root.rglob("*.parquet")}
        assert all(h.startswith("hour=") and len(h) == len("hour=2026-01-01T00") for h in hours)
        assert sink.sql_batch_count() == 0
    else:
        assert (demo_repo.path / "data" / "parity_rate_one.db").exists()

    # Per view, the reader's typed columns hold what was served.
    got_popularity = Counter(
        (row["video_id"], s.got[name][j])
        for s in served
        for name in s.columns
        if s.columns[name] == ("video_stats", "popularity")
        for j, row in enumerate(s.rows)
    )
    assert (
        Counter((w["key:video_id"], w["value:popularity"]) for w in log["video_stats"])
        == got_popularity
    )
    signals = log[ON_DEMAND_VIEW]
    with_signals = [s for s in served if ON_DEMAND_VIEW in {v for v, _ in s.columns.values()}]
    assert len(with_signals) >= 30
    assert len(signals) == 10 * len(with_signals)
    assert {w["event_time"] for w in signals} == {None}
    assert {w["status:affinity_score"] for w in signals} == {PRESENT}


# --- 2. a request records status only for the features it asked for -------------------------


@pytest.mark.parametrize("sink_kind", SINKS)
def test_each_row_records_status_only_for_the_features_its_request_asked_for(
    demo_repo: DemoRepo, open_store: OpenStore, tmp_path: Path, sink_kind: str
) -> None:
    """A service projecting subsets of two views (``view[["a", "b"]]``), a request by refs of
    the same views' other features, and the full service, all in one batch: each log row has a
    status for exactly the features its own request asked for, NULL for the others."""
    sink = make_sink(sink_kind, tmp_path)
    store = open_store(sink, sample_rate=1.0)
    types = declared_types(store)
    subset_columns = service_columns(store, SUBSET_SERVICE)
    assert subset_columns == {
        "click_through_rate": ("user_engagement", "click_through_rate"),
        "country": ("user_engagement", "country"),
        "popularity": ("video_stats", "popularity"),
    }
    refs = ["user_engagement:sessions", "user_engagement:device", "video_stats:category"]
    ref_columns = {ref.split(":")[1]: tuple(ref.split(":")) for ref in refs}
    rng = np.random.default_rng(11)
    served = []
    for i in range(3):
        rows = ranking_rows(rng, FIRST_USER + 120 + i, unknown_video=i == 1)
        response = store.get_online_features(
            store.get_feature_service(SUBSET_SERVICE), entity_rows=rows
        )
        served.append(Served.of(rows, response, subset_columns, SUBSET_SERVICE))
        rows = ranking_rows(rng, FIRST_USER + 130 + i)
        response = store.get_online_features(refs, entity_rows=rows)
        served.append(Served.of(rows, response, ref_columns, None))
        rows = ranking_rows(rng, FIRST_USER + 140 + i)
        response = store.get_online_features(store.get_feature_service(SERVICE), entity_rows=rows)
        served.append(Served.of(rows, response, service_columns(store), SERVICE))

    stats, log = flush_and_read(store, sink)
    assert stats["sampled_rows"] == stats["written_rows"] == 90
    assert stats["dropped_rows"] == stats["hook_errors"] == 0
    assert assert_log_matches(log, served, demo_repo, types) == set(range(len(served)))

    asked_by_user = {
        s.user: {v: {f for vv, f in s.columns.values() if vv == v} for v in VIEWS} for s in served
    }
    records: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for view, rows in log.items():
        for r in rows:
            records[r["request_id"]].append((view, r))
    user_of = {request_id: request_user(rs) for request_id, rs in records.items()}
    for view in ("user_engagement", "video_stats"):
        features = [f for (v, f) in types if v == view]
        kinds_seen = set()
        for row in log[view]:
            user = user_of[row["request_id"]]
            asked = asked_by_user[user][view]
            with_status = {f for f in features if row.get(f"status:{f}") is not None}
            assert with_status == asked, (view, user, row)
            for f in set(features) - asked:
                assert row.get(f"value:{f}") is None and row.get(f"kind:{f}") is None
            kinds_seen.add(frozenset(asked))
        # the three kinds of request met in the same view's log (one batch per flush)
        assert len(kinds_seen) == 3, (view, kinds_seen)
    assert stats["written_log_rows"] == total(log) == 3 * (20 + 20 + 30)
    assert len(log[ON_DEMAND_VIEW]) == 30  # only the full service reads the on-demand view


# --- 3. sampling at 0.1 is the documented deterministic sample --------------------------------


def test_rate_tenth_samples_exactly_the_predicted_keys(
    demo_repo: DemoRepo, open_store: OpenStore, tmp_path: Path
) -> None:
    sink = make_sink("sql", tmp_path)
    store = open_store(sink, sample_rate=0.1, seed=SEED)
    service = store.get_feature_service(SERVICE)
    rng = np.random.default_rng(2024)
    served: Counter[tuple[int, int]] = Counter()
    for _ in range(400):
        rows = demo.request_rows(rng, 10, USERS, VIDEOS)
        store.get_online_features(service, entity_rows=rows)
        served.update((row["user_id"], row["video_id"]) for row in rows)

    reference = Sampler(0.1, SEED)
    predicted = {
        pair for pair in served if reference.decide({"user_id": pair[0], "video_id": pair[1]})
    }
    # Each distinct key is one Bernoulli(0.1) trial (repeats of a key are not independent).
    n = len(served)
    assert n > 3000, "the test needs many distinct (user, video) pairs"
    assert abs(len(predicted) - 0.1 * n) <= 5 * math.sqrt(n * 0.1 * 0.9)

    stats, log = flush_and_read(store, sink)
    expected_rows = sum(served[pair] for pair in predicted)
    assert stats["sampled_rows"] == stats["written_rows"] == expected_rows
    assert stats["dropped_rows"] == stats["hook_errors"] == 0
    # Served rows: a key served m times adds m or 0, so the variance is sum(m**2) * p * (1 - p).
    row_sigma = math.sqrt(sum(m * m for m in served.values()) * 0.1 * 0.9)
    assert abs(expected_rows - 0.1 * served.total()) <= 5 * row_sigma
    # The on-demand view is keyed by both join keys: exactly the predicted pairs, each served
    # occurrence once. The batch views are keyed by their own key: the same rows, projected.
    logged_pairs = Counter(view_key(r, ON_DEMAND_VIEW) for r in log[ON_DEMAND_VIEW])
    assert set(logged_pairs) == predicted
    assert logged_pairs == Counter({pair: served[pair] for pair in predicted})
    for view, position in (("user_engagement", 0), ("video_stats", 1)):
        logged = Counter(view_key(r, view)[0] for r in log[view])
        want: Counter[int] = Counter()
        for pair in predicted:
            want[pair[position]] += served[pair]
        assert logged == want, view
    assert {r for b in sink.batches() for r in b.column("sample_rate").to_pylist()} == {0.1}


def test_disabled_block_samples_nothing(open_store: OpenStore, tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    store = open_store(
        sample_rate=1.0,
        store_url=f"sqlite:///{db}",
        parity_extra={"enabled": False, "sample_log": str(tmp_path / "never")},
    )
    rows = ranking_rows(np.random.default_rng(5), FIRST_USER)
    got = store.get_online_features(store.get_feature_service(SERVICE), entity_rows=rows)
    assert got.to_dict()["user_id"] == [FIRST_USER] * 10
    assert store._get_provider().parity_stats()["sampled_rows"] == 0
    assert not db.exists()
    assert not (tmp_path / "never").exists()


# --- 4. the async path ------------------------------------------------------------------------


@pytest.fixture
def redis_connection(redis_url: str) -> str:
    import redis

    host, _, port = redis_url.rpartition(":")
    try:
        redis.Redis(host=host, port=int(port), socket_connect_timeout=2).ping()
    except Exception as exc:  # pragma: no cover - found or started by tests/services.py
        pytest.fail(f"Redis at {redis_url} is not reachable (SQLite has no async reads): {exc}")
    return redis_url


def test_async_reads_are_sampled(
    demo_repo: DemoRepo,
    open_store: OpenStore,
    plain_store: FeatureStore,
    redis_connection: str,
    tmp_path: Path,
) -> None:
    # Feast's SQLite online store has no async reads; Redis has, keyed by our own project.
    sink = make_sink("sql", tmp_path)
    store = open_store(
        sink,
        sample_rate=1.0,
        online_store={"type": "redis", "connection_string": redis_connection},
    )
    now = datetime.now(timezone.utc)
    store.materialize(now - timedelta(days=DAYS + 1), now)
    try:
        columns = service_columns(store)
        service = store.get_feature_service(SERVICE)
        rng = np.random.default_rng(3)
        requests = [ranking_rows(rng, FIRST_USER + 100 + i, unknown_video=i == 2) for i in range(8)]

        async def serve() -> list[Any]:
            first = [
                await store.get_online_features_async(service, entity_rows=rows)
                for rows in requests[:4]
            ]
            rest = await asyncio.gather(
                *(
                    store.get_online_features_async(service, entity_rows=rows)
                    for rows in requests[4:]
                )
            )
            return [*first, *rest]

        responses = asyncio.run(serve())
        served = [
            Served.of(rows, r, columns, SERVICE)
            for rows, r in zip(requests, responses, strict=True)
        ]
        plain_service = plain_store.get_feature_service(SERVICE)
        for request in served:
            reference = plain_store.get_online_features(plain_service, entity_rows=request.rows)
            assert request.got == reference.to_dict()

        stats, log = flush_and_read(store, sink)
        # Feast's Redis store answers PRESENT (with null values) for unknown entities: the log
        # must record that status, as the caller received it.
        types = declared_types(store)
        assert_log_matches(log, served, demo_repo, types, reports_not_found=False)
        assert stats["sampled_rows"] == stats["written_rows"] == 80
        assert stats["hook_errors"] == stats["dropped_rows"] == 0
    finally:
        store._get_provider().online_store.teardown(
            store.config, store.list_feature_views(), store.list_entities()
        )


# --- 5. serving survives a broken or stalled sample store --------------------------------------


def test_unreachable_store_drops_samples_and_serves_like_plain_feast(
    open_store: OpenStore, plain_store: FeatureStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="feast_parity")
    store = open_store(
        sample_rate=1.0, store_url="postgresql+psycopg://postgres:hunter2@127.0.0.1:1/none"
    )
    service = store.get_feature_service(SERVICE)
    plain_service = plain_store.get_feature_service(SERVICE)
    rng = np.random.default_rng(4)
    for i in range(12):
        rows = ranking_rows(rng, FIRST_USER + i, unknown_video=i == 5)
        got = store.get_online_features(service, entity_rows=rows).to_dict()
        assert got == plain_store.get_online_features(plain_service, entity_rows=rows).to_dict()

    provider = store._get_provider()
    assert provider.flush_samples(timeout=60)
    stats = provider.parity_stats()
    assert stats["sampled_rows"] == 120
    assert stats["written_rows"] == stats["written_log_rows"] == 0
    assert stats["dropped_store_error"] == stats["dropped_rows"] == 120
    assert stats["dropped_queue_full"] == stats["hook_errors"] == 0
    assert stats["store_errors"] >= 1
    warnings = [r.getMessage() for r in caplog.records if r.name == "feast_parity"]
    assert any("127.0.0.1:1" in m and "failed" in m for m in warnings), warnings
    assert not any("hunter2" in m for m in warnings), "password leaked into the log"


def test_stalled_writer_drops_on_full_queue_and_catches_up(
    demo_repo: DemoRepo, open_store: OpenStore, plain_store: FeatureStore, tmp_path: Path
) -> None:
    sink = make_sink("sql", tmp_path)
    store = open_store(sink, sample_rate=1.0, parity_extra={"queue_size": 2})
    provider = store._get_provider()
    assert isinstance(provider, ParityProvider)
    columns = service_columns(store)
    service = store.get_feature_service(SERVICE)
    plain_service = plain_store.get_feature_service(SERVICE)
    rng = np.random.default_rng(6)
    served = []
    provider.writer.pause()
    try:
        for i in range(12):
            rows = ranking_rows(rng, FIRST_USER + 200 + i, unknown_video=i == 1)
            response = store.get_online_features(service, entity_rows=rows)
            request = Served.of(rows, response, columns, SERVICE)
            reference = plain_store.get_online_features(plain_service, entity_rows=rows)
            assert request.got == reference.to_dict()
            served.append(request)
        stalled = provider.parity_stats()
    finally:
        provider.writer.resume()
    # The paused thread holds at most one snapshot; the queue holds two; the rest is dropped.
    assert stalled["queue_depth"] == 2
    assert stalled["dropped_queue_full"] >= (12 - 3) * 10
    assert stalled["dropped_queue_full"] % 10 == 0
    assert stalled["sampled_rows"] == 120

    stats, log = flush_and_read(store, sink)
    assert stats["sampled_rows"] == 120
    assert stats["written_rows"] + stats["dropped_rows"] == stats["sampled_rows"]
    assert stats["dropped_rows"] == stats["dropped_queue_full"] == stalled["dropped_queue_full"]
    assert stats["written_rows"] >= 2 * 10  # the two queued requests
    # one on-demand row per written entity row (it is keyed by both join keys)
    distinct_rows = {(r["request_id"], view_key(r, ON_DEMAND_VIEW)) for r in log[ON_DEMAND_VIEW]}
    assert len(distinct_rows) == stats["written_rows"]
    assert total(log) == stats["written_log_rows"] == 3 * stats["written_rows"]
    found = assert_log_matches(log, served, demo_repo, declared_types(store), complete=False)
    assert len(found) * 10 == stats["written_rows"]


# --- 6. PostgreSQL sample store ---------------------------------------------------------------


def test_postgres_sample_store_logs_what_was_served(
    postgres_url: str, demo_repo: DemoRepo, open_store: OpenStore, tmp_path: Path
) -> None:
    sink = make_sink("sql", tmp_path, store_url=postgres_url)
    store = open_store(sink, sample_rate=1.0)
    columns = service_columns(store)
    service = store.get_feature_service(SERVICE)
    rng = np.random.default_rng(7)
    served = []
    for i in range(8):
        rows = ranking_rows(rng, FIRST_USER + 50 + i, unknown_video=i == 4)
        served.append(
            Served.of(rows, store.get_online_features(service, entity_rows=rows), columns, SERVICE)
        )
    rows = ranking_rows(rng, FIRST_USER + 60)
    refs = ["user_engagement:click_through_rate", "video_stats:category"]
    response = store.get_online_features(refs, entity_rows=rows, full_feature_names=True)
    served.append(
        Served.of(
            rows,
            response,
            {
                "user_engagement__click_through_rate": ("user_engagement", "click_through_rate"),
                "video_stats__category": ("video_stats", "category"),
            },
            None,
        )
    )

    stats, log = flush_and_read(store, sink)
    types = declared_types(store)
    assert_log_matches(log, served, demo_repo, types)
    assert total(log) == 8 * 10 * 3 + 10 * 2
    assert stats["sampled_rows"] == stats["written_rows"] == 90
    assert stats["written_log_rows"] == total(log)
    assert stats["dropped_rows"] == stats["hook_errors"] == 0
    assert_batches_record_the_settings(sink, types, 1.0)
    wide = sink.rows("user_engagement")
    assert Counter((w["key:user_id"], w["value:click_through_rate"]) for w in wide) == Counter(
        (s.user, v)
        for s in served
        for name, (view, feature) in s.columns.items()
        if (view, feature) == ("user_engagement", "click_through_rate")
        for v in s.got[name]
    )


# --- known bug -----------------------------------------------------------------------------------


def test_sampled_rows_without_feature_columns_are_accounted_for(
    open_store: OpenStore, tmp_path: Path
) -> None:
    sink = make_sink("sql", tmp_path)
    store = open_store(sink, sample_rate=1.0)
    rows = ranking_rows(np.random.default_rng(8), FIRST_USER + 250)
    got = store.get_online_features(
        ["ranking_signals:affinity_score"], entity_rows=rows, full_feature_names=True
    ).to_dict()
    if set(got) != set(JOIN_KEYS):
        pytest.skip("Feast now serves python on-demand outputs under full_feature_names")
    stats, log = flush_and_read(store, sink)
    assert total(log) == 0
    assert stats["sampled_rows"] == 10
    assert stats["written_rows"] + stats["dropped_rows"] == stats["sampled_rows"]
