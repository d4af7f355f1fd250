"""Cohort slices: the parity metrics of each feature, per value of configured dimensions.

A failure confined to one cohort (the users of one country, one device, one join-key bucket)
hardly moves a feature's aggregate rates. This module keeps, per feature and per configured
dimension, bounded counters per cohort (rows, compared rows, mismatches, stale rows, silent
defaults, online nulls), ranks the cohorts by how far their rates sit above the feature's
aggregate, and turns a cohort that crosses a fail threshold into a finding of an existing kind
with a ``cohort`` field. Pure module (numpy, xxhash, scipy): no Feast. docs/checks.md
(Cohort slices) describes the semantics.

Dimension syntax (``parity.cohorts.dimensions``)::

    >>> parse_dimension("user_engagement:country").feature_ref
    'user_engagement:country'
    >>> d = parse_dimension("key:user_id%10"); (d.key, d.method, d.buckets)
    ('user_id', 'mod', 10)
    >>> d = parse_dimension("key:hash(user_id)%16"); (d.key, d.method, d.buckets)
    ('user_id', 'hash', 16)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash
from pydantic import BaseModel, ConfigDict, Field, field_validator

from feast_parity.parity.metrics import cohort_metrics
from feast_parity.parity.sampling import EntityKeyError, canonical_entity_key
from feast_parity.parity.stats import percentiles

OTHER = "(other)"  # cohorts beyond max_cohorts, merged
NULL = "(null)"  # dimension value unknown for the row (no offline value, join key absent)
HASH_SEED = 0x636F686F727473  # b"cohorts": fixed, so buckets never depend on parity.seed
MAX_BUCKETS = 10_000
VALUE_TALLY_CAP = 16  # candidate fill values counted per cohort and chunk
EXAMPLES_PER_COHORT = 3
DISTINCT_SKETCH_SIZE = 128  # k of the k-minimum-values sketch of distinct entities per cohort
STALE_LAGS_PER_COHORT = 1_000

_FEATURE_RE = re.compile(r"(?P<view>[A-Za-z0-9_.\-]+):(?P<feature>[A-Za-z0-9_.\-]+)")
_KEY_RE = re.compile(r"key:(?:hash\((?P<hashed>[^()%\s:]+)\)|(?P<plain>[^()%\s:]+))%(?P<n>\d+)")
SYNTAX = "'view:feature', 'key:<join key>%<n>' or 'key:hash(<join key>)%<n>'"


def sliced_metrics() -> tuple[tuple[str, str, str, str, str], ...]:
    """(finding kind, rate, numerator, denominator, threshold prefix) of the sliced rates,
    from the metrics table (parity/metrics.py)."""
    return tuple(
        (m.cohort.kind, m.name, m.cohort.count, m.cohort.denominator, str(m.thresholds))
        for m in cohort_metrics()
        if m.cohort is not None
    )


@dataclass(frozen=True)
class Dimension:
    """One configured dimension: a feature's value, or a bucket of a join key."""

    spec: str  # as configured; the dimension's name in reports
    feature_view: str | None = None
    feature: str | None = None
    key: str | None = None
    method: str | None = None  # "mod" or "hash"
    buckets: int = 0

    @property
    def is_key(self) -> bool:
        return self.key is not None

    @property
    def feature_ref(self) -> str | None:
        return None if self.key is not None else f"{self.feature_view}:{self.feature}"


def parse_dimension(spec: Any) -> Dimension:
    """Parse one dimension spec; ValueError with a one-line reason on bad syntax.

    >>> parse_dimension("key:user_id%1")
    Traceback (most recent call last):
    ...
    ValueError: 'key:user_id%1': the bucket count must be between 2 and 10000
    """
    if not isinstance(spec, str):
        raise ValueError(f"{spec!r}: expected a string, {SYNTAX}")
    text = spec.strip()
    match = _KEY_RE.fullmatch(text)
    if match:
        n = int(match["n"])
        if not 2 <= n <= MAX_BUCKETS:
            raise ValueError(f"{spec!r}: the bucket count must be between 2 and {MAX_BUCKETS}")
        hashed = match["hashed"]
        return Dimension(
            spec=text,
            key=hashed or match["plain"],
            method="hash" if hashed else "mod",
            buckets=n,
        )
    if text.startswith("key:"):
        raise ValueError(f"{spec!r}: expected 'key:<join key>%<n>' or 'key:hash(<join key>)%<n>'")
    match = _FEATURE_RE.fullmatch(text)
    if match:
        return Dimension(spec=text, feature_view=match["view"], feature=match["feature"])
    raise ValueError(f"{spec!r}: expected {SYNTAX}")


