"""Prometheus: the serving hook's counters (in-process registry and Feast's own metrics server)
and the textfile export of the latest stored run. Real repo, real serving, real parser.

Ported from tests/test_prometheus.py (log format v3, store/ and parity/ split): the stored runs
of the export test are built here (``report``), not imported from another test module."""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from feast import FeatureStore
from feast import metrics as feast_metrics
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from feast_parity import demo
from feast_parity.cli import main as cli
from feast_parity.parity.alerts import AlertRules, evaluate
from feast_parity.parity.report import run_id_for
from feast_parity.plugin import metrics
from feast_parity.store.alerts import store_alerts
from feast_parity.store.engine import open_store
from feast_parity.store.runs import load_runs, store_run
from tests.faults import now_hour

DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana_dashboard.json"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition text, keyed by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def scrape() -> Samples:
    return parse(generate_latest(REGISTRY).decode())


# --- serving process -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo repo, applied and materialized, logging every row through a 4-slot queue."""
    repo = tmp_path_factory.mktemp("prometheus") / "repo"
    demo.make_demo_repo(
        repo,
        users=300,
        videos=100,
        days=3,
        end=now_hour(),
        sample_rate=1.0,
        parity_extra={"queue_size": 4},
    )
    demo.feast_apply(repo)
    demo.materialize(repo, days=4)
    yield repo


