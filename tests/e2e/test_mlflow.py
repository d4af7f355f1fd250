"""MLflow runs and models carry parity (issue 28, items 1 and 2), on a real demo repo and a real
MLflow tracking store (SQLite backend, with the model registry), through Feast's own ``mlflow:``
block and its ``store.mlflow`` integration."""

from __future__ import annotations

import json
import logging
import socket
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import yaml

mlflow = pytest.importorskip("mlflow")

from feast import FeatureStore  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from feast_parity import demo, training_gate  # noqa: E402
from feast_parity.cli import main as cli  # noqa: E402
from feast_parity.plugin import mlflow_runs  # noqa: E402
from feast_parity.plugin.check import run_check  # noqa: E402
from feast_parity.plugin.lineage import TrainingGateError  # noqa: E402
from feast_parity.store import datasets as stored  # noqa: E402
from feast_parity.store.engine import open_store  # noqa: E402
from feast_parity.store.runs import load_runs  # noqa: E402

TRAIN_REFS = ["user_engagement:click_through_rate", "user_engagement:country"]
SUBSET = [
    "user_engagement:click_through_rate",
    "user_engagement:country",
    "video_stats:popularity",
]
SERVICE = """

ranker_features = FeatureService(
    name="ranker_features",
    features=[user_engagement[["click_through_rate", "country"]], video_stats[["popularity"]]],
)
"""


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A fresh MLflow tracking store with a model registry: SQLite, artifacts under tmp_path."""
    monkeypatch.chdir(tmp_path)  # the default artifact root is relative to the working dir
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment_id="0")  # this store's Default, not a former test's
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def with_mlflow(repo, **block):
    """Turn on Feast's ``mlflow:`` block in the repo's feature_store.yaml."""
    path = repo / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config["mlflow"] = {"enabled": True, **block}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def entity_df(users=range(1001, 1101)):
    now = datetime.now(timezone.utc)
    return pd.DataFrame({"user_id": list(users), "event_timestamp": now - timedelta(hours=1)})


# each user once, with a video: served and trained on alike (no served-vs-trained drift)
PAIRS = [(demo.FIRST_USER + i, demo.FIRST_VIDEO + i % 100) for i in range(300)]


def served_and_checked(repo):
    """Serve ranking_model_v1 (three views, every feature) for PAIRS; check that window."""
    store = FeatureStore(repo_path=str(repo))
    service = store.get_feature_service("ranking_model_v1")
    for start in range(0, len(PAIRS), 10):
        rows = [{"user_id": u, "video_id": v} for u, v in PAIRS[start : start + 10]]
        store.get_online_features(service, entity_rows=rows)
    assert store._get_provider().flush_samples()
    return run_check(repo, until=datetime.now(timezone.utc) + timedelta(seconds=1))


def engine_of(repo):
    return open_store(f"sqlite:///{repo}/data/parity.db")


def parity_tags(tags):
    return {k: v for k, v in tags.items() if k.startswith("feast_parity.")}


def artifact_paths(client, run_id, path=None):
    """Every artifact file of a run, recursively."""
    found = []
    for item in client.list_artifacts(run_id, path):
        found.extend(artifact_paths(client, run_id, item.path) if item.is_dir else [item.path])
    return found


def test_a_training_run_carries_the_gate_verdict_its_check_run_and_the_lineage(
    build_repo, tracking
):
    repo = build_repo(sample_rate=1.0)
    with_mlflow(repo, tracking_uri=tracking)
    client = MlflowClient(tracking_uri=tracking)

    # refused: no check has run yet; the verdict and its reasons are on the run all the same
    store = FeatureStore(repo_path=str(repo))
    with store.mlflow.start_run(run_name="refused") as refused_run:
        with pytest.raises(TrainingGateError, match="no clean parity run"):
            training_gate(store, TRAIN_REFS)
    assert mlflow_runs.flush()
    tags = client.get_run(refused_run.info.run_id).data.tags
    assert tags["feast_parity.gate"] == "refused"
    reasons = json.loads(tags["feast_parity.gate.reasons"])
    assert set(reasons) == set(TRAIN_REFS)
    assert all("no clean parity run" in r[0] for r in reasons.values())
    assert tags["feast_parity.parity_run_id"] == "none"

    report = served_and_checked(repo)
    assert report["findings"] == [] or all(f["severity"] != "fail" for f in report["findings"])
    store = FeatureStore(repo_path=str(repo))
    with store.mlflow.start_run(run_name="train") as run:
        records = training_gate(store, TRAIN_REFS)
        job = store.get_historical_features(entity_df=entity_df(), features=TRAIN_REFS)
        frame = job.to_df()
    assert len(frame) == 100 and all(r["gate"]["passed"] for r in records)
    assert mlflow_runs.flush()

    run_id = run.info.run_id
    tags = client.get_run(run_id).data.tags
    mine = parity_tags(tags)
    assert mine == {
        "feast_parity.gate": "passed",
        "feast_parity.gate.reasons": "{}",
        "feast_parity.parity_run_id": report["run_id"],
        "feast_parity.training_dataset_id": job.parity_dataset_id,
    }
    assert tags["feast.project"] == "video_recs"  # Feast's own tagging is untouched
    files = artifact_paths(client, run_id)
    lineage_file = f"feast-parity/lineage/{job.parity_dataset_id}.json"
    assert sorted(files) == ["feast-parity/gate.json", lineage_file]

    lineage = json.loads(open(client.download_artifacts(run_id, lineage_file)).read())
    assert lineage["dataset_id"] == job.parity_dataset_id and lineage["row_count"] == 100
    chain = {
        f["feature"]: (f["feature_view"], f["source"]["name"], f["dataset_id"])
        for f in lineage["features"]
    }
    assert chain == {
        ref: ("user_engagement", "user_engagement_source", job.parity_dataset_id)
        for ref in TRAIN_REFS
    }
    assert all(f["source"]["path"].endswith("user_engagement.parquet") for f in lineage["features"])
    recorded = stored.list_datasets(engine_of(repo), "video_recs")
    fingerprints = {ref: d["definition_fingerprint"] for ref, d in recorded[0]["features"].items()}
    assert {f["feature"]: f["definition_fingerprint"] for f in lineage["features"]} == fingerprints
    gate = json.loads(open(client.download_artifacts(run_id, "feast-parity/gate.json")).read())
    assert [(g["feature"], g["gate"]["passed"], g["parity"]["run_id"]) for g in gate] == [
        (ref, True, report["run_id"]) for ref in TRAIN_REFS
    ]

    # the closing note of issue 28 shows a run's tags and artifacts: printed from this run
    print("\nMLflow run", run_id, "tags:")
    for key, value in sorted(tags.items()):
        if not key.startswith("mlflow."):
            print(f"  {key} = {value}")
    print("artifacts:", *sorted(files), sep="\n  ")


def test_nothing_is_logged_without_the_mlflow_block(build_repo, tracking):
    repo = build_repo(sample_rate=1.0)
    served_and_checked(repo)
    store = FeatureStore(repo_path=str(repo))
    assert store.mlflow is None
    with mlflow.start_run() as run:  # an active run of the user's own, outside Feast
        training_gate(store, TRAIN_REFS)
        job = store.get_historical_features(entity_df=entity_df(), features=TRAIN_REFS)
        job.to_df()
    assert mlflow_runs.flush()
    assert job.parity_dataset_id  # the plugin recorded the dataset in its own store
    client = MlflowClient(tracking_uri=tracking)
    assert parity_tags(client.get_run(run.info.run_id).data.tags) == {}
    assert artifact_paths(client, run.info.run_id) == []


def test_an_unreachable_tracking_server_never_fails_training(
    build_repo, tracking, monkeypatch, caplog
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    repo = build_repo(sample_rate=1.0)
    with_mlflow(repo, tracking_uri=f"http://127.0.0.1:{closed}")
    # MLflow's own HTTP client retries for minutes by default; Feast's auto-log runs on the
    # training thread, so keep its failure short (ours never waits more than WAIT_SECONDS)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    served_and_checked(repo)
    mlflow_runs._WARNED["done"] = False
    before = mlflow_runs.FAILED_LOGS["count"]
    store = FeatureStore(repo_path=str(repo))
    with caplog.at_level(logging.WARNING, logger="feast_parity.plugin.mlflow_runs"):
        with mlflow.start_run():  # active locally; the block points at a closed port
            training_gate(store, TRAIN_REFS)
            frames = [
                store.get_historical_features(entity_df=entity_df(), features=TRAIN_REFS).to_df()
                for _ in range(2)
            ]
        assert mlflow_runs.flush(30)
    assert [len(f) for f in frames] == [100, 100]
    recorded = stored.list_datasets(engine_of(repo), "video_recs")
    assert len(recorded) == 2  # training and its lineage went on
    assert mlflow_runs.FAILED_LOGS["count"] - before == 3  # the gate, two datasets
    warned = [r for r in caplog.records if "could not log to MLflow" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]


def trained_model(repo, tracking, name="ranker"):
    """Train a model on the feature service ``ranker_features`` through Feast's integration,
    log it with ``store.mlflow.log_model`` and register it; return the run id."""
    from sklearn.linear_model import LogisticRegression

    store = FeatureStore(repo_path=str(repo))
    service = store.get_feature_service("ranker_features")
    rows = pd.DataFrame(
        {
            "user_id": [u for u, _ in PAIRS],
            "video_id": [v for _, v in PAIRS],
            "event_timestamp": datetime.now(timezone.utc),
        }
    )
    with store.mlflow.start_run(run_name="ranker") as run:
        frame = store.get_historical_features(entity_df=rows, features=service).to_df()
        x = frame[["click_through_rate", "popularity"]].fillna(0.0)
        model = LogisticRegression().fit(
            x, (x["click_through_rate"] > x["click_through_rate"].median())
        )
        store.mlflow.log_model(model, "model")
    store.mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    return run.info.run_id


def model_on_refs(repo, name="on_refs"):
    """A model trained on TRAIN_REFS, refs that no service holds exactly: Feast's auto-log tags
    the run with the smallest service holding them (ranker_features, one feature more), while
    its feast_features.json lists what the model was trained on."""
    from sklearn.linear_model import LogisticRegression

    store = FeatureStore(repo_path=str(repo))
    rows = pd.DataFrame(
        {"user_id": [u for u, _ in PAIRS], "event_timestamp": datetime.now(timezone.utc)}
    )
    with store.mlflow.start_run(run_name=name) as run:
        frame = store.get_historical_features(entity_df=rows, features=TRAIN_REFS).to_df()
        x = frame[["click_through_rate"]].fillna(0.0)
        model = LogisticRegression().fit(
            x, x["click_through_rate"] > x["click_through_rate"].median()
        )
        store.mlflow.log_model(model, "model")
    assert MlflowClient().get_run(run.info.run_id).data.tags["feast.feature_service"] == (
        "ranker_features"
    )
    store.mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    return run.info.run_id


def plain_model(name="plain"):
    """A model logged and registered with MLflow alone: no Feast metadata."""
    from sklearn.linear_model import LogisticRegression

    with mlflow.start_run() as run:
        model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
        mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    return run.info.run_id


@pytest.fixture
def model_repo(build_repo, tracking):
    repo = build_repo(sample_rate=1.0)
    (repo / "features.py").write_text((repo / "features.py").read_text() + SERVICE)
    demo.feast_apply(repo)
    with_mlflow(repo, tracking_uri=tracking)
    return repo


def test_check_model_checks_exactly_the_features_the_model_was_trained_on(
    model_repo, tracking, tmp_path, capsys
):
    run_id = trained_model(model_repo, tracking)
    served_and_checked(model_repo)  # serves ranking_model_v1: three views, every feature
    until = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
    everything = tmp_path / "all.json"
    assert (
        cli(["check", "--repo", str(model_repo), "--until", until, "--json", str(everything)]) == 0
    )
    full = json.loads(everything.read_text())
    assert {f["feature_view"] for f in full["features"]} == {
        "user_engagement",
        "video_stats",
        "ranking_signals",
    }
    for uri in ("models:/ranker/1", f"runs:/{run_id}/model"):
        out = tmp_path / "model.json"
        capsys.readouterr()
        code = cli(
            [
                "check",
                "--repo",
                str(model_repo),
                "--model",
                uri,
                "--until",
                until,
                "--json",
                str(out),
            ]
        )
        assert code == 0, capsys.readouterr().err
        report = json.loads(out.read_text())
        assert sorted(f["feature"] for f in report["features"]) == SUBSET
        assert all(f["compared"] > 0 for f in report["features"])
        assert {v["feature_view"] for v in report["feature_views"]} == {
            "user_engagement",
            "video_stats",
        }
        assert report["scope"]["feature_service"] == "ranker_features"
        assert report["scope"]["features"] == SUBSET and report["scope"]["model"] == uri
        stored_runs = {r["run_id"] for r in load_runs(engine_of(model_repo), "video_recs")}
        assert {full["run_id"], report["run_id"]} <= stored_runs  # the full run is kept
        assert report["run_id"] != full["run_id"]
        assert f"model {uri}: 3 feature(s) from feature service ranker_features" in (
            capsys.readouterr().out
        )
    # trained on refs: checked on exactly those, not on the larger service Feast tagged
    refs_run = model_on_refs(model_repo)
    for uri in ("models:/on_refs/1", f"runs:/{refs_run}/model"):
        out = tmp_path / "refs.json"
        code = cli(
            [
                "check",
                "--repo",
                str(model_repo),
                "--model",
                uri,
                "--until",
                until,
                "--json",
                str(out),
            ]
        )
        assert code == 0, capsys.readouterr().err
        report = json.loads(out.read_text())
        assert sorted(f["feature"] for f in report["features"]) == TRAIN_REFS
        assert report["scope"]["resolved_by"] == "feast_features.json"


def test_gate_model_answers_whether_the_model_may_be_promoted(model_repo, tracking, capsys):
    trained_model(model_repo, tracking)
    capsys.readouterr()
    # never checked: no evidence, no promotion
    assert cli(["gate", "--repo", str(model_repo), "--model", "models:/ranker/1"]) == 1
    out = capsys.readouterr().out
    assert "may NOT be promoted: 3 of 3 feature(s) refused" in out
    assert "no clean parity run has checked this feature yet" in out
    report = served_and_checked(model_repo)
    capsys.readouterr()
    assert cli(["gate", "--repo", str(model_repo), "--model", "models:/ranker/1", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["passed"] is True and verdict["feature_service"] == "ranker_features"
    assert [(f["feature"], f["parity_run_id"]) for f in verdict["features"]] == [
        (ref, report["run_id"]) for ref in SUBSET
    ]
    # the model's features changed definition since that clean check: refused again
    features = (model_repo / "features.py").read_text()
    (model_repo / "features.py").write_text(
        features.replace(
            'ttl=timedelta(days=1),\n    schema=[\n        Field(name="click_through_rate"',
            'ttl=timedelta(days=2),\n    schema=[\n        Field(name="click_through_rate"',
        )
    )
    demo.feast_apply(model_repo)
    capsys.readouterr()
    assert cli(["gate", "--repo", str(model_repo), "--model", "models:/ranker/1"]) == 1
    assert "definition changed since its last clean parity run" in capsys.readouterr().out


def test_a_model_without_feast_metadata_is_one_line_and_exit_2(model_repo, tracking, capsys):
    run_id = plain_model()
    for command in ("check", "gate"):
        for uri in ("models:/plain/1", f"runs:/{run_id}/model"):
            capsys.readouterr()
            assert cli([command, "--repo", str(model_repo), "--model", uri]) == 2
            err = capsys.readouterr().err
            assert err.startswith(
                f"feast-parity: error: model '{uri}' was logged without Feast metadata"
            ), err
            assert len(err.strip().splitlines()) == 1, err
    capsys.readouterr()
    assert cli(["gate", "--repo", str(model_repo), "--model", "models:/nope/1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("feast-parity: error: model 'models:/nope/1' not found"), err
    assert len(err.strip().splitlines()) == 1, err
