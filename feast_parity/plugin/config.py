"""The ``parity:`` block of ``feature_store.yaml``, validated at load time.

Feast's ``RepoConfig`` keeps unknown top-level keys, so the plugin reads its own block from it.
A bad key or value fails with one line that names it::

    >>> ParityConfig.from_mapping({"sample_rate": 2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    feast_parity.plugin.config.ParityConfigError: parity.sample_rate: must be between 0 and 1...
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from feast_parity.parity.alert_rules import AlertRules
from feast_parity.parity.cohorts import CohortConfig
from feast_parity.parity.findings import CheckThresholds
from feast_parity.plugin.errors import ParityError
from feast_parity.store.engine import SUPPORTED_SCHEMES as SUPPORTED_STORE_SCHEMES


class ParityConfigError(ParityError, ValueError):
    """The ``parity:`` block is malformed; the message names the key."""


# The sane range of every numeric key of the block, inclusive (pydantic's own bounds, exclusive
# ones included, are checked first). Beyond these a value is a typo or an attack, never a
# setting: `flush_interval_seconds: .inf` once killed the writer thread. ``*`` is any name.
# tests/unit/test_config.py holds this table to every numeric field of the models.
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "sample_rate": (0, 1),
    "seed": (0, 2**64 - 1),
    "queue_size": (1, 1_000_000),
    "batch_size": (1, 1_000_000),
    "flush_interval_seconds": (0.001, 3600),
    "thresholds.psi_warn": (0, 100),
    "thresholds.psi_fail": (0, 100),
    "thresholds.drift_confidence": (0.5, 1),
    "thresholds.mismatch_warn": (0, 1),
    "thresholds.mismatch_fail": (0, 1),
    "thresholds.mismatch_relative_tolerance": (0, 1_000_000),
    "thresholds.stale_warn": (0, 1),
    "thresholds.stale_fail": (0, 1),
    "thresholds.expired_warn": (0, 1),
    "thresholds.expired_fail": (0, 1),
    "thresholds.silent_default_warn": (0, 1),
    "thresholds.silent_default_fail": (0, 1),
    "thresholds.min_compared": (1, 1_000_000_000),
    "thresholds.fill_value_ratio": (1, 1_000_000),
    "thresholds.fill_value_min_share": (0, 1),
    "thresholds.fill_value_min_rows": (1, 1_000_000_000),
    "cohorts.top_k": (1, 100),
    "cohorts.min_rows": (1, 1_000_000_000),
    "cohorts.max_cohorts": (1, 1000),
    "cohorts.max_pvalue": (0, 1),
    "alerts.sustain_runs": (1, 10_000),
    "alerts.sustain_minutes": (0, 525_600),  # a year
    "alerts.sigma": (0, 1000),
    "alerts.min_history": (2, 10_000),
    "alerts.baseline_runs": (2, 10_000),
    "alerts.resolve_runs": (1, 10_000),
    "alerts.escalate_min_kinds": (1, 3),
    "alerts.signals.*.threshold": (0, 1e12),
    "alerts.signals.*.min_delta": (0, 1e12),
    "alerts.detector_params.*": (-1e9, 1e9),
    "alerts.kpi_sigma": (0, 1000),
    "alerts.kpi_min_relative_delta": (0, 1_000_000),
    "alerts.resolved_retention_hours": (0, 87_600),  # ten years
}


def _numeric_leaves(
    value: Any, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, number) of every int or float in a dumped block (bools are not numbers)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numeric_leaves(item, (*path, str(key)))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


def _range_of(path: tuple[str, ...]) -> tuple[float, float] | None:
    for pattern, bounds in NUMERIC_RANGES.items():
        parts = pattern.split(".")
        if len(parts) == len(path) and all(p in ("*", q) for p, q in zip(parts, path)):
            return bounds
    return None


def _shown(number: float) -> str:
    """A bound or value as a reader writes it: 1,000,000, 0.001, 1e+300."""
    if float(number).is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:g}"


def _check_ranges(config: BaseModel) -> None:
    """Raise ParityConfigError naming the first numeric key outside its sane range."""
    for path, value in _numeric_leaves(config.model_dump()):
        where = ".".join(("parity", *path))
        if isinstance(value, float) and not math.isfinite(value):
            raise ParityConfigError(f"{where}: must be a finite number (got {value})")
        bounds = _range_of(path)
        if bounds is None:
            continue
        low, high = bounds
        if not low <= value <= high:
            raise ParityConfigError(
                f"{where}: must be between {_shown(low)} and {_shown(high)} (got {_shown(value)})"
            )


class ParityConfig(BaseModel):
    """Settings of the plugin; every field has a production-sensible default."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: float = 0.01
    seed: int = Field(42, ge=0, lt=2**64, strict=True)
    store: str = "sqlite:///data/parity.db"
    sample_log: str | None = None
    engine: str = "local"
    spark_conf: dict[str, str] = Field(default_factory=dict)  # --engine spark: session settings
    offline_join: str = "auto"
    enabled: bool = True
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(5_000, ge=1)
    flush_interval_seconds: float = Field(1.0, gt=0)
    fill_values: list[Any] = Field(default_factory=list)
    thresholds: CheckThresholds = Field(default_factory=CheckThresholds)
    cohorts: CohortConfig = Field(default_factory=CohortConfig)
    alerts: AlertRules = Field(default_factory=AlertRules)
    redact: list[str] = Field(default_factory=list)
    redact_key_env: str = "FEAST_PARITY_REDACT_KEY"

    @field_validator("redact")
    @classmethod
    def _refs_are_view_feature(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not isinstance(ref, str) or ref.count(":") != 1 or ref.startswith(":"):
                raise ValueError(f"expected feature refs like 'view:feature', got {ref!r}")
        return value

    @model_validator(mode="after")
    def _redaction_key_present(self) -> ParityConfig:
        if self.redact and not os.environ.get(self.redact_key_env):
            raise ValueError(
                f"redact is set but the environment variable {self.redact_key_env} (named by "
                "parity.redact_key_env) holds no key; refusing to log those values in clear"
            )
        return self

    def redaction_key(self) -> bytes | None:
        """The HMAC key for redacted features (None when nothing is redacted)."""
        if not self.redact:
            return None
        return os.environ[self.redact_key_env].encode()

    @field_validator("sample_rate")
    @classmethod
    def _rate_in_unit_interval(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"must be between 0 and 1 (got {value:g})")
        return value

    @field_validator("store")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in SUPPORTED_STORE_SCHEMES:
            raise ValueError(
                f"unknown store URL scheme {scheme or value!r}; "
                f"use one of {', '.join(s + '://' for s in SUPPORTED_STORE_SCHEMES)}"
            )
        return value

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ("local", "spark"):
            raise ValueError(f"unknown engine {value!r}; use local or spark")
        return value

    @field_validator("offline_join")
    @classmethod
    def _known_join(cls, value: str) -> str:
        if value not in ("auto", "local", "feast"):
            raise ValueError(f"unknown offline_join {value!r}; use auto, local or feast")
        return value

    @field_validator("sample_log")
    @classmethod
    def _sample_log_location(cls, value: str | None) -> str | None:
        if value is not None and not str(value).strip():
            raise ValueError("must be a directory or a URI (file://, s3://, gs://), not empty")
        return value

    def sample_sink(self, repo_path: str | os.PathLike[str] | None, writer: str) -> Any:
        """Where the writer puts sample batches: the Parquet dataset of ``sample_log`` when
        set, else the SQL store."""
        if self.sample_log:
            from feast_parity.store.sinks import ParquetSink

            base = os.fspath(repo_path) if repo_path else None
            return ParquetSink(self.sample_log, writer=writer, base_dir=base)
        from feast_parity.store.sinks import SqlSink

        return SqlSink(self.store_url(repo_path), writer=writer)

    @classmethod
    def from_mapping(cls, block: Mapping[str, Any] | None) -> ParityConfig:
        """Validate a raw ``parity:`` block; raise ParityConfigError naming the bad key."""
        if block is None:
            block = {}
        if not isinstance(block, Mapping):
            raise ParityConfigError(
                f"parity: expected a mapping of settings, got {type(block).__name__}"
            )
        try:
            config = cls.model_validate(dict(block))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("parity", *first["loc"]))
            message = first["msg"]
            if first["type"] == "extra_forbidden":
                message = "unknown key"
            elif message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            raise ParityConfigError(f"{where}: {message}") from None
        _check_ranges(config)
        return config

    @classmethod
    def from_repo_config(cls, repo_config: Any) -> ParityConfig:
        """Read the block from a Feast RepoConfig (extra keys live in ``model_extra``)."""
        extra = getattr(repo_config, "model_extra", None) or {}
        return cls.from_mapping(extra.get("parity"))

    def needs_base_directory(self) -> bool:
        """The samples go to a relative path: a relative SQLite file (the default store) or a
        relative local ``sample_log`` directory."""
        if self.sample_log:
            location = self.sample_log
            return "://" not in location and not os.path.isabs(os.path.expanduser(location))
        return self.store_is_relative()

    def store_is_relative(self) -> bool:
        """``store`` is a SQLite file given relative to the repo (as the default is)."""
        url = self.store
        relative = url[len("sqlite:///") :]
        return (
            url.startswith("sqlite:///")
            and not url.startswith("sqlite:////")
            and relative not in ("", ":memory:")
        )

    def store_url(self, repo_path: str | os.PathLike[str] | None = None) -> str:
        """The store URL with a relative SQLite path resolved against the repo directory."""
        url = self.store
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and repo_path:
            relative = url[len("sqlite:///") :]
            if relative and relative != ":memory:":
                return "sqlite:///" + os.path.join(os.fspath(repo_path), relative)
        return url


