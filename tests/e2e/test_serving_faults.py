"""Fault tolerance of the serving hook, against a real Feast repo, a real PostgreSQL and a real
Parquet dataset on disk.

The sample store is made unreachable at start (SQL: a port nobody listens on, later served by a
TCP forwarder to PostgreSQL; Parquet: a location whose parent is a regular file, later a
directory), taken down mid-run (SQL: ``ALLOW_CONNECTIONS false`` plus ``pg_terminate_backend``;
Parquet: the dataset's directory replaced by a regular file) and made very slow (an ``ACCESS
EXCLUSIVE`` lock held by another connection). Throughout, every answer must equal what a
``sample_rate: 0`` store on the same repo serves, drops must be counted, the hook must drop
sampled rows before copying anything while the store is down, and logging must resume by itself
once the store is back. The tests run as root, so "unreachable" is never a permission bit: it is
a path under a regular file.

Serving processes (this file run as a script, see ``_child_main``) check shutdown: SIGTERM
flushes the queue, a previous Python SIGTERM handler is chained, SIGKILL loses only what was not
yet committed, and three processes writing one store (SQLite WAL file and PostgreSQL, or two
Parquet datasets) neither lose nor duplicate a sample.

The last tests check the writer's decoding path against Feast's own converter on planted values
of every common kind (NaN, -0.0, infinities, escapes, bytes, int32, bool, lists, nulls), and a
large request with few sampled rows.

What was logged is read back with ``feast_parity.read_samples`` (log format v3: rows keyed by
the view's own join keys). Ported from tests/test_serving_faults.py.
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
import yaml
from feast import FeatureStore

from feast_parity import demo
from feast_parity.plugin.provider import ParityProvider
from tests.e2e.serving_support import SINKS, VIEW_KEYS, Sink, make_sink, view_key

SERVICE = "ranking_model_v1"
VIEWS = ("user_engagement", "video_stats", "ranking_signals")
USERS, VIDEOS, DAYS = 200, 60, 3
SEED = 42
PLUGIN = "feast_parity.ParityProvider"
ROOT = Path(__file__).resolve().parents[2]
PYTHON_TYPE = {"Float32": float, "Float64": float, "Int64": int, "String": str}
# The writer probes a down store every retry_seconds (2 s): logging must be back well within.
RESUME_SECONDS = 12.0


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
    from feast_parity.parity.sampling import Sampler
    from feast_parity.plugin.collect import writer_id
    from feast_parity.store.writer import install_sigterm_flush

    def open_store(config: str) -> Any:
        return FeatureStore(repo_path=spec["repo"], fs_yaml_file=Path(config))

    checks: dict[str, bool] = {}
    if spec["mode"] == "chain":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        checks["installed_over_sig_ign"] = install_sigterm_flush()
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
        report["writer"] = writer_id()
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


def write_config(directory: Path, sink: Sink | None = None, **config: Any) -> Path:
    """A ``feature_store.yaml`` of its own for the shared repo (``demo.write_config`` options;
    a ``sink`` adds its store URL and ``parity_extra``)."""
    directory.mkdir(parents=True, exist_ok=True)
    config.setdefault("provider", PLUGIN)
    config.setdefault("seed", SEED)
    if sink is not None:
        config.setdefault("store_url", sink.config["store_url"])
        config["parity_extra"] = {**sink.config["parity_extra"], **config.get("parity_extra", {})}
    return demo.write_config(directory, **config)


OpenStore = Callable[..., FeatureStore]


@pytest.fixture
def open_store(repo: Path, tmp_path: Path) -> Iterator[OpenStore]:
    """Factory: open_store(sink=None, **config) -> FeatureStore on the shared repo; writers
    closed after."""
    opened: list[FeatureStore] = []

    def open_(sink: Sink | None = None, **config: Any) -> FeatureStore:
        path = write_config(tmp_path / f"config{len(opened)}", sink, **config)
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

    def __init__(self, store: FeatureStore, reference: FeatureStore, sink: Sink) -> None:
        self.store, self.reference, self.sink = store, reference, sink
        self.service = store.get_feature_service(SERVICE)
        self.reference_service = reference.get_feature_service(SERVICE)
        self.provider = store._get_provider()
        assert isinstance(self.provider, ParityProvider)
        self.rng = np.random.default_rng(7)
        self.next_user = demo.FIRST_USER
        self.request_ids: list[str | None] = []

    def serve(self, requests: int) -> list[str | None]:
        """Serve requests (one user each, 10 videos); return their parity request ids (None
        for a request whose samples the hook dropped before copying them)."""
        ids = []
        for _ in range(requests):
            videos = self.rng.choice(VIDEOS, size=10, replace=False)
            rows = [
                {"user_id": self.next_user, "video_id": demo.FIRST_VIDEO + int(v)} for v in videos
            ]
            self.next_user = demo.FIRST_USER + (self.next_user - demo.FIRST_USER + 1) % USERS
            response = self.store.get_online_features(self.service, entity_rows=rows)
            expected = self.reference.get_online_features(self.reference_service, entity_rows=rows)
            assert response.to_dict() == expected.to_dict()
            ids.append(getattr(response, "parity_request_id", None))
        self.request_ids += ids
        return ids

    def stats(self) -> dict[str, int]:
        return self.provider.parity_stats()

    def flush(self) -> None:
        assert self.provider.flush_samples(timeout=30)

    def serve_until_logging_resumes(self) -> list[str | None]:
        """After the store came back: serve one request at a time until one is written (the
        writer probes a down store every few seconds); fail after RESUME_SECONDS. Returns the
        ids of the requests served meanwhile."""
        written = self.stats()["written_rows"]
        deadline = time.monotonic() + RESUME_SECONDS
        ids: list[str | None] = []
        while True:
            ids += self.serve(1)
            self.flush()
            if self.stats()["written_rows"] > written:
                return ids
            assert time.monotonic() < deadline, (
                f"logging did not resume within {RESUME_SECONDS:g} s of the store coming back "
                f"({self.sink.kind} sink): {self.stats()}"
            )
            time.sleep(0.25)


@pytest.fixture
def server(open_store: OpenStore) -> Callable[..., Server]:
    def make(sink: Sink, **parity: Any) -> Server:
        parity.setdefault("flush_interval_seconds", 0.05)
        store = open_store(sink, sample_rate=1.0, parity_extra=parity)
        return Server(store, open_store(sample_rate=0.0), sink)

    return make


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


class Outage:
    """A sample store that is unreachable until ``restore()``, for either sink.

    SQL: a PostgreSQL URL on a port nobody listens on; ``restore`` forwards that port to the
    real server. Parquet: a location under a regular file (root ignores permission bits, not
    that); ``restore`` replaces the file with a directory."""

    def __init__(self, kind: str, tmp_path: Path, postgres_url: str) -> None:
        self.kind = kind
        self.forwarder: Forwarder | None = None
        if kind == "sql":
            self.real = sa.make_url(postgres_url)
            self.port = free_port()  # nobody listens here: connection refused
            url = self.real.set(port=self.port).render_as_string(hide_password=False)
            self.sink = make_sink("sql", tmp_path, store_url=url)
            self.reader = make_sink("sql", tmp_path, store_url=postgres_url)
        else:
            self.blocker = tmp_path / "blocker"
            self.blocker.write_text("a regular file where the dataset's parent should be\n")
            url = f"sqlite:///{tmp_path / 'samples.db'}"
            location = str(self.blocker / "samples")
            self.sink = Sink(
                "parquet",
                url,
                location,
                {"store_url": url, "parity_extra": {"sample_log": location}},
            )
            self.reader = self.sink

    def restore(self) -> None:
        if self.kind == "sql":
            host, port = self.real.host or "127.0.0.1", self.real.port or 5432
            self.forwarder = Forwarder(self.port, (host, port))
        else:
            self.blocker.unlink()
            self.blocker.mkdir()

    def close(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()


@pytest.fixture
def outage(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str) -> Iterator[Outage]:
    down = Outage(request.param, tmp_path, postgres_url)
    yield down
    down.close()


# --- 1. the sample store fails; serving does not ------------------------------------------------


@pytest.mark.parametrize("outage", SINKS, indirect=True)
def test_store_unreachable_at_start_then_back(
    outage: Outage, server: Callable[..., Server]
) -> None:
    """Unreachable from the start: every sample dropped and counted; once the store answers,
    logging resumes by itself and whole requests appear."""
    srv = server(outage.sink)
    down = srv.serve(4)
    srv.flush()
    stats = srv.stats()
    assert stats["sampled_rows"] == stats["dropped_store_error"] == stats["dropped_rows"] == 40
    assert stats["written_rows"] == stats["hook_errors"] == 0
    assert stats["store_errors"] >= 1

    outage.restore()
    waiting = srv.serve_until_logging_resumes()
    up = srv.serve(4)
    srv.flush()
    stats = srv.stats()
    logged = outage.reader.request_ids()
    assert set(logged.values()) == {30}, "a request was logged in part"
    assert set(up) <= set(logged), "requests served after the return are logged"
    assert set(logged) <= set(up + waiting), "only requests after the return are logged"
    assert not set(down) & set(logged)
    assert stats["written_rows"] == 10 * len(logged)
    assert stats["dropped_rows"] == stats["dropped_store_error"] >= 40
    assert stats["sampled_rows"] == stats["written_rows"] + stats["dropped_rows"]
    assert stats["sampled_rows"] == 10 * (len(down) + len(waiting) + len(up))
    assert stats["hook_errors"] == stats["dropped_queue_full"] == 0


class MidRunOutage:
    """Take a working store down and back: SQL by refusing and terminating connections,
    Parquet by moving the dataset's directory away and putting a regular file in its place."""

    def __init__(self, kind: str, tmp_path: Path, postgres_url: str) -> None:
        self.kind, self.url = kind, postgres_url
        if kind == "sql":
            self.sink = make_sink("sql", tmp_path, store_url=postgres_url)
        else:
            self.mount = tmp_path / "mnt"
            self.mount.mkdir()
            self.sink = make_sink("parquet", self.mount)

    def down(self) -> None:
        if self.kind == "sql":
            set_connections(self.url, allowed=False)
        else:
            self.mount.rename(self.mount.with_name("mnt.away"))
            self.mount.write_text("not a directory\n")

    def up(self) -> None:
        if self.kind == "sql":
            set_connections(self.url, allowed=True)
        elif self.mount.is_file():
            self.mount.unlink()
            self.mount.with_name("mnt.away").rename(self.mount)


