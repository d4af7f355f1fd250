"""OpenLineage through Feast's own ``openlineage:`` block: a run per training retrieval and per
parity check, sent to a real HTTP receiver on 127.0.0.1 (started here) and to the file
transport; events rebuilt with openlineage-python's own classes; an unreachable endpoint never
fails training or the check (counted, logged once).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from feast import FeatureStore
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    data_quality_assertions_dataset,
    data_quality_metrics_input_dataset,
    schema_dataset,
)
from openlineage.client.facet_v2 import (
    output_statistics_output_dataset as output_statistics,
)

from feast_parity.cli import main as cli
from feast_parity.plugin import openlineage_events
from tests.faults import now_hour, serve_refs, skew_a_tenth

PROJECT = "video_recs"


class Receiver:
    """An OpenLineage HTTP endpoint: keeps the JSON body of every POST."""

    def __init__(self) -> None:
        events = self.events = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                events.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, job: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e["job"]["name"] == job]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


def _with_block(repo: Path, **block: Any) -> None:
    path = repo / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config["openlineage"] = {"enabled": True, "namespace": "recs", **block}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _event(data: dict[str, Any]) -> RunEvent:
    """The event rebuilt from its JSON with openlineage-python's classes (attrs validates each
    field on construction)."""

    def inputs(items: list[dict[str, Any]]) -> list[InputDataset]:
        out = []
        for item in items:
            facets = item.get("inputFacets", {})
            built: dict[str, Any] = {}
            if "dataQualityMetrics" in facets:
                m = facets["dataQualityMetrics"]
                built["dataQualityMetrics"] = (
                    data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
                        columnMetrics={
                            k: data_quality_metrics_input_dataset.ColumnMetrics(
                                nullCount=v.get("nullCount"), count=v.get("count")
                            )
                            for k, v in m["columnMetrics"].items()
                        },
                        rowCount=m.get("rowCount"),
                    )
                )
            if "dataQualityAssertions" in facets:
                built["dataQualityAssertions"] = (
                    data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
                        assertions=[
                            data_quality_assertions_dataset.Assertion(
                                assertion=a["assertion"], success=a["success"], column=a["column"]
                            )
                            for a in facets["dataQualityAssertions"]["assertions"]
                        ]
                    )
                )
            schema = item.get("facets", {}).get("schema")
            out.append(
                InputDataset(
                    namespace=item["namespace"],
                    name=item["name"],
                    facets={
                        "schema": schema_dataset.SchemaDatasetFacet(
                            fields=[
                                schema_dataset.SchemaDatasetFacetFields(
                                    name=f["name"], type=f["type"]
                                )
                                for f in schema["fields"]
                            ]
                        )
                    }
                    if schema
                    else {},
                    inputFacets=built,
                )
            )
        return out

    outputs = []
    for item in data.get("outputs", []):
        stats = item.get("outputFacets", {}).get("outputStatistics")
        outputs.append(
            OutputDataset(
                namespace=item["namespace"],
                name=item["name"],
                outputFacets={
                    "outputStatistics": output_statistics.OutputStatisticsOutputDatasetFacet(
                        rowCount=stats["rowCount"]
                    )
                }
                if stats
                else {},
            )
        )
    return RunEvent(
        eventType=RunState[data["eventType"]],
        eventTime=data["eventTime"],
        run=Run(runId=data["run"]["runId"]),
        job=Job(namespace=data["job"]["namespace"], name=data["job"]["name"]),
        producer=data["producer"],
        inputs=inputs(data.get("inputs", [])),
        outputs=outputs,
    )


def test_a_check_and_a_training_retrieval_are_runs_on_a_real_http_receiver(
    build_repo, receiver, capsys
):
    repo = build_repo(sample_rate=1.0)
    _with_block(repo, transport_type="http", transport_url=receiver.url)
    skew_a_tenth(repo)
    serve_refs(repo, 60)

    assert cli(["check", "--repo", str(repo), "--no-progress", "--json", str(repo / "r.json")]) == 1
    report = json.loads((repo / "r.json").read_text())
    runs = receiver.of(f"{PROJECT}.parity_check")
    assert [e["eventType"] for e in runs] == ["START", "COMPLETE"]
    assert runs[0]["run"]["runId"] == runs[1]["run"]["runId"]
    assert all(path == "/api/v1/lineage" for path, _ in receiver.events)
    done = _event(runs[1])
    assert done.job.namespace == "recs"
    by_name = {d.name: d for d in done.inputs}
    assert (
        by_name[f"sample_log/{PROJECT}"].inputFacets["dataQualityMetrics"].rowCount
        == (report["samples"])
    )
    engagement = by_name["user_engagement"]
    metrics = engagement.inputFacets["dataQualityMetrics"]
    assert metrics.rowCount == 600 and set(metrics.columnMetrics) == {
        "click_through_rate",
        "watch_minutes",
        "sessions",
        "country",
        "device",
    }
    assertions = {
        (a.assertion, a.column): a.success
        for a in engagement.inputFacets["dataQualityAssertions"].assertions
    }
    assert assertions[("value_mismatch", "watch_minutes")] is False  # the planted skew
    assert assertions[("value_mismatch", "sessions")] is True
    assert [k for k, ok in assertions.items() if not ok] == [("value_mismatch", "watch_minutes")]

    store = FeatureStore(repo_path=str(repo))
    entity_df = pd.DataFrame({"user_id": [1001, 1002, 1003], "event_timestamp": [now_hour()] * 3})
    frame = store.get_historical_features(
        entity_df=entity_df, features=["user_engagement:watch_minutes", "user_engagement:sessions"]
    ).to_df()
    training = receiver.of(f"{PROJECT}.training_retrieval")
    assert len(training) == 1 and training[0]["eventType"] == "COMPLETE"
    run = _event(training[0])
    assert [d.name for d in run.inputs] == ["user_engagement"]
    fields = {f.name: f.type for f in run.inputs[0].facets["schema"].fields}
    assert fields == {"watch_minutes": "Float64", "sessions": "Int64"}
    (output,) = run.outputs
    assert output.name.startswith("training_dataset/")
    assert output.outputFacets["outputStatistics"].rowCount == len(frame) == 3
    fingerprints = training[0]["outputs"][0]["facets"]["feastParity"]["definitionFingerprints"]
    assert set(fingerprints) == {"user_engagement:watch_minutes", "user_engagement:sessions"}
    assert all(len(v) == 16 for v in fingerprints.values())


def test_the_file_transport_writes_the_same_runs_under_the_repo(build_repo):
    repo = build_repo(sample_rate=1.0)
    _with_block(repo, transport_type="file")
    serve_refs(repo, 20)
    assert cli(["check", "--repo", str(repo), "--no-progress"]) == 0
    lines = (repo / "openlineage_events.json").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    mine = [e for e in events if e["job"]["name"] == f"{PROJECT}.parity_check"]
    assert [e["eventType"] for e in mine] == ["START", "COMPLETE"]
    done = _event(mine[1])
    assertions = [
        a
        for d in done.inputs
        if "dataQualityAssertions" in d.inputFacets
        for a in d.inputFacets["dataQualityAssertions"].assertions
    ]
    assert assertions and all(a.success for a in assertions)  # a clean repo


def test_an_unreachable_endpoint_never_fails_the_check_or_training(build_repo, caplog):
    repo = build_repo(sample_rate=1.0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    _with_block(repo, transport_type="http", transport_url=f"http://127.0.0.1:{closed}")
    serve_refs(repo, 20)
    openlineage_events._WARNED["done"] = False
    before = openlineage_events.FAILED_EVENTS["count"]
    with caplog.at_level(logging.WARNING, logger="feast_parity.plugin.openlineage_events"):
        assert cli(["check", "--repo", str(repo), "--no-progress"]) == 0
        store = FeatureStore(repo_path=str(repo))
        frame = store.get_historical_features(
            entity_df=pd.DataFrame({"user_id": [1001], "event_timestamp": [now_hour()]}),
            features=["user_engagement:sessions"],
        ).to_df()
    assert len(frame) == 1
    assert openlineage_events.OUTBOX.wait(10)  # sent off the caller's thread: let it finish
    assert openlineage_events.FAILED_EVENTS["count"] - before == 3  # START, COMPLETE, training
    warned = [r for r in caplog.records if "OpenLineage event not sent" in r.getMessage()]
    assert len(warned) == 1


class Silent:
    """An endpoint that accepts every connection, reads what it is sent, and never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)  # held open, never answered

    def close(self) -> None:
        for conn in [*self.connections, self.listener]:
            conn.close()


