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

SUPPORTED_STORE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")


class ParityConfigError(ValueError):
    """The ``parity:`` block is malformed; the message names the key."""


class CheckThresholds(BaseModel):
    """Severity thresholds of the parity check (documented in docs/checks.md)."""

    model_config = ConfigDict(extra="forbid")

    psi_warn: float = Field(0.1, ge=0)
    psi_fail: float = Field(0.25, ge=0)
    mismatch_warn: float = Field(0.001, ge=0, le=1)
    mismatch_fail: float = Field(0.01, ge=0, le=1)
    stale_warn: float = Field(0.01, ge=0, le=1)
    stale_fail: float = Field(0.05, ge=0, le=1)
    silent_default_warn: float = Field(0.01, ge=0, le=1)
    silent_default_fail: float = Field(0.05, ge=0, le=1)
    min_compared: int = Field(30, ge=1)
    fill_value_ratio: float = Field(5.0, gt=1)

    @model_validator(mode="after")
    def _warn_not_above_fail(self) -> CheckThresholds:
        for name in ("psi", "mismatch", "stale", "silent_default"):
            warn, fail = getattr(self, f"{name}_warn"), getattr(self, f"{name}_fail")
            if warn > fail:
                raise ValueError(f"{name}_warn ({warn:g}) must not exceed {name}_fail ({fail:g})")
        return self


class ParityConfig(BaseModel):
    """Settings of the plugin; every field has a production-sensible default."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: float = 0.01
    seed: int = Field(42, ge=0, lt=2**64, strict=True)
    store: str = "sqlite:///data/parity.db"
    enabled: bool = True
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(500, ge=1)
    flush_interval_seconds: float = Field(1.0, gt=0)
    fill_values: list[Any] = Field(default_factory=list)
    thresholds: CheckThresholds = Field(default_factory=CheckThresholds)

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
