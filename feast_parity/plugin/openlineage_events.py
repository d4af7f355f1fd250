"""OpenLineage run events for training retrievals and parity checks, through Feast's own
``openlineage:`` block of ``feature_store.yaml``.

Feast emits OpenLineage on ``apply`` and ``materialize`` only. With the block enabled, the
plugin adds two jobs (namespace: the block's ``namespace``):

* ``<project>.training_retrieval``: one COMPLETE run per recorded training dataset. Inputs: the
  feature views read, each with a schema facet of the features used. Output:
  ``training_dataset/<id>`` with its row count (``outputStatistics``) and the definition
  fingerprints of its features (facet ``feastParity``).
* ``<project>.parity_check``: START, then COMPLETE (or FAIL when the check could not run).
  Inputs: the sample-log window (``sample_log/<project>``) and one dataset per checked view, with
  a ``dataQualityMetrics`` input facet (rows, null counts per feature) and a
  ``dataQualityAssertions`` facet: one assertion per check and feature (``value_mismatch``,
  ``stale_serving``, ``silent_default``, ``schema_divergence``, ``distribution_drift``...),
  ``success`` when that feature has no fail finding of that kind.

The transport is the one Feast's block describes (``http``, ``file``, ``console``, ``kafka``; a
relative ``file`` path is under the repo). Lineage is an observer: events are sent by one
sender thread per process (:class:`Outbox`), never on the caller's thread, and a caller (a
training ``to_df``, the end of a check) waits for its events at most :data:`WAIT_SECONDS`,
whatever the endpoint does (answers slowly, never, or refuses). An HTTP send gives up after
:data:`SEND_TIMEOUT_SECONDS`, without retries. Sending never raises: an event that could not be
sent (transport error, queue full, still unsent when the process exits) is counted
(:data:`FAILED_EVENTS`) and logged once per process.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRODUCER = "https://github.com/feast-parity/feast-parity"
FAILED_EVENTS = {"count": 0}  # events that could not be sent, in this process
_WARNED = {"done": False}
WAIT_SECONDS = 0.5  # the longest a training retrieval or a check waits for its events
SEND_TIMEOUT_SECONDS = 2.0  # one HTTP send, connect and answer (no retries)
MAX_QUEUED = 1000  # events waiting for the sender; beyond, an event is dropped and counted


def _failed(why: str, events: int = 1) -> None:
    """Count events that could not be sent; log the first failure of the process."""
    FAILED_EVENTS["count"] += events
    if not _WARNED["done"]:
        _WARNED["done"] = True
        logger.warning(
            "feast-parity: OpenLineage event not sent (%s); later failures are only counted",
            why,
        )


class Outbox:
    """The process's OpenLineage sender: a bounded queue and one daemon thread that sends each
    event through its client. Callers only queue (never block) and then :meth:`wait` a bounded
    time; at exit, what is still unsent is counted as not sent."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[tuple[Any, Any]] = deque()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._slow = False  # a wait ran out: at exit, do not wait again

    def put(self, client: Any, event: Any) -> bool:
        """Queue an event for sending; False (the caller counts it) when the queue is full."""
        with self._cond:
            if len(self._queue) >= MAX_QUEUED:
                return False
            self._queue.append((client, event))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="feast-parity-openlineage", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
        return True

    def wait(self, timeout: float = WAIT_SECONDS) -> bool:
        """Wait until every queued event is sent or failed, at most ``timeout`` seconds."""
        import time

        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._slow = True
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def pending(self) -> int:
        """Events queued or being sent."""
        with self._cond:
            return len(self._queue) + int(self._busy)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                client, event = self._queue.popleft()
                self._busy = True
            try:
                client.emit(event)
            except BaseException as exc:  # the sender never dies of an event
                _failed(repr(exc))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def close(self) -> None:
        """At exit: a last bounded wait (none if the endpoint was already too slow), then
        count and log what could not be sent."""
        if not self._slow:
            self.wait()
        unsent = self.pending
        if unsent:
            _failed(f"{unsent} still unsent at exit: the endpoint did not answer in time", unsent)
            logger.warning("feast-parity: %d OpenLineage event(s) not sent at exit", unsent)


OUTBOX = Outbox()
atexit.register(OUTBOX.close)
# the checks whose outcome is an assertion per feature (a view-level finding counts for each
# feature it names)
ASSERTED_KINDS = (
    "value_mismatch",
    "stale_serving",
    "expired_serving",
    "silent_default",
    "schema_divergence",
    "distribution_drift",
    "transformation_divergence",
)


