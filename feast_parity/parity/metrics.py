"""The one table of metrics: what each is, where it is stored, alerted, exported and sliced.

Every list of metric names elsewhere derives from :data:`METRICS`: the alert signals and their
defaults (:mod:`feast_parity.parity.alert_rules`), the stored run columns
(:mod:`feast_parity.store.schema`), the Prometheus gauges (:mod:`feast_parity.plugin.metrics`),
the cohort slices (:mod:`feast_parity.parity.cohorts`) and the report's renderers. Adding a
metric is one row here.

>>> [m.name for m in METRICS if m.alert is not None]  # doctest: +NORMALIZE_WHITESPACE
['mismatch_rate', 'stale_rate', 'silent_default_rate', 'online_null_rate', 'offline_null_rate',
 'psi', 'served_lag_p99']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AlertDefault:
    """An alert signal's default rule: absolute threshold (None: none) and sigma-band floor."""

    threshold: float | None
    min_delta: float


@dataclass(frozen=True)
class CohortUse:
    """How a rate is sliced by cohort: its finding kind, the counts it is made of, and how the
    text report names it."""

    kind: str  # the finding kind a cohort over the fail threshold produces
    count: str  # numerator field of a cohort's stats
    denominator: str  # denominator field
    short: str  # "mismatch"
    noun: str  # what the denominator counts, for text ("compared", "rows offline")


@dataclass(frozen=True)
class Metric:
    """One metric of a report row (feature or view)."""

    name: str  # the report field (a view metric may live in a nested field, see ``path``)
    level: str  # "feature" or "view"
    help: str
    gauge: str | None = None  # Prometheus gauge name suffix
    stored: bool = False  # a column of the stored run's metrics table
    alert: AlertDefault | None = None  # an alert signal, with its default rule
    thresholds: str | None = None  # prefix of its warn/fail keys in parity.thresholds
    cohort: CohortUse | None = None
    path: tuple[str, ...] = ()  # where it is in a row, when not at the top

    def value(self, row: Mapping[str, Any]) -> Any:
        """The metric's value in a report row (None when absent)."""
        current: Any = row
        for key in self.path or (self.name,):
            if not isinstance(current, Mapping):
                return None
            current = current.get(key)
        return current


METRICS: tuple[Metric, ...] = (
    Metric(
        "mismatch_rate",
        "feature",
        "Share of compared served values that differ offline",
        gauge="mismatch_ratio",
        stored=True,
        alert=AlertDefault(0.001, 0.001),
        thresholds="mismatch",
        cohort=CohortUse("value_mismatch", "mismatches", "compared", "mismatch", "compared"),
    ),
    Metric(
        "stale_rate",
        "feature",
        "Share of rows served older than offline had at request time",
        gauge="stale_ratio",
        stored=True,
        alert=AlertDefault(0.01, 0.005),
        thresholds="stale",
        cohort=CohortUse("stale_serving", "stale_rows", "rows", "stale", "rows"),
    ),
    Metric(
        "silent_default_rate",
        "feature",
        "Share of rows served a null or fill value where offline has a real one",
        gauge="silent_default_ratio",
        stored=True,
        alert=AlertDefault(0.01, 0.005),
        thresholds="silent_default",
        cohort=CohortUse(
            "silent_default", "silent_defaults", "offline_rows", "default", "rows offline"
        ),
    ),
    Metric(
        "online_null_rate",
        "feature",
        "Share of served values that are null",
        gauge="online_null_ratio",
        stored=True,
        alert=AlertDefault(None, 0.01),
    ),
    Metric(
        "offline_null_rate",
        "feature",
        "Share of offline point-in-time values null",
        gauge="offline_null_ratio",
        stored=True,
        alert=AlertDefault(None, 0.01),
    ),
    Metric(
        "psi",
        "feature",
        "Population stability index of served vs offline values",
        gauge="psi",
        stored=True,
        alert=AlertDefault(0.1, 0.05),
        thresholds="psi",
    ),
    Metric(
        "ks_statistic",
        "feature",
        "Kolmogorov-Smirnov D of served vs offline values",
        gauge="ks_statistic",
        stored=True,
    ),
    Metric("ks_pvalue", "feature", "Kolmogorov-Smirnov p-value", stored=True),
    Metric(
        "expired_rate",
        "feature",
        "Share of rows served past the view's ttl",
        gauge="expired_ratio",
        thresholds="expired",
    ),
    Metric(
        "compared",
        "feature",
        "Served values compared with an offline value",
        gauge="compared_rows",
    ),
    # threshold None: the view's freshness SLO stored with the run (lag_threshold_from_slo)
    Metric(
        "served_lag_p99",
        "view",
        "Served lag p99 (request time - served event time)",
        alert=AlertDefault(None, 300.0),
        path=("served_lag_seconds", "p99"),
    ),
)

BY_NAME = {m.name: m for m in METRICS}


def feature_signals() -> tuple[str, ...]:
    """Feature metrics that are alert signals."""
    return tuple(m.name for m in METRICS if m.alert is not None and m.level == "feature")


def view_signals() -> tuple[str, ...]:
    """View metrics that are alert signals."""
    return tuple(m.name for m in METRICS if m.alert is not None and m.level == "view")


def signal_names() -> tuple[str, ...]:
    return feature_signals() + view_signals()


def stored_feature_metrics() -> tuple[str, ...]:
    """Feature metrics kept as columns of each stored run (trends, detectors)."""
    return tuple(m.name for m in METRICS if m.stored and m.level == "feature")


def feature_gauges() -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.gauge is not None and m.level == "feature")


def cohort_metrics() -> tuple[Metric, ...]:
    """Rates sliced by cohort, in report order."""
    return tuple(m for m in METRICS if m.cohort is not None)
