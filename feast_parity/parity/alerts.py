"""Alerts over stored check runs: sustained signals, KPI corroboration, open/resolved state.

A *signal* is one metric of one target over the stored runs (oldest first): the PSI of
``user_engagement:watch_minutes``, the served lag p99 of ``video_stats``... A run is
*abnormal* for a signal when its value is

* at or above the signal's threshold (``threshold``), or
* more than ``max(sigma * std, min_delta)`` above the mean of the signal's own history
  (``sigma``): the last ``baseline_runs`` values that were *normal*, once there are
  ``min_history`` of them (abnormal values never enter the baseline, so a spike cannot widen
  the band that should catch the next one), or
* (optional) shifted according to a change-point detector (``detector``: Page-Hinkley, CUSUM
  or EWMA of :mod:`feast_parity.parity.detectors`, mode ``up``): after a detection the signal
  stays abnormal while its value is more than ``min_delta`` above the pre-change baseline mean.

An alert *opens* when a signal has been abnormal for ``sustain_runs`` consecutive runs that
have a value (and, when ``sustain_minutes`` is set, for at least that long between the first
and the current abnormal run's window end). While it is open there is no second alert for the
same signal (de-duplication); it *resolves* after ``resolve_runs`` consecutive normal runs.
Runs without a value for the signal (insufficient data) neither extend nor break a streak.

Severity: a parity signal alone is a ``warn``. It is escalated to ``fail`` when other kinds of
evidence moved with it: the model's served score (``score_columns`` of the KPI source) and the
business KPIs (its other columns). A KPI column *corroborates* an alert at a run when its
per-run means were beyond ``max(kpi_sigma * std, kpi_min_relative_delta * |mean|)`` of its
values over the ``baseline_runs`` runs *before the alert's streak began*, in either
direction, for the last ``sustain_runs`` runs of the streak. The alert is ``fail`` when the
number of distinct kinds (parity, model_score, business_kpi) reaches ``escalate_min_kinds``.
Comparing the KPI with its level before the feature moved (and not with its own long history)
means a KPI that moved a month ago corroborates nothing today.

Everything here is a causal, deterministic function of the stored runs and the KPI table:
adding runs never changes how earlier runs were judged, and re-evaluating the same runs gives
the same alerts (same ids), which :func:`store_alerts` writes by replacing the project's rows.
No Feast import: the ``parity.alerts`` block is an
:class:`~feast_parity.parity.alert_rules.AlertRules`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import xxhash

from feast_parity.parity import detectors
from feast_parity.parity.alert_rules import AlertRules, SignalRule
from feast_parity.parity.kpis import KpiTable
from feast_parity.parity.metrics import feature_signals, view_signals
from feast_parity.parity.window import parse_time

KIND_PARITY, KIND_SCORE, KIND_KPI = "parity", "model_score", "business_kpi"
DETECTORS: dict[str, Any] = {
    "page_hinkley": detectors.PageHinkley,
    "cusum": detectors.CUSUM,
    "ewma": detectors.EWMA,
}
SEVERITY_ORDER = {"warn": 1, "fail": 2}


# --- runs and series -------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    run_id: str
    start: datetime
    end: datetime


def _time(value: str | datetime) -> datetime:
    parsed = parse_time(value)
    assert parsed is not None
    return parsed


def runs_of(reports: Sequence[Mapping[str, Any]]) -> list[Run]:
    """The runs of stored reports, ordered by window end (as ``results.load_runs`` gives them)."""
    runs = [
        Run(r["run_id"], _time(r["window"]["start"]), _time(r["window"]["end"])) for r in reports
    ]
    return sorted(runs, key=lambda r: (r.end, r.start, r.run_id))


SignalKey = tuple[str, str]  # (signal, target)


@dataclass(frozen=True)
class Observation:
    value: float
    threshold: float | None  # per-run threshold (the SLO for served lag), else the rule's


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parity_series(
    reports: Sequence[Mapping[str, Any]], rules: AlertRules
) -> dict[SignalKey, dict[int, Observation]]:
    """Per signal, the observation of each run (by run index) that has one.

    Features with status ``insufficient_data`` contribute nothing to a run: their rates rest
    on too few rows to be judged.
    """
    order = {run.run_id: i for i, run in enumerate(runs_of(reports))}
    series: dict[SignalKey, dict[int, Observation]] = {}
    watched = [(s, rules.rule(s)) for s in feature_signals() if rules.rule(s).enabled]
    for report in reports:
        index = order[report["run_id"]]
        for row in report.get("features") or []:
            if row.get("status") == "insufficient_data":
                continue
            for signal, rule in watched:
                value = _finite(row.get(signal))
                if value is not None:
                    key = (signal, row["feature"])
                    series.setdefault(key, {})[index] = Observation(value, rule.threshold)
        for view in report.get("feature_views") or []:
            rule = rules.rule("served_lag_p99")
            value = _finite((view.get("served_lag_seconds") or {}).get("p99"))
            if not rule.enabled or value is None:
                continue
            threshold = rule.threshold
            if threshold is None and rules.lag_threshold_from_slo:
                threshold = _finite(view.get("slo_seconds"))
            key = ("served_lag_p99", view["feature_view"])
            series.setdefault(key, {})[index] = Observation(value, threshold)
    return series


# --- evaluation --------------------------------------------------------------------------------


@dataclass
class Point:
    """How one run was judged for one signal."""

    value: float
    abnormal: bool
    reasons: tuple[str, ...]
    baseline_mean: float | None
    baseline_std: float | None
    threshold: float | None


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    array = np.fromiter(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


class _Baseline:
    """The last ``size`` normal values with their mean and sample std, updated in O(1).

    Running sums around a shift (the first value) are exact enough for the rates, PSI and lags
    watched here; they are recomputed from the window every ``size`` updates so rounding
    cannot accumulate over long histories."""

    def __init__(self, size: int) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.shift = 0.0
        self.total = 0.0
        self.squares = 0.0
        self.updates = 0

    def __len__(self) -> int:
        return len(self.values)

    def append(self, x: float) -> None:
        if not self.values:
            self.shift = x
        if len(self.values) == self.values.maxlen:
            old = self.values[0] - self.shift
            self.total -= old
            self.squares -= old * old
        self.values.append(x)
        d = x - self.shift
        self.total += d
        self.squares += d * d
        self.updates += 1
        if self.updates % (self.values.maxlen or 1) == 0:
            self.shift = self.values[0]
            deltas = [v - self.shift for v in self.values]
            self.total = math.fsum(deltas)
            self.squares = math.fsum(d * d for d in deltas)

    def mean_std(self) -> tuple[float, float]:
        n = len(self.values)
        mean = self.total / n
        if n < 2:
            return self.shift + mean, 0.0
        variance = max(self.squares - n * mean * mean, 0.0) / (n - 1)
        return self.shift + mean, math.sqrt(variance)


def judge_signal(
    observations: Mapping[int, Observation], rule: SignalRule, rules: AlertRules
) -> dict[int, Point]:
    """Classify each observed run of a signal as normal or abnormal (causal: past only)."""
    history = _Baseline(rules.baseline_runs)
    detector = None
    if rules.detector is not None:
        detector = DETECTORS[rules.detector](**{**rules.detector_params, "mode": "up"})
    shifted_from: float | None = None
    points: dict[int, Point] = {}
    for index in sorted(observations):
        obs = observations[index]
        x = obs.value
        min_delta = rule.min_delta or 0.0  # rules.rule() always resolves it
        reasons = []
        if obs.threshold is not None and x >= obs.threshold:
            reasons.append("threshold")
        mean: float | None = None
        std: float | None = None
        if len(history) >= rules.min_history:
            mean, std = history.mean_std()
            if mean is not None and x - mean > max(rules.sigma * (std or 0.0), min_delta):
                reasons.append("sigma")
        if detector is not None:
            detector.update(x)
            if detector.drift_detected and len(history):
                shifted_from = mean if mean is not None else history.mean_std()[0]
            if shifted_from is not None:
                if x - shifted_from > min_delta:
                    reasons.append("detector")
                else:
                    shifted_from = None
        abnormal = bool(reasons)
        if not abnormal:
            history.append(x)
        points[index] = Point(x, abnormal, tuple(reasons), mean, std, obs.threshold)
    return points


@dataclass
class AlertEvent:
    alert_id: str
    run_id: str
    at: str
    event: str  # opened | escalated | deescalated | resolved
    severity: str
    value: float | None
    message: str


@dataclass
class Alert:
    alert_id: str
    project: str
    signal: str
    target: str
    target_kind: str  # feature | feature_view
    state: str  # open | resolved
    severity: str  # warn | fail: current (open) or last before resolution
    peak_severity: str
    first_abnormal_at: str  # window end of the first abnormal run of the streak
    opened_at: str  # window end of the run at which it became sustained
    opened_run_id: str
    last_abnormal_at: str
    resolved_at: str | None
    resolved_run_id: str | None
    abnormal_runs: int
    value: float
    baseline_mean: float | None
    baseline_std: float | None
    threshold: float | None
    reasons: list[str]
    corroboration: list[dict[str, Any]]
    message: str
    events: list[AlertEvent] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Evaluation:
    project: str
    runs: list[Run]
    alerts: list[Alert]
    kpi_columns: list[str]

    @property
    def latest_end(self) -> datetime | None:
        return self.runs[-1].end if self.runs else None

    def open_alerts(self) -> list[Alert]:
        return _worst_first([a for a in self.alerts if a.state == "open"])

    def recently_resolved(self, hours: float) -> list[Alert]:
        """Resolved within ``hours`` before the newest run's window end (not the wall clock)."""
        return recently_resolved(self.alerts, self.latest_end, hours)

    def exit_code(self) -> int:
        return 1 if any(a.severity == "fail" for a in self.open_alerts()) else 0


