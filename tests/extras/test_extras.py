"""Each extra, alone in a fresh venv, runs the path the docs give for it (issue 23, item 4).

A venv per extra holds only ``pip install -e ".[<extra>]"`` (made with uv, which takes seconds
where pip takes minutes; the install is the same set of packages). In it, a driver script builds
the demo repo for that extra's backend, runs the real ``feast apply``, materializes, serves
sampled requests, and then ``feast-parity check`` runs as its own process. A missing package
fails the apply, the serving or the check with ``ModuleNotFoundError``, as a user would meet it:
Feast's ``openlineage:`` block, for one, needs ``grpc`` from Feast's ``grpcio`` extra.

This is the lane ``make test-extras`` (``.ci/run`` runs it after ``make test``); the main suite
does not collect it (``norecursedirs`` in pyproject.toml).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS = os.environ.get("FEAST_PARITY_TEST_REDIS", "127.0.0.1:6379")
SPARK_CONF = {
    "spark.master": "local[2]",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
}

DRIVER = """
import json, sys
from pathlib import Path

import yaml
from feast import FeatureStore

from feast_parity import demo

repo, setup = Path(sys.argv[1]), json.loads(sys.argv[2])
demo.make_demo_repo(repo, users=60, videos=20, days=2, **setup["demo"])
for block in ("openlineage", "mlflow"):  # Feast's own blocks of feature_store.yaml
    if setup.get(block):
        config = yaml.safe_load((repo / "feature_store.yaml").read_text())
        config[block] = setup[block]
        (repo / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
if setup.get("postgres_sources"):
    demo.load_sources_to_postgres(repo, setup["postgres_sources"])
demo.feast_apply(repo)
demo.materialize(repo, days=3)
store = FeatureStore(repo_path=str(repo))
responses = demo.serve(store, 30, users=60, videos=20)
print(json.dumps({"served": len(responses)}))
"""


def uv() -> str:
    found = Path(sys.executable).with_name("uv")
    return str(found) if found.exists() else (shutil.which("uv") or "uv")


def venv_with(extra: str, where: Path) -> Path:
    """A new venv holding feast-parity with ``extra`` and nothing else; returns its bin dir."""
    venv = where / f"venv-{extra}"
    subprocess.run([uv(), "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    installed = subprocess.run(
        [uv(), "pip", "install", "-q", "-e", f"{ROOT}[{extra}]"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    return venv / "bin"


def run_in(bin_dir: Path, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH",)}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    env["PYSPARK_PYTHON"] = str(bin_dir / "python")
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def documented_path(extra: str, setup: dict[str, Any], tmp_path: Path, *check: str) -> dict:
    """Build, apply, materialize, serve in the extra's venv; then check; return the report."""
    bin_dir = venv_with(extra, tmp_path)
    repo = tmp_path / "repo"
    served = run_in(
        bin_dir, [str(bin_dir / "python"), "-c", DRIVER, str(repo), json.dumps(setup)], tmp_path
    )
    assert served.returncode == 0, served.stdout[-2000:] + served.stderr[-4000:]
    assert json.loads(served.stdout.strip().splitlines()[-1]) == {"served": 30}
    report_file = tmp_path / "report.json"
    checked = run_in(
        bin_dir,
        [
            str(bin_dir / "feast-parity"),
            "check",
            "--repo",
            str(repo),
            "--json",
            str(report_file),
            "--no-progress",
            *check,
        ],
        tmp_path,
    )
    assert checked.returncode in (0, 1), checked.stdout[-2000:] + checked.stderr[-4000:]
    report = json.loads(report_file.read_text())
    samples = {view["feature_view"]: view["samples"] for view in report["feature_views"]}
    assert set(samples) >= {"user_engagement", "video_stats"}, samples
    compared = {row["feature"]: row["compared"] for row in report["features"]}
    assert all(count > 0 for count in compared.values()), compared
    assert report["status"] in ("ok", "warn", "fail")
    return report


def test_the_postgres_extra_runs_feast_and_the_check_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    from feast_parity import demo

    block = demo.postgres_store_config(postgres_url)
    setup = {
        "demo": {
            "features": "features_postgres.py",
            "online_store": block,
            "offline_store": block,
            "store_url": postgres_url,
        },
        "postgres_sources": postgres_url,
    }
    report = documented_path("postgres", setup, tmp_path)
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"user_engagement", "video_stats"} <= tables
    assert any(name.startswith("parity") for name in tables), tables
    assert report["samples"] > 0


