"""Alert rules over a synthetic history of check runs (feast_parity.parity.alerts).

Runs are hourly report dicts of the schema-1 contract, as the parity store returns them; the
KPI table is a CSV written here and read as the alerts command reads it. Values are drawn from
seeded generators, so every judgement below is deterministic. Storing alerts and the alerts
command over a real store are tests/e2e/test_alerts_e2e.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feast_parity import demo
from feast_parity.parity.alert_rules import AlertRules, SignalRule
from feast_parity.parity.alerts import evaluate, judge_signal, parity_series
from feast_parity.parity.kpis import KpiTable, kpi_table_from_frame
from feast_parity.plugin.config import ParityConfig, ParityConfigError
from feast_parity.render import render_html
from tests.stored_runs import (
    FEATURES,
    JUMP,
    NORMAL,
    WATCH,
    history,
    report,
    write_kpis,
)


def alerts_of(evaluation: Any, signal: str = "psi") -> list[Any]:
    return [a for a in evaluation.alerts if a.signal == signal]


def read_kpis(path: Path) -> KpiTable:
    """The KPI CSV as ``parity.alerts.kpi_source`` is read (store.alerts.load_kpis)."""
    return kpi_table_from_frame(pd.read_csv(path), "timestamp", None)


# --- the four behaviours of the issue ----------------------------------------------------------


def test_a_psi_jump_for_a_single_run_does_not_alert() -> None:
    reports = history(NORMAL + 6, jump=range(NORMAL, NORMAL + 1))
    rules = AlertRules()
    # the jump run is judged abnormal (threshold and sigma), it is just not sustained
    points = judge_signal(parity_series(reports, rules)[("psi", WATCH)], rules.rule("psi"), rules)
    assert points[NORMAL].abnormal and set(points[NORMAL].reasons) == {"threshold", "sigma"}
    assert not any(points[i].abnormal for i in points if i != NORMAL)
    assert evaluate(reports, rules).alerts == []
    # two runs are not enough either with sustain_runs 3
    assert evaluate(history(NORMAL + 6, jump=range(NORMAL, NORMAL + 2)), rules).alerts == []


def test_the_same_jump_sustained_for_the_configured_runs_alerts_once_as_a_warning() -> None:
    reports = history(NORMAL + 6, jump=range(NORMAL, NORMAL + 6))
    evaluation = evaluate(reports, AlertRules(sustain_runs=3))
    assert len(evaluation.alerts) == 1  # de-duplicated while open: 6 abnormal runs, 1 alert
    alert = evaluation.alerts[0]
    assert (alert.signal, alert.target, alert.state) == ("psi", WATCH, "open")
    assert alert.severity == "warn" and alert.corroboration == []
    assert alert.first_abnormal_at == reports[NORMAL]["window"]["end"]
    assert alert.opened_at == reports[NORMAL + 2]["window"]["end"]  # the third abnormal run
    assert alert.abnormal_runs == 6 and alert.value == JUMP
    assert alert.baseline_mean == pytest.approx(0.02, abs=0.004)
    assert [e.event for e in alert.events] == ["opened"]
    assert evaluation.exit_code() == 0
    # the configured number of runs is what counts
    assert len(evaluate(reports, AlertRules(sustain_runs=6)).alerts) == 1
    assert evaluate(reports, AlertRules(sustain_runs=7)).alerts == []


def test_a_kpi_shift_with_the_psi_jump_escalates_to_fail(tmp_path: Path) -> None:
    jump = range(NORMAL, NORMAL + 4)
    reports = history(NORMAL + 4, jump=jump)
    rules = AlertRules()
    shifted = read_kpis(write_kpis(tmp_path / "k.csv", NORMAL + 4, jump, click_through=0.8))
    (alert,) = evaluate(reports, rules, kpis=shifted).alerts
    assert alert.severity == "fail" and alert.peak_severity == "fail"
    assert [(c["signal"], c["kind"]) for c in alert.corroboration] == [
        ("click_through", "business_kpi")
    ]
    assert alert.corroboration[0]["change_ratio"] == pytest.approx(-0.2, abs=0.05)
    assert "corroborated by click_through -2" in alert.message
    # a shift of the model's served score corroborates too
    score = read_kpis(write_kpis(tmp_path / "s.csv", NORMAL + 4, jump, model_score=1.15))
    (alert,) = evaluate(reports, rules, kpis=score).alerts
    assert alert.severity == "fail" and alert.corroboration[0]["kind"] == "model_score"
    # an unshifted KPI table, or one signal kind short of escalate_min_kinds, stays a warning
    flat = read_kpis(write_kpis(tmp_path / "f.csv", NORMAL + 4))
    assert evaluate(reports, rules, kpis=flat).alerts[0].severity == "warn"
    three = AlertRules(escalate_min_kinds=3)
    assert evaluate(reports, three, kpis=shifted).alerts[0].severity == "warn"
    # a KPI that moved long before the feature did corroborates nothing
    early = read_kpis(
        write_kpis(tmp_path / "e.csv", NORMAL + 4, range(2, NORMAL + 4), click_through=0.8)
    )
    assert evaluate(reports, rules, kpis=early).alerts[0].severity == "warn"


def test_the_alert_resolves_when_the_signal_returns_to_normal() -> None:
    reports = history(NORMAL + 7, jump=range(NORMAL, NORMAL + 4))
    evaluation = evaluate(reports, AlertRules())
    (alert,) = evaluation.alerts
    assert alert.state == "resolved"
    assert alert.resolved_at == reports[NORMAL + 4]["window"]["end"]
    assert [e.event for e in alert.events] == ["opened", "resolved"]
    assert evaluation.open_alerts() == []
    assert evaluation.recently_resolved(hours=24) == [alert]
    assert evaluation.recently_resolved(hours=1) == []  # resolved 2 h before the newest run
    # same alert (same id) as when it was open: adding runs never rewrites the past
    (before,) = evaluate(reports[: NORMAL + 4], AlertRules()).alerts
    assert before.state == "open" and before.alert_id == alert.alert_id
    # resolve_runs is hysteresis: with 4 it needs four normal runs, and gets only three
    assert evaluate(reports, AlertRules(resolve_runs=4)).alerts[0].state == "open"
    # a new sustained jump later is a new alert, not the old one reopened
    again = history(NORMAL + 14, jump=range(NORMAL, NORMAL + 4)) + [
        report(i, {WATCH: {"psi": JUMP}}) for i in range(NORMAL + 14, NORMAL + 17)
    ]
    first, second = evaluate(again, AlertRules()).alerts
    assert first.state == "resolved" and second.state == "open"
    assert first.alert_id != second.alert_id


def test_escalation_and_deescalation_follow_the_kpi(tmp_path: Path) -> None:
    jump = range(NORMAL, NORMAL + 8)
    reports = history(NORMAL + 8, jump=jump)
    kpis = read_kpis(
        write_kpis(tmp_path / "k.csv", NORMAL + 8, range(NORMAL + 3, NORMAL + 6), watch_time=0.7)
    )
    (alert,) = evaluate(reports, AlertRules(), kpis=kpis).alerts
    assert [(e.event, e.severity) for e in alert.events] == [
        ("opened", "warn"),
        ("escalated", "fail"),  # third shifted KPI run: NORMAL + 5
        ("deescalated", "warn"),
    ]
    assert alert.events[1].at == reports[NORMAL + 5]["window"]["end"]
    assert alert.severity == "warn" and alert.peak_severity == "fail"


# --- other signals and rules ---------------------------------------------------------------------


def test_sigma_rule_alerts_on_a_signal_without_threshold() -> None:
    """online_null_rate has no threshold: 1 % +- 0.1 % jumping to 5 % is beyond 3 sigma."""
    reports = [
        report(i, {WATCH: {"online_null_rate": 0.05}} if i >= NORMAL else None)
        for i in range(NORMAL + 3)
    ]
    (alert,) = evaluate(reports, AlertRules()).alerts
    assert (alert.signal, alert.target, alert.reasons) == ("online_null_rate", WATCH, ["sigma"])
    assert alert.threshold is None and alert.baseline_std is not None
    assert alert.value - alert.baseline_mean > 3 * alert.baseline_std
    # min_delta floors the band: a 4-point rise is no alert with a 5-point floor
    rules = AlertRules(signals={"online_null_rate": SignalRule(threshold=None, min_delta=0.05)})
    assert evaluate(reports, rules).alerts == []


def test_served_lag_p99_alerts_against_the_view_slo() -> None:
    """The p99 lag is compared with the view's SLO stored with the run (12 h here)."""
    lagging = {"video_stats": {"served_p99": 50_000.0}}
    reports = [report(i, lagging if i >= 3 else None) for i in range(6)]  # too short for sigma
    (alert,) = evaluate(reports, AlertRules()).alerts
    assert (alert.signal, alert.target, alert.target_kind) == (
        "served_lag_p99",
        "video_stats",
        "feature_view",
    )
    assert alert.reasons == ["threshold"] and alert.threshold == 43200.0
    assert evaluate(reports, AlertRules(lag_threshold_from_slo=False)).alerts == []


