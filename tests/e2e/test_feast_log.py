"""``feast-parity export --feast-log``: samples that Feast reads.

A feature service with a file logging destination serves a real demo repo (batch views and the
on-demand view); its samples are exported in Feast's logging schema through Feast's own
``write_logged_features``, read back with Feast's ``retrieve_feature_service_logs`` (the values
are exactly what serving returned), re-exported without duplicates, and Feast's real
``feast monitor run --source-type log`` computes its metrics on them.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from feast import FeatureService, FeatureStore
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination
from feast.monitoring.monitoring_service import MonitoringService

from feast_parity import demo
from feast_parity.cli import main as cli

SERVICE = "ranking_logged"
REQUESTS, ROWS = 20, 10


def _logs(store: FeatureStore, start: datetime, end: datetime):
    service = store.get_feature_service(SERVICE)
    job = store._get_provider().retrieve_feature_service_logs(
        feature_service=service,
        start_date=start,
        end_date=end,
        config=store.config,
        registry=store.registry,
    )
    return job.to_arrow()


def test_samples_exported_in_feasts_logging_schema_are_what_feast_reads(
    build_repo, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    views = [store.get_feature_view("user_engagement"), store.get_feature_view("video_stats")]
    logged = FeatureService(
        name=SERVICE,
        features=[*views, store.get_on_demand_feature_view("ranking_signals")],
        logging_config=LoggingConfig(destination=FileLoggingDestination(path="data/feature_logs")),
    )
    store.apply([logged])
    start = datetime.now(timezone.utc) - timedelta(seconds=1)

    server = FeatureStore(repo_path=str(repo))
    rng = np.random.default_rng(9)
    served: list[tuple[int, int, float, str, float]] = []
    for _ in range(REQUESTS):
        rows = demo.request_rows(rng, ROWS, users=300, videos=100)
        answer = server.get_online_features(
            server.get_feature_service(SERVICE), entity_rows=rows
        ).to_dict()
        served += list(
            zip(
                answer["user_id"],
                answer["video_id"],
                answer["watch_minutes"],
                answer["category"],
                answer["affinity_score"],
            )
        )
    demo.serve(server, 5, users=300, videos=100)  # through another service: not exported
    assert server._get_provider().flush_samples()
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    window = ["--since", start.isoformat(), "--until", end.isoformat()]

    assert cli(["export", "--repo", str(repo), "--feast-log", SERVICE, *window]) == 0
    out = capsys.readouterr().out
    assert f"wrote {REQUESTS * ROWS} logged rows of feature service {SERVICE!r}" in out

    table = _logs(FeatureStore(repo_path=str(repo)), start, end)
    assert table.num_rows == REQUESTS * ROWS
    names = set(table.column_names)
    assert {"user_id", "video_id", "__log_timestamp", "__log_date", "__request_id"} <= names
    for column in ("user_engagement__watch_minutes", "ranking_signals__affinity_score"):
        assert {column, f"{column}__timestamp", f"{column}__status"} <= names
    back = sorted(
        zip(
            table.column("user_id").to_pylist(),
            table.column("video_id").to_pylist(),
            table.column("user_engagement__watch_minutes").to_pylist(),
            table.column("video_stats__category").to_pylist(),
            table.column("ranking_signals__affinity_score").to_pylist(),
        )
    )
    assert back == sorted(served)  # exactly what serving returned, row by row
    assert set(table.column("user_engagement__watch_minutes__status").to_pylist()) == {1}
    assert len(set(table.column("__request_id").to_pylist())) == REQUESTS

    # re-exporting the window writes nothing new
    assert cli(["export", "--repo", str(repo), "--feast-log", SERVICE, *window]) == 0
    out = capsys.readouterr().out
    assert "wrote 0 logged rows" in out and f"{REQUESTS * ROWS} rows of the window were" in out
    assert _logs(FeatureStore(repo_path=str(repo)), start, end).num_rows == REQUESTS * ROWS

    # Feast's own monitor computes its log metrics on them
    day = end.date().isoformat()
    monitor = subprocess.run(
        [
            str(Path(sys.executable).with_name("feast")),
            "monitor",
            "run",
            "--source-type",
            "log",
            "-s",
            SERVICE,
            "--start-date",
            day,
            "--end-date",
            day,
            "-g",
            "daily",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert monitor.returncode == 0, monitor.stdout + monitor.stderr
    assert "Status: completed" in monitor.stdout
    metrics = MonitoringService(FeatureStore(repo_path=str(repo))).get_feature_metrics(
        store.project, feature_service_name=SERVICE, data_source_type="log", granularity="daily"
    )
    watch = [m for m in metrics if m["feature_name"] == "watch_minutes"]
    assert watch and watch[0]["row_count"] == REQUESTS * ROWS
    assert watch[0]["mean"] == pytest.approx(np.mean([s[2] for s in served]))


def test_a_service_without_a_logging_destination_is_one_line(build_repo, capsys) -> None:
    repo = build_repo(sample_rate=1.0)
    assert cli(["export", "--repo", str(repo), "--feast-log", "ranking_model_v1"]) == 2
    err = capsys.readouterr().err
    assert "has no logging destination" in err and err.count("\n") == 1
    assert cli(["export", "--repo", str(repo)]) == 2
    assert "exactly one of --prometheus" in capsys.readouterr().err


def _serve_service(repo: Path, requests: int, seed: int) -> None:
    server = FeatureStore(repo_path=str(repo))
    rng = np.random.default_rng(seed)
    for _ in range(requests):
        rows = demo.request_rows(rng, ROWS, users=300, videos=100)
        server.get_online_features(server.get_feature_service(SERVICE), entity_rows=rows)
    assert server._get_provider().flush_samples()


def _logged_requests(repo: Path) -> list[str]:
    """Request ids of every row in the destination, read as Parquet (Feast's own reader
    needs one schema for all files, and a service that gained a view has two)."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(repo / "data" / "feature_logs"), format="parquet")
    return dataset.to_table(columns=["__request_id"]).column("__request_id").to_pylist()


