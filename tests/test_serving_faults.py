"""Fault tolerance of the serving hook, against a real Feast repo and a real PostgreSQL.

The sample store is made unreachable at start (a port nobody listens on, later served by a TCP
forwarder to PostgreSQL), taken down mid-run (``ALLOW_CONNECTIONS false`` plus
``pg_terminate_backend``) and made very slow (an ``ACCESS EXCLUSIVE`` lock held by another
connection). Throughout, every answer must equal what a ``sample_rate: 0`` store on the same
repo serves, drops must be counted, and logging must resume by itself.

Serving processes (this file run as a script, see ``_child_main``) check shutdown: SIGTERM
flushes the queue, a previous Python SIGTERM handler is chained, SIGKILL loses only what was not
yet committed, and three processes writing one store (SQLite WAL file and PostgreSQL) neither
lose nor duplicate a sample.

The last test checks the writer's fast decoding path against Feast's own converter on planted
values of every common kind (NaN, -0.0, infinities, escapes, bytes, int32, bool, lists, nulls).
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from feast import FeatureStore

from feast_parity import demo, read_samples
from feast_parity.parity.samplelog import decode_features
from feast_parity.plugin.provider import ParityProvider

SERVICE = "ranking_model_v1"
VIEWS = ("user_engagement", "video_stats", "ranking_signals")
USERS, VIDEOS, DAYS = 200, 60, 3
SEED = 42
PLUGIN = "feast_parity.ParityProvider"


# --- the serving process (this file run as a script) --------------------------------------------


def _child_main(spec: dict[str, Any]) -> None:
    """Serve ranking requests through every store of ``spec["configs"]``, report, then wait.

    Modes: ``serve`` (flush, report, exit), ``wait`` (report, then sleep until a signal),
    ``chain`` (``wait`` after checking the SIGTERM installation rules and installing a Python
    handler of its own, which the plugin's handler must call after flushing) and ``loop``
    (serve until killed, printing the counters after every request).

    The report is one JSON line per process: per store, every sampled request with its
    ``response.parity_request_id`` and the rows the documented sampler picks, and the counters.
    """
    from feast import FeatureStore

    from feast_parity import demo
    from feast_parity.parity import samplelog
    from feast_parity.parity.sampling import Sampler

    def open_store(config: str) -> Any:
        return FeatureStore(repo_path=spec["repo"], fs_yaml_file=Path(config))

    checks: dict[str, bool] = {}
    if spec["mode"] == "chain":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        checks["installed_over_sig_ign"] = samplelog.install_sigterm_flush()
        checks["sig_ign_kept"] = signal.getsignal(signal.SIGTERM) is signal.SIG_IGN

        def theirs(signum: int, frame: Any) -> None:
            print(json.dumps({"their_handler_ran": True}), flush=True)
            sys.exit(3)

        signal.signal(signal.SIGTERM, theirs)
        # A provider created off the main thread cannot install a handler, and does not try.
        worker = threading.Thread(target=lambda: open_store(spec["configs"][0])._get_provider())
        worker.start()
        worker.join()
        checks["kept_after_worker_thread"] = signal.getsignal(signal.SIGTERM) is theirs

    stores = [open_store(config) for config in spec["configs"]]
    services = [store.get_feature_service(SERVICE) for store in stores]
    providers = [store._get_provider() for store in stores]
    handler = signal.getsignal(signal.SIGTERM)
    checks["handler_installed"] = callable(handler) and handler is not signal.default_int_handler
    sampler = Sampler(spec["sample_rate"], SEED)
    rng = np.random.default_rng(spec["first_user"])
    if spec.get("go_file"):  # start serving at the same time as the other processes
        print(json.dumps({"waiting": os.getpid()}), flush=True)
        while not os.path.exists(spec["go_file"]):
            time.sleep(0.005)

    reports: list[dict[str, Any]] = [{"requests": []} for _ in stores]
    served = 0
    while spec["mode"] == "loop" or served < spec["requests"]:
        user = spec["first_user"] + served
        videos = rng.choice(VIDEOS, size=10, replace=False)
        rows = [{"user_id": user, "video_id": demo.FIRST_VIDEO + int(v)} for v in videos]
        sampled = [[r["user_id"], r["video_id"]] for r in rows if sampler.decide(r)]
        for store, service, report in zip(stores, services, reports, strict=True):
            response = store.get_online_features(service, entity_rows=rows)
            request_id = getattr(response, "parity_request_id", None)
            assert (request_id is None) == (not sampled), (request_id, sampled)
            if sampled:
                report["requests"].append({"request_id": request_id, "sampled": sampled})
        served += 1
        if spec["mode"] == "loop":
            print(json.dumps({"served": served, **providers[0].parity_stats()}), flush=True)
    if spec["mode"] == "serve":
        for provider in providers:
            assert provider.flush_samples(timeout=60)
    for provider, report in zip(providers, reports, strict=True):
        report["stats"] = provider.parity_stats()
        report["writer"] = provider._writer_id
    print(json.dumps({"pid": os.getpid(), "checks": checks, "stores": reports}), flush=True)
    if spec["mode"] in ("wait", "chain"):
        print("READY", flush=True)
        while True:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo repo, applied and materialized once for the module."""
    path = tmp_path_factory.mktemp("faults") / "repo"
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    demo.make_demo_repo(path, users=USERS, videos=VIDEOS, days=DAYS, end=end, sample_rate=0.0)
    demo.feast_apply(path)
    demo.materialize(path, days=DAYS + 1)
    return path


def write_config(directory: Path, **config: Any) -> Path:
    """A ``feature_store.yaml`` of its own for the shared repo (``demo.write_config`` options)."""
    directory.mkdir(parents=True, exist_ok=True)
    config.setdefault("provider", PLUGIN)
    config.setdefault("seed", SEED)
    return demo.write_config(directory, **config)


OpenStore = Callable[..., FeatureStore]


@pytest.fixture
def open_store(repo: Path, tmp_path: Path) -> Iterator[OpenStore]:
    """Factory: open_store(**config) -> FeatureStore on the shared repo; writers closed after."""
    opened: list[FeatureStore] = []

    def open_(**config: Any) -> FeatureStore:
        path = write_config(tmp_path / f"config{len(opened)}", **config)
        store = FeatureStore(repo_path=str(repo), fs_yaml_file=path)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        provider = store._get_provider()
        if isinstance(provider, ParityProvider) and provider._writer is not None:
            provider.writer.resume()
            provider.writer.close(timeout=5)


class Server:
    """A sampling store and the reference: every answer is checked against ``sample_rate: 0``."""

    def __init__(self, store: FeatureStore, reference: FeatureStore) -> None:
        self.store, self.reference = store, reference
        self.service = store.get_feature_service(SERVICE)
        self.reference_service = reference.get_feature_service(SERVICE)
        self.provider = store._get_provider()
        assert isinstance(self.provider, ParityProvider)
        self.rng = np.random.default_rng(7)
        self.next_user = demo.FIRST_USER
        self.request_ids: list[str] = []

    def serve(self, requests: int) -> list[str]:
        """Serve requests (one user each, 10 videos); return their parity request ids."""
        ids = []
        for _ in range(requests):
            videos = self.rng.choice(VIDEOS, size=10, replace=False)
            rows = [
                {"user_id": self.next_user, "video_id": demo.FIRST_VIDEO + int(v)} for v in videos
            ]
            self.next_user += 1
            response = self.store.get_online_features(self.service, entity_rows=rows)
            expected = self.reference.get_online_features(self.reference_service, entity_rows=rows)
            assert response.to_dict() == expected.to_dict()
            ids.append(response.parity_request_id)
        self.request_ids += ids
        return ids

    def stats(self) -> dict[str, int]:
        return self.provider.parity_stats()


@pytest.fixture
def server(open_store: OpenStore) -> Callable[..., Server]:
    def make(url: str, **parity: Any) -> Server:
        parity.setdefault("flush_interval_seconds", 0.05)
        store = open_store(sample_rate=1.0, store_url=url, parity_extra=parity)
        return Server(store, open_store(sample_rate=0.0))

    return make


def logged_request_ids(url: str) -> Counter[str]:
    """Log rows per request id."""
    return Counter(read_samples(url).column("request_id").to_pylist())


def admin(url: str) -> sa.Engine:
    """An AUTOCOMMIT engine on the server's maintenance database (not the sample store)."""
    maintenance = sa.make_url(url).set(database="postgres")
    return sa.create_engine(maintenance, isolation_level="AUTOCOMMIT")


def set_connections(url: str, allowed: bool) -> None:
    name = sa.make_url(url).database
    with admin(url).connect() as conn:
        conn.execute(
            sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        )
        if not allowed:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )


