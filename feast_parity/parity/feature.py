"""Per-feature comparison of served values with point-in-time offline values.

The check feeds :class:`FeatureComparison` one chunk at a time: the served feature
(:class:`~feast_parity.parity.served.ServedFeature`), the offline values at request time and at
the served event time, and the view's row outcomes (:mod:`feast_parity.parity.view`). Only rows
whose request asked for the feature count, anywhere. State is mergeable and bounded (counters,
fixed-edge histograms, capped tallies, fixed-size reservoirs), so memory depends on features x
bins, not on rows. :meth:`FeatureComparison.result` turns it into the report's fields.

Row rules (docs/checks.md):

- ``value_mismatch``: offline has a row at the served event time, and its value differs from
  the served one (canonical forms); rows that are silent defaults are not mismatches.
- ``silent_default``: offline has a real value at request time, and online is null, NOT_FOUND or
  a fill value (:mod:`feast_parity.parity.fills`).
- drift: served vs offline-at-request values of the same *current* rows (not stale, expired or
  only online), binned on edges fixed by the first offline values (:mod:`parity.edges`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import numpy as np

from feast_parity.parity.canonical import Other
from feast_parity.parity.cohorts import CohortSlices
from feast_parity.parity.columns import NUMERIC_TYPES, CanonicalColumn
from feast_parity.parity.edges import EdgeBuffer
from feast_parity.parity.fills import FillTallies
from feast_parity.parity.magnitude import SkewMagnitude
from feast_parity.parity.reservoir import Reservoir
from feast_parity.parity.served import FIELD_STATUS_PRESENT, ServedFeature
from feast_parity.parity.sketches import CategoricalHistogram, NumericHistogram
from feast_parity.parity.stats import ks_2samp, percentiles, psi, psi_critical_value
from feast_parity.parity.view import RowOutcomes

CATEGORICAL_TYPES = frozenset({"String", "Bool"})
EXAMPLES = 5
ONLINE_TYPE_NAMES = {
    "int32_val": "int32",
    "int64_val": "int64",
    "float_val": "float32",
    "double_val": "float64",
    "string_val": "string",
    "bytes_val": "bytes",
    "bool_val": "bool",
    "unix_timestamp_val": "timestamp",
    "int32_list_val": "list<int32>",
    "int64_list_val": "list<int64>",
    "float_list_val": "list<float32>",
    "double_list_val": "list<float64>",
    "string_list_val": "list<string>",
    "bytes_list_val": "list<bytes>",
    "bool_list_val": "list<bool>",
    "unix_timestamp_list_val": "list<timestamp>",
    "map_val": "map",
    "struct_val": "struct",
    "json_val": "json",
}


def jsonable(value: Any) -> Any:
    """A canonical value as plain JSON (bytes as hex, tuples as lists, maps as dicts)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, Other) else str(value)
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.hex()
    from feast_parity.parity.canonical import MapItems

    if isinstance(value, MapItems):
        return {k: jsonable(v) for k, v in value}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def _same(a_null: np.ndarray, a_hash: np.ndarray, b: CanonicalColumn) -> np.ndarray:
    """Row-wise equality of a served side (null mask, logged hashes) and an offline column."""
    b_null = b.null
    return (a_null & b_null) | (~a_null & ~b_null & (a_hash == b.hashes()))


