"""Build, apply, materialize and serve the demo video-recommendation repo (``feast_repo/``).

Used by ``make demo``, the test suite and the benchmarks, so that all three drive the same real
Feast repo: ``feast apply`` through Feast's CLI, materialization and ``get_online_features``
through Feast's Python API.

    python -m feast_parity.demo            # what `make demo` runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
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
) -> Path:
    """Write ``feature_store.yaml`` registering the plugin as DESIGN.md shows."""
    config: dict[str, Any] = {
        "project": "video_recs",
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
    **config: Any,
) -> Path:
    """Copy the demo definitions to ``target``, generate its data and write its config."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if target.resolve() != DEMO_SOURCE.resolve():
        for name in REPO_FILES:
            shutil.copy(DEMO_SOURCE / name, target / name)
    _generator(target).generate(target / "data", users=users, videos=videos, days=days, end=end)
    write_config(target, **config)
    return target


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
) -> list[dict[str, list[Any]]]:
    """Serve ``requests`` ranking requests through the feature service; return the responses."""
    service = store.get_feature_service("ranking_model_v1")
    rng = np.random.default_rng(seed)
    responses = []
    for i in range(requests):
        rows = request_rows(rng, entities, users, videos)
        responses.append(store.get_online_features(service, entity_rows=rows).to_dict())
        if progress and (i + 1) % max(1, requests // 10) == 0:
            print(f"  served {i + 1}/{requests} requests", flush=True)
    return responses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build and exercise the demo repo.")
    parser.add_argument("--repo", type=Path, default=DEMO_SOURCE)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sample-rate", type=float, default=0.05)
    args = parser.parse_args(argv)
    repo: Path = args.repo
    data = repo / "data"
    if data.exists():
        shutil.rmtree(data)
    print(f"1/5 generating source data in {data}")
    make_demo_repo(repo, sample_rate=args.sample_rate)
    print("2/5 feast apply")
    feast_apply(repo)
    print("3/5 materializing into the online store")
    materialize(repo)
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    print(f"4/5 serving {args.requests} ranking requests of 10 videos each")
    started = time.perf_counter()
    serve(store, args.requests, progress=True)
    elapsed = time.perf_counter() - started
    provider = store._get_provider()
    provider.flush_samples()
    stats = provider.parity_stats()
    print(f"    {args.requests / elapsed:.0f} requests/s; sample log: {stats}")
    print("5/5 parity check")
    os.environ.setdefault("COLUMNS", "120")
    from feast_parity.cli import main as cli_main

    return cli_main(
        [
            "check",
            "--repo",
            str(repo),
            "--json",
            str(data / "report.json"),
            "--html",
            str(data / "report.html"),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