@pytest.mark.parametrize("sink_kind", SINKS)
def test_store_down_mid_run_then_back(
    sink_kind: str, tmp_path: Path, postgres_url: str, server: Callable[..., Server]
) -> None:
    """The store goes away mid-run; samples meanwhile are dropped and counted; logging
    resumes after, and what was written before is still there."""
    outage = MidRunOutage(sink_kind, tmp_path, postgres_url)
    srv = server(outage.sink)
    before = srv.serve(3)
    srv.flush()
    assert srv.stats()["written_rows"] == 30

    outage.down()
    try:
        during = srv.serve(3)
        srv.flush()
        stats = srv.stats()
        assert stats["dropped_store_error"] == 30 and stats["written_rows"] == 30
        assert stats["store_errors"] >= 1
    finally:
        outage.up()

    waiting = srv.serve_until_logging_resumes()
    after = srv.serve(3)
    srv.flush()
    stats = srv.stats()
    logged = outage.sink.request_ids()
    assert set(logged.values()) == {30}, "a request was logged in part"
    assert set(before + after) <= set(logged)
    assert set(logged) <= set(before + waiting + after)
    assert not set(during) & set(logged)
    assert stats["written_rows"] == 10 * len(logged)
    assert stats["dropped_rows"] == stats["dropped_store_error"] >= 30
    assert stats["sampled_rows"] == stats["written_rows"] + stats["dropped_rows"]
    assert stats["hook_errors"] == 0