@dataclass
class FeatureComparison:
    """Mergeable comparison state of one feature across chunks."""

    feature: str  # "view:name"
    declared: str
    on_demand: bool = False
    redacted: bool = False
    bins: int = 10
    seed: int = 0
    relative_tolerance: float = 0.01
    drift_confidence: float = 0.95
    fills: FillTallies = field(default_factory=FillTallies)
    rows: int = 0  # rows whose request asked for the feature
    input_only_rows: int = 0  # of those, rows Feast read only as an on-demand view's input
    compared: int = 0  # of those, rows with an offline row at the served event time
    raw_mismatches: int = 0  # before fill-value rows are counted as silent defaults
    stale_rows: int = 0
    expired_rows: int = 0
    online_only_rows: int = 0
    online_nulls: int = 0
    offline_nulls: int = 0
    offline_real: int = 0  # rows with a real offline value at request time
    null_defaults: int = 0
    null_defaults_not_found: int = 0  # of those, rows whose whole view row was NOT_FOUND
    kinds: dict[str, int] = field(default_factory=dict)
    declared_at_serving: dict[str, int] = field(default_factory=dict)
    offline_types: dict[str, int] = field(default_factory=dict)
    offline_unfit: int = 0  # offline values that do not fit the declared type
    magnitude: SkewMagnitude = field(default_factory=SkewMagnitude)
    # the magnitude of mismatching rows whose served value is a fill-value candidate, per
    # candidate: if it turns out to be a fill value, its rows are defaults, not skew
    candidate_magnitude: dict[int, SkewMagnitude] = field(default_factory=dict)
    stale_sample: Reservoir = field(default_factory=Reservoir)
    online_hist: NumericHistogram | CategoricalHistogram | None = None
    offline_hist: NumericHistogram | CategoricalHistogram | None = None
    online_sample: Reservoir = field(default_factory=Reservoir)
    offline_sample: Reservoir = field(default_factory=Reservoir)
    examples: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    training_hist: NumericHistogram | CategoricalHistogram | None = None
    training_dataset_id: str | None = None
    training_online_hist: NumericHistogram | CategoricalHistogram | None = None
    max_cohorts: int = 50
    cohorts: CohortSlices | None = None
    _edges: EdgeBuffer = field(default_factory=EdgeBuffer, repr=False)  # until bins are fixed
    # a partition of a distributed check: keep its first values, the driver fixes the bins
    defer_edges: bool = False

    def __post_init__(self) -> None:
        self.online_sample = Reservoir(seed=self.seed, salt=1)
        self.offline_sample = Reservoir(seed=self.seed, salt=2)
        self.magnitude = SkewMagnitude(self.relative_tolerance, seed=self.seed)
        self.stale_sample = Reservoir(seed=self.seed, salt=3)

    @property
    def kind(self) -> str:
        if self.redacted:
            return "categorical"
        if self.declared in NUMERIC_TYPES:
            return "numeric"
        if self.declared in CATEGORICAL_TYPES:
            return "categorical"
        return "other"

    def set_training_reference(
        self, hist: NumericHistogram | CategoricalHistogram, dataset_id: str
    ) -> None:
        """Compare served values with what training read, binned as training was."""
        self.training_hist = hist
        self.training_dataset_id = dataset_id
        self.training_online_hist = hist.empty_like()

    # -- one chunk --

    def update(
        self,
        served: ServedFeature,
        at_request: CanonicalColumn,
        at_served: CanonicalColumn,
        outcomes: RowOutcomes,
        *,
        offline_type: str | None = None,
        entity_labels: Sequence[str] | None = None,
        request_times: np.ndarray | None = None,
        cohort_labels: Mapping[str, np.ndarray] | None = None,
        cohort_entities: np.ndarray | None = None,
        order: np.ndarray | None = None,
    ) -> np.ndarray:
        """Add one chunk of aligned rows; rows that did not request the feature are ignored.
        Returns, per row of the chunk, whether its served value differs from the offline one
        at the same event time (not counting null defaults).

        ``order`` gives each row its place in the log (sample ids): examples and the values
        that fix the bins are the first ones in that order, however the rows were split
        between chunks or partitions. Without it, the rows count in the order they come."""
        mismatch = np.zeros(len(served.status), dtype=bool)
        index = np.flatnonzero(served.requested)
        n = int(index.size)
        if n == 0:
            return mismatch
        if order is None:
            order = np.full(len(served.status), self.rows, dtype=np.int64)
            order[index] += np.arange(n, dtype=np.int64)
        row_order = np.asarray(order, dtype=np.int64)[index]
        feature = served.take(index)
        on_req, on_srv = at_request.take(index), at_served.take(index)
        exact, stale = outcomes.exact[index], outcomes.stale[index]
        current = outcomes.current[index]
        self.rows += n
        self.input_only_rows += int(feature.only_input.sum())
        kinds = feature.kinds
        online_null = feature.empty | (feature.status != FIELD_STATUS_PRESENT)
        if not feature.redacted:
            online_null |= feature.values.null
        has_offline = outcomes.offline_row[index] & ~on_req.null
        # a row served from a row that exists online only (pushed, written online) is not a
        # default of the older offline value: it counts apart (online_only_rows)
        offline_real = has_offline & ~outcomes.online_only[index] & ~outcomes.future[index]
        self.online_nulls += int(online_null.sum())
        self.offline_nulls += int((~has_offline).sum())
        self.offline_real += int(offline_real.sum())
        self.stale_rows += int(stale.sum())
        self.stale_sample.add(outcomes.stale_lag[index][stale])
        self.expired_rows += int(outcomes.expired[index].sum())
        self.online_only_rows += int(outcomes.online_only[index].sum())
        present = kinds[~feature.empty]
        if present.size:
            names, counts = np.unique(present.astype(str), return_counts=True)
            for kind, count in zip(names.tolist(), counts.tolist()):
                name = ONLINE_TYPE_NAMES.get(kind, kind)
                self.kinds[name] = self.kinds.get(name, 0) + int(count)
        for name, count in feature.declared_at_serving.items():
            self.declared_at_serving[name] = self.declared_at_serving.get(name, 0) + count
        if offline_type is not None:
            self.offline_types[offline_type] = self.offline_types.get(offline_type, 0) + n
        if on_req.kind == "object":
            self.offline_unfit += sum(1 for v in on_req.values.tolist() if isinstance(v, Other))

        online_hash = feature.hashes
        differs = exact & ~_same(online_null, online_hash, on_srv)
        null_default = online_null & offline_real
        raw_mismatch = differs & ~null_default
        self.compared += int(exact.sum())
        self.raw_mismatches += int(raw_mismatch.sum())
        mismatch[index] = raw_mismatch
        self.null_defaults += int(null_default.sum())
        self.null_defaults_not_found += int((null_default & outcomes.not_found[index]).sum())
        req_hash = on_req.hashes()
        self.fills.update(
            online_hash,
            ~online_null,
            req_hash,
            offline_real,
            raw_mismatch,
            values=lambda i: (
                "(redacted)" if feature.redacted else jsonable(feature.values.value(i))
            ),
        )
        if self.kind == "numeric" and not feature.redacted:
            self._update_magnitude(raw_mismatch & ~on_srv.null, feature, on_srv, online_hash)
        if entity_labels is not None and len(self.examples) < 4 * EXAMPLES:
            self._collect_examples(
                np.flatnonzero(raw_mismatch),
                feature,
                on_srv,
                online_hash,
                index,
                entity_labels,
                request_times,
                row_order,
            )
        self._update_distributions(feature, on_req, online_null, offline_real, current, row_order)
        if cohort_labels:
            self._update_cohorts(
                {d: np.asarray(v)[index] for d, v in cohort_labels.items()},
                exact=exact,
                raw_mismatch=raw_mismatch,
                stale=stale,
                stale_lag=outcomes.stale_lag[index],
                offline_real=offline_real,
                online_null=online_null,
                candidate=~online_null & offline_real & (online_hash != req_hash),
                online_hash=online_hash,
                example=lambda i: {
                    "entity": entity_labels[int(index[i])] if entity_labels is not None else None,
                    "online": None if feature.redacted else jsonable(feature.values.value(i)),
                    "offline": None if feature.redacted else jsonable(on_srv.value(i)),
                },
                entities=None if cohort_entities is None else cohort_entities[index],
            )
        return mismatch

    def _update_magnitude(
        self,
        rows_mask: np.ndarray,
        feature: ServedFeature,
        offline: CanonicalColumn,
        online_hash: np.ndarray,
    ) -> None:
        rows = np.flatnonzero(rows_mask)
        if rows.size == 0:
            return
        online, off = feature.values.numbers()[rows], offline.numbers()[rows]
        hashes = online_hash[rows]
        candidates = set(self.fills.tallies)
        in_candidates = np.fromiter(
            (int(h) in candidates for h in hashes.tolist()), bool, len(rows)
        )
        self.magnitude.update(online[~in_candidates], off[~in_candidates])
        for h in np.unique(hashes[in_candidates]).tolist():
            pick = hashes[in_candidates] == h
            bucket = self.candidate_magnitude.get(int(h))
            if bucket is None:
                bucket = self.candidate_magnitude[int(h)] = SkewMagnitude(
                    self.relative_tolerance, seed=self.seed, sample_size=200
                )
            bucket.update(online[in_candidates][pick], off[in_candidates][pick])

    def _collect_examples(
        self,
        rows: np.ndarray,
        feature: ServedFeature,
        offline: CanonicalColumn,
        online_hash: np.ndarray,
        index: np.ndarray,
        entity_labels: Sequence[str],
        request_times: np.ndarray | None,
        row_order: np.ndarray,
    ) -> None:
        """Keep early example rows (4 x EXAMPLES at most): fill-value rows among them are
        dropped at result time, and at least EXAMPLES others usually remain."""
        for i in rows[: 4 * EXAMPLES - len(self.examples)].tolist():
            online = None if feature.redacted else feature.values.value(i)
            off = None if feature.redacted else offline.value(i)
            example: dict[str, Any] = {
                "entity": entity_labels[index[i]],
                "request_time": None
                if request_times is None
                else str(np.datetime64(int(request_times[index[i]]), "us")) + "Z",
                "online": jsonable(online),
                "offline": jsonable(off),
            }
            if _is_number(online) and _is_number(off):
                example["difference"] = float(online) - float(off)
            self.examples.append((int(row_order[i]), int(online_hash[i]), example))

    def _update_distributions(
        self,
        feature: ServedFeature,
        at_request: CanonicalColumn,
        online_null: np.ndarray,
        offline_real: np.ndarray,
        current: np.ndarray,
        row_order: np.ndarray,
    ) -> None:
        kind = self.kind
        if kind == "other":
            return
        on_rows = np.flatnonzero(current & ~online_null)
        off_rows = np.flatnonzero(current & offline_real)
        on: Any
        off: Any
        if kind == "numeric":
            on = feature.values.numbers()[on_rows]
            off = at_request.numbers()[off_rows]
            self.online_sample.add(on)
            self.offline_sample.add(off)
            if isinstance(self.training_online_hist, NumericHistogram):
                self.training_online_hist.update(feature.values.numbers()[~online_null])
        else:
            on = _labels(feature, on_rows, online=True)
            off = _labels_of(at_request, off_rows, self.redacted)
            if isinstance(self.training_online_hist, CategoricalHistogram) and not self.redacted:
                self.training_online_hist.update(
                    _labels(feature, np.flatnonzero(~online_null), True)
                )
        if self.offline_hist is not None:
            self.online_hist.update(on)  # type: ignore[union-attr]
            self.offline_hist.update(off)
            return
        # bins: the first EDGE_ROWS offline values in log order (parity/edges.py)
        if self.defer_edges and self._edges.full:
            return  # a partition's first EDGE_ROWS are kept; later ones cannot be the first
        self._edges.add(on, off, row_order[on_rows], row_order[off_rows])
        if self._edges.full and not self.defer_edges:
            self._finish_edges()

    def _finish_edges(self) -> None:
        if self.offline_hist is not None or not self._edges.parts:
            return
        buffered, self._edges = self._edges, EdgeBuffer()
        fixed = buffered.histograms(self.kind == "numeric", self.bins)
        if fixed is not None:
            self.online_hist, self.offline_hist = fixed

    def adopt_edges(self, merged: FeatureComparison) -> None:
        """Bin as ``merged`` (the edge pass of all partitions, merged) fixes it: its first
        EDGE_ROWS offline values in log order, as one process reading the log would."""
        merged._finish_edges()
        if merged.online_hist is not None and merged.offline_hist is not None:
            self.online_hist = merged.online_hist.empty_like()
            self.offline_hist = merged.offline_hist.empty_like()
            self.defer_edges = False

    def merge(self, other: FeatureComparison) -> None:
        """Add the state of another part of the same window (another partition): counts
        add, histograms and reservoirs merge, examples keep the first in log order."""
        for name in _COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("kinds", "declared_at_serving", "offline_types"):
            mine = getattr(self, name)
            for key, count in getattr(other, name).items():
                mine[key] = mine.get(key, 0) + count
        self.fills.merge(other.fills)
        self.magnitude.merge(other.magnitude)
        for key, bucket in other.candidate_magnitude.items():
            if key in self.candidate_magnitude:
                self.candidate_magnitude[key].merge(bucket)
            else:
                self.candidate_magnitude[key] = bucket
        for mine, theirs in (
            (self.stale_sample, other.stale_sample),
            (self.online_sample, other.online_sample),
            (self.offline_sample, other.offline_sample),
        ):
            mine.merge(theirs)
        for side in ("online_hist", "offline_hist", "training_online_hist"):
            mine, theirs = getattr(self, side), getattr(other, side)
            if mine is None:
                setattr(self, side, theirs)
            elif theirs is not None:
                setattr(self, side, mine.merge(theirs))
        self.examples = sorted(self.examples + other.examples, key=lambda e: e[0])[: 4 * EXAMPLES]
        if other.cohorts is not None:
            if self.cohorts is None:
                self.cohorts = other.cohorts
            else:
                self.cohorts.merge(other.cohorts)
        self._edges.merge(other._edges)

    def _update_cohorts(self, labels: Mapping[str, np.ndarray], **rows: Any) -> None:
        if self.cohorts is None:
            self.cohorts = CohortSlices(max_cohorts=self.max_cohorts)
        self.cohorts.update(
            labels,
            compared=rows["exact"],
            differs=rows["raw_mismatch"],
            stale=rows["stale"],
            offline_real=rows["offline_real"],
            online_null=rows["online_null"],
            default_candidate=rows["candidate"],
            candidate_values=[int(h) for h in rows["online_hash"].tolist()],
            stale_lags=None if self.on_demand else rows["stale_lag"],
            example=rows["example"],
            entity_hashes=rows["entities"],
        )

    # -- results --

    def result(
        self, *, ratio: float = 5.0, min_share: float = 0.05, min_rows: int = 5
    ) -> dict[str, Any]:
        self._finish_edges()
        fills = self.fills.found(
            offline_rows=self.offline_real, min_share=min_share, min_rows=min_rows, ratio=ratio
        )
        fill_hashes = {f.hash for f in fills}
        defaults = self.null_defaults + sum(f.replaced for f in fills)
        mismatches = max(self.raw_mismatches - sum(f.replaced_mismatch for f in fills), 0)
        psi_value, critical, ks_stat, ks_p = self._drift()
        magnitude = SkewMagnitude(self.relative_tolerance, seed=self.seed)
        magnitude.merge(self.magnitude)
        for h, bucket in sorted(self.candidate_magnitude.items()):
            if h not in fill_hashes:
                magnitude.merge(bucket)
        online_type = max(self.kinds, key=lambda k: self.kinds[k]) if self.kinds else None
        offline_type = (
            max(self.offline_types, key=lambda k: self.offline_types[k])
            if self.offline_types
            else None
        )
        examples = [
            e for _, h, e in sorted(self.examples, key=lambda t: t[0]) if h not in fill_hashes
        ]
        return {
            "rows": self.rows,
            "input_only_rows": self.input_only_rows,
            "compared": self.compared,
            "offline_rows": self.offline_real,
            "mismatch_rate": _rate(mismatches, self.compared),
            "mismatches": mismatches,
            "mismatch_magnitude": magnitude.result(),
            "stale_rate": None if self.on_demand else _rate(self.stale_rows, self.rows),
            "stale_rows": None if self.on_demand else self.stale_rows,
            "stale_lag_seconds": percentiles(self.stale_sample.values),
            "expired_rate": None if self.on_demand else _rate(self.expired_rows, self.rows),
            "online_only_rows": self.online_only_rows,
            "silent_default_rate": _rate(defaults, self.offline_real),
            "silent_defaults": defaults,
            "silent_defaults_not_found": self.null_defaults_not_found,
            "fill_values": [f.value for f in fills],
            "fill_value_hashes": sorted(fill_hashes),
            "online_null_rate": _rate(self.online_nulls, self.rows),
            "offline_null_rate": _rate(self.offline_nulls, self.rows),
            "psi": psi_value,
            "psi_critical": critical,
            **self._psi_vs_training(),
            "training_dataset_id": self.training_dataset_id,
            "ks_statistic": ks_stat,
            "ks_pvalue": ks_p,
            "online_type": online_type,
            "offline_type": offline_type,
            "offline_unfit": self.offline_unfit,
            "declared_at_serving": sorted(self.declared_at_serving),
            "mismatch_examples": examples[:EXAMPLES],
            "histogram": self._histogram_dict(),
            **(
                {"cohort_slices": self.cohorts.result(sorted(fill_hashes), self.on_demand)}
                if self.cohorts is not None
                else {}
            ),
        }

    def _psi_vs_training(self) -> dict[str, Any]:
        hist, served = self.training_hist, self.training_online_hist
        if hist is None or served is None or hist.total == 0 or served.total == 0:
            return {"psi_vs_training": None, "psi_vs_training_critical": None}
        return {
            "psi_vs_training": float(psi(hist.counts, served.counts)),
            "psi_vs_training_critical": psi_critical_value(
                hist.counts, served.counts, self.drift_confidence, seed=self.seed
            ),
        }

    def _drift(self) -> tuple[float | None, float | None, float | None, float | None]:
        on, off = self.online_hist, self.offline_hist
        if on is None or off is None or on.total == 0 or off.total == 0:
            return None, None, None, None
        psi_value = float(psi(off.counts, on.counts))
        critical = psi_critical_value(off.counts, on.counts, self.drift_confidence, seed=self.seed)
        if self.kind != "numeric" or not len(self.online_sample) or not len(self.offline_sample):
            return psi_value, critical, None, None
        stat, pvalue = ks_2samp(self.offline_sample.values, self.online_sample.values)
        return psi_value, critical, float(stat), float(pvalue)

    def _histogram_dict(self) -> dict[str, Any] | None:
        if self.online_hist is None or self.offline_hist is None:
            return None
        if isinstance(self.online_hist, NumericHistogram):
            labels = _edge_labels(self.online_hist.edges)
            edges = [float(e) for e in self.online_hist.edges]
        else:
            labels = [*(self.online_hist.categories or []), "other"]
            edges = None
        return {
            "labels": labels,
            "edges": edges,
            "online": self.online_hist.counts.tolist(),
            "offline": self.offline_hist.counts.tolist(),
        }


