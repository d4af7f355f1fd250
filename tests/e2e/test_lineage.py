"""Freshness, training lineage and the training gate on a real demo repo."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
from feast import FeatureStore

from feast_parity import demo, lineage, training_gate
from feast_parity.cli import main as cli
from feast_parity.plugin.check import run_check
from feast_parity.plugin.errors import LineageError
from feast_parity.plugin.lineage import TrainingGateError
from feast_parity.plugin.registry import describe_view
from feast_parity.store import datasets as stored

TRAIN_REFS = ["user_engagement:click_through_rate", "user_engagement:country"]


def train(repo, users=range(1001, 1101), refs=TRAIN_REFS, method="to_df"):
    store = FeatureStore(repo_path=str(repo))
    now = datetime.now(timezone.utc)
    entity_df = pd.DataFrame({"user_id": list(users), "event_timestamp": now - timedelta(hours=1)})
    job = store.get_historical_features(entity_df=entity_df, features=refs)
    result = getattr(job, method)()
    return store, job, result


def serve_users(repo, requests, seed=0):
    """Serve requests of 10 distinct users each (many distinct entities: stable distributions)."""
    import numpy as np

    store = FeatureStore(repo_path=str(repo))
    rng = np.random.default_rng(seed)
    for _ in range(requests):
        users = rng.choice(300, size=10, replace=False) + demo.FIRST_USER
        rows = [{"user_id": int(u), "video_id": demo.FIRST_VIDEO} for u in users]
        store.get_online_features(
            TRAIN_REFS + ["user_engagement:watch_minutes", "user_engagement:sessions"],
            entity_rows=rows,
        )
    assert store._get_provider().flush_samples()


def engine_of(repo):
    from feast_parity.store.engine import open_store

    return open_store(f"sqlite:///{repo}/data/parity.db")


def test_freshness_reports_a_view_materialized_three_days_ago(build_repo, tmp_path, capsys):
    now = datetime.now(timezone.utc)
    repo = build_repo(materialize=False)
    demo.materialize(repo, end=now - timedelta(days=3), views=["user_engagement"], days=6)
    demo.materialize(repo, end=now, views=["video_stats"], days=6)
    out = tmp_path / "fresh.json"
    capsys.readouterr()  # what materialize printed
    code = cli(["freshness", "--repo", str(repo), "--json", str(out)])
    assert code == 1
    views = {v["feature_view"]: v for v in json.loads(out.read_text())["feature_views"]}
    user = views["user_engagement"]
    assert user["status"] == "fail"
    assert user["materialization_lag_seconds"] == pytest.approx(3 * 86400, abs=600)
    assert views["video_stats"]["status"] == "ok"
    assert views["video_stats"]["materialization_lag_seconds"] < 600
    text = capsys.readouterr().out
    assert text.index("user_engagement") < text.index("video_stats")  # worst first
    cli(["freshness", "--repo", str(repo)])
    history = stored.freshness_history(engine_of(repo), "video_recs", "user_engagement")
    assert len(history) == 2 and all(h["status"] == "fail" for h in history)


def test_training_retrieval_is_recorded_with_refs_rows_and_fingerprints(build_repo):
    repo = build_repo(sample_rate=0.0)
    store, job, frame = train(repo)
    datasets = stored.list_datasets(engine_of(repo), "video_recs")
    assert len(datasets) == 1
    dataset = datasets[0]
    assert dataset["dataset_id"] == job.parity_dataset_id
    assert dataset["feature_refs"] == TRAIN_REFS
    assert dataset["row_count"] == len(frame) == 100
    view = store.get_feature_view("user_engagement")
    expected = describe_view(view, False)
    recorded = dataset["features"]["user_engagement:country"]
    assert recorded["definition_fingerprint"] == expected["definition_fingerprint"]
    assert recorded["schema_fingerprint"] == expected["schema_fingerprint"]
    assert recorded["source"]["path"].endswith("user_engagement.parquet")
    assert recorded["owner"] == "recs-team@example.com" and recorded["ttl_seconds"] == 86400
    assert recorded["materialization_intervals"]  # materialized by the fixture
    profile = dataset["profile"]["user_engagement:click_through_rate"]
    assert profile["kind"] == "numeric" and profile["rows"] == 100
    assert sum(profile["histogram"]["counts"]) == frame["click_through_rate"].notna().sum()
    # materializing as Arrow records too; a job never materialized records nothing
    train(repo, method="to_arrow")
    store.get_historical_features(
        entity_df=pd.DataFrame(
            {"user_id": [1001], "event_timestamp": [datetime.now(timezone.utc)]}
        ),
        features=TRAIN_REFS,
    )
    assert len(stored.list_datasets(engine_of(repo), "video_recs")) == 2


def test_gate_refuses_after_a_definition_change_until_a_clean_check(build_repo):
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 20, users=300, videos=100)
    store._get_provider().flush_samples()
    with pytest.raises(TrainingGateError, match="no clean parity run"):
        training_gate(repo, TRAIN_REFS)
    run_check(repo, until=datetime.now(timezone.utc) + timedelta(seconds=1))
    records = training_gate(repo, TRAIN_REFS)
    assert all(r["gate"]["passed"] for r in records)
    before = records[0]["definition_fingerprint"]
    train(repo, users=range(1001, 1301))

    features = (repo / "features.py").read_text()
    (repo / "features.py").write_text(
        features.replace(
            'ttl=timedelta(days=1),\n    schema=[\n        Field(name="click_through_rate"',
            'ttl=timedelta(days=2),\n    schema=[\n        Field(name="click_through_rate"',
        )
    )
    demo.feast_apply(repo)
    after = lineage(repo, TRAIN_REFS)
    assert after[0]["definition_fingerprint"] != before
    assert after[0]["last_trained"]["definition_changed_since"] is True
    with pytest.raises(TrainingGateError) as refused:
        training_gate(repo, TRAIN_REFS)
    assert "definition changed since its last clean parity run" in str(refused.value)
    assert set(refused.value.offenders) == set(TRAIN_REFS)
    with pytest.warns(UserWarning, match="training gate refused"):
        training_gate(repo, TRAIN_REFS, on_fail="warn")
    serve_users(repo, 40, seed=5)
    run_check(repo, until=datetime.now(timezone.utc) + timedelta(seconds=2))
    assert all(r["gate"]["passed"] for r in training_gate(repo, TRAIN_REFS))


def test_bad_input_gives_clear_messages(build_repo, capsys):
    repo = build_repo(sample_rate=0.0)
    with pytest.raises(LineageError, match="unknown feature ref 'nope:x'"):
        lineage(repo, ["nope:x"])
    with pytest.raises(LineageError, match="view 'user_engagement' has"):
        lineage(repo, ["user_engagement:nope"])
    capsys.readouterr()
    assert cli(["lineage", "user_engagement:nope", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "unknown feature ref" in err and len(err.strip().splitlines()) == 1, err
    # no training record: said plainly, not an error
    assert cli(["lineage", "user_engagement:country", "--repo", str(repo)]) == 0
    assert "never (no training dataset recorded" in capsys.readouterr().out
    # a malformed SLO tag names the view and the tag
    features = (repo / "features.py").read_text()
    (repo / "features.py").write_text(
        features.replace('"parity.freshness_slo": "12h"', '"parity.freshness_slo": "12 hours"')
    )
    demo.feast_apply(repo)
    assert cli(["freshness", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "user_engagement" in err and "parity.freshness_slo" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_training_example_refuses_then_trains_after_a_clean_check(build_repo):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "train_with_gate.py"
    repo = build_repo(sample_rate=1.0)
    refused = subprocess.run(
        [sys.executable, str(example), "--repo", str(repo)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 1 and "no clean parity run" in refused.stderr
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 20, users=300, videos=100)
    store._get_provider().flush_samples()
    run_check(repo, until=datetime.now(timezone.utc) + timedelta(seconds=1))
    trained = subprocess.run(
        [sys.executable, str(example), "--repo", str(repo)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr
    import re

    assert re.search(r"training on \d+ rows; dataset id [0-9a-f]{32}", trained.stdout)
    assert len(stored.list_datasets(engine_of(repo), "video_recs")) == 1


def test_check_finds_drift_of_served_values_against_the_training_profile(build_repo):
    """Training read watch_minutes; then the data (offline and online alike) shifts x3.
    Served and offline still agree, so only served-vs-trained drift can see it."""
    repo = build_repo(sample_rate=1.0)
    train(
        repo,
        users=range(1001, 1301),
        refs=["user_engagement:watch_minutes", "user_engagement:sessions"],
    )
    source = repo / "data" / "user_engagement.parquet"
    frame = pd.read_parquet(source)
    frame["watch_minutes"] = frame["watch_minutes"] * 3.0
    frame.to_parquet(source)
    demo.materialize(repo, days=6)
    serve_users(repo, 40)
    report = run_check(repo)
    rows = {f["feature"]: f for f in report["features"]}
    shifted = rows["user_engagement:watch_minutes"]
    assert shifted["psi_vs_training"] >= 0.25 and shifted["mismatch_rate"] == 0.0
    assert rows["user_engagement:sessions"]["psi_vs_training"] < 0.1
    trained_findings = [
        f for f in report["findings"] if f["evidence"].get("reference") == "training"
    ]
    assert [(f["feature"], f["severity"]) for f in trained_findings] == [
        ("user_engagement:watch_minutes", "fail")
    ]
    assert rows["user_engagement:click_through_rate"]["psi_vs_training"] is None  # not trained


# --- issue 23, item 3: lineage of on-demand outputs names everything they are computed from ------

SIGNALS = """
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, String
from features import ranking_signals, user_engagement, video_stats

