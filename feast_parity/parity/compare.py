"""Per-feature and per-view comparison of served rows with point-in-time offline rows.

The check job feeds chunks of aligned arrays (one entry per sampled row) into
:class:`FeatureComparison` and :class:`ViewFreshness`; both keep only mergeable, bounded state
(counters, fixed-edge histograms, capped value tallies, a fixed-size reservoir), so memory depends
on features x bins, not on rows. ``result()`` turns the state into the report's fields.

Row semantics (docs/checks.md):
- ``value_mismatch``: the offline row at the served event time exists, both sides have a value,
  and they differ at the declared precision (and the online value is not a silent default).
- ``stale_serving``: the newest offline event at or before the request time (within ttl) is newer
  than the served event time; lag = the difference.
- ``silent_default``: the offline value at request time is real, and online is null / NOT_FOUND /
  a fill value (given, or found as a value far more frequent online than offline on the same rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feast_parity.parity.cohorts import CohortSlices
from feast_parity.parity.sketches import CategoricalHistogram, NumericHistogram, quantile_edges
from feast_parity.parity.stats import ks_2samp, psi

FIELD_STATUS_PRESENT = 1
FIELD_STATUS_NULL = 2
FIELD_STATUS_NOT_FOUND = 3

NUMERIC_TYPES = {"Int32", "Int64", "Float32", "Float64", "UnixTimestamp"}
CATEGORICAL_TYPES = {"String", "Bool"}
TALLY_CAP = 64  # candidate fill values tracked per feature
RESERVOIR_SIZE = 20_000  # values per side kept for the exact KS test
FILL_MIN_DISTINCT_OFFLINE = 3  # a discovered fill value must replace at least 3 distinct values


def type_family(type_name: str | None) -> str | None:
    """Coarse family of a declared, online or offline type name, for schema comparison.

    >>> type_family("Float32"), type_family("float64"), type_family("int64"), type_family("object")
    ('float', 'float', 'int', 'string')
    """
    if type_name is None or type_name in ("null", ""):
        return None
    name = type_name.lower()
    if name.startswith("array") or name.startswith("list"):
        return "list"
    if name.startswith("float") or name == "double":
        return "float"
    if name.startswith("int") or name.startswith("uint"):
        return "int"
    if name in ("string", "str", "object", "large_string"):
        return "string"
    if name.startswith("bool"):
        return "bool"
    if name in ("bytes", "binary"):
        return "bytes"
    if (
        name.startswith("unixtimestamp")
        or name.startswith("timestamp")
        or name.startswith("datetime")
    ):
        return "timestamp"
    if name in ("map", "struct", "json"):
        return name
    return name


def normalize_scalars(values: Sequence[Any], declared_type: str) -> np.ndarray:
    """Values as an array comparable at the declared precision; None/NaN become a null marker.

    Float32 features compare as float32, so an offline float64 0.1 equals a served float32 0.1.
    Returns an object array for strings/others and a float array (NaN = null) for numbers.
    """
    if declared_type in ("Float32", "Float64", "Int32", "Int64"):
        out = np.full(len(values), np.nan, dtype=np.float64)
        for i, v in enumerate(values):
            if v is None or isinstance(v, (str, bytes, list, dict)):
                continue
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                continue
        if declared_type == "Float32":
            out = out.astype(np.float32).astype(np.float64)
        return out + 0.0  # -0.0 -> 0.0
    return np.asarray([_hashable(v) for v in values], dtype=object)


def _hashable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    if hasattr(value, "tolist"):
        return _hashable(value.tolist())
    return value


def null_mask(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.asarray([v is None for v in values], dtype=bool)
    return np.isnan(values)


def equal_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality where null == null (all NaNs equal)."""
    if a.dtype == object or b.dtype == object:
        return np.asarray([x == y for x, y in zip(a, b)], dtype=bool)
    return (a == b) | (np.isnan(a) & np.isnan(b))


@dataclass
class _Tally:
    online: int = 0
    offline: int = 0
    defaults: int = 0  # rows: online == value, offline real and different
    mismatches: int = 0  # of those, rows also counted as value mismatches
    # distinct offline values behind this online value (capped): a fill value stands in for
    # many different real values; a skewed value served repeatedly for one entity does not
    offline_seen: set[Any] = field(default_factory=set)


