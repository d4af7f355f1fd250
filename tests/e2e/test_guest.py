"""A good guest in other people's processes (issue 30): registry changes, teardown, stores built
in code, and Feast's own SDK behaviours unchanged by the plugin.

Every test drives a real Feast repo: the demo repo (``feast apply``, materialize) or the
object-kinds repo of tests/e2e/repos.py (python and pandas on-demand views, a push source,
aliases, join-key maps, an entityless view, several services over one view).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from feast import FeatureStore
from feast.repo_config import RepoConfig

from feast_parity import demo, read_samples
from feast_parity.plugin.provider import ParityProvider
from tests.e2e import repos
from tests.e2e.serving_support import Sink, batch_meta

PLUGIN = "feast_parity.ParityProvider"
WRITER_THREAD = "feast-parity-writer"
SERVICE = "ranking_model_v1"
USERS, VIDEOS = 60, 30


def writer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == WRITER_THREAD and t.is_alive()}


def wait_for(predicate: Any, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture(scope="module")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("guest") / "repo"
    demo.make_demo_repo(repo, users=USERS, videos=VIDEOS, days=3, sample_rate=1.0)
    demo.feast_apply(repo)
    demo.materialize(repo, days=4)
    return repo


@pytest.fixture
def fresh_repo(demo_repo: Path, tmp_path: Path) -> Path:
    """A copy of the applied demo repo with its own registry, online store and sample store."""
    repo = tmp_path / "repo"
    shutil.copytree(demo_repo, repo, ignore=shutil.ignore_patterns("parity.db*"))
    return repo


def sample_url(repo: Path) -> str:
    return f"sqlite:///{repo / 'data' / 'parity.db'}"


def declared_in_registry(store: FeatureStore) -> dict[str, dict[str, str]]:
    return {
        view.name: {f.name: str(f.dtype) for f in view.features}
        for view in store.list_all_feature_views()
    }


# --- 1. samples survive registry changes --------------------------------------------------------


@pytest.mark.parametrize("removed", ["service", "view"])
def test_samples_served_before_a_registry_change_are_written_as_served(
    fresh_repo: Path, removed: str
) -> None:
    """Served through a service, then the service (or a view it reads) is deleted from the
    registry before the writer ran: every sampled row is written, with the declared types of
    the objects Feast served with, and nothing is counted as dropped or failed."""
    store = FeatureStore(repo_path=str(fresh_repo))
    provider = store._get_provider()
    assert isinstance(provider, ParityProvider)
    declared = declared_in_registry(store)
    provider.writer.pause()  # the writer runs only after the registry changed
    demo.serve(store, 5, users=USERS, videos=VIDEOS, features=store.get_feature_service(SERVICE))
    if removed == "service":
        store.delete_feature_service(SERVICE)
    else:
        store.delete_feature_view("video_stats")
    store.refresh_registry()
    provider.writer.resume()
    assert provider.flush_samples(timeout=60)
    stats = provider.parity_stats()
    assert stats["sampled_rows"] == 50
    assert (stats["hook_errors"], stats["dropped_rows"]) == (0, 0), stats
    assert stats["written_rows"] == 50
    url = sample_url(fresh_repo)
    for view in ("user_engagement", "video_stats"):
        table = read_samples(url, feature_view=view)
        assert table.num_rows == 50, view
        key = {"user_engagement": "key:user_id", "video_stats": "key:video_id"}[view]
        assert None not in table.column(key).to_pylist()
    logged = {}
    for batch in Sink("sql", url, None).batches():
        _, view, types = batch_meta(batch)
        logged.setdefault(view, {}).update(types)
    for view in ("user_engagement", "video_stats"):
        assert {f: logged[view][f] for f in declared[view]} == declared[view]


# --- 2. teardown stops what the plugin started ----------------------------------------------------


def test_teardown_writes_what_is_queued_and_stops_the_writer(fresh_repo: Path) -> None:
    store = FeatureStore(repo_path=str(fresh_repo))
    provider = store._get_provider()
    before = writer_threads()
    provider.writer.pause()
    demo.serve(store, 3, users=USERS, videos=VIDEOS)
    ours = writer_threads() - before
    assert len(ours) == 1
    started = time.monotonic()
    store.teardown()
    assert time.monotonic() - started < 15
    assert not any(t.is_alive() for t in ours)
    # Feast's teardown removed the registry and online tables; the samples are in the log
    assert read_samples(sample_url(fresh_repo), feature_view="user_engagement").num_rows == 30


def test_a_hundred_feature_stores_in_turn_leave_no_writer_threads(fresh_repo: Path) -> None:
    """A notebook that builds a FeatureStore per cell: each dropped store's writer stops by
    itself (garbage collection), after writing what its store sampled."""
    before = writer_threads()
    started: set[threading.Thread] = set()
    for i in range(100):
        store = FeatureStore(repo_path=str(fresh_repo))
        demo.serve(store, 1, users=USERS, videos=VIDEOS, seed=i)
        started |= writer_threads() - before
        del store
        gc.collect()
    assert len(started) == 100
    assert wait_for(lambda: not any(t.is_alive() for t in started)), sum(
        t.is_alive() for t in started
    )
    assert read_samples(sample_url(fresh_repo), feature_view="user_engagement").num_rows == 1000


def test_feature_store_close_stops_the_writer_after_writing(fresh_repo: Path) -> None:
    import asyncio

    store = FeatureStore(repo_path=str(fresh_repo))
    before = writer_threads()
    store._get_provider().writer.pause()
    demo.serve(store, 2, users=USERS, videos=VIDEOS)
    ours = writer_threads() - before
    asyncio.run(store.close())
    assert ours and not any(t.is_alive() for t in ours)
    assert read_samples(sample_url(fresh_repo), feature_view="video_stats").num_rows == 20


# --- 3. no store where nobody asked for one -----------------------------------------------------


def config_in_code(repo: Path, registry: str, **parity: Any) -> RepoConfig:
    extra = {"parity": parity} if parity else {}
    return RepoConfig(
        project="video_recs",
        registry=registry,
        provider=PLUGIN,
        online_store={"type": "sqlite", "path": str(repo / "data" / "online_store.db")},
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        **extra,
    )


def test_a_store_built_in_code_logs_beside_its_registry_not_in_the_working_directory(
    fresh_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "registry_home"
    home.mkdir()
    shutil.copy(fresh_repo / "data" / "registry.db", home / "registry.db")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    store = FeatureStore(config=config_in_code(fresh_repo, str(home / "registry.db")))
    provider = store._get_provider()
    demo.serve(store, 200, users=USERS, videos=VIDEOS)  # the default rate, 1 %
    assert provider.flush_samples(timeout=60)
    written = provider.parity_stats()["written_rows"]
    assert written > 0
    assert list(cwd.iterdir()) == []
    assert not (fresh_repo / "data" / "parity.db").exists()
    # the registry's directory stands in for the repo: the default data/parity.db is under it
    table = read_samples(f"sqlite:///{home / 'data' / 'parity.db'}", feature_view="user_engagement")
    assert table.num_rows == written


def test_without_a_repo_path_or_local_registry_sampling_is_off_with_one_line(
    fresh_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    config = config_in_code(fresh_repo, "s3://no-such-bucket/registry.db")
    with caplog.at_level(logging.WARNING, logger="feast_parity"):
        provider = ParityProvider(config)
    lines = [r.getMessage() for r in caplog.records if "sampling is off" in r.getMessage()]
    assert len(lines) == 1 and "parity.store" in lines[0]
    assert provider.hook is not None and provider._sampling is False
    # an absolute store turns it on again
    absolute = config_in_code(
        fresh_repo, "s3://no-such-bucket/registry.db", store=f"sqlite:///{tmp_path / 'p.db'}"
    )
    assert ParityProvider(absolute)._sampling is True
    assert list(cwd.iterdir()) == []


# --- Feast's own SDK behaviours, with and without the plugin --------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _plain(frame_or_dict: Any) -> Any:
    """Responses as comparable Python values (NaN as None, timestamps as ISO text)."""
    if isinstance(frame_or_dict, pd.DataFrame):
        frame = frame_or_dict.sort_values(list(frame_or_dict.columns[:2])).reset_index(drop=True)
        frame = frame.astype(object).where(frame.notna(), None)
        return {c: [str(v) for v in frame[c]] for c in sorted(frame.columns)}
    return json.loads(json.dumps(frame_or_dict, default=str, sort_keys=True))


@pytest.fixture(scope="module")
def twin_repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """The object-kinds repo twice, same data and end: Feast's local provider, and ours with
    every row sampled. Populating them (materialize, push online and offline,
    write_to_online_store) is the first behaviour compared."""
    end = repos.floor_hour()
    out = {}
    for name, provider, parity in (
        ("plain", "local", None),
        ("plugin", PLUGIN, {"sample_rate": 1.0}),
    ):
        path = tmp_path_factory.mktemp(f"twin_{name}") / "repo"
        out[name] = repos.build_object_kinds_repo(
            path, provider=provider, parity=parity, end=end, project="twins"
        )
    return out


def test_populating_the_store_behaves_the_same(twin_repos: dict) -> None:
    plain, plugin = twin_repos["plain"][1], twin_repos["plugin"][1]
    assert plain["materialized"] == plugin["materialized"]
    assert plain["materialize_errors"] == plugin["materialize_errors"]
    assert plain["push_offline_error"] == plugin["push_offline_error"]


def test_online_and_historical_responses_are_identical_with_the_plugin(twin_repos: dict) -> None:
    stores = {name: FeatureStore(repo_path=str(repo)) for name, (repo, _) in twin_repos.items()}
    plain_repo = twin_repos["plain"][0]
    compared = 0
    for name in (*repos.OBJECT_KINDS_SERVICES, *repos.OBJECT_KINDS_ODFVS):
        rows = repos.entity_rows_for(plain_repo, name, 12, seed=len(name))
        for full in (False, True):
            answers = {}
            for which, store in stores.items():
                try:
                    features: Any = store.get_feature_service(name)
                except Exception:  # an on-demand view: all of its features
                    view = store.get_on_demand_feature_view(name)
                    features = [f"{name}:{f.name}" for f in view.features]
                try:
                    answers[which] = _plain(
                        store.get_online_features(
                            features=features, entity_rows=rows, full_feature_names=full
                        ).to_dict()
                    )
                except Exception as exc:  # Feast's own refusals must be the same too
                    answers[which] = f"{type(exc).__name__}: {exc}"
            assert answers["plain"] == answers["plugin"], (name, full)
            compared += 1
    assert compared == 2 * (len(repos.OBJECT_KINDS_SERVICES) + len(repos.OBJECT_KINDS_ODFVS))
    plugin = stores["plugin"]._get_provider()
    assert plugin.flush_samples(timeout=60)
    stats = plugin.parity_stats()
    assert stats["written_rows"] > 0 and stats["hook_errors"] == 0
    # offline: the same training frame for a service with an on-demand view and request data
    entity_df = pd.DataFrame(repos.entity_rows_for(plain_repo, "svc_mixed", 10, seed=3))
    entity_df["event_timestamp"] = pd.Timestamp(repos.repo_end(plain_repo))
    frames = {
        which: _plain(
            store.get_historical_features(
                entity_df=entity_df, features=store.get_feature_service("svc_mixed")
            ).to_df()
        )
        for which, store in stores.items()
    }
    assert frames["plain"] == frames["plugin"]


def test_the_feature_server_answers_the_same_with_the_plugin(twin_repos: dict) -> None:
    plain_repo = twin_repos["plain"][0]
    servers = {}
    try:
        for which, (repo, _) in twin_repos.items():
            port = _free_port()
            servers[which] = (
                subprocess.Popen(
                    [
                        *repos.feast_cli(),
                        "-c",
                        str(repo),
                        "serve",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    # Feast orders some response columns by set iteration: the same string
                    # hashes in both servers, or two plain servers differ too (feast_facts C1)
                    env={**os.environ, "PYTHONHASHSEED": "0"},
                ),
                port,
            )
        for _, port in servers.values():
            assert wait_for(lambda p=port: _healthy(p), 90), "feast serve did not start"
        for name in ("svc_mixed", "svc_alias", "svc_join_key_map"):
            rows = repos.entity_rows_for(plain_repo, name, 6, seed=7)
            columns = {key: [row[key] for row in rows] for key in rows[0]}
            body = {"feature_service": name, "entities": columns, "full_feature_names": True}
            answers = {which: _post(port, body) for which, (_, port) in servers.items()}
            assert answers["plain"] == answers["plugin"], name
            assert answers["plain"]["results"], name
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except Exception:
        return False


def _post(port: int, body: dict) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/get-online-features",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
