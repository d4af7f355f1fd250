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
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from feast_parity.parity.cohorts import CohortSlices
from feast_parity.parity.sketches import CategoricalHistogram, NumericHistogram, quantile_edges
from feast_parity.parity.stats import ks_2samp, psi

FIELD_STATUS_PRESENT = 1
FIELD_STATUS_NULL = 2
FIELD_STATUS_NOT_FOUND = 3

NUMERIC_TYPES = {"Int32", "Int64", "Float32", "Float64", "UnixTimestamp"}
CATEGORICAL_TYPES = {"String", "Bool"}
TALLY_CAP = 64  # candidate fill values tracked per feature
EDGE_ROWS = 50_000  # offline values that fix a feature's PSI bins (quantiles, categories)
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


NUMERIC_DECLARED = ("Float32", "Float64", "Int32", "Int64")
# element types that ``_hashable`` returns unchanged
_HASHABLE_AS_IS = frozenset({str, int, bool, bytes, type(None)})


def normalize_scalars(values: Sequence[Any] | np.ndarray, declared_type: str) -> np.ndarray:
    """Values as an array comparable at the declared precision; None/NaN become a null marker.

    Float32 features compare as float32, so an offline float64 0.1 equals a served float32 0.1.
    Returns an object array for strings/others and a float array (NaN = null) for numbers.
    Vectorised when the values are a numeric array or a sequence of plain numbers/None/strings;
    anything else takes the per-value path (same results).

    >>> normalize_scalars([0.1, None, "x", -0.0], "Float32").tolist()  # doctest: +ELLIPSIS
    [0.10000000149..., nan, nan, 0.0]
    >>> normalize_scalars(["a", float("nan"), [1, 2]], "String").tolist()
    ['a', None, (1, 2)]
    """
    if declared_type in NUMERIC_DECLARED:
        out = _to_float64(values)
        if declared_type == "Float32":
            out = out.astype(np.float32).astype(np.float64)
        return out + 0.0  # -0.0 -> 0.0
    return _to_hashables(values)


_NUMBER_KINDS = frozenset({"floating", "integer", "mixed-integer-float", "boolean", "empty"})