@pytest.mark.parametrize("outage", SINKS, indirect=True)
def test_while_the_store_is_down_the_hook_drops_sampled_rows_before_copying(
    outage: Outage, server: Callable[..., Server]
) -> None:
    """Once a write failed, the hook drops sampled rows on the request thread: they are
    counted (dropped_store_error) and nothing reaches the queue, even with the writer thread
    stalled; when the store returns, logging resumes by itself."""
    srv = server(outage.sink)
    srv.serve(1)
    srv.flush()
    first = srv.stats()
    assert first["store_errors"] == 1 and first["dropped_store_error"] == 10

    srv.provider.writer.pause()  # anything the hook queued now would stay in the queue
    try:
        for k in range(1, 6):
            srv.serve(1)
            stats = srv.stats()
            assert stats["queue_depth"] == 0, "the hook queued a snapshot for a down store"
            assert stats["sampled_rows"] == 10 + 10 * k
            assert stats["dropped_store_error"] == 10 + 10 * k
            assert stats["written_rows"] == stats["dropped_queue_full"] == 0
            assert stats["hook_errors"] == 0
    finally:
        srv.provider.writer.resume()

    outage.restore()
    waiting = srv.serve_until_logging_resumes()
    up = srv.serve(3)
    srv.flush()
    stats = srv.stats()
    logged = outage.reader.request_ids()
    assert set(up) <= set(logged) <= set(waiting + up)
    assert set(logged.values()) == {30}
    assert stats["sampled_rows"] == stats["written_rows"] + stats["dropped_rows"]
    assert stats["queue_depth"] == 0


