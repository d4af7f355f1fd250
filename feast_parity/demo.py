"""Build, apply, materialize and serve the demo video-recommendation repo (``feast_repo/``).

Used by ``make demo``, the test suite and the benchmarks, so that all three drive the same real
Feast repo: ``feast apply`` through Feast's CLI, materialization and ``get_online_features``
through Feast's Python API.

    python -m feast_parity.demo_story      # what `make demo` runs (the demo's two acts)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEMO_SOURCE = Path(__file__).resolve().parents[1] / "feast_repo"
REPO_FILES = ("features.py", "generate_data.py")
FIRST_USER, FIRST_VIDEO = 1001, 50001


def _generator(repo: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_demo_generate_data", repo / "generate_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_config(
    repo: Path,
    *,
    sample_rate: float = 0.01,
    seed: int = 42,
    store_url: str = "sqlite:///data/parity.db",
    provider: str = "feast_parity.ParityProvider",
    online_store: Mapping[str, Any] | None = None,
    offline_store: Mapping[str, Any] | None = None,
    parity_extra: Mapping[str, Any] | None = None,
    project: str = "video_recs",
) -> Path:
    """Write ``feature_store.yaml`` registering the plugin as DESIGN.md shows."""
    config: dict[str, Any] = {
        "project": project,
        "registry": "data/registry.db",
        "provider": provider,
        "online_store": dict(online_store or {"type": "sqlite", "path": "data/online_store.db"}),
        "offline_store": dict(offline_store or {"type": "file"}),
        "entity_key_serialization_version": 3,
        "parity": {
            "sample_rate": sample_rate,
            "seed": seed,
            "store": store_url,
            **dict(parity_extra or {}),
        },
    }
    path = repo / "feature_store.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_demo_repo(
    target: Path,
    *,
    users: int = 1000,
    videos: int = 300,
    days: int = 14,
    end: datetime | None = None,
    features: str = "features.py",
    **config: Any,
) -> Path:
    """Copy the demo definitions to ``target``, generate its data and write its config.

    ``features`` names the definitions file of ``feast_repo/`` to use, copied as ``features.py``:
    ``features_postgres.py`` is the variant whose sources are PostgreSQL tables (load them with
    ``load_sources_to_postgres`` before ``feast apply``).
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if target.resolve() != DEMO_SOURCE.resolve():
        for name in REPO_FILES:
            source = DEMO_SOURCE / (features if name == "features.py" else name)
            shutil.copy(source, target / name)
    end = _generator(target).generate(
        target / "data", users=users, videos=videos, days=days, end=end
    )
    write_kpis(target / "data", end, days)
    write_config(target, **config)
    return target


KPI_FILE = "kpis.csv"