_COUNTERS = (
    "rows",
    "input_only_rows",
    "compared",
    "raw_mismatches",
    "stale_rows",
    "expired_rows",
    "online_only_rows",
    "online_nulls",
    "offline_nulls",
    "offline_real",
    "null_defaults",
    "null_defaults_not_found",
    "offline_unfit",
)


def _labels(feature: ServedFeature, rows: np.ndarray, online: bool) -> np.ndarray:
    if feature.redacted:
        return np.asarray([f"{int(h):016x}" for h in feature.hashes[rows].tolist()], dtype=object)
    return _labels_of(feature.values, rows, False)


def _labels_of(column: CanonicalColumn, rows: np.ndarray, redacted: bool) -> np.ndarray:
    if redacted:
        return np.asarray([f"{int(h):016x}" for h in column.hashes()[rows].tolist()], dtype=object)
    if column.kind == "bool":
        return np.where(column.values[rows], "True", "False").astype(object)
    return np.asarray([str(v) for v in column.values[rows].tolist()], dtype=object)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, (bool, Other))


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _edge_labels(edges: np.ndarray) -> list[str]:
    labels = [f"< {edges[0]:.4g}"]
    labels += [f"[{lo:.4g}, {hi:.4g})" for lo, hi in zip(edges[:-1], edges[1:])]
    labels.append(f">= {edges[-1]:.4g}")
    return labels


Callback = Callable[[int], Any]