def _seconds(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def test_a_silent_or_refused_endpoint_adds_at_most_the_wait_to_training_and_the_check(
    build_repo, caplog
):
    """Issue 29, case 10. Lineage is sent off the caller's thread and the caller waits for it
    at most WAIT_SECONDS, whatever the endpoint does.

    How the added time is judged without a machine-speed threshold: each run is timed against
    the same run with no endpoint, in the same test. A caller that waited for a send to an
    endpoint that never answers could not return before the HTTP client gives up, i.e. before
    openlineage-python's own timeout (HttpConfig.timeout, 5 s; the check sends two events): so
    an added time under that timeout shows the caller did not wait for the endpoint, and the
    wait it did do is bounded by construction (Outbox.wait). The measured times are printed."""
    from openlineage.client.transport.http import HttpConfig

    transport_timeout = HttpConfig(url="http://x").timeout
    repo = build_repo(sample_rate=1.0)
    serve_refs(repo, 20)
    store = FeatureStore(repo_path=str(repo))
    entity_df = pd.DataFrame({"user_id": [1001, 1002, 1003], "event_timestamp": [now_hour()] * 3})

    def train() -> None:
        job = FeatureStore(repo_path=str(repo)).get_historical_features(
            entity_df=entity_df, features=["user_engagement:sessions"]
        )
        assert len(job.to_df()) == 3

    def check() -> None:
        assert cli(["check", "--repo", str(repo), "--no-progress"]) == 0

    del store
    train()  # warm: the first retrieval of a process imports and caches more
    baseline = {"training": _seconds(train), "check": _seconds(check)}
    silent = Silent()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed when the block ends
    openlineage_events._WARNED["done"] = False
    before = openlineage_events.FAILED_EVENTS["count"]
    try:
        with caplog.at_level(logging.WARNING, logger="feast_parity.plugin.openlineage_events"):
            for name, url in (("silent", silent.url), ("refused", refused)):
                _with_block(repo, transport_type="http", transport_url=url)
                added = {
                    "training": _seconds(train) - baseline["training"],
                    "check": _seconds(check) - baseline["check"],
                }
                print(f"{name} endpoint: added {added} (baseline {baseline})")
                for run, seconds in added.items():
                    assert seconds < transport_timeout, (name, run, added, baseline)
            assert silent.connections, "the events were sent to the silent endpoint"
            # every event is accounted for once the sender gives up on it (2 s each, no retry)
            deadline = time.monotonic() + 30
            while openlineage_events.OUTBOX.pending and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        silent.close()
    assert openlineage_events.FAILED_EVENTS["count"] - before == 6  # 2 x (START, COMPLETE, run)
    warned = [r for r in caplog.records if "OpenLineage event not sent" in r.getMessage()]
    assert len(warned) == 1