def _worst_first(alerts: Iterable[Alert]) -> list[Alert]:
    return sorted(
        alerts, key=lambda a: (-SEVERITY_ORDER[a.severity], a.opened_at, a.signal, a.target)
    )


def recently_resolved(
    alerts: Iterable[Alert], latest: datetime | None, hours: float
) -> list[Alert]:
    if latest is None:
        return []
    cutoff = latest - timedelta(hours=hours)
    found = [
        a
        for a in alerts
        if a.state == "resolved" and a.resolved_at and _time(a.resolved_at) >= cutoff
    ]
    return sorted(found, key=lambda a: (a.resolved_at or "", a.signal, a.target), reverse=True)


def _alert_id(project: str, signal: str, target: str, opened_run_id: str) -> str:
    key = f"{project}|{signal}|{target}|{opened_run_id}".encode()
    return f"{xxhash.xxh3_64_intdigest(key):016x}"


def _sustained(runs: Sequence[Run], streak: Sequence[int], rules: AlertRules) -> bool:
    if len(streak) < rules.sustain_runs:
        return False
    if rules.sustain_minutes is None:
        return True
    minutes = (runs[streak[-1]].end - runs[streak[0]].end).total_seconds() / 60.0
    return minutes >= rules.sustain_minutes


def _fmt(value: float | None, signal: str) -> str:
    if value is None:
        return "-"
    if signal == "served_lag_p99":
        return f"{value:.0f}s"
    if signal.endswith("_rate"):
        return f"{value:.2%}"
    return f"{value:.3f}"


