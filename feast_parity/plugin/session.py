"""Opening a repo for a command: its FeatureStore, its ``parity:`` block, its stores.

Every command goes through these, so a missing ``feature_store.yaml``, a bad ``parity:`` key or
an unreachable parity store gives the same one-line error everywhere (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from feast_parity.plugin.config import ParityConfig, ParityConfigError
from feast_parity.plugin.errors import CheckError
from feast_parity.store.engine import StoreError, open_store
from feast_parity.store.samples import SampleLog


def load_store(repo: str | Path) -> tuple[Any, ParityConfig]:
    """The FeatureStore and validated parity config of a repo, or CheckError."""
    from feast import FeatureStore

    repo_path = Path(repo)
    if not (repo_path / "feature_store.yaml").exists():
        raise CheckError(f"--repo: no feature_store.yaml in {repo_path}")
    try:
        store = FeatureStore(repo_path=str(repo_path))
        config = ParityConfig.from_repo_config(store.config)
    except ParityConfigError as exc:
        raise CheckError(str(exc)) from None
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckError(f"cannot load the Feast repo at {repo_path}: {first}") from None
    return store, config


def parity_config(store: Any) -> ParityConfig:
    return ParityConfig.from_repo_config(store.config)


def open_engine(store: Any, config: ParityConfig | None = None) -> sa.Engine:
    """The parity store's engine, schema ready, or CheckError with the masked URL."""
    config = config or parity_config(store)
    try:
        return open_store(config.store_url(store.config.repo_path))
    except StoreError as exc:
        raise CheckError(str(exc)) from None


def registry_types(store: Any) -> dict[str, dict[str, str]]:
    """Declared types per view (for log v1 cells, which lack them)."""
    from feast_parity.plugin.registry import ViewCatalog

    try:
        return {v.name: dict(v.declared) for v in ViewCatalog(store.registry, store.project).all()}
    except Exception:
        return {}


def open_sample_log(store: Any, config: ParityConfig | None = None) -> tuple[sa.Engine, SampleLog]:
    """The parity store's engine and the repo's sample log (SQL and, if set, Parquet)."""

    config = config or parity_config(store)
    engine = open_engine(store, config)
    parquet = None
    if config.sample_log:
        parquet = _parquet_location(config.sample_log, str(store.config.repo_path))
    return engine, SampleLog(engine, parquet, registry_types(store))


def _parquet_location(location: str, repo_path: str) -> tuple[Any, str]:
    """The Parquet sample log's filesystem and root, or CheckError saying where it looked.
    A directory or prefix that does not exist yet is fine (nothing logged there yet: the
    window is empty); a path through a file, a bucket that does not exist, credentials the
    server refuses or an endpoint that does not answer are not."""
    import pyarrow.fs as pafs

    from feast_parity.store.sinks import open_location

    try:
        filesystem, root = open_location(location, repo_path)  # a bucket must exist
        info = filesystem.get_file_info(root)
        if info.type == pafs.FileType.File:
            raise OSError("it is a file, not a directory")
        parent = root
        while info.type == pafs.FileType.NotFound and "/" in parent.rstrip("/"):
            parent = parent.rstrip("/").rsplit("/", 1)[0] or "/"
            info = filesystem.get_file_info(parent)
            if info.type == pafs.FileType.File:
                raise OSError(f"{parent} is a file")
            if parent == "/":
                break
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckError(
            f"parity.sample_log: cannot read the sample log at {location}: {first}"
        ) from None
    return filesystem, root