def base_directory(repo_config: Any) -> str | None:
    """Where the plugin's relative paths (the default ``sqlite:///data/parity.db``, a relative
    ``sample_log``) resolve: the repo directory; for a FeatureStore built from a RepoConfig in
    code (no repo path), the directory of its registry file when that is a local file; else None
    (the provider then does not sample, and says so once).

    >>> from feast.repo_config import RepoConfig
    >>> base_directory(RepoConfig(project="p", registry="/srv/feast/registry.db",
    ...     provider="local", online_store={"type": "sqlite", "path": "/tmp/o.db"},
    ...     entity_key_serialization_version=3))
    '/srv/feast'
    >>> base_directory(RepoConfig(project="p", registry="s3://bucket/registry.db",
    ...     provider="local", online_store={"type": "sqlite", "path": "/tmp/o.db"},
    ...     entity_key_serialization_version=3)) is None
    True
    """
    repo_path = getattr(repo_config, "repo_path", None)
    if repo_path:
        return os.fspath(repo_path)
    registry = getattr(repo_config, "registry", None)
    path = registry if isinstance(registry, str) else getattr(registry, "path", None)
    kind = "file" if isinstance(registry, str) else getattr(registry, "registry_type", "file")
    if kind != "file" or not isinstance(path, str) or not path:
        return None
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif "://" in path:
        return None
    return os.path.dirname(os.path.abspath(os.path.expanduser(path)))
