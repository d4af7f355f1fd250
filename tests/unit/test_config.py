"""The ``parity:`` block of feature_store.yaml (feast_parity.plugin.config.ParityConfig).

A bad key or value fails at load with one line that names it (``parity.<key>: ...``); every
field has a default. The same failures through a real Feast repo (the ``FeatureStore`` API,
the ``feast apply`` CLI) and hostile entity rows are tests/e2e/test_config_e2e.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from feast_parity.parity.findings import CheckThresholds
from feast_parity.plugin.config import SUPPORTED_STORE_SCHEMES, ParityConfig, ParityConfigError


def config_error(block: Any) -> str:
    with pytest.raises(ParityConfigError) as info:
        ParityConfig.from_mapping(block)
    message = str(info.value)
    assert "\n" not in message, "the message must be one line"
    return message


# --- ParityConfig ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "type_name"),
    [(0.5, "float"), ([0.1, 42], "list"), ("sqlite:///x.db", "str"), (True, "bool")],
)
def test_block_that_is_not_a_mapping_is_rejected(block: Any, type_name: str) -> None:
    message = config_error(block)
    assert message.startswith("parity:")
    assert "mapping" in message and type_name in message


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"sample_rat": 0.1}, "parity.sample_rat"),
        ({"sample_rate": 0.1, "storage": "sqlite:///x.db"}, "parity.storage"),
        ({"thresholds": {"psi_wran": 0.2}}, "parity.thresholds.psi_wran"),
    ],
)
def test_unknown_key_is_named(block: dict[str, Any], key: str) -> None:
    assert config_error(block) == f"{key}: unknown key"


@pytest.mark.parametrize("rate", [-0.1, 1.5, 1.0000001, math.nan, math.inf, "often", None])
def test_sample_rate_outside_unit_interval_is_rejected(rate: Any) -> None:
    assert config_error({"sample_rate": rate}).startswith("parity.sample_rate: ")


@pytest.mark.parametrize("store", ["mysql://x", "s3://bucket/samples", "parity.db", "duckdb:///x"])
def test_unknown_store_scheme_names_key_and_lists_supported(store: str) -> None:
    message = config_error({"store": store})
    assert message.startswith("parity.store: ")
    scheme = store.split("://")[0]
    assert repr(scheme) in message
    for supported in SUPPORTED_STORE_SCHEMES:
        assert f"{supported}://" in message
    assert {"sqlite", "postgresql"} <= set(SUPPORTED_STORE_SCHEMES)


def test_other_field_errors_name_their_key() -> None:
    assert config_error({"queue_size": 0}).startswith("parity.queue_size: ")
    assert config_error({"thresholds": {"psi_warn": -1}}).startswith("parity.thresholds.psi_warn: ")
    assert config_error({"flush_interval_seconds": 0}).startswith("parity.flush_interval_seconds: ")


@pytest.mark.parametrize(
    "block",
    [
        None,
        {},
        {"sample_rate": 0.0},
        {"sample_rate": 1.0, "seed": 0},
        {"store": "sqlite:////abs/parity.db"},
        {"store": "postgresql://u@h/db"},
        {"store": "postgresql+psycopg://u@h/db"},
        {"store": "postgresql+psycopg2://u@h/db"},
    ],
)
def test_valid_blocks_are_accepted(block: dict[str, Any] | None) -> None:
    config = ParityConfig.from_mapping(block)
    for key, value in (block or {}).items():
        assert getattr(config, key) == value


def test_relative_sqlite_store_resolves_against_the_repo() -> None:
    relative = ParityConfig.from_mapping({"store": "sqlite:///data/p.db"})
    assert relative.store_url("/srv/repo") == "sqlite:////srv/repo/data/p.db"
    absolute = ParityConfig.from_mapping({"store": "sqlite:////var/p.db"})
    assert absolute.store_url("/srv/repo") == "sqlite:////var/p.db"
    pg = ParityConfig.from_mapping({"store": "postgresql://u@h/db"})
    assert pg.store_url("/srv/repo") == "postgresql://u@h/db"


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_outside_hash_seed_range_names_the_key(seed: int) -> None:
    assert config_error({"seed": seed}).startswith("parity.seed: ")


# --- thresholds -----------------------------------------------------------------------------


def test_inverted_thresholds_are_rejected_with_the_key_named() -> None:
    message = config_error({"thresholds": {"psi_warn": 0.5}})
    assert message.startswith("parity.thresholds: psi_warn (0.5) must not exceed psi_fail (0.25)")
    for name in ("mismatch", "stale", "expired", "silent_default"):
        message = config_error({"thresholds": {f"{name}_warn": 0.9, f"{name}_fail": 0.5}})
        assert f"{name}_warn (0.9) must not exceed {name}_fail (0.5)" in message


def test_threshold_defaults_are_the_documented_ones() -> None:
    """docs/configuration.md lists these defaults; the check and its docs must agree."""
    thresholds = ParityConfig.from_mapping({}).thresholds
    assert thresholds == CheckThresholds()
    assert (thresholds.psi_warn, thresholds.psi_fail) == (0.1, 0.25)
    assert (thresholds.mismatch_warn, thresholds.mismatch_fail) == (0.001, 0.01)
    assert (thresholds.stale_warn, thresholds.stale_fail) == (0.01, 0.05)
    assert (thresholds.expired_warn, thresholds.expired_fail) == (0.01, 0.05)
    assert (thresholds.silent_default_warn, thresholds.silent_default_fail) == (0.01, 0.05)
    assert (thresholds.min_compared, thresholds.fill_value_ratio) == (30, 5.0)
    assert (thresholds.fill_value_min_share, thresholds.fill_value_min_rows) == (0.05, 3)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("drift_confidence", 0.5),
        ("drift_confidence", 1.0),
        ("fill_value_ratio", 1.0),
        ("fill_value_min_share", 0.0),
        ("fill_value_min_rows", 0),
        ("mismatch_relative_tolerance", -0.1),
        ("expired_fail", 1.5),
    ],
)
def test_out_of_range_thresholds_name_their_key(key: str, value: float) -> None:
    assert config_error({"thresholds": {key: value}}).startswith(f"parity.thresholds.{key}: ")


def test_cohort_alert_and_redaction_blocks_are_validated_too() -> None:
    assert config_error({"cohorts": {"top_k": 0}}).startswith("parity.cohorts.top_k: ")
    assert config_error({"alerts": {"sigma": 0}}).startswith("parity.alerts.sigma: ")
    assert config_error({"redact": ["no_colon"]}).startswith("parity.redact: ")
    assert config_error({"engine": "dask"}).startswith("parity.engine: unknown engine")


def test_redaction_refuses_to_start_without_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEAST_PARITY_REDACT_KEY", raising=False)
    message = config_error({"redact": ["user_engagement:country"]})
    assert "FEAST_PARITY_REDACT_KEY" in message and "refusing to log" in message
    monkeypatch.setenv("FEAST_PARITY_REDACT_KEY", "k3y")
    config = ParityConfig.from_mapping({"redact": ["user_engagement:country"]})
    assert config.redaction_key() == b"k3y"
    assert ParityConfig.from_mapping({}).redaction_key() is None


# --- sane ranges of every numeric key (issue 29, case 9) ---------------------------------------


def _block_with(pattern: str, value: Any) -> dict[str, Any]:
    """A block setting the key ``pattern`` (``*`` filled in) to ``value``; a warn/fail pair or
    min_history/baseline_runs gets its partner too, so only the range can refuse it."""
    parts = pattern.split(".")
    path = [
        ("psi" if parts[i - 1] == "signals" else "h") if part == "*" else part
        for i, part in enumerate(parts)
    ]
    leaf: dict[str, Any] = {path[-1]: value}
    name = path[-1]
    if name.endswith("_warn"):
        leaf[name[: -len("_warn")] + "_fail"] = value  # warn <= fail holds
    elif name.endswith("_fail"):
        leaf[name[: -len("_fail")] + "_warn"] = 0.0
    elif name == "min_history":
        leaf["baseline_runs"] = value
    elif name == "baseline_runs":
        leaf["min_history"] = 2
    block: dict[str, Any] = leaf
    for part in reversed(path[:-1]):
        block = {part: block}
    return block


def test_every_numeric_key_of_the_block_has_a_sane_range() -> None:
    from feast_parity.plugin.config import NUMERIC_RANGES, _numeric_leaves, _range_of

    full = ParityConfig.from_mapping(
        {
            "alerts": {
                "sustain_minutes": 30,
                "signals": {"psi": {"threshold": 0.2, "min_delta": 0.01}},
                "detector_params": {"h": 5},
            }
        }
    )
    paths = [path for path, _ in _numeric_leaves(full.model_dump())]
    assert len(paths) >= 35
    missing = [".".join(p) for p in paths if _range_of(p) is None]
    assert missing == [], f"numeric keys without a range in NUMERIC_RANGES: {missing}"
    patterns = [p.split(".") for p in NUMERIC_RANGES]
    unused = [
        ".".join(p)
        for p in patterns
        if not any(len(p) == len(q) and all(a in ("*", b) for a, b in zip(p, q)) for q in paths)
    ]
    assert unused == [], f"ranges of keys that do not exist: {unused}"


@pytest.mark.parametrize(
    "pattern",
    sorted(__import__("feast_parity.plugin.config", fromlist=["NUMERIC_RANGES"]).NUMERIC_RANGES),
)
def test_infinity_and_values_past_the_range_are_one_line_naming_the_key(pattern: str) -> None:
    from feast_parity.plugin.config import NUMERIC_RANGES

    key = "parity." + pattern.replace("signals.*", "signals.psi").replace("params.*", "params.h")
    low, high = NUMERIC_RANGES[pattern]
    for value in (math.inf, -math.inf, math.nan, high * 10 + 1, low - abs(low) - 1):
        message = config_error(_block_with(pattern, value))
        assert message.startswith(f"{key}: "), (value, message)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            {"flush_interval_seconds": math.inf},
            "parity.flush_interval_seconds: must be a finite number (got inf)",
        ),
        (
            {"flush_interval_seconds": 1e10},
            "parity.flush_interval_seconds: must be between 0.001 and 3,600 (got 10,000,000,000)",
        ),
        (
            {"queue_size": 10**9},
            "parity.queue_size: must be between 1 and 1,000,000 (got 1,000,000,000)",
        ),
        (
            {"alerts": {"resolved_retention_hours": 1e9}},
            "parity.alerts.resolved_retention_hours: "
            "must be between 0 and 87,600 (got 1,000,000,000)",
        ),
    ],
)
def test_range_messages_say_the_range_and_the_value(block: dict[str, Any], message: str) -> None:
    assert config_error(block) == message