@functools.cache
def _fingerprint_facet_class() -> Any:
    """A custom dataset facet with the definition fingerprint of each feature (an attrs class,
    like openlineage-python's own facets; built once, on first use)."""
    import attr
    from openlineage.client.generated.base import DatasetFacet

    @attr.define
    class FeastParityDatasetFacet(DatasetFacet):  # type: ignore[misc]
        definitionFingerprints: dict[str, str] = attr.field(factory=dict)  # noqa: N815

        @staticmethod
        def _get_schema() -> str:
            return "https://feast-parity.example/spec/FeastParityDatasetFacet.json"

    return FeastParityDatasetFacet


class LineageEmitter:
    """Sends run events through the transport of the repo's ``openlineage:`` block."""

    def __init__(self, repo_config: Any) -> None:
        self.client: Any = None
        self.namespace = "feast"
        block = getattr(repo_config, "openlineage", None)
        if block is None or not getattr(block, "enabled", False):
            return
        try:
            from openlineage.client import OpenLineageClient

            settings = block.to_openlineage_config()
            transport = settings.get_transport_config()
            if transport and transport.get("type") == "http":
                # bounded: a send that waits on a silent endpoint holds up the events after it
                transport = {**transport, "timeout": SEND_TIMEOUT_SECONDS, "retry": {"total": 0}}
            if transport and transport.get("type") == "file":
                path = Path(transport.get("log_file_path", "openlineage_events.json"))
                repo_path = getattr(repo_config, "repo_path", None)
                if not path.is_absolute() and repo_path is not None:
                    path = Path(repo_path) / path
                transport = {**transport, "log_file_path": str(path), "append": True}
            self.namespace = settings.namespace
            self.client = (
                OpenLineageClient(config={"transport": transport})
                if transport
                else OpenLineageClient()
            )
        except Exception as exc:  # openlineage-python missing, or a bad block
            self._failed(f"cannot set up OpenLineage: {exc!r}")

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def _failed(self, why: str) -> None:
        _failed(why)

    def emit(
        self,
        job: str,
        run_id: str,
        state: str,
        inputs: list[Any] | None = None,
        outputs: list[Any] | None = None,
    ) -> bool:
        """Queue one run event for the sender thread; False (counted, never raised) when it
        could not be built or queued. The caller does not wait here (see :meth:`wait`)."""
        if self.client is None:
            return False
        try:
            from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

            event = RunEvent(
                eventType=getattr(RunState, state),
                eventTime=datetime.now(timezone.utc).isoformat(),
                run=Run(runId=run_id),
                job=Job(namespace=self.namespace, name=job),
                producer=PRODUCER,
                inputs=inputs or [],
                outputs=outputs or [],
            )
        except Exception as exc:
            self._failed(repr(exc))
            return False
        if not OUTBOX.put(self.client, event):
            self._failed(f"more than {MAX_QUEUED} events waiting to be sent")
            return False
        return True

    def wait(self) -> bool:
        """Let the sender send what was queued, at most :data:`WAIT_SECONDS`."""
        return OUTBOX.wait() if self.enabled else True


def new_run_id() -> str:
    return str(uuid.uuid4())


def _schema_facet(fields: Mapping[str, str]) -> Any:
    from openlineage.client.facet_v2 import schema_dataset

    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields.items()]
    )


REQUEST_SOURCE_PREFIX = "request_source/"  # dataset name of a request source's fields


def upstream_of(inputs: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, str]]]:
    """(dataset name, fields read -> type) of everything an on-demand view is computed from,
    its on-demand inputs' own inputs included (``inputs``: its lineage record's ``inputs``).

    >>> upstream_of([{"name": "a", "feature_view": "a", "kind": "feature_view",
    ...               "fields": [{"name": "x", "type": "Int64"}]},
    ...              {"name": "r", "kind": "request_source",
    ...               "fields": [{"name": "y", "type": "Float64"}]}])
    [('a', {'x': 'Int64'}), ('request_source/r', {'y': 'Float64'})]
    """
    out: list[tuple[str, dict[str, str]]] = []
    for item in inputs:
        fields = {str(f["name"]): str(f["type"]) for f in item.get("fields") or []}
        if item.get("kind") == "request_source":
            out.append((f"{REQUEST_SOURCE_PREFIX}{item['name']}", fields))
            continue
        out.append((str(item.get("feature_view") or item["name"]), fields))
        out.extend(upstream_of(item.get("inputs") or []))
    return out


