"""Shared fixtures: a real demo Feast repo, applied and materialized, in a temp directory."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from feast_parity import demo
from tests.faults import now_hour

# Spark's Python workers run this interpreter (the venv's, with pyarrow and feast-parity), not
# whatever python3 is first on PATH: set before any Spark session starts (tests/e2e/test_spark.py)
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

POSTGRES_URL = os.environ.get(
    "FEAST_PARITY_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture
def build_repo(tmp_path: Path) -> Callable[..., Path]:
    """Factory: build_repo(sample_rate=..., users=..., materialize_end=...) -> applied repo."""

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
        counter["n"] += 1
        repo = tmp_path / f"repo{counter['n']}"
        demo.make_demo_repo(repo, users=users, videos=videos, days=days, end=now_hour(), **config)
        demo.feast_apply(repo)
        if materialize:
            demo.materialize(repo, end=materialize_end, days=days + 1)
        return repo

    return build


@pytest.fixture
def postgres_url() -> str:
    """A fresh schema-less database URL on the local PostgreSQL server (tables dropped after)."""
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.connect():
            pass
    except Exception as exc:  # pragma: no cover - CI starts PostgreSQL in .ci/run
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    name = f"parity_test_{os.getpid()}_{int(datetime.now().timestamp() * 1e6) % 10**9}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    yield url
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/e2e are ``e2e``; everything else (tests/unit, doctests) is ``unit``."""
    for item in items:
        path = str(item.path)
        if f"{os.sep}tests{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.e2e)
        else:
            item.add_marker(pytest.mark.unit)