def test_insufficient_data_runs_neither_extend_nor_break_a_streak() -> None:
    gap = {WATCH: {"psi": 0.9, "status": "insufficient_data"}}
    reports = [
        report(i, gap if i == NORMAL + 1 else ({WATCH: {"psi": JUMP}} if i >= NORMAL else None))
        for i in range(NORMAL + 4)
    ]
    (alert,) = evaluate(reports, AlertRules()).alerts
    assert alert.opened_at == reports[NORMAL + 3]["window"]["end"]
    assert alert.abnormal_runs == 3


def test_sustain_minutes_counts_time_between_abnormal_runs() -> None:
    reports = history(NORMAL + 4, jump=range(NORMAL, NORMAL + 4))
    rules = AlertRules(sustain_runs=1, sustain_minutes=150)
    (alert,) = evaluate(reports, rules).alerts
    # hourly runs: 150 minutes after the first abnormal run's end is the fourth abnormal run
    assert alert.opened_at == reports[NORMAL + 3]["window"]["end"]


def test_a_detector_catches_a_shift_inside_the_sigma_band() -> None:
    """PSI 0.02 -> 0.03 (2.5 sigma): below the 0.1 threshold and inside the 3-sigma band, so only
    CUSUM (slack and threshold in units of the warm-up sigma) sees the sustained shift."""
    reports = [
        report(i, {WATCH: {"psi": round(0.03 + 0.004 * np.sin(i), 5)}} if i >= 30 else None)
        for i in range(45)
    ]
    plain = AlertRules(signals={"psi": SignalRule(threshold=0.1, min_delta=0.005)})
    assert alerts_of(evaluate(reports, plain)) == []
    cusum = AlertRules(
        signals={"psi": SignalRule(threshold=0.1, min_delta=0.005)},
        detector="cusum",
        detector_params={"min_instances": 20},
    )
    (alert,) = alerts_of(evaluate(reports, cusum))
    assert alert.target == WATCH and "detector" in alert.reasons
    assert alert.first_abnormal_at >= reports[30]["window"]["end"]