def test_unreachable_parquet_location_serves_counts_drops_and_check_names_it(
    repo: Path,
    tmp_path: Path,
    open_store: OpenStore,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``parity.sample_log`` under a regular file: serving is unharmed, every sampled row is
    dropped and counted, the warning names the location, and ``feast-parity check`` on that
    repo exits 2 with one line naming where it looked."""
    import logging

    from feast_parity.cli import main as cli

    caplog.set_level(logging.WARNING, logger="feast_parity")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file\n")
    location = str(blocker / "samples")
    # A repo directory of its own on the shared registry and online store, so that the check
    # command can be pointed at it.
    checked = tmp_path / "checked_repo"
    url = f"sqlite:///{tmp_path / 'checked.db'}"
    path = write_config(
        checked,
        sample_rate=1.0,
        store_url=url,
        parity_extra={"sample_log": location, "flush_interval_seconds": 0.05},
    )
    config = yaml.safe_load(path.read_text())
    config["registry"] = str(repo / "data" / "registry.db")
    config["online_store"]["path"] = str(repo / "data" / "online_store.db")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    store = FeatureStore(repo_path=str(checked))
    srv = Server(store, open_store(sample_rate=0.0), Sink("parquet", url, location))
    try:
        srv.serve(6)
        srv.flush()
        stats = srv.stats()
    finally:
        srv.provider.writer.close(timeout=5)
    assert stats["sampled_rows"] == stats["dropped_store_error"] == stats["dropped_rows"] == 60
    assert stats["written_rows"] == stats["hook_errors"] == stats["dropped_queue_full"] == 0
    assert stats["store_errors"] >= 1
    assert blocker.is_file(), "the user's file is left alone"
    warnings = [r.getMessage() for r in caplog.records if r.name == "feast_parity"]
    assert any(location in m and "failed" in m for m in warnings), warnings

    capsys.readouterr()
    code = cli(["check", "--repo", str(checked), "--no-progress"])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, (code, captured.out[-1500:], captured.err[-1500:])
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("feast-parity: error:") and location in lines[0], lines
    assert "Traceback" not in captured.err


def test_store_stalled_by_a_lock_then_released(
    postgres_url: str, tmp_path: Path, server: Callable[..., Server]
) -> None:
    """An ACCESS EXCLUSIVE lock stalls the insert: the queue fills, overflow is counted as
    dropped, serving is unaffected; on release the stalled and queued samples are written."""
    sink = make_sink("sql", tmp_path, store_url=postgres_url)
    srv = server(sink, queue_size=3)
    first = srv.serve(1)
    srv.flush()

    locker = sa.create_engine(postgres_url).connect()
    watcher = admin(postgres_url)
    try:
        locker.execute(sa.text("LOCK TABLE parity_sample_batches IN ACCESS EXCLUSIVE MODE"))
        stalled = srv.serve(1)
        # wait until the writer's INSERT is blocked on the lock (a real stall, not a guess)
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :name "
            "AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO parity_sample_batches%'"
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

    srv.flush()
    resumed = srv.serve(2)
    srv.flush()
    stats = srv.stats()
    assert stats["sampled_rows"] == 110
    assert stats["written_rows"] == 70 and stats["dropped_rows"] == 40
    logged = sink.request_ids()
    assert logged == Counter({rid: 30 for rid in first + stalled + queued + resumed})
    assert not set(overflow) & set(logged)


# --- 2. shutdown of a serving process ----------------------------------------------------------


def spawn(spec: dict[str, Any]) -> subprocess.Popen[str]:
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}
    return subprocess.Popen(
        [sys.executable, __file__, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(__file__),
        env=env,
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


def _keys(view: str, user: int, video: int) -> tuple[int, ...]:
    return tuple({"user_id": user, "video_id": video}[k] for k in VIEW_KEYS[view])


def expected_rows(store_report: dict[str, Any]) -> Counter[tuple[str, str, tuple[int, ...]]]:
    """(request id, view, the view's join keys) of every sampled row of a store, per view."""
    return Counter(
        (request["request_id"], view, _keys(view, user, video))
        for request in store_report["requests"]
        for user, video in request["sampled"]
        for view in VIEWS
    )


def logged_rows(sink: Sink) -> Counter[tuple[str, str, tuple[int, ...]]]:
    out: Counter[tuple[str, str, tuple[int, ...]]] = Counter()
    for view in VIEWS:
        for row in sink.rows(view):
            out[(row["request_id"], view, view_key(row, view))] += 1
    return out


def logged_writers(sink: Sink) -> set[str]:
    table = sink.table()
    return set(table.column("writer").to_pylist()) if table.num_rows else set()


HOUR_LONG_BATCHES = {"flush_interval_seconds": 3600, "batch_size": 1_000_000}


@pytest.fixture(scope="module")
def kill_child(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[str], Sink, Path]]:
    """The serving process of the SIGKILL test, started together with the three of the
    shared-store test so that their interpreter start-ups overlap; it only starts serving
    when its go-file appears."""
    root = tmp_path_factory.mktemp("kill")
    sink = make_sink("sql", root, name="kill")
    config = write_config(
        root / "config",
        sink,
        sample_rate=1.0,
        parity_extra={"flush_interval_seconds": 0.05, "batch_size": 60},
    )
    go = root / "go"
    child = spawn(child_spec(repo, [config], "loop", go_file=str(go)))
    yield child, sink, go
    child.kill()
    child.communicate(timeout=30)


@pytest.mark.parametrize("sink_kind", SINKS)
def test_three_processes_share_one_store_and_flush_on_sigterm(
    repo: Path,
    tmp_path: Path,
    postgres_url: str,
    kill_child: tuple[subprocess.Popen[str], Sink, Path],
    sink_kind: str,
) -> None:
    """Three serving processes write two shared logs at once: one in small batches while
    serving (SQL: a PostgreSQL database; Parquet: a dataset directory), one with hour-long
    batches (SQL: a SQLite file in WAL mode; Parquet: another dataset), so nothing reaches it
    until SIGTERM makes all three flush at once. Every sampled row is in each log exactly once.

    Two processes have SIGTERM's default disposition: they die of SIGTERM as they would have
    without the plugin. The third has a Python handler of its own, which the plugin's handler
    calls after flushing (it exits with status 3); before installing it, that process checks
    that SIG_IGN and a provider created off the main thread leave the disposition alone.
    """
    small_batches = {"flush_interval_seconds": 0.02, "batch_size": 12}
    if sink_kind == "sql":
        late = make_sink("sql", tmp_path, name="shared")
        busy = make_sink("sql", tmp_path, store_url=postgres_url)
    else:
        late = make_sink("parquet", tmp_path, name="late_dataset")
        busy = make_sink("parquet", tmp_path, name="busy_dataset")
    configs = [
        write_config(tmp_path / "late", late, sample_rate=0.5, parity_extra=HOUR_LONG_BATCHES),
        write_config(tmp_path / "busy", busy, sample_rate=0.5, parity_extra=small_batches),
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
        assert logged_rows(late) == Counter(), f"{late.kind} log written before SIGTERM"
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
    for index, sink in enumerate([late, busy]):
        stores = [report["stores"][index] for report in reports]
        writers = {store["writer"] for store in stores}
        assert len(writers) == 3
        expected: Counter[tuple[str, str, tuple[int, ...]]] = Counter()
        for store in stores:
            stats = store["stats"]
            assert stats["sampled_rows"] > 0
            assert stats["dropped_rows"] == stats["hook_errors"] == 0
            expected += expected_rows(store)
        logged = logged_rows(sink)
        # the on-demand view is keyed by (user, video): each sampled row exactly once
        on_demand = [n for (_, view, _), n in logged.items() if view == "ranking_signals"]
        assert on_demand and max(on_demand) == 1, "a sample was logged twice"
        assert logged == expected, sink
        assert logged_writers(sink) == writers
    assert late.kind == sink_kind and busy.kind == sink_kind


def test_sigkill_loses_only_uncommitted_samples(
    kill_child: tuple[subprocess.Popen[str], Sink, Path],
) -> None:
    """SIGKILL mid-stream: what was committed stays, whole requests only; what is lost is at
    most what had not been committed at the last report plus the request in flight."""
    child, sink, go = kill_child
    read_json_line(child, "waiting")
    go.touch()
    while (last := read_json_line(child, "served"))["written_rows"] < 100:
        pass
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    per_request = sink.request_ids()
    assert set(per_request.values()) == {30}, "a request was logged in part"
    logged_entity_rows = 10 * len(per_request)
    # what reached the store before the last report stays; nothing beyond what was sampled
    assert last["written_rows"] <= logged_entity_rows <= last["sampled_rows"] + 10
    # the documented bound: queued snapshots plus one batch (batch_size 60 = 2 requests)
    assert last["sampled_rows"] - last["written_rows"] <= 10 * (last["queue_depth"] + 2)


# --- 3. the writer's decoding path logs exactly what the caller receives -------------------------


def test_planted_values_of_every_kind_are_logged_as_served(
    repo: Path, open_store: OpenStore, tmp_path: Path
) -> None:
    """Values the writer decodes without Feast's converter (and some it hands to it) are
    logged as ``response.to_dict()`` gives them, in canonical form (NaN is null, -0.0 is 0.0),
    with the protobuf kind that was served, and hashed as the documented encoding of that
    value; the row hash is the documented one over those value hashes."""
    from feast.protos.feast.types.Value_pb2 import BoolList, DoubleList, StringList
    from feast.protos.feast.types.Value_pb2 import Null as NullProto
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    from feast_parity.parity.canonical import canonical_value
    from feast_parity.parity.hashing import row_hash, schema_fingerprint, value_hash
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

    sink = make_sink("sql", tmp_path)
    store = open_store(sink, sample_rate=1.0)
    service = store.get_feature_service(SERVICE)
    # one request: the writer decodes each column once for all rows
    rows = [{"user_id": user, "video_id": demo.FIRST_VIDEO + k} for k, user in enumerate(plan)]
    response = store.get_online_features(service, entity_rows=rows)
    got = response.to_dict()
    proto = response.proto
    served_kind = {
        name: [v.WhichOneof("val") for v in result.values]
        for name, result in zip(proto.metadata.feature_names.val, proto.results, strict=True)
    }
    served = {user: {name: got[name][k] for name in got} for k, user in enumerate(plan)}
    kind_of = {
        user: {name: served_kind[name][k] for name in served_kind} for k, user in enumerate(plan)
    }
    provider = store._get_provider()
    assert provider.flush_samples(timeout=60)
    assert provider.parity_stats()["hook_errors"] == 0

    types = {f.name: str(f.dtype) for f in store.get_feature_view("user_engagement").features}
    log = sink.rows("user_engagement")
    assert len(log) == len(plan)
    assert {r["key:user_id"] for r in log} == set(plan)
    problems = []  # every cell that differs, so that one run shows them all
    for record in log:
        user = record["key:user_id"]
        want = served[user]
        hashes = {}
        for feature, declared in types.items():
            # Feast's to_dict() turns a null_val into 0; null_val means null, and is logged so
            value = None if kind_of[user][feature] == "null_val" else want[feature]
            canonical = canonical_value(value, declared)
            logged = record[f"value:{feature}"]
            cell = (user, feature, kind_of[user][feature], value)
            if record[f"status:{feature}"] != 1:
                problems.append((*cell, "status", record[f"status:{feature}"]))
            if record[f"kind:{feature}"] != kind_of[user][feature]:
                problems.append((*cell, "kind", record[f"kind:{feature}"]))
            if canonical is None or type(canonical) is PYTHON_TYPE[declared]:
                # a canonical value of the declared type: logged as that value, typed
                if not (logged == canonical and type(logged) is type(canonical)):
                    problems.append((*cell, "value", logged))
                elif (
                    canonical == 0.0
                    and isinstance(canonical, float)
                    and math.copysign(1, logged) < 0
                ):
                    problems.append((*cell, "value (canonical zero is +0.0)", logged))
            if record[f"hash:{feature}"] != value_hash(value, declared):
                problems.append((*cell, "hash", record[f"hash:{feature}"]))
            hashes[feature] = record[f"hash:{feature}"]
        if record["row_hash"] != row_hash(hashes, schema_fingerprint(types)):
            problems.append((user, "row_hash", record["row_hash"]))
    assert problems == [], "\n".join(map(repr, problems))
    by_user = {r["key:user_id"]: r for r in log}
    first = planted_users[0]
    assert by_user[first]["kind:watch_minutes"] == "double_val"  # NaN: served as a double...
    assert by_user[first]["value:watch_minutes"] is None  # ...canonically null
    assert by_user[planted_users[1]]["value:watch_minutes"] == 0.0
    assert by_user[planted_users[2]]["value:watch_minutes"] == math.inf
    assert by_user[planted_users[3]]["value:watch_minutes"] == -math.inf
    assert by_user[planted_users[2]]["kind:sessions"] == "int32_val"
    assert by_user[planted_users[4]]["value:country"] == 'q"u\\o\te \u00e9\U0001f600 \x00'
    assert by_user[planted_users[6]]["kind:country"] == "string_list_val"
    assert by_user[planted_users[8]]["kind:device"] == "null_val"
    assert by_user[planted_users[8]]["value:device"] is None
    assert by_user[planted_users[8]]["kind:sessions"] is None
    assert by_user[planted_users[8]]["value:sessions"] is None


def test_large_request_with_few_sampled_rows_logs_them_as_served(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """A 120-row request with a few sampled rows: the hook copies only those rows (not the
    whole response), and the log holds exactly their served values."""
    from feast_parity.parity.canonical import canonical_value
    from feast_parity.parity.sampling import Sampler
    from feast_parity.plugin.hook import ROW_COPY_MIN_ROWS_PER_SAMPLE

    rate = 0.02
    sampler = Sampler(rate, SEED)
    for first in range(demo.FIRST_USER, demo.FIRST_USER + USERS, 2):
        rows = [
            {"user_id": user, "video_id": demo.FIRST_VIDEO + v}
            for user in (first, first + 1)
            for v in range(VIDEOS)
        ]
        sampled = [i for i, row in enumerate(rows) if sampler.decide(row)]
        if 2 <= len(sampled) and len(rows) >= ROW_COPY_MIN_ROWS_PER_SAMPLE * len(sampled):
            break
    else:
        pytest.fail("no request with a few sampled rows among the demo users")
    sink = make_sink("sql", tmp_path)
    store = open_store(sink, sample_rate=rate)
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
    types = {
        (view.name, f.name): str(f.dtype)
        for view in [*store.list_feature_views(), *store.list_on_demand_feature_views()]
        for f in view.features
    }
    expected: Counter[tuple[Any, ...]] = Counter()
    for i in sampled:
        for view in VIEWS:
            cells = {
                name: canonical_value(got[name][i], types[(view, name)])
                for name, v in views.items()
                if v == view and name in got
            }
            key = _keys(view, rows[i]["user_id"], rows[i]["video_id"])
            expected[(view, key, tuple(sorted(cells.items())))] += 1
    logged: Counter[tuple[Any, ...]] = Counter()
    for view in VIEWS:
        for record in sink.rows(view):
            cells = {
                name[len("value:") :]: value
                for name, value in record.items()
                if name.startswith("value:")
            }
            logged[(view, view_key(record, view), tuple(sorted(cells.items())))] += 1
    assert logged == expected


if __name__ == "__main__":  # a serving process of the shutdown tests
    _child_main(json.loads(sys.argv[1]))