def test_the_redis_extra_serves_from_redis_and_the_check_reads_it(tmp_path: Path) -> None:
    setup = {
        "demo": {
            "online_store": {"type": "redis", "connection_string": REDIS},
            "project": f"extras_redis_{os.getpid()}",
        }
    }
    report = documented_path("redis", setup, tmp_path)
    assert report["project"] == setup["demo"]["project"]


def test_the_openlineage_extra_lets_feast_apply_and_the_check_emit_events(
    tmp_path: Path,
) -> None:
    setup = {
        "demo": {},
        "openlineage": {"enabled": True, "transport_type": "file", "namespace": "recs"},
    }
    documented_path("openlineage", setup, tmp_path)
    events = [
        json.loads(line)
        for line in (tmp_path / "repo" / "openlineage_events.json").read_text().splitlines()
        if line.strip()
    ]
    jobs = {(event["job"]["name"], event["eventType"]) for event in events}
    assert ("video_recs.parity_check", "COMPLETE") in jobs, sorted(jobs)


TRAIN_AND_REGISTER = """
import sys
from datetime import datetime, timezone

import mlflow
import pandas as pd
from feast import FeatureStore

store = FeatureStore(repo_path=sys.argv[1])
service = store.get_feature_service("ranking_model_v1")
labels = pd.DataFrame(
    {"user_id": [1001, 1002], "video_id": [50001, 50002],
     "event_timestamp": datetime.now(timezone.utc)}
)


class Ranker(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


with store.mlflow.start_run(run_name="ranker") as run:
    store.get_historical_features(entity_df=labels, features=service).to_df()
    mlflow.pyfunc.log_model(name="model", python_model=Ranker())
store.mlflow.register_model(f"runs:/{run.info.run_id}/model", "ranker")
"""


def test_the_mlflow_extra_checks_and_gates_a_model_by_its_features(tmp_path: Path) -> None:
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    setup = {"demo": {}, "mlflow": {"enabled": True, "tracking_uri": tracking}}
    documented_path("mlflow", setup, tmp_path)
    bin_dir = tmp_path / "venv-mlflow" / "bin"
    repo = tmp_path / "repo"
    trained = run_in(
        bin_dir, [str(bin_dir / "python"), "-c", TRAIN_AND_REGISTER, str(repo)], tmp_path
    )
    assert trained.returncode == 0, trained.stderr[-4000:]
    out = tmp_path / "model.json"
    feast_parity = str(bin_dir / "feast-parity")
    model = ["--repo", str(repo), "--model", "models:/ranker/1"]
    checked = run_in(bin_dir, [feast_parity, "check", *model, "--json", str(out)], tmp_path)
    assert checked.returncode in (0, 1), checked.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["scope"]["feature_service"] == "ranking_model_v1"
    gated = run_in(bin_dir, [feast_parity, "gate", *model], tmp_path)
    assert gated.returncode in (0, 1) and "ranking_model_v1" in gated.stdout, gated.stderr


@pytest.mark.spark
def test_the_spark_extra_runs_the_check_on_spark(tmp_path: Path) -> None:
    setup = {
        "demo": {
            "features": "features_spark.py",
            "offline_store": {"type": "spark", "spark_conf": SPARK_CONF},
            "parity_extra": {"sample_log": "data/parity_samples"},
        }
    }
    report = documented_path("spark", setup, tmp_path, "--engine", "spark")
    assert "spark_seconds" in report["timings"], report["timings"]


def test_the_s3_extra_logs_to_s3_and_the_check_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's path for the ``s3`` extra: ``sample_log: s3://...`` with the endpoint and
    keys in the AWS environment, against moto's S3 server (started from this venv, outside the
    extra's)."""
    import boto3

    from tests.s3_server import start_moto, stop

    process, endpoint = start_moto()
    try:
        keys = {"AWS_ACCESS_KEY_ID": "extras", "AWS_SECRET_ACCESS_KEY": "extras"}
        s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket="extras-log")
        for name, value in {
            **keys,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        setup = {"demo": {"parity_extra": {"sample_log": "s3://extras-log/samples"}}}
        report = documented_path("s3", setup, tmp_path)
        listed = s3.list_objects_v2(Bucket="extras-log", Prefix="samples/")
        files = [item["Key"] for item in listed.get("Contents", [])]
    finally:
        stop(process)
    assert any(key.endswith(".parquet") for key in files), files
    assert not (tmp_path / "repo" / "data" / "parity_samples").exists()
    assert report["samples"] > 0
