"""Alert state in a real SQLite parity store and the ``alerts`` command over a repo directory
(moved from tests/test_alerts.py; the pure rules are in tests/unit/test_alerts.py).

Runs are hourly report dicts of the schema-1 contract, stored with ``store_run`` and read back
with ``load_runs``; the KPI table is a CSV written here.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from feast_parity import demo
from feast_parity.cli import main as cli
from feast_parity.parity.alerts import AlertRules, evaluate
from feast_parity.parity.report import run_id_for
from feast_parity.store.alerts import load_alerts, store_alerts
from feast_parity.store.engine import open_store as create_engine  # schema ready
from feast_parity.store.runs import load_runs, store_run

PROJECT = "video_recs"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
WATCH = "user_engagement:watch_minutes"
FEATURES = [WATCH, "user_engagement:click_through_rate", "video_stats:popularity"]
NORMAL, JUMP = 12, 0.30  # runs of normal history; PSI of the jump (0.02 normally)


def report(i: int, values: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Run ``i``: window [T0 + i h, T0 + (i+1) h), PSI ~ 0.02, lag p99 ~ 1 h; ``values``
    overrides metrics per feature (or per view, with ``served_p99``)."""
    values = values or {}
    rng = np.random.default_rng(1000 + i)
    start = T0 + timedelta(hours=i)
    end = start + timedelta(hours=1)
    features = []
    for name in FEATURES:
        row = {
            "feature": name,
            "feature_view": name.split(":")[0],
            "compared": 500,
            "mismatch_rate": 0.0,
            "stale_rate": 0.0,
            "silent_default_rate": 0.0,
            "online_null_rate": round(0.010 + rng.normal(0, 0.001), 5),
            "offline_null_rate": 0.0,
            "psi": round(0.02 + rng.normal(0, 0.004), 5),
            "ks_statistic": 0.03,
            "ks_pvalue": 0.8,
            "schema": {"declared": "Float64", "online": "float64", "offline": "float64"},
            "status": "ok",
        }
        row.update(values.get(name, {}))
        features.append(row)
    views = []
    for view in ("user_engagement", "video_stats"):
        p99 = values.get(view, {}).get("served_p99", 3600 + rng.normal(0, 60))
        views.append(
            {
                "feature_view": view,
                "served_lag_seconds": {"p50": 1800.0, "p95": 3000.0, "p99": p99},
                "materialization_lag_seconds": 900.0,
                "source_lag_seconds": 600.0,
                "slo_seconds": 43200.0,
                "status": "ok",
            }
        )
    return {
        "schema_version": 1,
        "run_id": run_id_for(PROJECT, start, end),
        "project": PROJECT,
        "generated_at": end.isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "samples": 1500,
        "status": "ok",
        "features": features,
        "feature_views": views,
        "findings": [],
    }


def history(n: int, jump: range = range(0), psi: float = JUMP) -> list[dict[str, Any]]:
    """``n`` hourly runs; WATCH's PSI is ``psi`` in the runs of ``jump``."""
    return [report(i, {WATCH: {"psi": psi}} if i in jump else None) for i in range(n)]


def write_kpis(path: Path, hours: int, shifted: range = range(0), **shift: float) -> Path:
    """KPI CSV: a row every 10 minutes; during the hours of ``shifted`` each named column is
    multiplied by its factor (e.g. ``click_through=0.8``)."""
    rng = np.random.default_rng(7)
    rows = []
    for h in range(hours):
        for m in range(0, 60, 10):
            row = {
                "timestamp": (T0 + timedelta(hours=h, minutes=m)).isoformat(),
                "model_score": 0.30 + rng.normal(0, 0.005),
                "click_through": 0.050 + rng.normal(0, 0.001),
                "watch_time": 12.0 + rng.normal(0, 0.2),
            }
            if h in shifted:
                for column, factor in shift.items():
                    row[column] *= factor
            rows.append(row)
    lines = ["timestamp,model_score,click_through,watch_time"]
    lines += [
        f"{r['timestamp']},{r['model_score']:.5f},{r['click_through']:.5f},{r['watch_time']:.4f}"
        for r in rows
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


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