class Forwarder:
    """A TCP forwarder from a local port to PostgreSQL: the store 'comes back' on that port."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.sockets: list[socket.socket] = [self.listener]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while not self.closed.is_set():
                readable, _, _ = select.select([a, b], [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- 1. the sample store fails; serving does not ------------------------------------------------


def test_store_unreachable_at_start_then_back(
    postgres_url: str, server: Callable[..., Server]
) -> None:
    """A closed port: every sample dropped and counted; once the port answers, rows appear."""
    real = sa.make_url(postgres_url)
    port = free_port()  # nobody listens here: connection refused
    url = real.set(port=port).render_as_string(hide_password=False)
    srv = server(url)
    down = srv.serve(4)
    assert srv.provider.flush_samples(timeout=30)
    stats = srv.stats()
    assert stats["sampled_rows"] == stats["dropped_store_error"] == stats["dropped_rows"] == 40
    assert stats["written_rows"] == stats["hook_errors"] == 0
    assert stats["store_errors"] >= 1

    forwarder = Forwarder(port, (real.host or "127.0.0.1", real.port or 5432))
    try:
        up = srv.serve(4)
        assert srv.provider.flush_samples(timeout=30)
    finally:
        forwarder.close()
    stats = srv.stats()
    assert stats["written_rows"] == 40 and stats["dropped_rows"] == 40
    assert stats["sampled_rows"] == stats["written_rows"] + stats["dropped_rows"]
    logged = logged_request_ids(postgres_url)
    assert logged == Counter({rid: 30 for rid in up}), "only the requests after the return"
    assert not set(down) & set(logged)


def test_store_down_mid_run_then_back(postgres_url: str, server: Callable[..., Server]) -> None:
    """Connections refused and existing ones terminated mid-run; logging resumes after."""
    srv = server(postgres_url)
    before = srv.serve(3)
    assert srv.provider.flush_samples(timeout=30)
    assert srv.stats()["written_rows"] == 30

    set_connections(postgres_url, allowed=False)
    try:
        during = srv.serve(3)
        assert srv.provider.flush_samples(timeout=30)
        stats = srv.stats()
        assert stats["dropped_store_error"] == 30 and stats["written_rows"] == 30
        assert stats["store_errors"] >= 1
    finally:
        set_connections(postgres_url, allowed=True)

    after = srv.serve(3)
    assert srv.provider.flush_samples(timeout=30)
    stats = srv.stats()
    assert stats["written_rows"] == 60 and stats["dropped_rows"] == 30
    assert stats["sampled_rows"] == 90 and stats["hook_errors"] == 0
    assert logged_request_ids(postgres_url) == Counter({rid: 30 for rid in before + after})
    assert not set(during) & set(logged_request_ids(postgres_url))


def test_store_stalled_by_a_lock_then_released(
    postgres_url: str, server: Callable[..., Server]
) -> None:
    """An ACCESS EXCLUSIVE lock stalls the insert: the queue fills, overflow is counted as
    dropped, serving is unaffected; on release the stalled and queued samples are written."""
    srv = server(postgres_url, queue_size=3)
    first = srv.serve(1)
    assert srv.provider.flush_samples(timeout=30)

    locker = sa.create_engine(postgres_url).connect()
    watcher = admin(postgres_url)
    try:
        locker.execute(sa.text("LOCK TABLE parity_samples IN ACCESS EXCLUSIVE MODE"))
        stalled = srv.serve(1)
        # wait until the writer's INSERT is blocked on the lock (a real stall, not a guess)
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :name "
            "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO parity_samples%'"
        )
        deadline = time.monotonic() + 30
        with watcher.connect() as conn:
            while not conn.execute(query, {"name": sa.make_url(postgres_url).database}).scalar():
                assert time.monotonic() < deadline, "the writer never reached the lock"
                time.sleep(0.02)
        queued = srv.serve(3)  # the queue's capacity
        overflow = srv.serve(4)
        stats = srv.stats()
        assert stats["queue_depth"] == 3
        assert stats["dropped_queue_full"] == 40
        assert not srv.provider.flush_samples(timeout=0.2), "the stalled insert cannot finish"
        locker.commit()  # releases the lock
    finally:
        locker.close()
        watcher.dispose()

    assert srv.provider.flush_samples(timeout=30)
    resumed = srv.serve(2)
    assert srv.provider.flush_samples(timeout=30)
    stats = srv.stats()
    assert stats["sampled_rows"] == 110
    assert stats["written_rows"] == 70 and stats["dropped_rows"] == 40
    logged = logged_request_ids(postgres_url)
    assert logged == Counter({rid: 30 for rid in first + stalled + queued + resumed})
    assert not set(overflow) & set(logged)


# --- 2. shutdown of a serving process ----------------------------------------------------------


def spawn(spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(__file__),
    )


def read_json_line(child: subprocess.Popen[str], key: str, timeout: float = 120) -> dict[str, Any]:
    """The next JSON line of the child's stdout that has ``key``."""
    assert child.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            _, err = child.communicate(timeout=10)
            raise AssertionError(f"child exited ({child.returncode}): {err[-3000:]}")
        if line.startswith("{") and key in (data := json.loads(line)):
            return data
    raise AssertionError(f"no {key!r} line from the child")


