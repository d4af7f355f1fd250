"""``make demo`` runs both acts and each ends as the README says, so the demo cannot rot.

Runs ``python -m feast_parity.demo_story`` (what ``make demo`` runs) on a copy of the demo repo,
then reads what it left: the stored JSON reports of both acts, the alerts and the gate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from feast import FeatureStore

from feast_parity import TrainingGateError, demo, training_gate
from feast_parity.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]


def _fails(report: dict) -> set[tuple[str, str]]:
    return {
        (f["kind"], f.get("feature") or f.get("feature_view"))
        for f in report["findings"]
        if f["severity"] == "fail"
    }


def test_make_demo_plays_a_healthy_day_then_an_incident_caught_and_gated(tmp_path: Path) -> None:
    repo = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "feast_parity.demo_story", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        # its own Prometheus multiprocess directory: Feast sets PROMETHEUS_MULTIPROC(ESS)_DIR
        # on import, and a child that inherits it adds its counters to this process's metrics
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_MULTIPROC")},
            "COLUMNS": "120",
        },
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    # the narrative: both acts, every step numbered, the HTML report and what to look at
    assert "== Act 1: a healthy day ==" in out and "== Act 2: an incident ==" in out
    for step in ("1/4", "4/4", "1/6", "6/6"):
        assert f"\n{step} " in out, step
    assert f"HTML report: {repo / 'data' / 'incident.html'}" in out
    assert "look first at" in out

    # act 1: clean, the on-demand view recomputed and compared row by row
    healthy = json.loads((repo / "data" / "healthy.json").read_text())
    assert healthy["status"] == "ok" and _fails(healthy) == set()
    affinity = next(
        r for r in healthy["features"] if r["feature"] == "ranking_signals:affinity_score"
    )
    assert affinity["compared"] > 100 and affinity["mismatches"] == 0
    assert "on-demand ranking_signals:affinity_score: " in out

    # act 2: each cause on its own feature or view, nothing else failing
    incident = json.loads((repo / "data" / "incident.json").read_text())
    assert _fails(incident) == {
        ("transformation_divergence", "ranking_signals"),
        ("stale_serving", "video_stats"),
        ("silent_default", "user_engagement:watch_minutes"),
    }
    by_kind = {f["kind"]: f for f in incident["findings"]}
    drift = by_kind["transformation_divergence"]["evidence"]
    assert drift["cause"] == "code_drift" and len(drift["stale_writers"]) == 1
    assert drift["registry_udf_fingerprint"] not in drift["serving_udf_fingerprints"]
    stale = by_kind["stale_serving"]["evidence"]
    assert set(stale["features"]) == {
        "video_stats:popularity",
        "video_stats:age_days",
        "video_stats:category",
    }
    default = by_kind["silent_default"]["evidence"]
    assert default["fill_values"] == [0.0]
    assert 0.12 < default["silent_defaults"] / default["offline_rows"] < 0.28  # every 5th user
    assert "result: FAIL (exit 1)" in out
    html = (repo / "data" / "incident.html").read_text()
    for kind in by_kind:
        assert f"<b>{kind}</b>" in html

    # the three incident runs opened alerts on the affected signals
    alerts_json = tmp_path / "alerts.json"
    cli(["alerts", "--repo", str(repo), "--json", str(alerts_json)])
    opened = {(a["signal"], a["target"]) for a in json.loads(alerts_json.read_text())["open"]}
    assert ("silent_default_rate", "user_engagement:watch_minutes") in opened
    assert ("stale_rate", "video_stats:popularity") in opened

    # the gate refuses the affected features, and only those, saying why
    store = FeatureStore(repo_path=str(repo))
    try:
        training_gate(store, store.get_feature_service("ranking_model_v1"))
    except TrainingGateError as refused:
        offenders = refused.offenders
    else:
        raise AssertionError("the training gate let the incident through")
    assert set(offenders) == {
        "ranking_signals:affinity_score",
        "user_engagement:watch_minutes",
        "video_stats:popularity",
        "video_stats:age_days",
        "video_stats:category",
    }
    assert "silent_default" in offenders["user_engagement:watch_minutes"][0]
    assert "training gate refused 5 feature(s)" in out

    # the demo leaves its definitions as it found them
    assert (repo / "features.py").read_text() == (demo.DEMO_SOURCE / "features.py").read_text()
