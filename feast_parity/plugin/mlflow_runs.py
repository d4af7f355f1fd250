"""What training records on its MLflow run, through Feast's own ``mlflow:`` block.

With ``mlflow: {enabled: true}`` in ``feature_store.yaml`` and an active MLflow run (for example
``store.mlflow.start_run()``), the plugin adds to that run:

* per recorded training dataset (a training retrieval materialized with ``to_df`` /
  ``to_arrow``, only when the block's ``auto_log`` is on, as for Feast's own logging): the tag
  ``feast_parity.training_dataset_id`` and the artifact
  ``feast-parity/lineage/<dataset id>.json``: each feature with its view, its source and the
  dataset (feature -> view -> source -> dataset);
* per :func:`feast_parity.training_gate` call: the tags ``feast_parity.gate`` (``passed`` or
  ``refused``), ``feast_parity.gate.reasons`` (JSON: each refused feature and its reasons),
  ``feast_parity.parity_run_id`` (the parity check run(s) the gate consulted, newest first) and
  the artifact ``feast-parity/gate.json`` (the gate's lineage records with their verdicts).

Nothing is logged when the block is absent or disabled, or when no run is active. MLflow is an
observer of training, never a reason for it to fail or wait: the run id is taken on the caller's
thread, the calls to the tracking server are made by one sender thread, and a caller waits for
them at most :data:`WAIT_SECONDS` (an HTTP tracking server may retry for minutes). A call that
fails (server unreachable, refused, mlflow not installed, still unsent at exit) is counted in
:data:`FAILED_LOGS` and the first failure of the process is logged as one warning.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

logger = logging.getLogger(__name__)

FAILED_LOGS = {"count": 0}  # MLflow calls (tags, artifacts) that failed, in this process
_WARNED = {"done": False}
WAIT_SECONDS = 0.5  # the longest training waits for its MLflow calls
EXIT_WAIT_SECONDS = 5.0  # at exit, the last wait for calls still queued
MAX_QUEUED = 1000
TAG_MAX_LENGTH = 5000  # MLflow's tag value limit (Feast truncates at the same length)

TAG_DATASET = "feast_parity.training_dataset_id"
TAG_GATE = "feast_parity.gate"
TAG_GATE_REASONS = "feast_parity.gate.reasons"
TAG_PARITY_RUN = "feast_parity.parity_run_id"
LINEAGE_ARTIFACT = "feast-parity/lineage/{dataset_id}.json"
GATE_ARTIFACT = "feast-parity/gate.json"


def _failed(why: str, calls: int = 1) -> None:
    """Count failed MLflow calls; log the first failure of the process."""
    FAILED_LOGS["count"] += calls
    if not _WARNED["done"]:
        _WARNED["done"] = True
        logger.warning(
            "feast-parity: could not log to MLflow (%s); training goes on, later failures "
            "are only counted",
            why,
        )


class _Sender:
    """One daemon thread making the queued MLflow calls; callers wait a bounded time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[Callable[[], None]] = deque()
        self._busy = False
        self._thread: threading.Thread | None = None
        self._slow = False  # a wait ran out: at exit, wait no more than once

    def put(self, call: Callable[[], None]) -> None:
        with self._cond:
            if len(self._queue) >= MAX_QUEUED:
                _failed("too many MLflow calls waiting")
                return
            self._queue.append(call)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="feast-parity-mlflow", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float) -> bool:
        """Wait until every queued call is done, at most ``timeout`` seconds."""
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
        with self._cond:
            return len(self._queue) + int(self._busy)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                call = self._queue.popleft()
                self._busy = True
            try:
                call()
            except BaseException as exc:  # the sender never dies of a call
                _failed(_short(exc))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def close(self) -> None:
        self.wait(WAIT_SECONDS if self._slow else EXIT_WAIT_SECONDS)
        unsent = self.pending
        if unsent:
            _failed(f"{unsent} call(s) still unsent at exit: the tracking server did not answer")


SENDER = _Sender()
atexit.register(SENDER.close)


def flush(timeout: float = 30.0) -> bool:
    """Wait until the queued MLflow calls are made, at most ``timeout`` seconds (scripts that
    read their run back right away, and tests)."""
    return SENDER.wait(timeout)


def _short(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text}"[:300]


_clients: dict[str | None, Any] = {}


def _client(tracking_uri: str | None) -> Any:
    """One ``MlflowClient`` per tracking URI (made on the sender thread)."""
    client = _clients.get(tracking_uri)
    if client is None:
        from mlflow import MlflowClient

        client = _clients[tracking_uri] = MlflowClient(tracking_uri=tracking_uri)
    return client


