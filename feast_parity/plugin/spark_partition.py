"""What a Spark executor runs on one partition of a view's sampled rows (``mapInArrow``).

A partition arrives as Arrow batches of the Feast answers, one row per sampled row, sorted by
log file and sample id: the file's number, the row's place in it, and the offline row's event
time and values at the request time (``req:`` columns) and at the served event time (``srv:``).
The executor reads those rows of the log file itself with pyarrow and decodes them with the one
format module (:mod:`feast_parity.parity.samplelog`): Spark would drop the file's schema
metadata and its unsigned hashes. It then runs the same per-chunk comparison as the local
engine (:func:`feast_parity.parity.chunk.compare_chunk`) and emits one pickled
:class:`PartitionState`: counters, fixed-edge histograms, reservoirs, a few examples. Its size
depends on features x bins, not on rows; the driver merges the states of all partitions.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feast_parity.parity.chunk import ComparisonSettings, EntityLabels, compare_chunk
from feast_parity.parity.columns import canonical_column
from feast_parity.parity.feature import FeatureComparison
from feast_parity.parity.lag_series import LagSeries
from feast_parity.parity.samplelog import LogFormatError, NewerLogError, decode_batch
from feast_parity.parity.samplelog.v2 import Skipped
from feast_parity.parity.served import NO_TIME, ServedRows
from feast_parity.parity.view import OfflineRows, ViewComparison, classify

FILE = "__parity_file"  # the file's number in the view's window listing
ROW = "__parity_file_row"  # the row's place in its file
SAMPLE = "__parity_sample"  # its sample id (parquet_first_id(file) + row)
REQUEST_TIME = "__parity_req_time"  # int64 us: offline event time at the request time
SERVED_TIME = "__parity_srv_time"  # int64 us: offline event time at the served event time
SIDE = "__parity_side"  # in the entity dataframe: 0 at the request time, 1 at the served time
STATE_SCHEMA = "state binary"


def request_column(feature: str) -> str:
    return f"req:{feature}"


def served_column(feature: str) -> str:
    return f"srv:{feature}"


@dataclass
class PartitionPlan:
    """Everything an executor needs for one view (pickled into the task closure)."""

    view: str
    declared: dict[str, str]  # the registry's declared types of the view's features
    ttl_seconds: float
    features: list[str]  # the features asked of the offline store
    settings: ComparisonSettings
    filesystem: Any  # pyarrow filesystem of the sample log
    files: dict[int, str]  # file number -> path on that filesystem
    redaction: dict[str, bytes]  # "view:feature" -> HMAC key
    window_us: tuple[int, int]
    chunk_rows: int = 50_000


@dataclass
class PartitionState:
    """A partition's mergeable comparison state of one view."""

    view: ViewComparison
    features: dict[str, FeatureComparison] = field(default_factory=dict)
    served: set[str] = field(default_factory=set)  # features served (registry or not)
    missing: set[str] = field(default_factory=set)  # features the offline store lacked
    skipped: Skipped = field(default_factory=Skipped)
    samples: int = 0

    def merge(self, other: PartitionState) -> None:
        self.view.merge(other.view)
        for ref, state in other.features.items():
            if ref in self.features:
                self.features[ref].merge(state)
            else:
                self.features[ref] = state
        self.served |= other.served
        self.missing |= other.missing
        self.skipped.merge(other.skipped)
        self.samples += other.samples