@dataclass
class FeatureComparison:
    """Mergeable comparison state of one feature across chunks."""

    feature: str  # "view:name"
    declared_type: str
    fill_values: Sequence[Any] = ()
    on_demand: bool = False
    bins: int = 10
    seed: int = 0
    rows: int = 0
    compared: int = 0  # rows with an offline row at the served event time
    mismatches: int = 0
    stale_rows: int = 0
    stale_lags: list[float] = field(default_factory=list)
    online_nulls: int = 0
    offline_nulls: int = 0
    offline_real: int = 0  # rows with a real offline value at request time
    null_defaults: int = 0
    null_default_mismatches: int = 0
    tallies: dict[Any, _Tally] = field(default_factory=dict)
    online_types: dict[str, int] = field(default_factory=dict)
    offline_types: dict[str, int] = field(default_factory=dict)
    declared_at_serving: dict[str, int] = field(default_factory=dict)
    online_hist: NumericHistogram | CategoricalHistogram | None = None
    offline_hist: NumericHistogram | CategoricalHistogram | None = None
    online_reservoir: list[float] = field(default_factory=list)
    offline_reservoir: list[float] = field(default_factory=list)
    reservoir_seen: int = 0
    mismatch_examples: list[dict[str, Any]] = field(default_factory=list)
    # "served vs trained-on": the latest training profile of the feature, and the served values
    # binned with the profile's own edges/categories
    training_hist: NumericHistogram | CategoricalHistogram | None = None
    training_dataset_id: str | None = None
    training_online_hist: NumericHistogram | CategoricalHistogram | None = None

    def set_training_reference(
        self, hist: NumericHistogram | CategoricalHistogram, dataset_id: str
    ) -> None:
        """Compare served values with what training read, binned as training was."""
        self.training_hist = hist
        self.training_dataset_id = dataset_id
        self.training_online_hist = hist.empty_like()
    max_cohorts: int = 50
    cohorts: CohortSlices | None = None  # per-cohort counters, when dimensions are configured

    @property
    def kind(self) -> str:
        if self.declared_type in NUMERIC_TYPES - {"UnixTimestamp"}:
            return "numeric"
        if self.declared_type in CATEGORICAL_TYPES:
            return "categorical"
        return "other"

    def update(
        self,
        online_values: Sequence[Any],
        online_status: np.ndarray,
        online_types: Sequence[str],
        declared_at_serving: Sequence[str],
        offline_at_event: Sequence[Any],
        has_event_row: np.ndarray,
        offline_at_request: Sequence[Any],
        offline_type: str | None,
        stale_lag_seconds: np.ndarray | None = None,
        entity_keys: Sequence[str] | None = None,
        cohort_labels: Mapping[str, Sequence[str] | np.ndarray] | None = None,
        cohort_entities: np.ndarray | None = None,
    ) -> None:
        """Add one chunk of aligned rows (all arrays have one entry per sampled row).

        ``cohort_labels`` maps each cohort dimension to the row's cohort label, and
        ``cohort_entities`` holds a hash of the row's entity (cohorts.py)."""
        n = len(online_values)
        if n == 0:
            return
        self.rows += n
        online = normalize_scalars(online_values, self.declared_type)
        at_event = normalize_scalars(offline_at_event, self.declared_type)
        at_request = normalize_scalars(offline_at_request, self.declared_type)
        online_null = null_mask(online) | (online_status != FIELD_STATUS_PRESENT)
        request_null = null_mask(at_request)
        self.online_nulls += int(online_null.sum())
        self.offline_nulls += int(request_null.sum())
        for name in online_types:
            if name != "null":
                self.online_types[name] = self.online_types.get(name, 0) + 1
        for name in declared_at_serving:
            self.declared_at_serving[name] = self.declared_at_serving.get(name, 0) + 1
        if offline_type is not None:
            self.offline_types[offline_type] = self.offline_types.get(offline_type, 0) + n

        # value_mismatch: rows with an offline row at the served event time
        compare = np.asarray(has_event_row, dtype=bool)
        if self.on_demand:
            compare = np.zeros(n, dtype=bool)
        differs = compare & ~equal_values(online, at_event)
        self.compared += int(compare.sum())
        self.mismatches += int(differs.sum())
        if entity_keys is not None and len(self.mismatch_examples) < 5:
            for i in np.flatnonzero(differs)[: 5 - len(self.mismatch_examples)]:
                self.mismatch_examples.append(
                    {
                        "entity": entity_keys[i],
                        "online": _jsonable(online_values[i]),
                        "offline": _jsonable(offline_at_event[i]),
                    }
                )

        # stale_serving
        stale = np.zeros(n, dtype=bool)
        if stale_lag_seconds is not None and not self.on_demand:
            stale = np.nan_to_num(stale_lag_seconds, nan=0.0) > 0
            self.stale_rows += int(stale.sum())
            self.stale_lags.extend(stale_lag_seconds[stale][:10_000].tolist())
            if len(self.stale_lags) > 10_000:
                self.stale_lags = self.stale_lags[-10_000:]

        # silent_default: offline real at request time, online null or a candidate fill value
        offline_real = ~request_null
        self.offline_real += int(offline_real.sum())
        null_default = online_null & offline_real
        self.null_defaults += int(null_default.sum())
        self.null_default_mismatches += int((null_default & differs).sum())
        self._tally(online, at_request, offline_real, online_null, differs)

        # distributions of served vs offline-at-request values of the same rows
        self._update_distributions(online, at_request, online_null, request_null)

        if cohort_labels:
            self._update_cohorts(
                cohort_labels,
                compare,
                differs,
                stale,
                stale_lag_seconds,
                offline_real,
                online_null,
                online,
                at_request,
                lambda i: {
                    "entity": entity_keys[i] if entity_keys is not None else None,
                    "online": _jsonable(online_values[i]),
                    "offline": _jsonable(offline_at_event[i]),
                },
                cohort_entities,
            )

    def _update_cohorts(
        self,
        labels: Mapping[str, Sequence[str] | np.ndarray],
        compare: np.ndarray,
        differs: np.ndarray,
        stale: np.ndarray,
        stale_lag_seconds: np.ndarray | None,
        offline_real: np.ndarray,
        online_null: np.ndarray,
        online: np.ndarray,
        at_request: np.ndarray,
        example: Any,
        entities: np.ndarray | None = None,
    ) -> None:
        """The same row outcomes, counted per cohort; candidate fill-value rows are tallied per
        cohort so that ``result()`` applies the feature's fill values to cohorts too."""
        if self.cohorts is None:
            self.cohorts = CohortSlices(max_cohorts=self.max_cohorts)
        candidate = None
        if self.kind != "other":
            candidate = ~online_null & offline_real & ~equal_values(at_request, online)
        self.cohorts.update(
            labels,
            compared=compare,
            differs=differs,
            stale=stale,
            offline_real=offline_real,
            online_null=online_null,
            default_candidate=candidate,
            candidate_values=online,
            stale_lags=None if self.on_demand else stale_lag_seconds,
            example=example,
            entity_hashes=entities,
        )

    def _tally(
        self,
        online: np.ndarray,
        at_request: np.ndarray,
        offline_real: np.ndarray,
        online_null: np.ndarray,
        differs: np.ndarray,
    ) -> None:
        if self.kind == "other":
            return
        valid_online = online[~online_null]
        values, counts = _value_counts(valid_online)
        offline_values, offline_counts = _value_counts(at_request[offline_real])
        offline_count = dict(zip(offline_values, offline_counts))
        order = np.argsort(-counts, kind="stable")[:TALLY_CAP]
        for i in order:
            value = values[i]
            tally = self.tallies.get(value)
            if tally is None:
                if len(self.tallies) >= TALLY_CAP * 2:
                    self._prune_tallies()
                tally = self.tallies.setdefault(value, _Tally())
            tally.online += int(counts[i])
            tally.offline += int(offline_count.get(value, 0))
            is_value = (~online_null) & equal_values(online, _full_like(online, value))
            default_rows = is_value & offline_real & ~equal_values(at_request, online)
            tally.defaults += int(default_rows.sum())
            if len(tally.offline_seen) < FILL_MIN_DISTINCT_OFFLINE:
                for real in at_request[default_rows][:64]:
                    tally.offline_seen.add(real)
                    if len(tally.offline_seen) >= FILL_MIN_DISTINCT_OFFLINE:
                        break
            tally.mismatches += int((default_rows & differs).sum())

    def _prune_tallies(self) -> None:
        keep = sorted(self.tallies.items(), key=lambda kv: -kv[1].online)[:TALLY_CAP]
        self.tallies = dict(keep)

    def _update_distributions(
        self,
        online: np.ndarray,
        at_request: np.ndarray,
        online_null: np.ndarray,
        request_null: np.ndarray,
    ) -> None:
        if self.kind == "numeric":
            on = online[~online_null].astype(np.float64)
            off = at_request[~request_null].astype(np.float64)
            if self.offline_hist is None:
                finite = off[np.isfinite(off)]
                if finite.size == 0:
                    finite = on[np.isfinite(on)]
                if finite.size == 0:
                    return
                edges = quantile_edges(finite, bins=self.bins)
                self.offline_hist = NumericHistogram(edges)
                self.online_hist = NumericHistogram(edges)
            assert isinstance(self.online_hist, NumericHistogram)
            assert isinstance(self.offline_hist, NumericHistogram)
            self.online_hist.update(on)
            self.offline_hist.update(off)
            self._reservoir(on, off)
            if isinstance(self.training_online_hist, NumericHistogram):
                self.training_online_hist.update(on)
        elif self.kind == "categorical":
            on_labels = np.asarray([str(v) for v in online[~online_null]], dtype=object)
            off_labels = np.asarray([str(v) for v in at_request[~request_null]], dtype=object)
            if self.offline_hist is None:
                self.offline_hist = CategoricalHistogram(None)
                self.offline_hist.update(off_labels)
                cats = self.offline_hist.categories or []
                self.online_hist = CategoricalHistogram(cats)
            else:
                self.offline_hist.update(off_labels)
            assert self.online_hist is not None
            self.online_hist.update(on_labels)
            if isinstance(self.training_online_hist, CategoricalHistogram):
                self.training_online_hist.update(on_labels)

    def _reservoir(self, online: np.ndarray, offline: np.ndarray) -> None:
        """Bounded uniform samples of each side for an exact KS on up to RESERVOIR_SIZE rows."""
        rng = np.random.default_rng(self.seed + self.reservoir_seen)
        self.reservoir_seen += max(len(online), len(offline))
        for values, store in ((online, self.online_reservoir), (offline, self.offline_reservoir)):
            room = RESERVOIR_SIZE - len(store)
            if room > 0:
                store.extend(values[:room].tolist())
                values = values[room:]
            if len(values):
                keep = rng.random(len(values)) < RESERVOIR_SIZE / max(self.reservoir_seen, 1)
                for v in values[keep]:
                    store[int(rng.integers(0, RESERVOIR_SIZE))] = float(v)

    # -- results --

    def fill_values_found(self, ratio: float, min_rows: int) -> list[Any]:
        """Values far more frequent online than offline on the same rows (or configured)."""
        found = []
        configured = {_hashable(v) for v in self.fill_values}
        for value, tally in self.tallies.items():
            if tally.defaults == 0:
                continue
            common = tally.online >= max(min_rows, 0.01 * self.rows)
            shared = len(tally.offline_seen) >= FILL_MIN_DISTINCT_OFFLINE
            frequent = tally.online >= ratio * max(tally.offline, 1)
            if value in configured or (common and shared and frequent):
                found.append(value)
        return sorted(found, key=lambda v: -self.tallies[v].defaults)

    def result(self, ratio: float = 5.0, min_rows: int = 5) -> dict[str, Any]:
        fills = self.fill_values_found(ratio, min_rows)
        defaults = self.null_defaults + sum(self.tallies[v].defaults for v in fills)
        default_mismatches = self.null_default_mismatches + sum(
            self.tallies[v].mismatches for v in fills
        )
        mismatches = max(self.mismatches - default_mismatches, 0)
        psi_value, ks_stat, ks_p = self._drift()
        online_type = (
            max(self.online_types, key=self.online_types.get) if self.online_types else None
        )
        offline_type = (
            max(self.offline_types, key=self.offline_types.get) if self.offline_types else None
        )
        return {
            "rows": self.rows,
            "compared": self.compared,
            "offline_rows": self.offline_real,
            "mismatch_rate": _rate(mismatches, self.compared),
            "mismatches": mismatches,
            "stale_rate": _rate(self.stale_rows, self.rows) if not self.on_demand else None,
            "stale_rows": self.stale_rows if not self.on_demand else None,
            "stale_lag_seconds": _percentiles(self.stale_lags),
            "silent_default_rate": _rate(defaults, self.offline_real),
            "silent_defaults": defaults,
            "fill_values": [_jsonable(v) for v in fills],
            "online_null_rate": _rate(self.online_nulls, self.rows),
            "offline_null_rate": _rate(self.offline_nulls, self.rows),
            "psi": psi_value,
            "psi_vs_training": self._psi_vs_training(),
            "training_dataset_id": self.training_dataset_id,
            "ks_statistic": ks_stat,
            "ks_pvalue": ks_p,
            "online_type": online_type,
            "offline_type": offline_type,
            "declared_at_serving": sorted(self.declared_at_serving),
            "mismatch_examples": self.mismatch_examples,
            "histogram": self._histogram_dict(),
            **(
                {"cohort_slices": self.cohorts.result(fills, self.on_demand)}
                if self.cohorts is not None
                else {}
            ),
        }

    def _psi_vs_training(self) -> float | None:
        if self.training_hist is None or self.training_online_hist is None:
            return None
        if self.training_hist.total == 0 or self.training_online_hist.total == 0:
            return None
        return float(psi(self.training_hist.counts, self.training_online_hist.counts))

    def _drift(self) -> tuple[float | None, float | None, float | None]:
        if self.online_hist is None or self.offline_hist is None:
            return None, None, None
        if self.online_hist.total == 0 or self.offline_hist.total == 0:
            return None, None, None
        psi_value = float(psi(self.offline_hist.counts, self.online_hist.counts))
        if self.kind != "numeric" or not self.online_reservoir or not self.offline_reservoir:
            return psi_value, None, None
        stat, pvalue = ks_2samp(
            np.asarray(self.offline_reservoir), np.asarray(self.online_reservoir)
        )
        return psi_value, float(stat), float(pvalue)

    def _histogram_dict(self) -> dict[str, Any] | None:
        if self.online_hist is None or self.offline_hist is None:
            return None
        if isinstance(self.online_hist, NumericHistogram):
            labels = _edge_labels(self.online_hist.edges)
        else:
            labels = [*(self.online_hist.categories or []), "other"]
        return {
            "labels": labels,
            "online": self.online_hist.counts.tolist(),
            "offline": self.offline_hist.counts.tolist(),
        }


