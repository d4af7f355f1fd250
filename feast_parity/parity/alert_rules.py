"""The alert rules: the ``parity.alerts`` block, validated, beside the engine that uses them.

One model is both the configuration (``feature_store.yaml``, validated by pydantic with errors
that name the key) and what :func:`feast_parity.parity.alerts.evaluate` reads. Each signal's
defaults come from the metrics table (:mod:`feast_parity.parity.metrics`); a configured signal
overrides only the fields it sets (``threshold: null`` means "no absolute threshold").

>>> rules = AlertRules(signals={"psi": {"min_delta": 0.01}})
>>> rules.rule("psi").threshold, rules.rule("psi").min_delta
(0.1, 0.01)
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from feast_parity.parity.metrics import BY_NAME, signal_names

DETECTOR_NAMES = ("page_hinkley", "cusum", "ewma")


class SignalRule(BaseModel):
    """One monitored metric: absolute threshold (None: none), floor of the sigma band, on/off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    threshold: float | None = Field(None, ge=0)
    min_delta: float | None = Field(None, ge=0)


def default_rule(signal: str) -> SignalRule:
    """The metrics table's default rule of a signal (docs/monitoring.md)."""
    alert = BY_NAME[signal].alert
    assert alert is not None, signal
    return SignalRule(threshold=alert.threshold, min_delta=alert.min_delta)


class AlertRules(BaseModel):
    """``parity.alerts``: when a stored metric alerts, and how KPIs corroborate it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sustain_runs: int = Field(3, ge=1)
    sustain_minutes: float | None = Field(None, gt=0)
    sigma: float = Field(3.0, gt=0)
    min_history: int = Field(5, ge=2)
    baseline_runs: int = Field(30, ge=2)
    resolve_runs: int = Field(1, ge=1)
    escalate_min_kinds: int = Field(2, ge=1, le=3)
    signals: dict[str, SignalRule] = Field(default_factory=dict)
    lag_threshold_from_slo: bool = True
    detector: str | None = None
    detector_params: dict[str, int | float] = Field(default_factory=dict)  # ints stay ints
    kpi_source: str | None = None
    kpi_time_column: str = "timestamp"
    kpi_columns: list[str] | None = None
    score_columns: tuple[str, ...] = ("model_score",)
    kpi_sigma: float = Field(3.0, gt=0)
    kpi_min_relative_delta: float = Field(0.05, ge=0)
    resolved_retention_hours: float = Field(24.0, gt=0)

    @field_validator("signals")
    @classmethod
    def _known_signals(cls, value: dict[str, SignalRule]) -> dict[str, SignalRule]:
        unknown = sorted(set(value) - set(signal_names()))
        if unknown:
            raise ValueError(
                f"unknown signal {unknown[0]!r}; use one of {', '.join(signal_names())}"
            )
        return value

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str | None) -> str | None:
        if value not in (None, "none", *DETECTOR_NAMES):
            raise ValueError(f"unknown detector {value!r}; use page_hinkley, cusum, ewma or none")
        return None if value == "none" else value

    @model_validator(mode="after")
    def _history_fits_baseline(self) -> AlertRules:
        if self.min_history > self.baseline_runs:
            raise ValueError(
                f"min_history ({self.min_history}) must not exceed "
                f"baseline_runs ({self.baseline_runs})"
            )
        return self

    def rule(self, signal: str) -> SignalRule:
        """The signal's rule: its defaults with the configured fields on top."""
        default = default_rule(signal)
        given = self.signals.get(signal)
        if given is None:
            return default
        fields = given.model_fields_set
        return SignalRule(
            threshold=given.threshold if "threshold" in fields else default.threshold,
            min_delta=given.min_delta if given.min_delta is not None else default.min_delta,
            enabled=given.enabled,
        )