def _column_lineage(
    namespace: str, features: list[str], inputs: Sequence[Mapping[str, Any]]
) -> Any:
    """A ``columnLineage`` facet: each on-demand output computed from every field it reads."""
    from openlineage.client.facet_v2 import column_lineage_dataset as lineage_facet

    sources = [
        lineage_facet.InputField(namespace=namespace, name=name, field=field)
        for name, fields in upstream_of(inputs)
        for field in fields
    ]
    return lineage_facet.ColumnLineageDatasetFacet(
        fields={
            feature: lineage_facet.Fields(
                inputFields=sources,
                transformationType="INDIRECT",
                transformationDescription="on-demand feature view transformation",
            )
            for feature in features
        }
    )


def _input_datasets(
    namespace: str,
    read: Mapping[str, Mapping[str, str]],
    inputs_of: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[Any]:
    """Input datasets of a run: each view read (``read``: view -> fields -> type) and,
    for an on-demand view among them, everything it is computed from (``inputs_of``), each
    once with the union of the fields read of it; an on-demand view carries a
    ``columnLineage`` facet naming the fields its outputs come from."""
    from openlineage.client.event_v2 import InputDataset

    fields: dict[str, dict[str, str]] = {v: dict(f) for v, f in read.items()}
    for inputs in inputs_of.values():
        for name, upstream in upstream_of(inputs):
            fields.setdefault(name, {}).update(upstream)
    datasets = []
    for name, schema in sorted(fields.items()):
        facets: dict[str, Any] = {"schema": _schema_facet(schema)}
        if inputs_of.get(name):
            facets["columnLineage"] = _column_lineage(namespace, sorted(schema), inputs_of[name])
        datasets.append(InputDataset(namespace=namespace, name=name, facets=facets))
    return datasets


def emit_training_retrieval(
    repo_config: Any,
    project: str,
    dataset_id: str,
    row_count: int,
    features: Mapping[str, Mapping[str, Any]],
) -> bool:
    """One COMPLETE run of ``<project>.training_retrieval`` for a recorded training dataset.
    ``features`` maps a registry ref to its lineage record (view, declared type, fingerprint)."""
    emitter = LineageEmitter(repo_config)
    if not emitter.enabled:
        return False
    try:
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import output_statistics_output_dataset as stats

        by_view: dict[str, dict[str, str]] = {}
        fingerprints: dict[str, str] = {}
        inputs_of: dict[str, Sequence[Mapping[str, Any]]] = {}
        for ref, record in features.items():
            view, feature = ref.split(":", 1)
            by_view.setdefault(view, {})[feature] = str(record.get("declared_type", ""))
            fingerprints[ref] = str(record.get("definition_fingerprint", ""))
            if record.get("inputs"):  # an on-demand view: what it is computed from
                inputs_of[view] = list(record["inputs"])
        inputs = _input_datasets(emitter.namespace, by_view, inputs_of)
        output = OutputDataset(
            namespace=emitter.namespace,
            name=f"training_dataset/{dataset_id}",
            facets={"feastParity": _fingerprint_facet_class()(definitionFingerprints=fingerprints)},
            outputFacets={
                "outputStatistics": stats.OutputStatisticsOutputDatasetFacet(
                    rowCount=int(row_count)
                )
            },
        )
    except Exception as exc:
        emitter._failed(repr(exc))
        return False
    queued = emitter.emit(
        f"{project}.training_retrieval", new_run_id(), "COMPLETE", inputs, [output]
    )
    emitter.wait()
    return queued


def _failing(report: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, feature ref) of every fail finding; a view-level finding fails each feature it
    names."""
    failing: set[tuple[str, str]] = set()
    for finding in report.get("findings", []):
        if finding.get("severity") != "fail":
            continue
        kind = str(finding.get("kind"))
        if finding.get("feature"):
            failing.add((kind, str(finding["feature"])))
        evidence = finding.get("evidence")
        named = evidence.get("features") if isinstance(evidence, Mapping) else None
        for ref in named or []:
            failing.add((kind, str(ref)))
    return failing


def check_inputs(
    namespace: str,
    report: Mapping[str, Any],
    inputs_of: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> list[Any]:
    """The check's input datasets with their data-quality facets, from its report; for each
    checked on-demand view (``inputs_of``: view -> its lineage ``inputs``), what it is
    computed from, and a ``columnLineage`` facet on it."""
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import (
        data_quality_assertions_dataset as assertions_facet,
    )
    from openlineage.client.facet_v2 import (
        data_quality_metrics_input_dataset as metrics_facet,
    )

    failing = _failing(report)
    rows_of_view = {
        str(v.get("feature_view")): int(v.get("samples") or 0)
        for v in report.get("feature_views", [])
    }
    features_of: dict[str, list[Mapping[str, Any]]] = {}
    for row in report.get("features", []):
        features_of.setdefault(str(row.get("feature_view")), []).append(row)
    window = report.get("window", {})
    inputs = [
        InputDataset(
            namespace=namespace,
            name=f"sample_log/{report.get('project')}",
            inputFacets={
                "dataQualityMetrics": metrics_facet.DataQualityMetricsInputDatasetFacet(
                    columnMetrics={},
                    rowCount=int(report.get("samples") or 0),
                    lastUpdated=str(window.get("end")),
                )
            },
        )
    ]
    for view, rows in sorted(features_of.items()):
        columns = {}
        assertions = []
        for row in rows:
            feature = str(row.get("feature", "")).split(":", 1)[-1]
            served = int(row.get("rows") or 0)
            null_rate = row.get("online_null_rate") or 0.0
            columns[feature] = metrics_facet.ColumnMetrics(
                nullCount=int(round(float(null_rate) * served)), count=float(served)
            )
            for kind in ASSERTED_KINDS:
                assertions.append(
                    assertions_facet.Assertion(
                        assertion=kind,
                        success=(kind, str(row.get("feature"))) not in failing,
                        column=feature,
                    )
                )
        upstream = (inputs_of or {}).get(view)
        lineage_facets = (
            {"columnLineage": _column_lineage(namespace, sorted(columns), upstream)}
            if upstream
            else {}
        )
        inputs.append(
            InputDataset(
                namespace=namespace,
                name=view,
                facets=lineage_facets,
                inputFacets={
                    "dataQualityMetrics": metrics_facet.DataQualityMetricsInputDatasetFacet(
                        columnMetrics=columns, rowCount=rows_of_view.get(view, 0)
                    ),
                    "dataQualityAssertions": assertions_facet.DataQualityAssertionsDatasetFacet(
                        assertions=assertions
                    ),
                },
            )
        )
    return inputs + _upstream_datasets(namespace, inputs_of or {}, features_of, inputs)


def _upstream_datasets(
    namespace: str,
    inputs_of: Mapping[str, Sequence[Mapping[str, Any]]],
    checked_views: Mapping[str, Any],
    already: list[Any],
) -> list[Any]:
    """Datasets the checked on-demand views are computed from that are not inputs yet (a view
    the check read only as an on-demand input, a request source), with a schema facet."""
    from openlineage.client.event_v2 import InputDataset

    seen = {d.name for d in already}
    out = []
    for view, upstream in sorted(inputs_of.items()):
        if view not in checked_views:
            continue
        for name, fields in upstream_of(upstream):
            if name not in seen:
                seen.add(name)
                facets = {"schema": _schema_facet(fields)}
                out.append(InputDataset(namespace=namespace, name=name, facets=facets))
    return out


class CheckRun:
    """The START and the COMPLETE or FAIL event of one parity check."""

    def __init__(self, repo_config: Any, project: str, catalog: Any = None) -> None:
        self.emitter = LineageEmitter(repo_config)
        self.job = f"{project}.parity_check"
        self.run_id = new_run_id()
        self.catalog = catalog  # a ViewCatalog: what the checked on-demand views read

    def start(self) -> None:
        self.emitter.emit(self.job, self.run_id, "START")

    def complete(self, report: Mapping[str, Any]) -> None:
        if not self.emitter.enabled:
            return
        try:
            inputs = check_inputs(self.emitter.namespace, report, self._inputs_of(report))
        except Exception as exc:
            self.emitter._failed(repr(exc))
            return
        self.emitter.emit(self.job, self.run_id, "COMPLETE", inputs)
        self.emitter.wait()

    def _inputs_of(self, report: Mapping[str, Any]) -> dict[str, Sequence[Mapping[str, Any]]]:
        """The lineage ``inputs`` of each on-demand view the report checked."""
        from feast_parity.plugin.registry import describe_inputs

        if self.catalog is None:
            return {}
        out: dict[str, Sequence[Mapping[str, Any]]] = {}
        for name in {str(row.get("feature_view")) for row in report.get("features", [])}:
            info = self.catalog.get(name)
            if info is not None and info.on_demand:
                out[name] = describe_inputs(info.view, self.catalog.view)
        return out

    def fail(self) -> None:
        self.emitter.emit(self.job, self.run_id, "FAIL")
        self.emitter.wait()