def write_kpis(data_dir: Path, end: datetime, days: int, seed: int = 11) -> Path:
    """Write the ranking model's hourly KPIs over the data window to ``data_dir/kpis.csv``.

    One row per hour ending at ``end``: ``model_score`` (mean served score), and the business
    KPIs ``click_through`` (clicks per impression) and ``watch_time`` (minutes per play), with
    a daily cycle and noise from a fixed seed. ``parity.alerts.kpi_source`` points to it.
    """
    import pandas as pd

    stamp = pd.Timestamp(end)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    hours = pd.date_range(end=stamp, periods=days * 24, freq="h")
    rng = np.random.default_rng(seed)
    cycle = np.sin(2 * np.pi * hours.hour.to_numpy() / 24.0)
    n = len(hours)
    frame = pd.DataFrame(
        {
            "timestamp": hours.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model_score": np.round(0.30 + 0.01 * cycle + rng.normal(0, 0.004, n), 5),
            "click_through": np.round(0.050 * (1 + 0.10 * cycle) + rng.normal(0, 0.001, n), 5),
            "watch_time": np.round(12.0 * (1 + 0.08 * cycle) + rng.normal(0, 0.25, n), 3),
        }
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / KPI_FILE
    frame.to_csv(path, index=False)
    return path


def postgres_store_config(url: str, **extra: Any) -> dict[str, Any]:
    """Feast's PostgreSQL online/offline store block for a SQLAlchemy URL (no SSL on loopback)."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    return {
        "type": "postgres",
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "database": parsed.database or "postgres",
        "db_schema": "public",
        "user": parsed.username or "postgres",
        "password": parsed.password or "",
        "sslmode": "disable",
        **extra,
    }


POSTGRES_SOURCE_TYPES = {
    "user_engagement": {
        "user_id": "BIGINT",
        "click_through_rate": "REAL",
        "watch_minutes": "DOUBLE PRECISION",
        "sessions": "BIGINT",
        "country": "TEXT",
        "device": "TEXT",
    },
    "video_stats": {
        "video_id": "BIGINT",
        "popularity": "DOUBLE PRECISION",
        "age_days": "BIGINT",
        "category": "TEXT",
    },
}


def load_sources_to_postgres(repo: Path, url: str) -> dict[str, int]:
    """Copy the generated Parquet sources of ``repo`` into PostgreSQL tables of the same names
    (the tables ``features_postgres.py`` reads), replacing them; return the row counts."""
    import pandas as pd
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    types = {
        "BIGINT": sa.BigInteger(),
        "REAL": postgresql.REAL(),
        "DOUBLE PRECISION": postgresql.DOUBLE_PRECISION(),
        "TEXT": sa.Text(),
    }
    engine = sa.create_engine(url)
    counts = {}
    try:
        for table, columns in POSTGRES_SOURCE_TYPES.items():
            frame = pd.read_parquet(Path(repo) / "data" / f"{table}.parquet")
            dtype = {name: types[kind] for name, kind in columns.items()}
            dtype["event_timestamp"] = sa.TIMESTAMP(timezone=True)
            dtype["created"] = sa.TIMESTAMP(timezone=True)
            frame.to_sql(table, engine, if_exists="replace", index=False, dtype=dtype)
            counts[table] = len(frame)
    finally:
        engine.dispose()
    return counts


def feast_apply(repo: Path) -> None:
    """Run the real ``feast apply`` CLI on the repo; raise with Feast's output on failure."""
    feast_cli = Path(sys.executable).with_name("feast")
    command = [str(feast_cli)] if feast_cli.exists() else [sys.executable, "-m", "feast.cli.cli"]
    result = subprocess.run(
        [*command, "-c", str(repo), "apply"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"feast apply failed:\n{result.stdout}\n{result.stderr}")


def materialize(
    repo: Path, end: datetime | None = None, views: list[str] | None = None, days: int = 15
) -> None:
    """Materialize ``views`` (default all) from ``days`` before ``end`` (default now)."""
    from feast import FeatureStore

    end = end or datetime.now(timezone.utc)
    store = FeatureStore(repo_path=str(repo))
    store.materialize(end - timedelta(days=days), end, feature_views=views)


def request_rows(
    rng: np.random.Generator, entities: int, users: int, videos: int
) -> list[dict[str, int]]:
    """One ranking request: one user against ``entities`` candidate videos."""
    user = int(rng.integers(FIRST_USER, FIRST_USER + users))
    chosen = rng.choice(videos, size=entities, replace=entities > videos)
    return [{"user_id": user, "video_id": FIRST_VIDEO + int(v)} for v in chosen]


def serve(
    store: Any,
    requests: int,
    *,
    entities: int = 10,
    users: int = 1000,
    videos: int = 300,
    seed: int = 0,
    progress: bool = False,
    features: Any = None,
) -> list[dict[str, list[Any]]]:
    """Serve ``requests`` ranking requests of ``features`` (default: the feature service
    ``ranking_model_v1``, fetched afresh); return the responses."""
    service = store.get_feature_service("ranking_model_v1") if features is None else features
    rng = np.random.default_rng(seed)
    responses = []
    for i in range(requests):
        rows = request_rows(rng, entities, users, videos)
        responses.append(store.get_online_features(service, entity_rows=rows).to_dict())
        if progress and (i + 1) % max(1, requests // 10) == 0:
            print(f"  served {i + 1}/{requests} requests", flush=True)
    return responses
