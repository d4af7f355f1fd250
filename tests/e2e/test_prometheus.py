"""Prometheus: the serving hook's counters (in-process registry and Feast's own metrics server)
and the textfile export of the latest stored run. Real repo, real serving, real parser.

Ported from tests/test_prometheus.py (log format v3, store/ and parity/ split): the stored runs
of the export test are built here (``report``), not imported from another test module."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from feast import FeatureStore
from feast import metrics as feast_metrics
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from feast_parity import demo
from feast_parity.cli import main as cli
from feast_parity.parity.alerts import AlertRules, evaluate
from feast_parity.plugin import metrics
from feast_parity.store.alerts import store_alerts
from feast_parity.store.engine import open_store
from feast_parity.store.runs import load_runs, store_run
from tests import services
from tests.faults import now_hour
from tests.stored_runs import PROJECT, WATCH, report

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


# --- a real Prometheus ---------------------------------------------------------------------------

EXAMPLES = DASHBOARD.parent
# Debian's paths first (.ci/run installs prometheus and prometheus-node-exporter), then PATH
PROMETHEUS_BIN = ("prometheus", "/usr/bin/prometheus", "prometheus")
PROMTOOL_BIN = ("promtool", "/usr/bin/promtool", "promtool")
NODE_EXPORTER_BIN = (
    "prometheus-node-exporter",
    "/usr/bin/prometheus-node-exporter",
    "prometheus-node-exporter",
    "node_exporter",
)
DASHBOARD_VARIABLES = {"$project": ".+", "$feature_view": ".+", "$feature": ".+", "$job": ".+"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read().decode())


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    """Instant query through Prometheus's HTTP API: the result series (or a scalar as one)."""
    answer = _get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def _wait_for(what: str, ready: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = ready()
        except OSError as exc:  # not listening yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


def _binary(which: tuple[str, ...]) -> str:
    """The program's path; where it is missing the test is skipped (failed under
    FEAST_PARITY_TEST_STRICT=1, as in .ci/run) and the run's last line says how to install it."""
    name, *candidates = which
    return services.program(name, *candidates, install=services.INSTALL["prometheus"])


def test_promtool_checks_and_unit_tests_the_shipped_alert_rules() -> None:
    promtool = _binary(PROMTOOL_BIN)
    checked = subprocess.run(
        [promtool, "check", "rules", str(EXAMPLES / "prometheus_rules.yml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "prometheus_rules_test.yml"],
        capture_output=True,
        text=True,
        cwd=EXAMPLES,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout and "FAILED" not in tested.stdout


def test_every_dashboard_query_returns_series_from_a_real_prometheus(
    served_repo: Path, tmp_path: Path
) -> None:
    """Debian's prometheus scrapes Feast's metrics server (the hook's counters) and
    node-exporter's textfile collector (the export of stored runs with open alerts); every
    PromQL expression and variable of the Grafana dashboard returns series with the labels its
    legend names, and the shipped alert rules fire on them."""
    prometheus, node_exporter = _binary(PROMETHEUS_BIN), _binary(NODE_EXPORTER_BIN)
    runs_repo, _ = _repo_with_runs(tmp_path)
    textfile = tmp_path / "textfile"
    assert cli(["export", "--repo", str(runs_repo), "--prometheus", str(textfile / "fp.prom")]) == 0

    metrics.install()
    store = FeatureStore(repo_path=str(served_repo))
    demo.serve(store, 3, users=300, videos=100, seed=5)
    assert store._get_provider().flush_samples()
    assert metrics.sync_multiprocess()
    feast_port, node_port, prom_port = _free_port(), _free_port(), _free_port()
    flags = feast_metrics._config
    feast_metrics.start_metrics_server(
        store, port=feast_port, start_resource_monitoring=False, start_freshness_monitoring=False
    )
    feast_metrics._config = flags
    feast_server = next(p for p in _children() if p.name == "feast-metrics-server")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(EXAMPLES / "prometheus_rules.yml")],
                "scrape_configs": [
                    {
                        "job_name": "feast",
                        "static_configs": [{"targets": [f"127.0.0.1:{feast_port}"]}],
                    },
                    {
                        "job_name": "node",
                        "static_configs": [{"targets": [f"127.0.0.1:{node_port}"]}],
                    },
                ],
            }
        )
    )
    processes = [
        subprocess.Popen(
            [
                node_exporter,
                "--collector.disable-defaults",
                "--collector.textfile",
                f"--collector.textfile.directory={textfile}",
                f"--web.listen-address=127.0.0.1:{node_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    base = f"http://127.0.0.1:{prom_port}"
    try:
        _wait_for("both targets up", lambda: len(_query(base, "up == 1")) == 2)
        # rate() over [5m] needs two scrapes of the counters
        _wait_for(
            "two scrapes of the hook counters",
            lambda: _query(base, "count_over_time(feast_parity_samples_total[5m]) >= 2"),
        )
        dashboard = json.loads(DASHBOARD.read_text())
        targets = [t for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]
        assert len(targets) >= 20
        for target in targets:
            expr = target["expr"]
            for name, regex in DASHBOARD_VARIABLES.items():
                expr = expr.replace(name, regex)
            series = _query(base, expr)
            assert series, f"no series for {target['expr']}"
            expected = set(re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")))
            grouped = re.search(r"\bby \(([^)]*)\)", expr)
            if grouped:
                expected |= {label.strip() for label in grouped.group(1).split(",")}
            for one in series:
                assert expected <= set(one["metric"]), (target["expr"], one["metric"])
        # the variables: Grafana's label_values(metric, label) is Prometheus's label values API
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            found = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
            assert found, variable["definition"]
            match, label = found.group(1), found.group(2)
            for name, regex in DASHBOARD_VARIABLES.items():
                match = match.replace(name, regex)
            values = _get_json(
                f"{base}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": match})
            )["data"]
            assert values, variable["definition"]
        projects = _get_json(f"{base}/api/v1/label/project/values")["data"]
        assert PROJECT in projects
        # the shipped rules load and fire on what was scraped
        rules = _get_json(f"{base}/api/v1/rules")["data"]["groups"]
        assert sum(len(g["rules"]) for g in rules) == 6

        def firing() -> set[tuple[str, str]]:
            alerts = _get_json(f"{base}/api/v1/alerts")["data"]["alerts"]
            return {
                (a["labels"]["alertname"], a["labels"].get("target") or a["labels"].get("project"))
                for a in alerts
                if a["state"] == "firing"
            }

        fired = _wait_for(
            "the rules to fire",
            lambda: firing() if ("FeastParityCheckFailing", PROJECT) in firing() else None,
        )
        assert ("FeastParityAlertOpen", "video_stats") in fired  # the stored served-lag alert
        assert ("FeastParityAlertOpen", WATCH) in fired
        assert not any(name == "FeastParityHookErrors" for name, _ in fired)
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        feast_server.terminate()
        feast_server.join(10)