def child_spec(repo: Path, configs: list[Path], mode: str, **extra: Any) -> dict[str, Any]:
    spec = {
        "repo": str(repo),
        "configs": [str(c) for c in configs],
        "mode": mode,
        "sample_rate": 1.0,
        "first_user": demo.FIRST_USER,
        "requests": 6,
    }
    return {**spec, **extra}


def expected_rows(store_report: dict[str, Any]) -> Counter[tuple[str, str, int, int]]:
    """(request id, view, user, video) of every sampled row of a store, once per view."""
    return Counter(
        (request["request_id"], view, user, video)
        for request in store_report["requests"]
        for user, video in request["sampled"]
        for view in VIEWS
    )


def logged_rows(url: str) -> Counter[tuple[str, str, int, int]]:
    out: Counter[tuple[str, str, int, int]] = Counter()
    for row in read_samples(url).to_pylist():
        key = json.loads(row["entity_key"])
        out[(row["request_id"], row["feature_view"], key["user_id"], key["video_id"])] += 1
    return out


HOUR_LONG_BATCHES = {"flush_interval_seconds": 3600, "batch_size": 1_000_000}


@pytest.fixture(scope="module")
def kill_child(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """The serving process of the SIGKILL test, started together with the three of the
    shared-store test so that their interpreter start-ups overlap; it only starts serving
    when its go-file appears."""
    root = tmp_path_factory.mktemp("kill")
    url = f"sqlite:///{root / 'kill.db'}"
    config = write_config(
        root / "config",
        sample_rate=1.0,
        store_url=url,
        parity_extra={"flush_interval_seconds": 0.05, "batch_size": 60},
    )
    go = root / "go"
    child = spawn(child_spec(repo, [config], "loop", go_file=str(go)))
    yield child, url, go
    child.kill()
    child.communicate(timeout=30)


def test_three_processes_share_one_store_and_flush_on_sigterm(
    repo: Path,
    tmp_path: Path,
    postgres_url: str,
    kill_child: tuple[subprocess.Popen[str], str, Path],
) -> None:
    """Three serving processes write one PostgreSQL database in small batches while serving,
    and one SQLite file (WAL) with hour-long batches, so nothing reaches SQLite until SIGTERM
    makes all three flush at once. Every sampled row is in each log exactly once.

    Two processes have SIGTERM's default disposition: they die of SIGTERM as they would have
    without the plugin. The third has a Python handler of its own, which the plugin's handler
    calls after flushing (it exits with status 3); before installing it, that process checks
    that SIG_IGN and a provider created off the main thread leave the disposition alone.
    """
    sqlite_url = f"sqlite:///{tmp_path / 'shared.db'}"
    small_batches = {"flush_interval_seconds": 0.02, "batch_size": 12}
    configs = [
        write_config(
            tmp_path / "sqlite",
            sample_rate=0.5,
            store_url=sqlite_url,
            parity_extra=HOUR_LONG_BATCHES,
        ),
        write_config(
            tmp_path / "pg", sample_rate=0.5, store_url=postgres_url, parity_extra=small_batches
        ),
    ]
    go = tmp_path / "go"
    modes = ["wait", "wait", "chain"]
    children = [
        spawn(
            child_spec(
                repo,
                configs,
                mode,
                sample_rate=0.5,
                requests=10,
                first_user=demo.FIRST_USER + 50 * k,
                go_file=str(go),
            )
        )
        for k, mode in enumerate(modes)
    ]
    try:
        for child in children:
            read_json_line(child, "waiting")
        go.touch()
        reports = [read_json_line(child, "stores") for child in children]
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "READY"
        assert logged_rows(sqlite_url) == Counter(), "SQLite written before SIGTERM"
        for child in children:
            child.send_signal(signal.SIGTERM)
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            child.kill()
    for child, (out, err), report in zip(children, outputs, reports, strict=True):
        assert report["checks"]["handler_installed"]
        if report["checks"].get("sig_ign_kept") is None:
            assert child.returncode == -signal.SIGTERM, err[-2000:]
        else:
            assert report["checks"] == {
                "installed_over_sig_ign": False,
                "sig_ign_kept": True,
                "kept_after_worker_thread": True,
                "handler_installed": True,
            }
            assert child.returncode == 3, err[-2000:]  # the previous handler's sys.exit(3)
            assert '"their_handler_ran": true' in out
    for index, url in enumerate([sqlite_url, postgres_url]):
        stores = [report["stores"][index] for report in reports]
        assert len({store["writer"] for store in stores}) == 3
        expected: Counter[tuple[str, str, int, int]] = Counter()
        for store in stores:
            stats = store["stats"]
            assert stats["sampled_rows"] > 0
            assert stats["dropped_rows"] == stats["hook_errors"] == 0
            expected += expected_rows(store)
        logged = logged_rows(url)
        assert max(logged.values()) == 1, "a sample was logged twice"
        assert logged == expected, url


def test_sigkill_loses_only_uncommitted_samples(
    kill_child: tuple[subprocess.Popen[str], str, Path],
) -> None:
    """SIGKILL mid-stream: what was committed stays, whole requests only; what is lost is at
    most what had not been committed at the last report plus the request in flight."""
    child, url, go = kill_child
    read_json_line(child, "waiting")
    go.touch()
    while (last := read_json_line(child, "served"))["written_rows"] < 100:
        pass
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    per_request = logged_request_ids(url)
    assert set(per_request.values()) == {30}, "a request was logged in part"
    logged_entity_rows = 10 * len(per_request)
    # what reached the store before the last report stays; nothing beyond what was sampled
    assert last["written_rows"] <= logged_entity_rows <= last["sampled_rows"] + 10
    # the documented bound: queued snapshots plus one batch (batch_size 60 = 2 requests)
    assert last["sampled_rows"] - last["written_rows"] <= 10 * (last["queue_depth"] + 2)


# --- 3. the writer's fast decoding path logs exactly what the caller receives --------------------


def test_planted_values_of_every_kind_are_logged_as_served(
    repo: Path, open_store: OpenStore, tmp_path: Path
) -> None:
    """Values the writer decodes without Feast's converter (and some it hands to it) are
    logged as ``response.to_dict()`` gives them, sign of zero and NaN included, and hashed as
    the documented encoding of that value."""
    from feast.protos.feast.types.Value_pb2 import BoolList, DoubleList, StringList
    from feast.protos.feast.types.Value_pb2 import Null as NullProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from feast_parity.parity.hashing import hash_hex, row_and_value_hashes, value_hash
    from tests.faults import latest_rows, write_online

    # Another repo copy would cost a rebuild: plant on users the other tests do not serve.
    planted_users = [demo.FIRST_USER + USERS - 1 - k for k in range(10)]
    kinds: list[dict[str, ValueProto]] = [
        {"watch_minutes": ValueProto(double_val=float("nan"))},
        {
            "watch_minutes": ValueProto(double_val=-0.0),
            "click_through_rate": ValueProto(float_val=-0.0),
        },
        {
            "watch_minutes": ValueProto(double_val=float("inf")),
            "sessions": ValueProto(int32_val=-7),
        },
        {
            "watch_minutes": ValueProto(double_val=float("-inf")),
            "sessions": ValueProto(bool_val=True),
        },
        {"country": ValueProto(string_val='q"u\\o\te \u00e9\U0001f600 \x00')},
        {"country": ValueProto(bytes_val=b"\x00\xffraw")},
        {"country": ValueProto(string_list_val=StringList(val=["a", "b"]))},
        {"watch_minutes": ValueProto(double_list_val=DoubleList(val=[1.5, -0.0]))},
        {
            "device": ValueProto(null_val=NullProto.NULL),
            "sessions": ValueProto(),
            "watch_minutes": ValueProto(double_val=0.0),  # and -0.0 above, in the same column
        },
        {"device": ValueProto(bool_list_val=BoolList(val=[True, False]))},
    ]
    rows = latest_rows(repo, "user_engagement")
    rows = rows[rows["user_id"].isin(planted_users)].sort_values("user_id", ascending=False)
    assert len(rows) == len(kinds)
    plan = dict(zip(rows["user_id"].tolist(), kinds, strict=True))
    for user, planted in plan.items():
        write_online(
            repo,
            "user_engagement",
            rows[rows["user_id"] == user],
            override=lambda feature, value, planted=planted: planted.get(feature),
        )

    url = f"sqlite:///{tmp_path / 'samples.db'}"
    store = open_store(sample_rate=1.0, store_url=url)
    service = store.get_feature_service(SERVICE)
    # one request: the writer decodes each column once for all rows (and memoizes values)
    rows = [{"user_id": user, "video_id": demo.FIRST_VIDEO + k} for k, user in enumerate(plan)]
    got = store.get_online_features(service, entity_rows=rows).to_dict()
    served = {user: {name: got[name][k] for name in got} for k, user in enumerate(plan)}
    provider = store._get_provider()
    assert provider.flush_samples(timeout=60)
    assert provider.parity_stats()["hook_errors"] == 0

    types = {f.name: str(f.dtype) for f in store.get_feature_view("user_engagement").features}
    log = [r for r in read_samples(url).to_pylist() if r["feature_view"] == "user_engagement"]
    assert len(log) == len(plan)
    for record in log:
        user = json.loads(record["entity_key"])["user_id"]
        cells = decode_features(record["features"])
        want = served[user]
        typed = {}
        for feature, cell in cells.items():
            value = want[feature]
            if isinstance(value, float) and math.isnan(value):
                assert isinstance(cell.value, float) and math.isnan(cell.value), feature
            else:
                assert cell.value == value and type(cell.value) is type(value), (user, feature)
                if isinstance(value, float) and value == 0.0:
                    assert math.copysign(1, cell.value) == math.copysign(1, value)
            assert cell.value_hash == hash_hex(value_hash(value, types[feature])), feature
            typed[feature] = (types[feature], value)
        row_hash, _ = row_and_value_hashes(typed)
        assert record["row_hash"] % 2**64 == row_hash
        # the JSON is what json.dumps writes for the same cells: readers see one format
        raw = json.loads(record["features"])
        assert record["features"] == json.dumps(raw, separators=(",", ":"), allow_nan=True)
    online_types = {
        json.loads(r["entity_key"])["user_id"]: {
            f: c.online_type for f, c in decode_features(r["features"]).items()
        }
        for r in log
    }
    first = planted_users[0]
    assert online_types[first]["watch_minutes"] == "float64"
    assert online_types[planted_users[6]]["country"] == "list<string>"
    assert online_types[planted_users[8]]["device"] == "null"
    assert online_types[planted_users[8]]["sessions"] == "null"


if __name__ == "__main__":  # a serving process of the shutdown tests
    _child_main(json.loads(sys.argv[1]))


def test_large_request_with_few_sampled_rows_logs_them_as_served(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """A 120-row request with a few sampled rows: the hook copies only those rows (not the
    whole response), and the log holds exactly their served values."""
    from feast_parity.parity.sampling import Sampler
    from feast_parity.plugin.provider import _ROW_COPY_MIN_ROWS_PER_SAMPLE

    rate = 0.02
    sampler = Sampler(rate, SEED)
    for first in range(demo.FIRST_USER, demo.FIRST_USER + USERS, 2):
        rows = [
            {"user_id": user, "video_id": demo.FIRST_VIDEO + v}
            for user in (first, first + 1)
            for v in range(VIDEOS)
        ]
        sampled = [i for i, row in enumerate(rows) if sampler.decide(row)]
        if 2 <= len(sampled) and len(rows) >= _ROW_COPY_MIN_ROWS_PER_SAMPLE * len(sampled):
            break
    else:
        pytest.fail("no request with a few sampled rows among the demo users")
    url = f"sqlite:///{tmp_path / 'samples.db'}"
    store = open_store(sample_rate=rate, store_url=url)
    got = store.get_online_features(store.get_feature_service(SERVICE), entity_rows=rows).to_dict()
    provider = store._get_provider()
    assert provider.flush_samples(timeout=60)
    stats = provider.parity_stats()
    assert stats["sampled_rows"] == stats["written_rows"] == len(sampled)
    views = {
        field.name: projection.name
        for projection in store.get_feature_service(SERVICE).feature_view_projections
        for field in projection.features
    }
    expected = {
        (rows[i]["user_id"], rows[i]["video_id"], view): {
            name: got[name][i] for name, v in views.items() if v == view and name in got
        }
        for i in sampled
        for view in VIEWS
    }
    logged = {}
    for record in read_samples(url).to_pylist():
        key = json.loads(record["entity_key"])
        cells = decode_features(record["features"])
        logged[(key["user_id"], key["video_id"], record["feature_view"])] = {
            name: cell.value for name, cell in cells.items()
        }
    assert logged == expected