def test_serving_counters_move_when_requests_are_served(served_repo: Path) -> None:
    collector = metrics.install()
    assert metrics.install() is collector  # registered once, however often it is called
    store = FeatureStore(repo_path=str(served_repo))
    provider = store._get_provider()
    before = scrape()

    demo.serve(store, 3, users=300, videos=100)  # 3 snapshots always fit the 4-slot queue
    assert provider.flush_samples()
    stats = provider.parity_stats()
    after = scrape()
    assert stats["sampled_rows"] == 30  # 3 requests x 10 rows, sample_rate 1.0

    def delta(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    assert delta(after, "feast_parity_samples_total") == 30
    assert delta(after, "feast_parity_samples_written_total") == stats["written_rows"] == 30
    written_log = delta(after, "feast_parity_sample_log_rows_written_total")
    assert written_log == stats["written_log_rows"] == 90  # three views per row
    assert delta(after, "feast_parity_samples_dropped_total", reason="queue_full") == 0
    assert delta(after, "feast_parity_hook_errors_total") == stats["hook_errors"] == 0
    assert value(after, "feast_parity_queue_depth") == 0
    assert value(after, "feast_parity_writers") >= 1

    # a stalled writer: the 4-slot queue fills and further sampled rows are dropped, counted
    provider.writer.pause()
    try:
        demo.serve(store, 8, users=300, videos=100, seed=1)
        depth_before = provider.writer.queue_depth
        stalled = scrape()
        depth_after = provider.writer.queue_depth
        dropped = provider.parity_stats()["dropped_queue_full"]
        assert dropped >= 30  # at most 5 of the 8 requests found room
        assert delta(stalled, "feast_parity_samples_dropped_total", reason="queue_full") == dropped
        assert delta(stalled, "feast_parity_samples_total") == 30 + 80
        assert value(stalled, "feast_parity_queue_depth") in {depth_before, depth_after}
        assert value(stalled, "feast_parity_queue_depth") >= 1
        assert value(stalled, "feast_parity_queue_capacity") >= 4
    finally:
        provider.writer.resume()
    assert provider.flush_samples()
    drained = scrape()
    assert value(drained, "feast_parity_queue_depth") == 0
    assert delta(drained, "feast_parity_samples_written_total") == 110 - dropped


def test_feast_metrics_server_serves_the_hook_counters(served_repo: Path) -> None:
    """Feast 0.67 serves a MultiProcessCollector registry from a child process, not REGISTRY:
    the counters reach it through the multiprocess files the mirror writes."""
    assert metrics.multiprocess_active(), "importing feast turns on prometheus multiprocess mode"
    metrics.install()
    store = FeatureStore(repo_path=str(served_repo))
    demo.serve(store, 3, users=300, videos=100, seed=2)
    assert store._get_provider().flush_samples()
    assert metrics.sync_multiprocess()  # what the mirror thread does every few seconds
    in_process = scrape()

    files = CollectorRegistry()
    MultiProcessCollector(files)
    from_files = parse(generate_latest(files).decode())
    for name in (
        "feast_parity_samples_total",
        "feast_parity_samples_written_total",
        "feast_parity_sample_log_rows_written_total",
    ):
        assert value(from_files, name) == value(in_process, name) > 0, name

    # and through Feast's own metrics server process, over HTTP
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flags = feast_metrics._config
    feast_metrics.start_metrics_server(
        store, port=port, start_resource_monitoring=False, start_freshness_monitoring=False
    )
    feast_metrics._config = flags  # Feast's own instrumentation stays as it was for other tests
    server = next(p for p in _children() if p.name == "feast-metrics-server")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            served = parse(response.read().decode())
    finally:
        server.terminate()
        server.join(10)
    assert value(served, "feast_parity_samples_total") == value(
        in_process, "feast_parity_samples_total"
    )
    assert ("feast_parity_samples_dropped_total", frozenset({("reason", "queue_full")})) in served


def _children() -> list[Any]:
    import multiprocessing

    return multiprocessing.active_children()


# --- textfile export -----------------------------------------------------------------------------

PROJECT = "video_recs"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
WATCH = "user_engagement:watch_minutes"
FEATURES = [WATCH, "user_engagement:click_through_rate", "video_stats:popularity"]


def report(i: int, values: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Stored run ``i`` (the report contract's fields): window [T0 + i h, T0 + (i+1) h), PSI
    ~ 0.02, lag p99 ~ 1 h; ``values`` overrides metrics per feature (or per view, with
    ``served_p99``)."""
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


def _repo_with_runs(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    repo = tmp_path / "repo"
    repo.mkdir()
    demo.write_config(repo)
    engine = open_store(f"sqlite:///{repo / 'data' / 'parity.db'}")
    latest = {
        WATCH: {"psi": 0.31, "mismatch_rate": 0.02, "status": "fail"},
        "video_stats": {"served_p99": 50_000.0},
    }
    reports = [report(i, latest if i >= 9 else None) for i in range(12)]
    reports[-1]["status"] = "fail"
    reports[-1]["findings"] = [
        {"kind": "distribution_drift", "feature": WATCH, "severity": "fail", "message": "psi"},
        {"kind": "value_mismatch", "feature": WATCH, "severity": "fail", "message": "mismatch"},
    ]
    for r in reports:
        store_run(engine, r)
    store_alerts(engine, evaluate(load_runs(engine, PROJECT), AlertRules()))
    engine.dispose()
    return repo, reports


def test_export_writes_the_latest_run_as_parseable_gauges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, reports = _repo_with_runs(tmp_path)
    out = tmp_path / "textfile" / "feast_parity.prom"
    assert cli(["export", "--repo", str(repo), "--prometheus", str(out)]) == 0
    assert "3 features, 2 feature views, 3 open alerts" in capsys.readouterr().out
    assert sorted(p.name for p in out.parent.iterdir()) == ["feast_parity.prom"]  # no temp left
    samples = parse(out.read_text())
    ue = {"project": PROJECT, "feature_view": "user_engagement", "feature": WATCH}
    assert value(samples, "feast_parity_psi", **ue) == 0.31
    assert value(samples, "feast_parity_mismatch_ratio", **ue) == 0.02
    assert value(samples, "feast_parity_feature_status", **ue) == 3
    assert value(samples, "feast_parity_compared_rows", **ue) == 500
    latest = reports[-1]
    other = latest["features"][1]
    assert value(
        samples,
        "feast_parity_psi",
        project=PROJECT,
        feature_view="user_engagement",
        feature=other["feature"],
    ) == pytest.approx(other["psi"])
    vs = {"project": PROJECT, "feature_view": "video_stats"}
    assert value(samples, "feast_parity_served_lag_seconds", **vs, quantile="0.99") == 50_000
    assert value(samples, "feast_parity_served_lag_seconds", **vs, quantile="0.5") == 1800
    assert value(samples, "feast_parity_freshness_slo_seconds", **vs) == 43200
    assert value(samples, "feast_parity_materialization_lag_seconds", **vs) == 900
    end = latest["window"]["end"]
    assert value(samples, "feast_parity_run_window_end_timestamp_seconds", project=PROJECT) == (
        datetime.fromisoformat(end).timestamp()
    )
    assert value(samples, "feast_parity_run_status", project=PROJECT) == 3
    assert (
        value(
            samples,
            "feast_parity_findings",
            project=PROJECT,
            kind="value_mismatch",
            severity="fail",
        )
        == 1
    )
    # psi and mismatch of WATCH, lag of video_stats: sustained 3 runs, open (warn: no KPI)
    assert value(samples, "feast_parity_alerts_open", project=PROJECT, severity="warn") == 3
    assert value(samples, "feast_parity_alerts_open", project=PROJECT, severity="fail") == 0
    assert (
        value(
            samples,
            "feast_parity_alert_open",
            project=PROJECT,
            signal="served_lag_p99",
            target="video_stats",
            severity="warn",
        )
        == 1
    )

    # a newer run replaces the file's values (rename over the old file)
    engine = open_store(f"sqlite:///{repo / 'data' / 'parity.db'}")
    store_run(engine, report(12))
    engine.dispose()
    assert cli(["export", "--repo", str(repo), "--prometheus", str(out)]) == 0
    samples = parse(out.read_text())
    assert value(samples, "feast_parity_psi", **ue) == report(12)["features"][0]["psi"]
    assert value(samples, "feast_parity_run_status", project=PROJECT) == 0


def test_export_without_stored_runs_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    demo.write_config(repo)
    assert cli(["export", "--repo", str(repo), "--prometheus", str(tmp_path / "x.prom")]) == 2
    err = capsys.readouterr().err
    assert "no stored check runs of project 'video_recs'" in err and err.count("\n") == 1
    assert not (tmp_path / "x.prom").exists()


# --- the Grafana dashboard -----------------------------------------------------------------------


def test_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    exprs += [v["definition"] for v in variables.values() if v["type"] == "query"]
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    # every metric a query names is one feast-parity writes
    exported = {
        s.name
        for family in text_string_to_metric_families(
            generate_latest(
                metrics.exposition_registry(metrics.run_metric_families(report(0)))
            ).decode()
        )
        for s in family.samples
    }
    exported |= {"feast_parity_alerts_open", "feast_parity_alert_open", "feast_parity_findings"}
    registry = CollectorRegistry()
    metrics.install(registry)
    exported |= {s.name for family in registry.collect() for s in family.samples}
    named = {m for e in exprs for m in re.findall(r"feast_parity_[a-z0-9_]+", e)}
    assert named and named <= exported, named - exported
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("served lag", "mismatch", "psi", "dropped", "queue"):
        assert topic in titles