def parse_dimensions(specs: Iterable[Any]) -> list[Dimension]:
    """Parse a list of specs; duplicates are an error."""
    out: list[Dimension] = []
    seen: set[str] = set()
    for spec in specs:
        dim = parse_dimension(spec)
        if dim.spec in seen:
            raise ValueError(f"{dim.spec!r} is listed twice")
        seen.add(dim.spec)
        out.append(dim)
    return out


# -- labels ------------------------------------------------------------------------------------


def value_label(value: Any) -> str:
    """A cohort label for a dimension value; null and NaN are ``(null)``.

    >>> [value_label(v) for v in ("JP", 3, 3.0, 2.5, True, None, float("nan"))]
    ['JP', '3', '3', '2.5', 'true', '(null)', '(null)']
    """
    if value is None:
        return NULL
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return NULL
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def key_label(value: Any, dim: Dimension) -> str:
    """The bucket of a join key value: ``int(value) % n`` or ``xxh3_64(canonical key) % n``.

    Modulo needs an integer key (or its canonical decimal string); anything else is ``(null)``.
    The hash bucket takes the sampling module's canonical encoding of ``{key: value}``, so
    ``42`` and ``"42"`` land in the same bucket, and a fixed seed (not ``parity.seed``).

    >>> dim = parse_dimension("key:user_id%10")
    >>> key_label(1043, dim), key_label("1043", dim), key_label(-7, dim), key_label("x", dim)
    ('3', '3', '3', '(null)')
    >>> h = parse_dimension("key:hash(user_id)%16")
    >>> key_label(42, h) == key_label("42", h)
    True
    """
    if value is None or isinstance(value, bool):
        return NULL
    if dim.method == "mod":
        if isinstance(value, (int, np.integer)):
            return str(int(value) % dim.buckets)
        if isinstance(value, str) and re.fullmatch(r"0|-?[1-9][0-9]*", value):
            return str(int(value) % dim.buckets)
        return NULL
    try:
        encoded = canonical_entity_key({str(dim.key): value})
    except EntityKeyError:
        return NULL
    return str(xxhash.xxh3_64_intdigest(encoded, seed=HASH_SEED) % dim.buckets)


# -- bounded counters -------------------------------------------------------------------------