class _Corroborator:
    """Decides which KPI columns moved with a parity streak (see the module docstring)."""

    def __init__(self, runs: Sequence[Run], kpis: KpiTable | None, rules: AlertRules) -> None:
        self.runs = runs
        self.ends = [run.end.isoformat() for run in runs]
        self.rules = rules
        self.means = kpis.means(runs) if kpis is not None else {}

    def kind(self, column: str) -> str:
        return KIND_SCORE if column in self.rules.score_columns else KIND_KPI

    def at(self, streak_start: int, index: int) -> list[dict[str, Any]]:
        rules = self.rules
        found = []
        for column, values in self.means.items():
            before = [
                v
                for v in values[max(0, streak_start - rules.baseline_runs) : streak_start]
                if v is not None
            ]
            if len(before) < rules.min_history:
                continue
            mean, std = _mean_std(before)
            band = max(rules.kpi_sigma * std, rules.kpi_min_relative_delta * abs(mean))
            observed = [i for i in range(streak_start, index + 1) if values[i] is not None]
            recent = observed[-rules.sustain_runs :]
            if not _sustained(self.runs, recent, rules):
                continue
            if all(abs((values[i] or 0.0) - mean) > band for i in recent):
                value = values[index]
                found.append(
                    {
                        "signal": column,
                        "kind": self.kind(column),
                        "value": value,
                        "baseline_mean": mean,
                        "baseline_std": std,
                        "change_ratio": (
                            (value - mean) / abs(mean) if value is not None and mean else None
                        ),
                    }
                )
        return found


def _severity(corroboration: Sequence[Mapping[str, Any]], rules: AlertRules) -> str:
    kinds = {KIND_PARITY} | {c["kind"] for c in corroboration}
    return "fail" if len(kinds) >= rules.escalate_min_kinds else "warn"


