"""Alert state in a real SQLite parity store and the ``alerts`` command over a repo directory
(moved from tests/test_alerts.py; the pure rules are in tests/unit/test_alerts.py).

Runs are hourly report dicts of the schema-1 contract, stored with ``store_run`` and read back
with ``load_runs``; the KPI table is a CSV written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from feast_parity import demo
from feast_parity.cli import main as cli
from feast_parity.parity.alerts import AlertRules, evaluate
from feast_parity.store.alerts import load_alerts, store_alerts
from feast_parity.store.engine import open_store as create_engine  # schema ready
from feast_parity.store.runs import load_runs, store_run
from tests.stored_runs import (
    JUMP,
    NORMAL,
    PROJECT,
    WATCH,
    history,
    report,
    write_kpis,
)


def alerts_of(evaluation: Any, signal: str = "psi") -> list[Any]:
    return [a for a in evaluation.alerts if a.signal == signal]


# --- state in the store, the command -------------------------------------------------------------


def test_alert_state_is_stored_idempotently(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'parity.db'}")
    for r in history(NORMAL + 7, jump=range(NORMAL, NORMAL + 4)):
        store_run(engine, r)
    later = [report(i, {WATCH: {"psi": JUMP}}) for i in range(NORMAL + 7, NORMAL + 10)]
    for r in later:
        store_run(engine, r)
    evaluation = evaluate(load_runs(engine, PROJECT), AlertRules())
    store_alerts(engine, evaluation)
    first = [a.to_dict() for a in load_alerts(engine, PROJECT)]
    store_alerts(engine, evaluate(load_runs(engine, PROJECT), AlertRules()))
    second = [a.to_dict() for a in load_alerts(engine, PROJECT)]
    assert first == second and len(first) == 2
    assert [a["state"] for a in first] == ["resolved", "open"]
    assert [e["event"] for e in first[0]["events"]] == ["opened", "resolved"]
    assert first == [a.to_dict() for a in evaluation.alerts]  # the round trip loses nothing
    # re-storing a run (same window => same run id) does not duplicate anything
    store_run(engine, later[-1])
    store_alerts(engine, evaluate(load_runs(engine, PROJECT), AlertRules()))
    assert [a.to_dict() for a in load_alerts(engine, PROJECT)] == first


def _cli_repo(tmp_path: Path, alerts: dict[str, Any]) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    demo.write_config(repo, parity_extra={"alerts": alerts})
    return repo


def test_alerts_command_lists_open_and_resolved_and_exits_1_on_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _cli_repo(tmp_path, {"kpi_source": "kpis.csv", "resolved_retention_hours": 48})
    engine = create_engine(f"sqlite:///{repo / 'data' / 'parity.db'}")
    total = NORMAL + 12
    reports = history(total, jump=range(NORMAL, NORMAL + 4))  # resolves at NORMAL + 4
    reports[-4:] = [report(i, {WATCH: {"psi": JUMP}}) for i in range(total - 4, total)]
    for r in reports:
        store_run(engine, r)
    write_kpis(repo / "kpis.csv", total, range(total - 4, total), click_through=0.75)
    assert cli(["alerts", "--repo", str(repo), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [(a["target"], a["severity"]) for a in out["open"]] == [(WATCH, "fail")]
    assert [(a["target"], a["state"]) for a in out["resolved"]] == [(WATCH, "resolved")]
    assert out["kpi_columns"] == ["click_through", "model_score", "watch_time"]
    assert out["runs"] == total
    stored = load_alerts(engine, PROJECT)
    assert {a.alert_id for a in stored} == {a["alert_id"] for a in out["open"] + out["resolved"]}
    assert cli(["alerts", "--repo", str(repo)]) == 1
    text = capsys.readouterr().out
    assert "1 open alert(s)" in text and "FAIL  psi" in text and "result: FAIL (exit 1)" in text
    # the same history without the KPI shift: a warning only, exit 0
    write_kpis(repo / "kpis.csv", total)
    assert cli(["alerts", "--repo", str(repo)]) == 0
    assert "WARN  psi" in capsys.readouterr().out


def test_alerts_command_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _cli_repo(tmp_path, {"kpi_source": "missing.csv"})
    assert cli(["alerts", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("feast-parity: error: alerts.kpi_source:") and err.count("\n") == 1
    (repo / "kpis.csv").write_text("when,model_score\n2026-03-01T00:00:00Z,0.3\n")
    (repo / "feature_store.yaml").write_text(
        (repo / "feature_store.yaml").read_text().replace("missing.csv", "kpis.csv")
    )
    assert cli(["alerts", "--repo", str(repo)]) == 2
    assert "alerts.kpi_time_column: no column 'timestamp'" in capsys.readouterr().err