@dataclass
class CohortCounters:
    """Mergeable counters of one feature in one cohort (same row rules as the aggregate)."""

    rows: int = 0
    compared: int = 0
    raw_mismatches: int = 0  # before rows attributed to silent defaults are removed
    stale_rows: int = 0
    offline_real: int = 0
    online_nulls: int = 0
    null_defaults: int = 0
    null_default_mismatches: int = 0
    # online value -> [rows where it replaced a different real offline value, of those compared
    # and mismatching]: once the feature's fill values are known, these become silent defaults
    value_defaults: dict[Any, list[int]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    stale_lags: list[float] = field(default_factory=list)
    # the smallest distinct 64-bit hashes of the entities seen (k-minimum-values sketch)
    entity_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    entities_tracked: bool = False

    def add_entities(self, hashes: np.ndarray) -> None:
        self.entities_tracked = True
        merged = np.unique(np.concatenate([self.entity_hashes, hashes.astype(np.uint64)]))
        self.entity_hashes = merged[:DISTINCT_SKETCH_SIZE]

    def entities(self) -> int | None:
        """Distinct entities of the cohort: exact up to the sketch size, then the KMV estimate
        (k - 1) / (k-th smallest hash / 2**64), about 9 % relative error."""
        if not self.entities_tracked:
            return None
        k = len(self.entity_hashes)
        if k < DISTINCT_SKETCH_SIZE:
            return k
        return int(round((k - 1) / ((float(self.entity_hashes[-1]) + 1.0) / 2.0**64)))

    def merge(self, other: CohortCounters) -> None:
        for name in (
            "rows",
            "compared",
            "raw_mismatches",
            "stale_rows",
            "offline_real",
            "online_nulls",
            "null_defaults",
            "null_default_mismatches",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for value, (defaults, mismatches) in other.value_defaults.items():
            slot = self.value_defaults.setdefault(value, [0, 0])
            slot[0] += defaults
            slot[1] += mismatches
        self._cap_values()
        room = EXAMPLES_PER_COHORT - len(self.examples)
        self.examples.extend(other.examples[: max(room, 0)])
        self.stale_lags = (self.stale_lags + other.stale_lags)[-STALE_LAGS_PER_COHORT:]
        if other.entities_tracked:
            self.add_entities(other.entity_hashes)

    def _cap_values(self) -> None:
        if len(self.value_defaults) > 2 * VALUE_TALLY_CAP:
            keep = sorted(self.value_defaults.items(), key=lambda kv: -kv[1][0])
            self.value_defaults = dict(keep[:VALUE_TALLY_CAP])

    def stats(self, fill_values: Sequence[Any] = (), on_demand: bool = False) -> dict[str, Any]:
        """Counts and rates, with the feature's fill values applied like the aggregate."""
        defaults = self.null_defaults
        default_mismatches = self.null_default_mismatches
        for value in fill_values:
            slot = self.value_defaults.get(value)
            if slot:
                defaults += slot[0]
                default_mismatches += slot[1]
        mismatches = max(self.raw_mismatches - default_mismatches, 0)
        return {
            "rows": self.rows,
            "compared": self.compared,
            "mismatches": mismatches,
            "mismatch_rate": _rate(mismatches, self.compared),
            "stale_rows": None if on_demand else self.stale_rows,
            "stale_rate": None if on_demand else _rate(self.stale_rows, self.rows),
            "offline_rows": self.offline_real,
            "silent_defaults": defaults,
            "silent_default_rate": _rate(defaults, self.offline_real),
            "online_nulls": self.online_nulls,
            "online_null_rate": _rate(self.online_nulls, self.rows),
            "entities": None if not self.entities_tracked else min(self.entities() or 0, self.rows),
        }


@dataclass
class CohortSlices:
    """Per dimension, at most ``max_cohorts`` cohorts of one feature (the largest by rows)
    plus ``(other)``; a cohort pushed out is merged into ``(other)``, so counts always add up
    to the feature's aggregate."""

    max_cohorts: int = 50
    tables: dict[str, dict[str, CohortCounters]] = field(default_factory=dict)
    merged: dict[str, int] = field(default_factory=dict)  # cohorts merged into (other)

    def update(
        self,
        labels: Mapping[str, Sequence[str] | np.ndarray],
        *,
        compared: np.ndarray,
        differs: np.ndarray,
        stale: np.ndarray,
        offline_real: np.ndarray,
        online_null: np.ndarray,
        default_candidate: np.ndarray | None = None,
        candidate_values: Sequence[Any] | np.ndarray | None = None,
        stale_lags: np.ndarray | None = None,
        example: Callable[[int], dict[str, Any]] | None = None,
        entity_hashes: np.ndarray | None = None,
    ) -> None:
        """Add one chunk: per row, its label in each dimension and the row outcomes.

        ``entity_hashes`` (one 64-bit hash per row of the feature view's entity, see
        :func:`entity_hashes`) lets a cohort count its distinct entities: rows of one entity
        are correlated, which the significance of a cohort finding must account for.

        ``default_candidate`` marks rows whose online value is real and differs from a real
        offline value at request time; ``candidate_values`` holds that online value. They
        become silent defaults if the value turns out to be one of the feature's fill values.
        """
        n = len(compared)
        if n == 0:
            return
        null_default = online_null & offline_real
        masks = {
            "rows": np.ones(n, dtype=bool),
            "compared": compared,
            "raw_mismatches": differs,
            "stale_rows": stale,
            "offline_real": offline_real,
            "online_nulls": online_null,
            "null_defaults": null_default,
            "null_default_mismatches": null_default & differs,
        }
        candidates = (
            np.flatnonzero(default_candidate)
            if default_candidate is not None and candidate_values is not None
            else np.zeros(0, dtype=np.int64)
        )
        for dim, dim_labels in labels.items():
            values = np.asarray(dim_labels, dtype=object)
            if len(values) != n:
                raise ValueError(f"dimension {dim}: {len(values)} labels for {n} rows")
            uniq, codes = np.unique(values.astype(str), return_inverse=True)
            table = self.tables.setdefault(dim, {})
            sums = {
                name: np.bincount(codes, weights=mask.astype(np.int64), minlength=len(uniq))
                for name, mask in masks.items()
            }
            counters = []
            for j, label in enumerate(uniq.tolist()):
                c = table.get(label)
                if c is None:
                    c = table[label] = CohortCounters()
                for name, total in sums.items():
                    setattr(c, name, getattr(c, name) + int(total[j]))
                counters.append(c)
            if len(candidates) and candidate_values is not None:
                self._tally(counters, codes, candidates, candidate_values, differs)
            for j, c in enumerate(counters):
                in_cohort = codes == j
                room = EXAMPLES_PER_COHORT - len(c.examples)
                if example is not None and room > 0:
                    for i in np.flatnonzero(in_cohort & differs)[:room]:
                        c.examples.append(example(int(i)))
                if entity_hashes is not None:
                    c.add_entities(np.asarray(entity_hashes, dtype=np.uint64)[in_cohort])
                if stale_lags is not None:
                    lags = np.asarray(stale_lags, dtype=np.float64)[in_cohort & stale]
                    if len(lags):
                        kept = [*c.stale_lags, *lags[-STALE_LAGS_PER_COHORT:].tolist()]
                        c.stale_lags = kept[-STALE_LAGS_PER_COHORT:]
            if len(table) > 2 * self.max_cohorts:
                self._prune(dim)

    @staticmethod
    def _tally(
        counters: list[CohortCounters],
        codes: np.ndarray,
        candidates: np.ndarray,
        candidate_values: Sequence[Any] | np.ndarray,
        differs: np.ndarray,
    ) -> None:
        chunk: dict[int, dict[Any, list[int]]] = {}
        for i in candidates:
            value = candidate_values[i]
            if isinstance(value, np.floating):
                value = float(value)
            slot = chunk.setdefault(int(codes[i]), {}).setdefault(value, [0, 0])
            slot[0] += 1
            slot[1] += int(differs[i])
        for code, tally in chunk.items():
            c = counters[code]
            for value, (defaults, mismatches) in sorted(tally.items(), key=lambda kv: -kv[1][0])[
                :VALUE_TALLY_CAP
            ]:
                slot = c.value_defaults.setdefault(value, [0, 0])
                slot[0] += defaults
                slot[1] += mismatches
            c._cap_values()

    def _prune(self, dim: str, keep: int | None = None) -> None:
        keep = self.max_cohorts if keep is None else keep
        table = self.tables[dim]
        ranked = sorted(
            ((label, c) for label, c in table.items() if label != OTHER),
            key=lambda kv: (-kv[1].rows, kv[0]),
        )
        other = table.get(OTHER) or CohortCounters()
        for label, c in ranked[keep:]:
            other.merge(c)
            del table[label]
            self.merged[dim] = self.merged.get(dim, 0) + 1
        if ranked[keep:]:
            table[OTHER] = other

    def merge(self, other: CohortSlices) -> None:
        """Add another feature state's slices (e.g. of another process or partition)."""
        for dim, table in other.tables.items():
            mine = self.tables.setdefault(dim, {})
            for label, c in table.items():
                mine.setdefault(label, CohortCounters()).merge(c)
            self.merged[dim] = self.merged.get(dim, 0) + other.merged.get(dim, 0)
            if len(mine) > 2 * self.max_cohorts:
                self._prune(dim)

    def result(
        self, fill_values: Sequence[Any] = (), on_demand: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Per dimension: ``cohorts`` (label -> stats) of the largest ``max_cohorts`` cohorts
        (the rest in ``(other)``) and ``merged`` (how many cohorts went into ``(other)``)."""
        out: dict[str, dict[str, Any]] = {}
        for dim in list(self.tables):
            self._prune(dim)
            table = self.tables[dim]
            cohorts = {}
            for label, c in sorted(table.items(), key=lambda kv: (-kv[1].rows, kv[0])):
                stats = c.stats(fill_values, on_demand)
                stats["examples"] = list(c.examples)
                stats["stale_lag_seconds"] = percentiles(c.stale_lags)
                cohorts[label] = stats
            out[dim] = {"cohorts": cohorts, "merged": self.merged.get(dim, 0)}
        return out


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def entity_hashes(keys: Sequence[Mapping[str, Any]], join_keys: Sequence[str] | None) -> np.ndarray:
    """Per row, a 64-bit hash of the entity formed by ``join_keys`` (all keys when None), the
    unit whose rows share one fate (a user's skewed row is served in many requests).

    >>> rows = [{"user_id": 1, "video_id": 2}, {"video_id": 3, "user_id": "1"}]
    >>> h = entity_hashes(rows, ["user_id"])
    >>> bool(h[0] == h[1])
    True
    """
    out = np.zeros(len(keys), dtype=np.uint64)
    for i, row in enumerate(keys):
        part = row if join_keys is None else {k: row.get(k) for k in join_keys if k in row}
        try:
            encoded = canonical_entity_key(part)
        except EntityKeyError:
            encoded = repr(sorted(part.items(), key=lambda kv: kv[0])).encode()
        out[i] = xxhash.xxh3_64_intdigest(encoded, seed=HASH_SEED)
    return out


class CohortConfig(BaseModel):
    """``parity.cohorts``: slice the check's metrics by dimensions (docs/checks.md#cohort-slices).

    A dimension is ``view:feature`` (the feature's offline value at request time),
    ``key:<join key>%<n>`` (integer key modulo n) or ``key:hash(<join key>)%<n>``.
    """

    model_config = ConfigDict(extra="forbid")

    dimensions: list[str] = Field(default_factory=list)
    top_k: int = Field(5, ge=1, le=100)
    min_rows: int = Field(30, ge=1)
    max_cohorts: int = Field(50, ge=1, le=1000)
    max_pvalue: float = Field(1e-6, gt=0, le=1)

    @field_validator("dimensions")
    @classmethod
    def _parse_dimensions(cls, value: list[str]) -> list[str]:
        return [dim.spec for dim in parse_dimensions(value)]