def test_export_stays_idempotent_after_the_service_gained_a_view(
    build_repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 29, case 8: the service logs one view, is exported, then gains a second view; the
    next export of the whole window writes only the new requests (it used to read the earlier
    logs with the new schema, fail with a KeyError taken for "nothing logged yet", and write
    every row again)."""
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    destination = LoggingConfig(destination=FileLoggingDestination(path="data/feature_logs"))
    engagement = store.get_feature_view("user_engagement")
    store.apply([FeatureService(name=SERVICE, features=[engagement], logging_config=destination)])
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    _serve_service(repo, 10, seed=1)
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert (
        cli(
            [
                "export",
                "--repo",
                str(repo),
                "--feast-log",
                SERVICE,
                "--since",
                start.isoformat(),
                "--until",
                end.isoformat(),
            ]
        )
        == 0
    )
    assert f"wrote {10 * ROWS} logged rows" in capsys.readouterr().out

    grown = FeatureService(
        name=SERVICE,
        features=[engagement, store.get_feature_view("video_stats")],
        logging_config=destination,
    )
    FeatureStore(repo_path=str(repo)).apply([grown])
    _serve_service(repo, 15, seed=2)
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    window = ["--since", start.isoformat(), "--until", end.isoformat()]
    code = cli(["export", "--repo", str(repo), "--feast-log", SERVICE, *window])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"wrote {15 * ROWS} logged rows" in out, out
    assert f"{10 * ROWS} rows of the window were already logged" in out, out
    logged = _logged_requests(repo)
    assert len(logged) == 25 * ROWS and len(set(logged)) == 25

    # and again: nothing new, whatever the two schemas of the files
    assert cli(["export", "--repo", str(repo), "--feast-log", SERVICE, *window]) == 0
    out = capsys.readouterr().out
    assert "wrote 0 logged rows" in out and f"{25 * ROWS} rows of the window were" in out, out
    assert len(_logged_requests(repo)) == 25 * ROWS


def test_an_unreadable_log_is_an_error_not_an_empty_log(
    build_repo, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 29, case 8: when what was logged cannot be read, the export writes nothing and
    says why (exit 2): taking the error for "nothing logged yet" would log every row twice."""
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    logged = FeatureService(
        name=SERVICE,
        features=[store.get_feature_view("user_engagement")],
        logging_config=LoggingConfig(destination=FileLoggingDestination(path="data/feature_logs")),
    )
    store.apply([logged])
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    _serve_service(repo, 5, seed=3)
    end = datetime.now(timezone.utc) + timedelta(seconds=1)
    window = ["--since", start.isoformat(), "--until", end.isoformat()]
    assert cli(["export", "--repo", str(repo), "--feast-log", SERVICE, *window]) == 0
    capsys.readouterr()
    files = sorted((repo / "data" / "feature_logs").rglob("*.parquet"))
    assert files
    files[0].write_bytes(b"PAR1 half a file")  # a damaged log file in the destination
    assert cli(["export", "--repo", str(repo), "--feast-log", SERVICE, *window]) == 2
    err = capsys.readouterr().err
    assert "cannot read what feature service" in err and err.count("\n") == 1, err
    assert len(files) == len(list((repo / "data" / "feature_logs").rglob("*.parquet")))
