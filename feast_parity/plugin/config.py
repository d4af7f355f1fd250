"""The ``parity:`` block of ``feature_store.yaml``, validated at load time.

Feast's ``RepoConfig`` keeps unknown top-level keys, so the plugin reads its own block from it.
A bad key or value fails with one line that names it::

    >>> ParityConfig.from_mapping({"sample_rate": 2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    feast_parity.plugin.config.ParityConfigError: parity.sample_rate: must be between 0 and 1...
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from feast_parity.parity.alert_rules import AlertRules
from feast_parity.parity.cohorts import CohortConfig
from feast_parity.parity.findings import CheckThresholds
from feast_parity.plugin.errors import ParityError
from feast_parity.store.engine import SUPPORTED_SCHEMES as SUPPORTED_STORE_SCHEMES


class ParityConfigError(ParityError, ValueError):
    """The ``parity:`` block is malformed; the message names the key."""


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
            return cls.model_validate(dict(block))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("parity", *first["loc"]))
            message = first["msg"]
            if first["type"] == "extra_forbidden":
                message = "unknown key"
            elif message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            raise ParityConfigError(f"{where}: {message}") from None

    @classmethod
    def from_repo_config(cls, repo_config: Any) -> ParityConfig:
        """Read the block from a Feast RepoConfig (extra keys live in ``model_extra``)."""
        extra = getattr(repo_config, "model_extra", None) or {}
        return cls.from_mapping(extra.get("parity"))

    def store_url(self, repo_path: str | os.PathLike[str] | None = None) -> str:
        """The store URL with a relative SQLite path resolved against the repo directory."""
        url = self.store
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and repo_path:
            relative = url[len("sqlite:///") :]
            if relative and relative != ":memory:":
                return "sqlite:///" + os.path.join(os.fspath(repo_path), relative)
        return url
