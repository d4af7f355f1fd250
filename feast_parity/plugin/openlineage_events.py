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
relative ``file`` path is under the repo). Sending never raises: a failed send is counted
(:data:`FAILED_EVENTS`) and logged once per process.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRODUCER = "https://github.com/feast-parity/feast-parity"
FAILED_EVENTS = {"count": 0}  # events that could not be sent, in this process
_WARNED = {"done": False}
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
        FAILED_EVENTS["count"] += 1
        if not _WARNED["done"]:
            _WARNED["done"] = True
            logger.warning(
                "feast-parity: OpenLineage event not sent (%s); later failures are only counted",
                why,
            )

    def emit(
        self,
        job: str,
        run_id: str,
        state: str,
        inputs: list[Any] | None = None,
        outputs: list[Any] | None = None,
    ) -> bool:
        """Send one run event; False (counted, never raised) when it could not be sent."""
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
            self.client.emit(event)
            return True
        except Exception as exc:
            self._failed(repr(exc))
            return False


def new_run_id() -> str:
    return str(uuid.uuid4())


def _schema_facet(fields: Mapping[str, str]) -> Any:
    from openlineage.client.facet_v2 import schema_dataset

    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields.items()]
    )


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
        from openlineage.client.event_v2 import InputDataset, OutputDataset
        from openlineage.client.facet_v2 import output_statistics_output_dataset as stats

        by_view: dict[str, dict[str, str]] = {}
        fingerprints: dict[str, str] = {}
        for ref, record in features.items():
            view, feature = ref.split(":", 1)
            by_view.setdefault(view, {})[feature] = str(record.get("declared_type", ""))
            fingerprints[ref] = str(record.get("definition_fingerprint", ""))
        inputs = [
            InputDataset(
                namespace=emitter.namespace, name=view, facets={"schema": _schema_facet(f)}
            )
            for view, f in sorted(by_view.items())
        ]
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
    return emitter.emit(f"{project}.training_retrieval", new_run_id(), "COMPLETE", inputs, [output])


def check_inputs(namespace: str, report: Mapping[str, Any]) -> list[Any]:
    """The check's input datasets with their data-quality facets, from its report."""
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.facet_v2 import (
        data_quality_assertions_dataset as assertions_facet,
    )
    from openlineage.client.facet_v2 import (
        data_quality_metrics_input_dataset as metrics_facet,
    )

    failing: set[tuple[str, str]] = set()
    for finding in report.get("findings", []):
        if finding.get("severity") != "fail":
            continue
        kind = str(finding.get("kind"))
        if finding.get("feature"):
            failing.add((kind, str(finding["feature"])))
        evidence = finding.get("evidence")
        named = evidence.get("features") if isinstance(evidence, Mapping) else None
        for ref in named or []:  # a view-level finding fails each feature it names
            failing.add((kind, str(ref)))
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
        inputs.append(
            InputDataset(
                namespace=namespace,
                name=view,
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
    return inputs


class CheckRun:
    """The START and the COMPLETE or FAIL event of one parity check."""

    def __init__(self, repo_config: Any, project: str) -> None:
        self.emitter = LineageEmitter(repo_config)
        self.job = f"{project}.parity_check"
        self.run_id = new_run_id()

    def start(self) -> None:
        self.emitter.emit(self.job, self.run_id, "START")

    def complete(self, report: Mapping[str, Any]) -> None:
        if not self.emitter.enabled:
            return
        try:
            inputs = check_inputs(self.emitter.namespace, report)
        except Exception as exc:
            self.emitter._failed(repr(exc))
            return
        self.emitter.emit(self.job, self.run_id, "COMPLETE", inputs)

    def fail(self) -> None:
        self.emitter.emit(self.job, self.run_id, "FAIL")
