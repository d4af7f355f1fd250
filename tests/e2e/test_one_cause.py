"""One cause, one finding; defaults on small populations; expired rows; skew magnitude.

A stalled view, a view whose schema changed, and a view whose rows are missing online are one
view-level finding each, naming the affected features; the per-feature consequences are kept in
its evidence, not paged on one by one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore

from feast_parity import demo
from feast_parity.plugin.check import run_check
from tests.faults import (
    BATCH_REFS,
    fails,
    feature,
    latest_rows,
    serve_refs,
    stall_video_stats,
    write_online,
)

VIDEO_FEATURES = {"video_stats:popularity", "video_stats:age_days", "video_stats:category"}


def _findings_of(report: dict, view: str) -> list[dict]:
    return [
        f
        for f in report["findings"]
        if (f.get("feature_view") == view or (f.get("feature") or "").startswith(f"{view}:"))
        and f["severity"] in ("warn", "fail")
    ]


def test_a_stalled_view_is_one_stale_finding_naming_its_features(build_repo):
    repo = build_repo(sample_rate=1.0, materialize=False)
    stall_video_stats(repo)
    serve_refs(repo, 60)
    report = run_check(repo)
    found = _findings_of(report, "video_stats")
    assert sorted(f["kind"] for f in found) == ["freshness_slo", "stale_serving"], found
    stale = next(f for f in found if f["kind"] == "stale_serving")
    assert "feature" not in stale and stale["feature_view"] == "video_stats"
    assert set(stale["evidence"]["features"]) == VIDEO_FEATURES
    assert stale["evidence"]["lag_seconds"]["p50"] == pytest.approx(3 * 86400, abs=6 * 3600)
    # served past the 1-day ttl too, but that is the same stale rows: counted in its evidence
    assert stale["evidence"]["expired_rows"] == stale["evidence"]["stale_rows"] > 0
    assert not any(f["kind"] == "expired_serving" for f in report["findings"])
    # per-feature rates stay in the feature rows
    assert feature(report, "video_stats:popularity")["stale_rate"] > 0.95


def test_rows_served_past_ttl_with_nothing_newer_offline_are_expired_serving(build_repo):
    repo = build_repo(sample_rate=1.0, materialize=False)
    path = repo / "data" / "video_stats.parquet"
    frame = pd.read_parquet(path)
    cutoff = frame["event_timestamp"].max() - pd.Timedelta(days=3)
    frame[frame["event_timestamp"] <= cutoff].to_parquet(path)  # the source stopped 3 days ago
    demo.materialize(repo, days=6)
    serve_refs(repo, 60)
    report = run_check(repo)
    expired = [f for f in report["findings"] if f["kind"] == "expired_serving"]
    assert [f["feature_view"] for f in expired] == ["video_stats"], report["findings"]
    evidence = expired[0]["evidence"]
    assert evidence["age_seconds"]["p50"] > evidence["ttl_seconds"] == 86400
    view = next(v for v in report["feature_views"] if v["feature_view"] == "video_stats")
    assert view["expired_rate"] > 0.95 and view["stale_rate"] == 0.0
    assert not any(f["kind"] == "stale_serving" for f in report["findings"])
    assert not any((f.get("feature") or "").startswith("video_stats:") for f in expired)


def test_a_schema_change_is_one_view_level_finding(build_repo):
    repo = build_repo(sample_rate=1.0)
    serve_refs(repo, 40)
    definitions = repo / "features.py"
    text = definitions.read_text()
    assert 'Field(name="age_days", dtype=Int64)' in text
    definitions.write_text(
        text.replace('Field(name="age_days", dtype=Int64)', 'Field(name="age_days", dtype=Float64)')
    )
    demo.feast_apply(repo)
    report = run_check(repo)
    schema = [f for f in report["findings"] if f["kind"] == "schema_divergence"]
    assert [f.get("feature_view") for f in schema] == ["video_stats"], schema
    assert schema[0]["evidence"]["features"] == ["video_stats:age_days"]
    assert schema[0]["evidence"]["declared_at_serving"]["video_stats:age_days"] == ["Int64"]
    assert feature(report, "video_stats:age_days")["schema"]["diverged"] is True


def test_rows_missing_online_for_a_whole_view_are_one_view_level_default(build_repo):
    repo = build_repo(sample_rate=1.0)
    path = repo / "data" / "video_stats.parquet"
    frame = pd.read_parquet(path)
    newest = frame[frame["event_timestamp"] == frame["event_timestamp"].max()].copy()
    late = newest.head(20).copy()
    late["video_id"] = late["video_id"] + 10_000  # arrived offline after materialization
    pd.concat([frame, late], ignore_index=True).to_parquet(path)
    store = FeatureStore(repo_path=str(repo))
    users = demo.FIRST_USER + np.arange(300)
    for i in range(40):
        videos = late["video_id"].tolist()[i % 2 :: 2]
        rows = [
            {"user_id": int(users[(i * 7 + k) % 300]), "video_id": int(v)}
            for k, v in enumerate(videos)
        ]
        store.get_online_features(BATCH_REFS, entity_rows=rows)
    assert store._get_provider().flush_samples()
    report = run_check(repo)
    defaults = [f for f in report["findings"] if f["kind"] == "silent_default"]
    assert [f.get("feature_view") for f in defaults] == ["video_stats"], defaults
    assert set(defaults[0]["evidence"]["features"]) == VIDEO_FEATURES
    assert defaults[0]["evidence"]["not_found_rows"] == 40 * 10
    assert feature(report, "video_stats:popularity")["silent_default_rate"] == 1.0
    assert fails(report) == [("silent_default", "video_stats")]


def _serve_few(repo: Path, users: list[int], requests: int) -> None:
    store = FeatureStore(repo_path=str(repo))
    for i in range(requests):
        rows = [
            {"user_id": u, "video_id": demo.FIRST_VIDEO + (i + k) % 20} for k, u in enumerate(users)
        ]
        store.get_online_features(BATCH_REFS, entity_rows=rows)
    assert store._get_provider().flush_samples()


def test_a_fill_value_is_found_with_five_entities(build_repo):
    repo = build_repo(sample_rate=1.0, users=5, videos=20)
    rows = latest_rows(repo, "user_engagement")
    filled = rows[rows["user_id"].isin([demo.FIRST_USER, demo.FIRST_USER + 1])].copy()
    filled["watch_minutes"] = 0.0
    write_online(repo, "user_engagement", filled)
    _serve_few(repo, [demo.FIRST_USER + k for k in range(5)], 30)
    report = run_check(repo)
    wm = feature(report, "user_engagement:watch_minutes")
    assert wm["fill_values"] == [0.0]
    assert wm["silent_default_rate"] == pytest.approx(0.4)
    assert wm["mismatch_rate"] == 0.0  # the defaulted rows are defaults, not mismatches
    assert fails(report) == [("silent_default", "user_engagement:watch_minutes")]


def test_a_configured_fill_value_always_applies(build_repo):
    repo = build_repo(sample_rate=1.0, parity_extra={"fill_values": [-1]})
    rows = latest_rows(repo, "user_engagement")
    one = rows[rows["user_id"] == demo.FIRST_USER].copy()
    one["sessions"] = -1
    write_online(repo, "user_engagement", one)
    users = [demo.FIRST_USER + k for k in range(30)]
    _serve_few(repo, users, 10)
    report = run_check(repo)
    sessions = feature(report, "user_engagement:sessions")
    assert sessions["fill_values"] == [-1]  # one user of 30: below any share, but configured
    assert sessions["silent_defaults"] == 10 and sessions["mismatches"] == 0


def test_value_mismatch_evidence_carries_its_magnitude(build_repo):
    repo = build_repo(sample_rate=1.0)
    rows = latest_rows(repo, "user_engagement")
    tenth = rows[rows["user_id"] % 10 == 3].copy()
    original = tenth["watch_minutes"].to_numpy()
    tenth["watch_minutes"] = original * 1.5 + 1.0
    write_online(repo, "user_engagement", tenth)
    serve_refs(repo, 150)
    report = run_check(repo)
    finding = next(f for f in report["findings"] if f["kind"] == "value_mismatch")
    magnitude = finding["evidence"]["magnitude"]
    served, offline = original * 1.5 + 1.0, original
    expected_smape = np.mean(2 * np.abs(served - offline) / (np.abs(served) + np.abs(offline)))
    assert magnitude["smape"] == pytest.approx(expected_smape, rel=0.15)
    assert magnitude["abs_diff"]["max"] == pytest.approx(np.max(served - offline), rel=1e-6)
    assert (
        0
        < magnitude["abs_diff"]["p50"]
        <= magnitude["abs_diff"]["p95"]
        <= magnitude["abs_diff"]["max"]
    )
    assert magnitude["within_tolerance_share"] == 0.0
    example = finding["evidence"]["examples"][0]
    assert example["difference"] == pytest.approx(example["online"] - example["offline"])