# --- the configuration block, the demo KPIs, the trend charts ----------------------------------


def test_alert_config_defaults_and_validation() -> None:
    rules = ParityConfig.from_mapping({}).alerts
    assert (rules.sustain_runs, rules.sigma, rules.resolve_runs, rules.escalate_min_kinds) == (
        3,
        3.0,
        1,
        2,
    )
    assert rules.rule("psi").threshold == 0.1 and rules.rule("online_null_rate").threshold is None
    custom = ParityConfig.from_mapping(
        {"alerts": {"signals": {"psi": {"threshold": None}, "stale_rate": {"min_delta": 0.02}}}}
    ).alerts
    assert custom.rule("psi").threshold is None and custom.rule("psi").min_delta == 0.05
    assert (
        custom.rule("stale_rate").threshold == 0.01 and custom.rule("stale_rate").min_delta == 0.02
    )
    for block, message in (
        ({"sustain_runs": 0}, "parity.alerts.sustain_runs: Input should be greater than or equal"),
        ({"signals": {"psii": {}}}, "parity.alerts.signals: unknown signal 'psii'"),
        ({"detector": "adwin"}, "parity.alerts.detector: unknown detector 'adwin'"),
        ({"min_history": 40}, "parity.alerts: min_history (40) must not exceed baseline_runs"),
        ({"kpi_sorce": "x.csv"}, "parity.alerts.kpi_sorce: unknown key"),
    ):
        with pytest.raises(ParityConfigError) as err:
            ParityConfig.from_mapping({"alerts": block})
        assert str(err.value).startswith(message), str(err.value)


def test_demo_writes_a_deterministic_hourly_kpi_csv(tmp_path: Path) -> None:
    end = datetime(2026, 3, 2, tzinfo=timezone.utc)
    a = demo.write_kpis(tmp_path / "a", end, days=2)
    b = demo.write_kpis(tmp_path / "b", end, days=2)
    assert a.read_text() == b.read_text()
    kpis = read_kpis(a)
    assert sorted(kpis.columns) == ["click_through", "model_score", "watch_time"]
    assert len(kpis.times) == 48 and np.all(np.diff(kpis.times) == 3600)
    assert kpis.times[-1] == end.timestamp()
    assert 0.04 < float(np.mean(kpis.columns["click_through"])) < 0.06


def test_html_report_has_trend_charts_of_the_stored_runs() -> None:
    reports = history(NORMAL + 3, jump=range(NORMAL, NORMAL + 3))
    current = reports[-1]
    for row in current["features"]:
        if row["feature"] == WATCH:
            row["status"] = "fail"  # PSI 0.30 is over the default fail threshold
    page = render_html(current, history=reports[:-1])  # the current run is appended
    trends = page[page.index('id="trends"') :]
    assert f"over the last {NORMAL + 3} stored runs" in trends
    # only the unhealthy feature gets trends: mismatch, stale, silent default and PSI
    assert trends.count('class="trend"') == 4
    assert WATCH in trends and all(f not in trends for f in FEATURES if f != WATCH)
    assert f"<title>{current['window']['end']}: 0.300</title>" in trends
    assert 'id="trends"' not in render_html(current)