viewing_context = RequestSource(
    name="viewing_context",
    schema=[Field(name="slot", dtype=Float64), Field(name="surface", dtype=String)],
)


@on_demand_feature_view(
    sources=[user_engagement, video_stats, viewing_context],
    schema=[Field(name="slot_score", dtype=Float64)],
    mode="python",
)
def slot_signals(inputs: dict) -> dict:
    return {"slot_score": [
        float(c) * float(p) / (1.0 + s)
        for c, p, s in zip(inputs["click_through_rate"], inputs["popularity"], inputs["slot"])
    ]}


# an on-demand view over another one: Feast 0.67 applies it (serving and retrieval of it fail,
# docs/feast_facts.md), and lineage names the whole chain
@on_demand_feature_view(
    sources=[ranking_signals.projection, viewing_context],
    schema=[Field(name="final_score", dtype=Float64)],
    mode="python",
)
def final_signals(inputs: dict) -> dict:
    scores = zip(inputs["affinity_score"], inputs["slot"])
    return {"final_score": [a / (1.0 + s) for a, s in scores]}
"""
USER_FEATURES = ["click_through_rate", "watch_minutes", "sessions", "country", "device"]


def _inputs(record):
    return {i["name"]: i for i in record["inputs"]}


def test_lineage_of_an_on_demand_output_names_every_input_in_json_text_and_openlineage(
    build_repo, tmp_path, capsys
):
    import yaml

    repo = build_repo(sample_rate=1.0)
    (repo / "signals.py").write_text(SIGNALS)
    demo.feast_apply(repo)
    # after apply: Feast's own apply-time emission needs grpc, which is not installed here
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["openlineage"] = {"enabled": True, "namespace": "recs", "transport_type": "file"}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    out = tmp_path / "lineage.json"
    refs = ["slot_signals:slot_score", "final_signals:final_score"]
    assert cli(["lineage", *refs, "--repo", str(repo), "--json", str(out)]) == 0
    slot, final = json.loads(out.read_text())
    assert slot["source"]["name"] == "slot_signals"  # no longer None
    assert slot["source"]["inputs"] == ["user_engagement", "video_stats", "viewing_context"]
    assert sorted(slot["sources"]) == ["user_engagement", "video_stats"]  # kept as it was
    assert slot["request_sources"] == ["viewing_context"]
    inputs = _inputs(slot)
    engagement = inputs["user_engagement"]
    assert engagement["kind"] == "feature_view" and engagement["features"] == USER_FEATURES
    assert engagement["source"]["name"] == "user_engagement_source"
    assert engagement["source"]["kind"] == "FileSource"
    assert engagement["source"]["path"].endswith("user_engagement.parquet")
    assert engagement["entities"] == ["user"] and engagement["ttl_seconds"] == 86400
    assert inputs["video_stats"]["source"]["name"] == "video_stats_source"
    assert inputs["viewing_context"] == {
        "name": "viewing_context",
        "kind": "request_source",
        "fields": [{"name": "slot", "type": "Float64"}, {"name": "surface", "type": "String"}],
    }
    chain = _inputs(final)
    assert set(chain) == {"ranking_signals", "viewing_context"}
    ranking = chain["ranking_signals"]
    assert ranking["kind"] == "on_demand_feature_view"
    assert ranking["features"] == ["affinity_score"]
    assert [i["name"] for i in ranking["inputs"]] == ["user_engagement", "video_stats"]
    assert (
        ranking["udf_fingerprint"]
        == describe_view(
            FeatureStore(repo_path=str(repo)).get_on_demand_feature_view("ranking_signals")
        )["udf_fingerprint"]
    )

    capsys.readouterr()
    assert cli(["lineage", *refs, "--repo", str(repo)]) == 0
    text = capsys.readouterr().out
    assert (
        "  source      slot_signals [OnDemandFeatureView] computed from user_engagement, "
        "video_stats, viewing_context" in text
    )
    assert "  input       user_engagement [feature view] reads click_through_rate, " in text
    assert "source user_engagement_source [FileSource] " in text
    assert (
        "  input       viewing_context [request source] fields slot (Float64), surface (String)"
        in text
    )
    assert (
        "  input       ranking_signals [on-demand view] reads affinity_score; computed from "
        "user_engagement, video_stats" in text
    )
    assert "    input       user_engagement [feature view]" not in text  # nested: one lead
    assert "  input         user_engagement [feature view] reads" in text

    # OpenLineage: a training retrieval of the on-demand output, and a check that served it
    store = FeatureStore(repo_path=str(repo))
    entity_df = pd.DataFrame(
        {
            "user_id": [1001, 1002],
            "video_id": [demo.FIRST_VIDEO, demo.FIRST_VIDEO + 1],
            "slot": [1.0, 2.0],
            "surface": ["home", "search"],
            "event_timestamp": datetime.now(timezone.utc) - timedelta(hours=1),
        }
    )
    store.get_historical_features(entity_df=entity_df, features=["slot_signals:slot_score"]).to_df()
    rows = [
        {"user_id": 1001 + i, "video_id": demo.FIRST_VIDEO + i, "slot": 1.0, "surface": "home"}
        for i in range(10)
    ]
    for _ in range(4):
        store.get_online_features(["slot_signals:slot_score"], entity_rows=rows)
    assert store._get_provider().flush_samples()
    assert cli(["check", "--repo", str(repo), "--no-progress"]) in (0, 1)
    events = [
        json.loads(line)
        for line in (repo / "openlineage_events.json").read_text().splitlines()
        if line.strip()
    ]
    (training,) = [e for e in events if e["job"]["name"].endswith(".training_retrieval")]
    (done,) = [
        e
        for e in events
        if e["job"]["name"].endswith(".parity_check") and e["eventType"] == "COMPLETE"
    ]
    for event in (training, done):
        by_name = {d["name"]: d for d in event["inputs"]}
        assert {"slot_signals", "user_engagement", "video_stats"} <= set(by_name), by_name
        request = by_name["request_source/viewing_context"]
        fields = {f["name"]: f["type"] for f in request["facets"]["schema"]["fields"]}
        assert fields == {"slot": "Float64", "surface": "String"}
        derived = by_name["slot_signals"]["facets"]["columnLineage"]["fields"]["slot_score"]
        sources = {(f["name"], f["field"]) for f in derived["inputFields"]}
        assert {
            ("user_engagement", "click_through_rate"),
            ("video_stats", "popularity"),
            ("request_source/viewing_context", "slot"),
        } <= sources
    # the training retrieval recorded the on-demand output itself (Feast hands the provider its
    # batch inputs only), with the transformation it was computed by
    (record,) = lineage(repo, ["slot_signals:slot_score"])
    assert record["last_trained"] is not None
    assert record["transformation"]["training"] == record["udf_fingerprint"]
