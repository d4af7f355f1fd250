"""The parity check on a real demo repo: faults planted online are found on the right feature."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from feast import FeatureStore

from feast_parity import demo
from feast_parity.cli import main as cli
from feast_parity.plugin.check import run_check
from tests.faults import (
    age_days_as_string,
    fails,
    feature,
    latest_rows,
    serve_refs,
    skew_a_tenth,
    stall_video_stats,
    write_online,
    zero_a_fifth,
)

SCHEMA_CONTRACT = ("declared", "online", "offline", "diverged", "declared_at_serving")


def test_clean_repo_has_no_findings_and_exit_0(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 60, users=300, videos=100)
    assert store._get_provider().flush_samples()
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = cli(["check", "--repo", str(repo), "--json", str(out_json), "--html", str(out_html)])
    report = json.loads(out_json.read_text())
    assert code == 0, report["findings"]
    assert [f for f in report["findings"] if f["severity"] in ("warn", "fail")] == []
    assert report["schema_version"] == 1 and report["samples"] == 60 * 10 * 3
    ctr = feature(report, "user_engagement:click_through_rate")
    assert ctr["compared"] == 600 and ctr["mismatch_rate"] == 0.0 and ctr["psi"] == 0.0
    # the contract fields of ``schema`` (the report only ever adds fields)
    assert {k: ctr["schema"][k] for k in SCHEMA_CONTRACT} == {
        "declared": "Float32",
        "online": "float32",
        "offline": "float32",
        "diverged": False,
        "declared_at_serving": ["Float32"],
    }
    # one row per batch view with samples; the on-demand view's row (an addition of the v3
    # engine) says it is on-demand and has no freshness SLO
    views = {v["feature_view"]: v for v in report["feature_views"] if not v["on_demand"]}
    assert set(views) == {"user_engagement", "video_stats"}
    assert views["user_engagement"]["materialization_lag_seconds"] < 600
    on_demand = [v for v in report["feature_views"] if v["on_demand"]]
    assert [v["feature_view"] for v in on_demand] == ["ranking_signals"]
    assert on_demand[0]["slo_seconds"] is None and on_demand[0]["status"] == "ok"
    html = out_html.read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_value_mismatch_on_a_tenth_of_users(build_repo):
    repo = build_repo(sample_rate=1.0)
    skew_a_tenth(repo)
    serve_refs(repo, 150)
    report = run_check(repo)
    wm = feature(report, "user_engagement:watch_minutes")
    assert wm["mismatch_rate"] == pytest.approx(0.1, abs=0.04)
    assert fails(report) == [("value_mismatch", "user_engagement:watch_minutes")]
    assert feature(report, "user_engagement:sessions")["mismatch_rate"] == 0.0


def test_stale_view_materialized_three_days_ago(build_repo):
    repo = build_repo(sample_rate=1.0, materialize=False)
    stall_video_stats(repo)
    serve_refs(repo, 60)
    report = run_check(repo)
    pop = feature(report, "video_stats:popularity")
    assert pop["stale_rate"] > 0.95
    views = {v["feature_view"]: v for v in report["feature_views"]}
    assert views["video_stats"]["stale_rate"] > 0.95
    assert views["video_stats"]["stale_lag_seconds"]["p50"] == pytest.approx(
        3 * 86400, abs=6 * 3600
    )
    failing = fails(report)
    # staleness is one cause of the whole view: one view-level finding naming its features
    assert ("stale_serving", "video_stats") in failing
    stale = next(f for f in report["findings"] if f["kind"] == "stale_serving")
    assert "video_stats:popularity" in stale["evidence"]["features"]
    assert ("freshness_slo", "video_stats") in failing
    assert all(target.startswith("video_stats") for _, target in failing)
    assert feature(report, "video_stats:popularity")["mismatch_rate"] == 0.0
    # the feature row keeps its contract field stale_lag_seconds (docs/checks.md)
    assert pop["stale_lag_seconds"]["p50"] == pytest.approx(3 * 86400, abs=6 * 3600)


def test_silent_default_zero_for_a_fifth_of_users(build_repo):
    repo = build_repo(sample_rate=1.0)
    zero_a_fifth(repo)
    serve_refs(repo, 150)
    report = run_check(repo)
    ctr = feature(report, "user_engagement:click_through_rate")
    assert ctr["silent_default_rate"] == pytest.approx(0.2, abs=0.06)
    assert ctr["fill_values"] == [0.0]
    kinds = {
        kind for kind, target in fails(report) if target == "user_engagement:click_through_rate"
    }
    assert "silent_default" in kinds
    assert all(t == "user_engagement:click_through_rate" for _, t in fails(report))


def test_schema_divergence_when_online_type_changes(build_repo):
    repo = build_repo(sample_rate=1.0)
    age_days_as_string(repo)
    serve_refs(repo, 40)
    report = run_check(repo)
    age = feature(report, "video_stats:age_days")
    assert age["schema"]["diverged"] is True
    assert age["schema"]["online"] == "string" and age["schema"]["declared"] == "Int64"
    assert ("schema_divergence", "video_stats:age_days") in fails(report)
    assert all(t == "video_stats:age_days" for _, t in fails(report))


def test_bad_windows_and_empty_logs(build_repo, capsys):
    repo = build_repo(sample_rate=1.0)
    code = cli(["check", "--repo", str(repo), "--since", "2026-01-02", "--until", "2026-01-01"])
    err = capsys.readouterr().err
    assert code == 2 and "empty window" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    code = cli(["check", "--repo", str(repo), "--since", "yesterday"])
    err = capsys.readouterr().err
    assert code == 2 and "--since" in err and len(err.strip().splitlines()) == 1, err
    code = cli(["check", "--repo", str(repo / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and "feature_store.yaml" in err and len(err.strip().splitlines()) == 1, err
    # zero samples in the window: exit 0, a note that says so, every feature absent
    code = cli(["check", "--repo", str(repo), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "no samples in the window" in out


def test_deleted_view_and_offline_without_rows(build_repo, capsys):
    repo = build_repo(sample_rate=1.0)
    serve_refs(repo, 20)
    store = FeatureStore(repo_path=str(repo))
    store.delete_feature_view("video_stats")
    # the user source loses all rows: the offline store answers with nothing
    frame = latest_rows(repo, "user_engagement").iloc[0:0]
    frame.to_parquet(repo / "data" / "user_engagement.parquet")
    code = cli(["check", "--repo", str(repo), "--no-progress"])
    captured = capsys.readouterr()
    out = captured.out
    assert code in (0, 1) and "Traceback" not in out + captured.err
    assert "'video_stats' is no longer in the registry" in out
    report = run_check(repo)
    assert report["deleted_feature_views"] == {"video_stats": 200}
    ctr = feature(report, "user_engagement:click_through_rate")
    assert ctr["compared"] == 0 and ctr["status"] == "insufficient_data"
    # an offline store that answers with nothing is said plainly (docs/checks.md, notes)
    assert "returned no rows for user_engagement" in out
    assert any("returned no rows for user_engagement" in n for n in report["notes"])


def test_rerun_of_a_window_replaces_its_stored_run(build_repo):
    repo = build_repo(sample_rate=1.0)
    serve_refs(repo, 10)
    until = datetime.now(timezone.utc) + timedelta(minutes=1)
    first = run_check(repo, until=until)
    second = run_check(repo, until=until)
    assert first["run_id"] == second["run_id"]
    engine = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    with engine.connect() as conn:
        runs = conn.execute(sa.text("select count(*) from parity_runs")).scalar()
        metrics = conn.execute(sa.text("select count(*) from parity_feature_metrics")).scalar()
    engine.dispose()
    assert runs == 1 and metrics == len(first["features"])


def test_duckdb_offline_store_finds_the_same_mismatch(build_repo):
    """The check asks Feast's offline store API, so a DuckDB offline store works unchanged."""
    repo = build_repo(sample_rate=1.0, offline_store={"type": "duckdb"})
    rows = latest_rows(repo, "user_engagement")
    tenth = rows[rows["user_id"] % 10 == 3].copy()
    tenth["watch_minutes"] = tenth["watch_minutes"] + 5.0
    write_online(repo, "user_engagement", tenth)
    serve_refs(repo, 100)
    report = run_check(repo)
    assert feature(report, "user_engagement:watch_minutes")["mismatch_rate"] == pytest.approx(
        0.1, abs=0.04
    )
    assert fails(report) == [("value_mismatch", "user_engagement:watch_minutes")]
    assert feature(report, "user_engagement:click_through_rate")["compared"] == 1000