@dataclass
class ViewFreshness:
    """Served lag of one feature view (request time - served event time), bounded memory."""

    feature_view: str
    lags: list[float] = field(default_factory=list)
    rows: int = 0
    seed: int = 0

    def update(self, served_lag_seconds: np.ndarray) -> None:
        lags = served_lag_seconds[np.isfinite(served_lag_seconds)]
        self.rows += len(lags)
        if len(self.lags) + len(lags) <= RESERVOIR_SIZE:
            self.lags.extend(lags.tolist())
            return
        rng = np.random.default_rng(self.seed + self.rows)
        pool = np.concatenate([np.asarray(self.lags), lags])
        self.lags = rng.choice(pool, RESERVOIR_SIZE, replace=False).tolist()

    def percentiles(self) -> dict[str, float | None]:
        return _percentiles(self.lags)


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p95": None, "p99": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _value_counts(values: np.ndarray) -> tuple[list[Any], np.ndarray]:
    if len(values) == 0:
        return [], np.zeros(0, dtype=np.int64)
    if values.dtype == object:
        counts: dict[Any, int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        return list(counts), np.asarray(list(counts.values()), dtype=np.int64)
    uniq, cnt = np.unique(values, return_counts=True)
    return [float(u) for u in uniq], cnt


def _full_like(values: np.ndarray, value: Any) -> np.ndarray:
    if values.dtype == object:
        out = np.empty(len(values), dtype=object)
        out[:] = [value] * len(values)
        return out
    return np.full(len(values), value, dtype=values.dtype)


def _edge_labels(edges: np.ndarray) -> list[str]:
    labels = [f"< {edges[0]:.4g}"]
    labels += [f"[{lo:.4g}, {hi:.4g})" for lo, hi in zip(edges[:-1], edges[1:])]
    labels.append(f">= {edges[-1]:.4g}")
    return labels


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "item"):
        try:
            return _jsonable(value.item())
        except (ValueError, TypeError):
            pass
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)