def _message(signal: str, target: str, point: Point, streak: int, corr: Sequence[Mapping]) -> str:
    parts = [f"{signal} of {target} at {_fmt(point.value, signal)} for {streak} run(s)"]
    details = []
    if point.baseline_mean is not None:
        details.append(
            f"baseline {_fmt(point.baseline_mean, signal)} ± {_fmt(point.baseline_std, signal)}"
        )
    if point.threshold is not None:
        details.append(f"threshold {_fmt(point.threshold, signal)}")
    if point.reasons:
        details.append("beyond " + "+".join(point.reasons))
    if details:
        parts.append(f" ({', '.join(details)})")
    if corr:
        moved = [
            f"{c['signal']} {c['change_ratio']:+.1%}"
            if c.get("change_ratio") is not None
            else str(c["signal"])
            for c in corr
        ]
        parts.append("; corroborated by " + ", ".join(moved))
    return "".join(parts)


def evaluate(
    reports: Sequence[Mapping[str, Any]],
    rules: AlertRules | None = None,
    *,
    kpis: KpiTable | None = None,
    project: str | None = None,
) -> Evaluation:
    """Judge every signal over the stored runs (oldest first) and derive the alerts."""
    rules = rules or AlertRules()
    runs = runs_of(reports)
    if project is None:
        project = str(reports[0].get("project", "")) if reports else ""
    corroborator = _Corroborator(runs, kpis, rules)
    alerts: list[Alert] = []
    for (signal, target), observations in sorted(parity_series(reports, rules).items()):
        points = judge_signal(observations, rules.rule(signal), rules)
        alerts.extend(_episodes(project, signal, target, runs, points, corroborator, rules))
    alerts.sort(key=lambda a: (a.opened_at, a.signal, a.target))
    return Evaluation(project, runs, alerts, sorted(corroborator.means))


def _episodes(
    project: str,
    signal: str,
    target: str,
    runs: Sequence[Run],
    points: Mapping[int, Point],
    corroborator: _Corroborator,
    rules: AlertRules,
) -> list[Alert]:
    target_kind = "feature_view" if signal in view_signals() else "feature"
    ends = corroborator.ends
    alerts: list[Alert] = []
    streak: list[int] = []
    normal_streak = 0
    current: Alert | None = None
    for index in sorted(points):
        point = points[index]
        run = runs[index]
        at = ends[index]
        if point.abnormal:
            streak.append(index)
            normal_streak = 0
        else:
            streak = [] if current is None else streak
            normal_streak += 1
        if current is None:
            if point.abnormal and _sustained(runs, streak, rules):
                corr = corroborator.at(streak[0], index)
                severity = _severity(corr, rules)
                current = Alert(
                    alert_id=_alert_id(project, signal, target, run.run_id),
                    project=project,
                    signal=signal,
                    target=target,
                    target_kind=target_kind,
                    state="open",
                    severity=severity,
                    peak_severity=severity,
                    first_abnormal_at=ends[streak[0]],
                    opened_at=at,
                    opened_run_id=run.run_id,
                    last_abnormal_at=at,
                    resolved_at=None,
                    resolved_run_id=None,
                    abnormal_runs=len(streak),
                    value=point.value,
                    baseline_mean=point.baseline_mean,
                    baseline_std=point.baseline_std,
                    threshold=point.threshold,
                    reasons=list(point.reasons),
                    corroboration=corr,
                    message=_message(signal, target, point, len(streak), corr),
                )
                current.events.append(
                    AlertEvent(
                        current.alert_id,
                        run.run_id,
                        at,
                        "opened",
                        severity,
                        point.value,
                        current.message,
                    )
                )
                alerts.append(current)
            continue
        # an open alert: update, escalate/de-escalate, or resolve
        if point.abnormal:
            current.abnormal_runs += 1
            current.last_abnormal_at = at
            current.value = point.value
            current.reasons = sorted(set(current.reasons) | set(point.reasons))
            corr = corroborator.at(streak[0], index)
            severity = _severity(corr, rules)
            current.corroboration = corr
            current.message = _message(signal, target, point, current.abnormal_runs, corr)
            if severity != current.severity:
                event = "escalated" if severity == "fail" else "deescalated"
                current.events.append(
                    AlertEvent(
                        current.alert_id,
                        run.run_id,
                        at,
                        event,
                        severity,
                        point.value,
                        current.message,
                    )
                )
                current.severity = severity
                if SEVERITY_ORDER[severity] > SEVERITY_ORDER[current.peak_severity]:
                    current.peak_severity = severity
        elif normal_streak >= rules.resolve_runs:
            current.state = "resolved"
            current.resolved_at = at
            current.resolved_run_id = run.run_id
            current.events.append(
                AlertEvent(
                    current.alert_id,
                    run.run_id,
                    at,
                    "resolved",
                    current.severity,
                    point.value,
                    f"{signal} of {target} back to normal at {_fmt(point.value, signal)}",
                )
            )
            current = None
            streak = []
    return alerts


# --- storage -----------------------------------------------------------------------------------