def active_target(config: Any, *, retrievals: bool = False) -> tuple[str | None, str] | None:
    """(tracking URI, run id) of the active MLflow run when the ``mlflow:`` block of ``config``
    (a Feast ``RepoConfig``) is enabled; else None. ``retrievals``: also honour ``auto_log``."""
    block = getattr(config, "mlflow", None)
    if block is None or not getattr(block, "enabled", False):
        return None
    if retrievals and not getattr(block, "auto_log", True):
        return None
    try:
        import mlflow
    except ImportError:
        _failed(
            "the mlflow: block is on but mlflow is not installed: pip install "
            "'feast-parity[mlflow]'"
        )
        return None
    run = mlflow.active_run()
    if run is None:
        return None
    return block.get_tracking_uri(), run.info.run_id


def _tag(value: str) -> str:
    return value if len(value) <= TAG_MAX_LENGTH else value[: TAG_MAX_LENGTH - 3] + "..."


def _json(payload: Any) -> str:
    from feast_parity.render.json_report import jsonable

    return json.dumps(jsonable(payload), indent=2, sort_keys=True, default=str)


def _send(
    target: tuple[str | None, str], tags: Mapping[str, str], artifacts: Mapping[str, str]
) -> None:
    tracking_uri, run_id = target

    def call() -> None:
        from mlflow.entities import RunTag

        client = _client(tracking_uri)
        if tags:
            client.log_batch(run_id, tags=[RunTag(k, _tag(v)) for k, v in tags.items()])
        for path, text in artifacts.items():
            client.log_text(run_id, text, path)

    SENDER.put(call)
    SENDER.wait(WAIT_SECONDS)


def training_lineage(
    dataset_id: str,
    project: str,
    row_count: int,
    entity_range: tuple[Any, Any],
    features: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """The lineage artifact of one training dataset: feature -> view -> source -> dataset."""
    return {
        "dataset_id": dataset_id,
        "project": project,
        "row_count": row_count,
        "entity_start": entity_range[0],
        "entity_end": entity_range[1],
        "features": [
            {
                "feature": ref,
                "requested_as": described.get("requested_as", ref),
                "feature_view": described.get("feature_view", ref.split(":", 1)[0]),
                "declared_type": described.get("declared_type"),
                "source": described.get("source"),
                "definition_fingerprint": described.get("definition_fingerprint"),
                "schema_fingerprint": described.get("schema_fingerprint"),
                "dataset_id": dataset_id,
                "view": {k: v for k, v in described.items() if k not in ("source", "requested_as")},
            }
            for ref, described in sorted(features.items())
        ],
    }


def log_training_dataset(
    config: Any,
    dataset_id: str,
    project: str,
    row_count: int,
    entity_range: tuple[Any, Any],
    features: Mapping[str, Mapping[str, Any]],
) -> None:
    """Tag the active run with the training dataset and attach its lineage. Never raises."""
    try:
        target = active_target(config, retrievals=True)
        if target is None:
            return
        lineage = training_lineage(dataset_id, project, row_count, entity_range, features)
        _send(
            target,
            {TAG_DATASET: dataset_id},
            {LINEAGE_ARTIFACT.format(dataset_id=dataset_id): _json(lineage)},
        )
    except Exception as exc:  # MLflow never fails training
        _failed(_short(exc))


def gate_tags(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The tags of one gate verdict: verdict, reasons of the refused features, run(s) consulted."""
    refused = {r["feature"]: list(r["gate"]["reasons"]) for r in records if not r["gate"]["passed"]}
    consulted: dict[str, str] = {}
    for record in records:
        parity = record.get("parity")
        if parity:
            consulted[parity["run_id"]] = str(parity.get("window_end") or "")
    newest_first = sorted(consulted, key=lambda run_id: consulted[run_id], reverse=True)
    return {
        TAG_GATE: "refused" if refused else "passed",
        TAG_GATE_REASONS: json.dumps(refused, sort_keys=True),
        TAG_PARITY_RUN: ",".join(newest_first) or "none",
    }


def log_gate(config: Any, records: Sequence[Mapping[str, Any]]) -> None:
    """Tag the active run with the gate's verdict and attach its records. Never raises."""
    try:
        target = active_target(config)
        if target is None:
            return
        _send(target, gate_tags(records), {GATE_ARTIFACT: _json(list(records))})
    except Exception as exc:  # MLflow never fails training
        _failed(_short(exc))
