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
