"""Repos applied once per test process: an apply (a Feast process: ~10 s of CPU, most of it
importing Feast) runs once for each distinct repo, and each test gets a copy of the applied repo.

The copy is what the apply would have left in the test's own directory: the generated data
(fixed seeds, same end hour), the definitions, ``feature_store.yaml`` and the applied registry
and online tables. The registry and the pickled on-demand functions hold the repo's absolute
path (Feast stores the sources' file URIs; dill the definitions file's name), so every repo of
this module lives under one directory at paths of one length (``t0000001`` for the applied
original, ``r0000042`` for a copy): the copy's files are the original's with that path replaced
byte for byte, which keeps every length prefix of protobuf, pickle and SQLite records valid.
Materialization is never copied: each test materializes its copy itself, at its own time.

The ``parity:`` block (sample rate, seed, store, extra keys) is not part of what ``feast apply``
writes: copies that differ only there share one apply, and each copy gets its own
``feature_store.yaml``, whose block is validated as the apply would have (ParityProvider's
constructor reads it).
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from feast_parity import demo

# demo.write_config's arguments that only fill the parity: block
PARITY_ONLY = ("sample_rate", "seed", "store_url", "parity_extra")
PLUGIN = "feast_parity.ParityProvider"
_ROOT: list[Path] = []
_ORIGINALS: dict[str, Path] = {}
_NUMBERS = itertools.count(1)


def _root(base: Path) -> Path:
    if not _ROOT:
        root = base / "applied"
        root.mkdir(parents=True, exist_ok=True)
        _ROOT.append(root)
    return _ROOT[0]


def _key(users: int, videos: int, days: int, end: datetime, config: dict[str, Any]) -> str:
    applied = {k: v for k, v in config.items() if k not in PARITY_ONLY}
    return json.dumps([users, videos, days, end.isoformat(), applied], sort_keys=True, default=str)


def applied_demo_repo(
    base: Path, *, users: int, videos: int, days: int, end: datetime, **config: Any
) -> Path:
    """A new directory under ``base`` holding the demo repo made with these arguments and
    applied with the real ``feast apply`` (not materialized)."""

    def make(path: Path) -> None:
        demo.make_demo_repo(path, users=users, videos=videos, days=days, end=end, **config)
        demo.feast_apply(path)

    copy = applied_copy(base, "demo:" + _key(users, videos, days, end, config), make)
    demo.write_config(copy, **{k: v for k, v in config.items() if k != "features"})
    if config.get("provider", PLUGIN) == PLUGIN:
        _validate_parity_block(copy)
    return copy


def applied_copy(base: Path, key: str, make: Callable[[Path], None]) -> Path:
    """A new directory under ``base`` holding a copy of the repo that ``make(path)`` writes
    and applies at ``path``; ``make`` runs once per process for each ``key``."""
    root = _root(base)
    original = _ORIGINALS.get(key)
    if original is None:
        original = root / f"t{next(_NUMBERS):07d}"
        make(original)
        _ORIGINALS[key] = original
    copy = root / f"r{next(_NUMBERS):07d}"
    assert len(str(copy)) == len(str(original))
    shutil.copytree(original, copy, ignore=shutil.ignore_patterns("__pycache__"))
    old, new = str(original).encode(), str(copy).encode()
    for path in copy.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if old in data:
                path.write_bytes(data.replace(old, new))
    return copy


def _validate_parity_block(repo: Path) -> None:
    """Fail as ``feast apply`` would on a bad ``parity:`` block (ParityProvider reads it)."""
    from feast.repo_config import load_repo_config

    from feast_parity.plugin.config import ParityConfig

    try:
        ParityConfig.from_repo_config(load_repo_config(repo, repo / "feature_store.yaml"))
    except Exception as exc:
        raise RuntimeError(f"feast apply failed:\n{exc}") from exc