class _Partition:
    def __init__(self, plan: PartitionPlan) -> None:
        self.plan = plan
        start, end = plan.window_us
        self.state = PartitionState(
            ViewComparison(
                plan.view,
                seed=plan.settings.seed,
                lag_series=LagSeries.for_window(start, end),
            )
        )
        self._file: tuple[int, pa.Table | None] = (-1, None)
        self._pending: list[tuple[pa.Table, pa.Table]] = []  # (log rows, their answers)
        self._pending_rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        answers = pa.Table.from_batches([batch])
        files = answers.column(FILE).to_numpy(zero_copy_only=False)
        if not len(files):
            return
        cuts = np.flatnonzero(np.diff(files)) + 1
        for start, stop in zip([0, *cuts.tolist()], [*cuts.tolist(), len(files)]):
            part = answers.slice(start, stop - start)
            self._add_file_rows(int(files[start]), part)

    def _add_file_rows(self, number: int, answers: pa.Table) -> None:
        log = self._read(number)
        if log is None:
            for sample in answers.column(SAMPLE).to_pylist():
                self.state.skipped.add(
                    f"damaged Parquet file {self.plan.files[number].rsplit('/', 1)[-1]}", sample
                )
            return
        rows = log.take(answers.column(ROW))
        if self._pending and not rows.schema.equals(self._pending[0][0].schema, True):
            self.flush()
        self._pending.append((rows, answers))
        self._pending_rows += rows.num_rows
        if self._pending_rows >= self.plan.chunk_rows:
            self.flush()

    def _read(self, number: int) -> pa.Table | None:
        if self._file[0] != number:
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(self.plan.files[number], filesystem=self.plan.filesystem)
            except (OSError, pa.ArrowException):
                table = None
            self._file = (number, table)
        return self._file[1]

    def flush(self) -> None:
        """Decode and compare the pending rows: as one table, or file by file when that does
        not decode (only the damaged file's rows are skipped, as the local reader does)."""
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        try:
            logs = [table for table, _ in pending]
            answers = pa.concat_tables([a for _, a in pending], promote_options="permissive")
            rows = decode_batch(
                logs[0] if len(logs) == 1 else pa.concat_tables(logs), _ids(answers)
            )
        except NewerLogError:
            raise  # a newer feast-parity wrote it: the run fails, naming the version
        except LogFormatError:
            for table, part in pending:
                try:
                    self._compare(decode_batch(table, _ids(part)), part)
                except NewerLogError:
                    raise
                except LogFormatError:
                    for sample in _ids(part).tolist():
                        self.state.skipped.add("damaged v3 batch", sample)
            return
        self._compare(rows, answers)

    def _compare(self, rows: ServedRows, answers: pa.Table) -> None:
        plan = self.plan
        self.state.samples += len(rows)
        self.state.served.update(rows.features)
        offline = offline_rows(answers, plan, sorted(set(rows.features) & set(plan.features)))
        self.state.missing |= offline.missing
        outcomes = classify(rows, offline, plan.ttl_seconds)
        compare_chunk(
            self.state.view,
            lambda name: self._comparison(name, rows),
            rows,
            offline,
            outcomes,
            EntityLabels(rows),
        )

    def _comparison(self, name: str, rows: ServedRows) -> FeatureComparison:
        ref = f"{self.plan.view}:{name}"
        state = self.state.features.get(ref)
        if state is None:
            declared = self.plan.declared.get(name) or rows.features[name].declared
            state = self.state.features[ref] = self.plan.settings.new(ref, declared)
        return state


def offline_rows(answers: pa.Table, plan: PartitionPlan, features: list[str]) -> OfflineRows:
    """The offline side of a chunk from its answer columns (as the local engine builds it
    from a retrieval, plugin/offline.py)."""
    from feast_parity.plugin.offline import arrow_type_name

    names = set(answers.column_names)
    at_request_time = _micros(answers.column(REQUEST_TIME))
    at_served_time = _micros(answers.column(SERVED_TIME))
    offline = OfflineRows(at_request_time, {}, at_served_time, {})
    for name in features:
        if request_column(name) not in names:
            offline.missing.add(name)
            continue
        declared = plan.declared.get(name, "Invalid")
        key = plan.redaction.get(f"{plan.view}:{name}")
        for column, times, target in (
            (request_column(name), at_request_time, offline.at_request),
            (served_column(name), at_served_time, offline.at_served),
        ):
            values = answers.column(column)
            offline.offline_types.setdefault(name, arrow_type_name(values.type))
            canonical = canonical_column(values.combine_chunks(), declared, redact_key=key)
            canonical.set_null(times == NO_TIME)
            target[name] = canonical
    return offline


def _ids(answers: pa.Table) -> np.ndarray:
    return answers.column(SAMPLE).to_numpy(zero_copy_only=False).astype(np.int64)


def _micros(column: pa.ChunkedArray) -> np.ndarray:
    return pc.fill_null(column, NO_TIME).to_numpy(zero_copy_only=False).astype(np.int64)


def compare_partition(plan: PartitionPlan) -> Any:
    """The ``mapInArrow`` function of one view: Arrow batches in, one pickled state out."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        partition = _Partition(plan)
        for batch in batches:
            partition.add(batch)
        partition.flush()
        payload = pickle.dumps(partition.state, protocol=pickle.HIGHEST_PROTOCOL)
        yield pa.RecordBatch.from_pydict({"state": pa.array([payload], pa.binary())})

    return run


def merged_state(payloads: list[bytes]) -> PartitionState | None:
    """The partitions' states merged in one (None when no partition had rows)."""
    merged: PartitionState | None = None
    for payload in payloads:
        state = pickle.loads(payload)
        if merged is None:
            merged = state
        else:
            merged.merge(state)
    return merged