def _to_float64(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64)
    if isinstance(values, np.ndarray) and values.dtype != object:
        values = values.tolist()
    # pandas' C type inference (None/NaN skipped): only plain numbers (Python or numpy) and
    # None, which numpy converts exactly as float() does (None -> NaN)
    if pd.api.types.infer_dtype(values, skipna=True) in _NUMBER_KINDS:
        try:
            return np.asarray(values if len(values) else [], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError):  # e.g. pd.NA: the per-value path
            pass
    out = np.full(len(values), np.nan, dtype=np.float64)
    for i, v in enumerate(values):
        if v is None or isinstance(v, (str, bytes, list, dict)):
            continue
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def _to_hashables(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "US":
        values = values.astype(object)
    if not isinstance(values, np.ndarray) or values.dtype != object:
        arr = _object_array(values)
    else:
        arr = values
    if pd.api.types.infer_dtype(arr, skipna=False) == "string":  # all str: as is
        return arr
    kind = pd.api.types.infer_dtype(arr, skipna=True)
    if kind in ("string", "empty"):  # str, None and float NaN only
        missing = pd.isna(arr)
        if missing.any():
            arr = arr.copy()
            arr[missing] = None  # NaN -> None, None stays None
        return arr
    types = set(map(type, arr))
    if types <= _HASHABLE_AS_IS:
        return arr
    if types <= _HASHABLE_AS_IS | {float}:
        arr = arr.copy()
        arr[np.not_equal(arr, arr)] = None  # float NaN is the only value unequal to itself
        return arr
    return _object_array(_hashable(v) for v in arr)


def _object_array(values: Any) -> np.ndarray:
    """A 1-d object array of the values, even when they are lists or tuples themselves."""
    values = list(values)
    return np.fromiter(values, dtype=object, count=len(values))


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
        # numpy's stubs reject None here; elementwise on object arrays it is valid
        return np.equal(values, None)  # type: ignore[call-overload]
    return np.isnan(values)


def equal_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise equality where null == null (all NaNs equal).

    Object arrays compare elementwise with Python ``==`` inside numpy (no Python loop); values
    come from :func:`normalize_scalars`, so nulls are ``None`` and ``None == None``.

    >>> equal_values(np.array([1.0, np.nan, 0.0]), np.array([1.0, np.nan, -0.0])).tolist()
    [True, True, True]
    >>> a, b = np.array(["x", None, (1,)], dtype=object), np.array(["x", None, (2,)], dtype=object)
    >>> equal_values(a, b).tolist()
    [True, True, False]
    """
    if a.dtype == object or b.dtype == object:
        if len(a) != len(b):
            raise ValueError("equal_values: arrays of different lengths")
        try:
            return np.asarray(np.equal(a.astype(object), b.astype(object)), dtype=bool)
        except (TypeError, ValueError):  # an element whose == is not a plain bool
            return np.asarray([bool(x == y) for x, y in zip(a, b)], dtype=bool)
    return (a == b) | (np.isnan(a) & np.isnan(b))


@dataclass
class Reservoir:
    """A uniform random sample (without replacement) of up to ``size`` values of a stream.

    Algorithm R, vectorised per batch: the value at 1-based stream position ``t > size`` is
    kept with probability ``size / t`` and replaces a uniformly chosen slot; when several values
    of one batch pick the same slot the latest wins, exactly as in the sequential algorithm. So
    after any sequence of batches every value seen so far is in the sample with the same
    probability ``size / seen``, whatever the batch sizes. Deterministic for a given ``seed``,
    ``salt`` and batch sequence.
    """

    size: int = RESERVOIR_SIZE
    seed: int = 0
    salt: int = 0  # tells apart reservoirs that share a seed (online/offline side, stale lags)
    seen: int = 0
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))

    def add(self, batch: Any) -> None:
        batch = np.asarray(batch, dtype=np.float64).reshape(-1)
        if batch.size == 0:
            return
        room = self.size - self.values.size
        if room > 0:
            head = batch[:room]
            self.values = np.concatenate([self.values, head])
            self.seen += head.size
            batch = batch[room:]
            if batch.size == 0:
                return
        rng = np.random.default_rng([abs(int(self.seed)), int(self.salt), self.seen])
        positions = self.seen + np.arange(1, batch.size + 1, dtype=np.float64)
        kept = np.flatnonzero(rng.random(batch.size) * positions < self.size)
        slots = rng.integers(0, self.size, kept.size)
        # the last value (in stream order) that picked a slot is the one left in it
        unique_slots, first_from_end = np.unique(slots[::-1], return_index=True)
        self.values[unique_slots] = batch[kept[kept.size - 1 - first_from_end]]
        self.seen += batch.size

    def tolist(self) -> list[float]:
        return self.values.tolist()

    def __len__(self) -> int:
        return int(self.values.size)


# key of a mismatch example whose row can never be discounted as a silent default
_NOT_A_CANDIDATE = ("not a fill-value candidate",)
EXAMPLES = 5
EXAMPLE_KEYS = 2 * TALLY_CAP + EXAMPLES  # more keys than there can ever be fill values


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
    stale_sample: Reservoir = field(default_factory=Reservoir)
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
    online_sample: Reservoir = field(default_factory=Reservoir)
    offline_sample: Reservoir = field(default_factory=Reservoir)
    # mismatch examples keyed by what decides whether ``result()`` discounts the row as a silent
    # default: ("v", online value) for rows that are fill-value candidates, else a sentinel
    example_pool: dict[Any, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    # "served vs trained-on": the latest training profile of the feature, and the served values
    # binned with the profile's own edges/categories
    training_hist: NumericHistogram | CategoricalHistogram | None = None
    training_dataset_id: str | None = None
    training_online_hist: NumericHistogram | CategoricalHistogram | None = None
    _edge_buffer: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list, repr=False)
    _edge_buffer_rows: int = 0

    def set_training_reference(
        self, hist: NumericHistogram | CategoricalHistogram, dataset_id: str
    ) -> None:
        """Compare served values with what training read, binned as training was."""
        self.training_hist = hist
        self.training_dataset_id = dataset_id
        self.training_online_hist = hist.empty_like()

    max_cohorts: int = 50
    cohorts: CohortSlices | None = None  # per-cohort counters, when dimensions are configured

    def __post_init__(self) -> None:
        # independent streams and counters per side (salt), all derived from the run's seed
        self.online_sample = Reservoir(seed=self.seed, salt=1)
        self.offline_sample = Reservoir(seed=self.seed, salt=2)
        self.stale_sample = Reservoir(seed=self.seed, salt=3)

    @property
    def stale_lags(self) -> list[float]:
        """A uniform sample (up to RESERVOIR_SIZE) of the lags of stale rows."""
        return self.stale_sample.tolist()

    @property
    def mismatch_examples(self) -> list[dict[str, Any]]:
        """Up to 5 example rows counted as value mismatches (silent defaults not included)."""
        return self._examples(())

    @property
    def kind(self) -> str:
        if self.declared_type in NUMERIC_TYPES - {"UnixTimestamp"}:
            return "numeric"
        if self.declared_type in CATEGORICAL_TYPES:
            return "categorical"
        return "other"

    def update(
        self,
        online_values: Sequence[Any] | np.ndarray,
        online_status: np.ndarray,
        online_types: Sequence[str] | Mapping[str, int],
        declared_at_serving: Sequence[str] | Mapping[str, int],
        offline_at_event: Sequence[Any] | np.ndarray,
        has_event_row: np.ndarray,
        offline_at_request: Sequence[Any] | np.ndarray,
        offline_type: str | None,
        stale_lag_seconds: np.ndarray | None = None,
        entity_keys: Sequence[str] | None = None,
        cohort_labels: Mapping[str, Sequence[str] | np.ndarray] | None = None,
        cohort_entities: np.ndarray | None = None,
    ) -> None:
        """Add one chunk of aligned rows (all arrays have one entry per sampled row).

        ``cohort_labels`` maps each cohort dimension to the row's cohort label, and
        ``cohort_entities`` holds a hash of the row's entity (cohorts.py). ``online_types`` and
        ``declared_at_serving`` may also come already counted ({type name: rows})."""
        n = len(online_values)
        if n == 0:
            return
        self.rows += n
        online = normalize_scalars(online_values, self.declared_type)
        at_event = normalize_scalars(offline_at_event, self.declared_type)
        at_request = normalize_scalars(offline_at_request, self.declared_type)
        online_null = null_mask(online) | (np.asarray(online_status) != FIELD_STATUS_PRESENT)
        request_null = null_mask(at_request)
        self.online_nulls += int(online_null.sum())
        self.offline_nulls += int(request_null.sum())
        for name, count in _counted(online_types).items():
            if name != "null":
                self.online_types[name] = self.online_types.get(name, 0) + count
        for name, count in _counted(declared_at_serving).items():
            self.declared_at_serving[name] = self.declared_at_serving.get(name, 0) + count
        if offline_type is not None:
            self.offline_types[offline_type] = self.offline_types.get(offline_type, 0) + n

        # value_mismatch: rows with an offline row at the served event time
        compare = np.asarray(has_event_row, dtype=bool)
        if self.on_demand:
            compare = np.zeros(n, dtype=bool)
        differs = compare & ~equal_values(online, at_event)
        self.compared += int(compare.sum())
        self.mismatches += int(differs.sum())

        # stale_serving
        stale = np.zeros(n, dtype=bool)
        if stale_lag_seconds is not None and not self.on_demand:
            stale = np.nan_to_num(stale_lag_seconds, nan=0.0) > 0
            self.stale_rows += int(stale.sum())
            self.stale_sample.add(stale_lag_seconds[stale])

        # silent_default: offline real at request time, online null or a candidate fill value
        offline_real = ~request_null
        self.offline_real += int(offline_real.sum())
        null_default = online_null & offline_real
        self.null_defaults += int(null_default.sum())
        self.null_default_mismatches += int((null_default & differs).sum())
        request_differs = ~equal_values(at_request, online)  # once per chunk, shared below
        # the non-null online values factorized once, for the tallies and the histograms
        valid_rows = np.flatnonzero(~online_null)
        factorized = _factorize(online[valid_rows]) if self.kind != "other" else None
        self._tally(
            online, at_request, offline_real, online_null, differs, request_differs, factorized
        )
        if entity_keys is not None:
            candidate = ~online_null & offline_real & request_differs
            if self.kind == "other":  # no tallies, so never discounted as a fill value
                candidate = np.zeros(n, dtype=bool)
            self._collect_examples(
                np.flatnonzero(differs & ~null_default),
                candidate,
                online,
                online_values,
                offline_at_event,
                entity_keys,
                self.rows - n,
            )

        # distributions of served vs offline-at-request values of the same rows
        self._update_distributions(online, at_request, online_null, request_null, factorized)

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
                    "offline": _jsonable(_nan_as_none(offline_at_event[i])),
                },
                cohort_entities,
                request_differs,
            )

    def _collect_examples(
        self,
        rows: np.ndarray,
        candidate: np.ndarray,
        online: np.ndarray,
        online_values: Sequence[Any] | np.ndarray,
        offline_at_event: Sequence[Any] | np.ndarray,
        entity_keys: Sequence[str],
        first_row: int,
    ) -> None:
        """Keep up to 5 example rows per key (a fill-value candidate's online value, or the
        sentinel), for at most EXAMPLE_KEYS keys: whatever fill values ``result()`` finds, at
        least 5 examples of rows that stay mismatches survive when that many exist."""
        pool = self.example_pool
        numeric = online.dtype != object
        for i in rows.tolist():
            if candidate[i]:
                value = online[i]
                key: Any = ("v", float(value) if numeric else value)
            else:
                key = _NOT_A_CANDIDATE
            kept = pool.get(key)
            if kept is None:
                if len(pool) >= EXAMPLE_KEYS:
                    continue
                kept = pool[key] = []
            if len(kept) < EXAMPLES:
                example = {
                    "entity": entity_keys[i],
                    "online": _jsonable(online_values[i]),
                    "offline": _jsonable(_nan_as_none(offline_at_event[i])),
                }
                kept.append((first_row + i, example))

    def _examples(self, fills: Sequence[Any]) -> list[dict[str, Any]]:
        """The first (in row order per key) examples of rows that are not discounted as silent
        defaults of the fill values ``fills``."""
        dropped = {("v", v) for v in fills}
        kept = [
            entry
            for key, entries in self.example_pool.items()
            if key not in dropped
            for entry in entries
        ]
        kept.sort(key=lambda entry: entry[0])  # stream row order, as the examples were met
        return [example for _, example in kept[:EXAMPLES]]

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
        request_differs: np.ndarray | None = None,
    ) -> None:
        """The same row outcomes, counted per cohort; candidate fill-value rows are tallied per
        cohort so that ``result()`` applies the feature's fill values to cohorts too."""
        if self.cohorts is None:
            self.cohorts = CohortSlices(max_cohorts=self.max_cohorts)
        candidate = None
        if self.kind != "other":
            if request_differs is None:
                request_differs = ~equal_values(at_request, online)
            candidate = ~online_null & offline_real & request_differs
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
        request_differs: np.ndarray | None = None,
        factorized: tuple[Sequence[Any] | _FloatKeys, np.ndarray] | None = None,
    ) -> None:
        """Per candidate fill value (the TALLY_CAP most frequent online values of the chunk):
        online and offline counts, rows where it replaces a different real offline value, and
        how many of those are also value mismatches. The online values are factorized once and
        every count is a bincount over the codes (no pass over the chunk per candidate)."""
        if self.kind == "other":
            return
        if request_differs is None:
            request_differs = ~equal_values(at_request, online)
        valid_rows = np.flatnonzero(~online_null)
        if valid_rows.size == 0:
            return
        values, codes = factorized if factorized is not None else _factorize(online[valid_rows])
        k = len(values)
        counts = np.bincount(codes, minlength=k)
        ties = values.values if isinstance(values, _FloatKeys) else None
        order = _top(counts, TALLY_CAP, ties)
        offline_counts = np.zeros(k, dtype=np.int64)
        offline_counts[order] = _counts_of([values[i] for i in order], at_request[offline_real])
        is_default = (offline_real & request_differs)[valid_rows]
        default_codes = codes[is_default]
        defaults = np.bincount(default_codes, minlength=k)
        default_mismatches = np.bincount(codes[is_default & differs[valid_rows]], minlength=k)
        default_rows = valid_rows[is_default]
        for i in order.tolist():
            value = values[i]
            tally = self.tallies.get(value)
            if tally is None:
                if len(self.tallies) >= TALLY_CAP * 2:
                    self._prune_tallies()
                tally = self.tallies.setdefault(value, _Tally())
            tally.online += int(counts[i])
            tally.offline += int(offline_counts[i])
            tally.defaults += int(defaults[i])
            if defaults[i] and len(tally.offline_seen) < FILL_MIN_DISTINCT_OFFLINE:
                for real in at_request[default_rows[default_codes == i][:64]]:
                    tally.offline_seen.add(real)
                    if len(tally.offline_seen) >= FILL_MIN_DISTINCT_OFFLINE:
                        break
            tally.mismatches += int(default_mismatches[i])

    def _prune_tallies(self) -> None:
        keep = sorted(self.tallies.items(), key=lambda kv: -kv[1].online)[:TALLY_CAP]
        self.tallies = dict(keep)

    def _update_distributions(
        self,
        online: np.ndarray,
        at_request: np.ndarray,
        online_null: np.ndarray,
        request_null: np.ndarray,
        factorized: tuple[Sequence[Any] | _FloatKeys, np.ndarray] | None = None,
    ) -> None:
        if self.kind == "numeric":
            on = online[~online_null].astype(np.float64)
            off = at_request[~request_null].astype(np.float64)
            self._reservoir(on, off)
            if isinstance(self.training_online_hist, NumericHistogram):
                self.training_online_hist.update(on)
        elif self.kind == "categorical":
            if factorized is None:
                factorized = _factorize(online[~online_null])
            on = _str_labels(*factorized)
            off = _str_labels(*_factorize(at_request[~request_null]))
            if isinstance(self.training_online_hist, CategoricalHistogram):
                self.training_online_hist.update(on)
        else:
            return
        if self.offline_hist is not None:
            self.online_hist.update(on)  # type: ignore[union-attr]
            self.offline_hist.update(off)
            return
        # Bins come from the first EDGE_ROWS offline values, whatever the chunk size: buffer
        # until then, so a report never depends on how the log was chunked.
        self._edge_buffer.append((on, off))
        self._edge_buffer_rows += len(off)
        if self._edge_buffer_rows >= EDGE_ROWS:
            self._finish_edges()

    def _finish_edges(self) -> None:
        """Fix bin edges (numeric) or categories from the buffered offline values, then bin the
        buffered rows. Called when EDGE_ROWS offline values are in, or at result time."""
        if self.offline_hist is not None or not self._edge_buffer:
            return
        buffered, self._edge_buffer, self._edge_buffer_rows = self._edge_buffer, [], 0
        if self.kind == "numeric":
            off_all = np.concatenate([off for _, off in buffered])
            finite = off_all[np.isfinite(off_all)]
            if finite.size == 0:
                on_all = np.concatenate([on for on, _ in buffered])
                finite = on_all[np.isfinite(on_all)]
            if finite.size == 0:
                return
            edges = quantile_edges(finite, bins=self.bins)
            self.offline_hist = NumericHistogram(edges)
            self.online_hist = NumericHistogram(edges)
        else:
            self.offline_hist = CategoricalHistogram(None)
            self.offline_hist.update(pa.chunked_array([off for _, off in buffered]))
            self.online_hist = CategoricalHistogram(self.offline_hist.categories or [])
            self.offline_hist = self.online_hist.empty_like()
        for on, off in buffered:
            self.online_hist.update(on)
            self.offline_hist.update(off)

    def _reservoir(self, online: np.ndarray, offline: np.ndarray) -> None:
        """Bounded uniform samples of each side for an exact KS on up to RESERVOIR_SIZE rows;
        each side is its own reservoir with its own counter (their sizes differ with nulls)."""
        self.online_sample.add(online)
        self.offline_sample.add(offline)

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
        self._finish_edges()
        fills = self.fill_values_found(ratio, min_rows)
        defaults = self.null_defaults + sum(self.tallies[v].defaults for v in fills)
        default_mismatches = self.null_default_mismatches + sum(
            self.tallies[v].mismatches for v in fills
        )
        mismatches = max(self.mismatches - default_mismatches, 0)
        psi_value, ks_stat, ks_p = self._drift()
        online_type = (
            max(self.online_types, key=cast(Callable[[str], int], self.online_types.get))
            if self.online_types
            else None
        )
        offline_type = (
            max(self.offline_types, key=cast(Callable[[str], int], self.offline_types.get))
            if self.offline_types
            else None
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
            "mismatch_examples": self._examples(fills),
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
        if self.kind != "numeric" or not len(self.online_sample) or not len(self.offline_sample):
            return psi_value, None, None
        stat, pvalue = ks_2samp(self.offline_sample.values, self.online_sample.values)
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
    """Served lag of one feature view (request time - served event time), bounded memory: a
    uniform reservoir of RESERVOIR_SIZE lags, equally likely to hold any row of any chunk."""

    feature_view: str
    rows: int = 0
    seed: int = 0
    sample: Reservoir = field(default_factory=Reservoir)

    def __post_init__(self) -> None:
        self.sample = Reservoir(seed=self.seed, salt=4)

    @property
    def lags(self) -> list[float]:
        return self.sample.tolist()

    def update(self, served_lag_seconds: np.ndarray) -> None:
        lags = np.asarray(served_lag_seconds, dtype=np.float64)
        lags = lags[np.isfinite(lags)]
        self.rows += len(lags)
        self.sample.add(lags)

    def percentiles(self) -> dict[str, float | None]:
        return _percentiles(self.sample.values)


def _percentiles(values: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p95": None, "p99": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


class _FloatKeys:
    """Distinct numbers of a chunk as a sequence of Python floats, converted only when read
    (a chunk has thousands of distinct floats; the tallies read at most TALLY_CAP of them)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> float:
        return float(self.values[i])

    def __iter__(self) -> Any:
        return iter(self.values.tolist())


def _factorize(values: np.ndarray) -> tuple[Sequence[Any] | _FloatKeys, np.ndarray]:
    """Distinct values and each value's code, distinct values in order of first appearance
    (as a dict); equality as Python's ``==``/hash."""
    if values.dtype != object:
        # Arrow's hash encoding (no sort; +-0.0 are normalised and NaN is never passed here)
        encoded = pa.array(values, type=pa.float64()).dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return _FloatKeys(encoded.dictionary.to_numpy(zero_copy_only=False)), codes
    if len(values) and pd.api.types.infer_dtype(values, skipna=False) == "string":
        # all str: Arrow's hash encoding (codes in order of first appearance, as a dict)
        encoded = pa.array(values, type=pa.string()).dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        return encoded.dictionary.to_pylist(), codes
    try:
        codes, uniq = pd.factorize(values, use_na_sentinel=False)
        distinct = list(uniq)
        if len(set(distinct)) == len(distinct):
            return distinct, np.asarray(codes, dtype=np.int64)
    except TypeError:  # unhashable or incomparable values: the plain path below
        pass
    index: dict[Any, int] = {}
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        out[i] = index.setdefault(v, len(index))
    return list(index), out


def _counts_of(keys: list[Any], values: np.ndarray) -> np.ndarray:
    """How often each of ``keys`` occurs in ``values`` (Python equality, as a dict lookup)."""
    if len(values) == 0 or not keys:
        return np.zeros(len(keys), dtype=np.int64)
    if values.dtype != object:
        wanted = pa.array(np.asarray(keys, dtype=np.float64), type=pa.float64())
        found = pc.index_in(pa.array(values, type=pa.float64()), value_set=wanted)
        at = found.fill_null(-1).to_numpy(zero_copy_only=False)
        return np.bincount(at[at >= 0], minlength=len(keys))
    if all(type(k) is str for k in keys) and pd.api.types.infer_dtype(values) == "string":
        found = pc.index_in(pa.array(values, type=pa.string()), pa.array(keys, type=pa.string()))
        at = found.fill_null(-1).to_numpy(zero_copy_only=False)
        return np.bincount(at[at >= 0], minlength=len(keys))
    try:
        index = pd.Index(keys, dtype=object, tupleize_cols=False)
        if index.is_unique:
            at = index.get_indexer(values)
            return np.bincount(at[at >= 0], minlength=len(keys))
    except (TypeError, ValueError):
        pass
    counts = Counter(values.tolist())
    return np.asarray([counts.get(k, 0) for k in keys], dtype=np.int64)


def _top(counts: np.ndarray, cap: int, ties: np.ndarray | None = None) -> np.ndarray:
    """The indices of the ``cap`` largest counts, largest first, without sorting every count.

    Equal counts are ordered by ``ties`` (ascending; numbers: the value, as ``np.unique``
    ordered them) or else by index (first appearance), i.e. the first ``cap`` of a stable sort.
    """
    if len(counts) <= cap:
        chosen = np.arange(len(counts))
    else:
        threshold = np.partition(counts, len(counts) - cap)[len(counts) - cap]
        chosen = np.flatnonzero(counts >= threshold)
    if ties is None:
        return chosen[np.argsort(-counts[chosen], kind="stable")][:cap]
    return chosen[np.lexsort((ties[chosen], -counts[chosen]))][:cap]


def _str_labels(values: Sequence[Any] | _FloatKeys, codes: np.ndarray) -> pa.Array:
    """``str(v)`` of every value given factorized (distinct values, codes), as an Arrow
    dictionary array: each distinct value is turned into a label once."""
    labels = pa.array([str(v) for v in values], type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(codes, type=pa.int64()), labels)


def _nan_as_none(value: Any) -> Any:
    """Offline values may come as a float array (NaN = missing); examples show missing as None."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _counted(names: Sequence[str] | Mapping[str, int]) -> Mapping[str, int]:
    return names if isinstance(names, Mapping) else Counter(names)


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
