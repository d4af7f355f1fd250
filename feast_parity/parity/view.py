"""Row outcomes of one feature view: stale, expired, online-only, NOT_FOUND, served lag.

Every feature of a view row shares the row's event time, so whether a served row was current is
decided per *view row*, once (:func:`classify`), from two offline answers per row: the event time
of the point-in-time row at request time (Feast's semantics: newest at or before the request
time, within ttl, created-timestamp ties as Feast breaks them), and the event time of the row at
the served event time.

=================  ==========================================================================
outcome            rule (``t_s`` served event time, ``t_r`` request time, ``t_o`` offline
                   point-in-time event time at ``t_r``)
=================  ==========================================================================
``exact``          offline has a row at exactly ``t_s``: the row's values can be compared
``stale``          ``t_o > t_s``: offline had a newer row at request time; lag ``t_o - t_s``
``expired``        ``t_s < t_r - ttl`` (ttl > 0): served past the view's ttl; age ``t_r - t_s``
``online_only``    served with an event time, but offline has no row at ``t_s`` and none newer
                   within ttl (pushed or written online only): not compared, counted
``not_found``      no requested feature of the row was found online
``future``         ``t_s`` is after ``t_r`` (clock skew, future-dated writes): compared at ``t_s``
                   only, never against the request-time row
=================  ==========================================================================

:class:`ViewComparison` keeps mergeable counters and reservoirs of these over the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feast_parity.parity.columns import CanonicalColumn
from feast_parity.parity.lag_series import LagSeries
from feast_parity.parity.reservoir import Reservoir
from feast_parity.parity.served import FIELD_STATUS_NOT_FOUND, NO_TIME, ServedRows
from feast_parity.parity.stats import percentiles


@dataclass
class OfflineRows:
    """The offline store's answers for the rows of one :class:`ServedRows` chunk."""

    at_request_time: np.ndarray  # int64 us: event time of the point-in-time row at t_r
    at_request: dict[str, CanonicalColumn]  # feature values of that row
    at_served_time: np.ndarray  # int64 us: event time of the point-in-time row at t_s
    at_served: dict[str, CanonicalColumn]  # feature values of that row
    offline_types: dict[str, str] = field(default_factory=dict)  # feature -> column type
    missing: set[str] = field(default_factory=set)  # features the store did not return
    available: bool = True  # False: the store could not be asked (nothing is known offline)
    # on-demand views (plugin/transform.py): rows recomputed, and whose inputs were logged
    # in the same request (known) and equal to the offline inputs (agree)
    recomputed: np.ndarray | None = None
    inputs_known: np.ndarray | None = None
    inputs_agree: np.ndarray | None = None


@dataclass
class RowOutcomes:
    """Per-row outcomes of a chunk (boolean masks, lags in seconds)."""

    exact: np.ndarray
    stale: np.ndarray
    expired: np.ndarray
    online_only: np.ndarray
    not_found: np.ndarray
    future: np.ndarray  # the served event time is after the request time (clock skew, future
    # -dated writes): the request-time offline row cannot be the one that was served
    offline_row: np.ndarray  # offline has a point-in-time row at request time
    stale_lag: np.ndarray  # seconds, 0 where not stale
    age: np.ndarray  # seconds since the served event time at request, NaN without one

    @property
    def current(self) -> np.ndarray:
        """Rows served from the row offline considers current (not stale, expired or only
        online): where value differences are the values' own."""
        return ~(self.stale | self.expired | self.online_only | self.future)


def seconds(micros: np.ndarray) -> np.ndarray:
    """Whole UTC seconds of int64 microsecond times (NO_TIME stays NO_TIME).

    Event times are compared at whole seconds: the SQLite online store keeps them in integer
    seconds (docs/feast_facts.md R9), so a row written at .250 s reads back at .000 s.
    """
    return np.where(micros == NO_TIME, NO_TIME, np.floor_divide(micros, 1_000_000))


def classify(served: ServedRows, offline: OfflineRows, ttl_seconds: float) -> RowOutcomes:
    """The outcomes of each row (see the module docstring)."""
    t_s, t_r = seconds(served.event_time), served.request_time
    t_o, t_e = seconds(offline.at_request_time), seconds(offline.at_served_time)
    has_ts = t_s != NO_TIME
    has_offline = t_o != NO_TIME
    exact = has_ts & (t_e != NO_TIME) & (t_e == t_s)
    stale = has_ts & has_offline & (t_o > t_s)
    expired = has_ts & (ttl_seconds > 0) & ((t_r - served.event_time) > int(ttl_seconds * 1e6))
    online_only = has_ts & ~exact & ~stale & offline.available
    features = list(served.features.values())
    if features:
        requested = np.stack([f.status != 0 for f in features])
        # not found: NOT_FOUND (SQLite) or an empty value without event time (Redis answers
        # PRESENT with no value for an unknown entity, docs/feast_facts.md R8)
        empty = np.stack([(f.status == FIELD_STATUS_NOT_FOUND) | f.empty for f in features])
        not_found = requested.any(0) & ~(requested & ~empty).any(0) & ~has_ts
    else:
        not_found = np.zeros(len(served), dtype=bool)
    future = has_ts & (t_s > np.floor_divide(t_r, 1_000_000))
    lag = np.where(stale, (t_o - t_s).astype(np.float64), 0.0)
    age = np.where(has_ts, (t_r - served.event_time) / 1e6, np.nan)
    return RowOutcomes(exact, stale, expired, online_only, not_found, future, has_offline, lag, age)


def recomputed_outcomes(
    recomputed: np.ndarray, request_time: np.ndarray, event_time: np.ndarray
) -> RowOutcomes:
    """Outcomes of on-demand rows: a recomputed row is compared as an exact row (its offline
    value is Feast's transformation of the inputs serving read); nothing is stale or expired.
    Rows written to the online store carry an event time, and so an age.

    >>> request, event = np.array([5_000_000, 5_000_000]), np.array([NO_TIME, 3_000_000])
    >>> out = recomputed_outcomes(np.array([True, False]), request, event)
    >>> out.exact.tolist(), out.age.tolist()[1]
    ([True, False], 2.0)
    """
    n = len(request_time)
    done = np.asarray(recomputed, dtype=bool)
    none = np.zeros(n, dtype=bool)
    has_ts = event_time != NO_TIME
    age = np.where(has_ts, (request_time - event_time) / 1e6, np.nan)
    return RowOutcomes(done, none, none, none, none.copy(), none, done, np.zeros(n), age)


def offline_row_hashes(served: ServedRows, offline: OfflineRows) -> np.ndarray:
    """Per row, the row hash of the offline values at the served event time over the features
    that row requested (not those read only for on-demand views; 0 where a feature is missing
    offline): equal to the logged row hash exactly when every requested feature agrees."""
    from feast_parity.parity.columns import row_hashes
    from feast_parity.parity.hashing import schema_fingerprint

    n = len(served)
    out = np.zeros(n, dtype=np.uint64)
    names = sorted(served.features)
    if not names:
        return out
    requested = np.stack(
        [served.features[f].requested & ~served.features[f].only_input for f in names], axis=1
    )
    # one code per pattern of requested features (packed bits: np.unique on rows is slow)
    packed = np.packbits(requested, axis=1)
    width = packed.shape[1]
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, width))).reshape(-1)
    _, first, codes = np.unique(keys, return_index=True, return_inverse=True)
    codes = codes.reshape(-1)
    for j, row in enumerate(first.tolist()):
        layout = [f for f, on in zip(names, requested[row].tolist()) if on]
        if not layout or any(f not in offline.at_served for f in layout):
            continue
        rows = np.flatnonzero(codes == j)
        fingerprint = schema_fingerprint({f: served.features[f].declared for f in layout})
        out[rows] = row_hashes([offline.at_served[f].hashes()[rows] for f in layout], fingerprint)
    return out


@dataclass
class ViewComparison:
    """Mergeable row outcomes of one view over the window."""

    feature_view: str
    on_demand: bool = False
    seed: int = 0
    rows: int = 0
    with_event_time: int = 0
    exact_rows: int = 0
    stale_rows: int = 0
    expired_rows: int = 0
    expired_not_stale: int = 0  # expired rows that offline had nothing newer for either
    online_only_rows: int = 0
    future_rows: int = 0
    not_found_rows: int = 0
    offline_rows: int = 0  # rows the offline store had a point-in-time row for
    not_found_with_offline: int = 0  # NOT_FOUND online while offline had a row at t_r
    row_compared: int = 0
    row_matches: int = 0
    served_lag: Reservoir = field(default_factory=Reservoir)
    stale_lag: Reservoir = field(default_factory=Reservoir)
    expired_age: Reservoir = field(default_factory=Reservoir)
    online_only_examples: list[dict[str, Any]] = field(default_factory=list)
    lag_series: LagSeries | None = None  # served lag per bucket of request time

    def __post_init__(self) -> None:
        self.served_lag = Reservoir(seed=self.seed, salt=4)
        self.stale_lag = Reservoir(seed=self.seed, salt=3)
        self.expired_age = Reservoir(seed=self.seed, salt=5)

    def update(
        self,
        served: ServedRows,
        outcomes: RowOutcomes,
        offline_row_hash: np.ndarray | None = None,
        entity_labels: Sequence[str] | None = None,
    ) -> None:
        """One chunk. ``offline_row_hash`` is the row hash of the offline values at the served
        event time over the same features (for rows marked ``exact``)."""
        n = len(served)
        self.rows += n
        has_ts = served.has_event_time
        self.with_event_time += int(has_ts.sum())
        self.exact_rows += int(outcomes.exact.sum())
        self.stale_rows += int(outcomes.stale.sum())
        self.expired_rows += int(outcomes.expired.sum())
        self.expired_not_stale += int((outcomes.expired & ~outcomes.stale).sum())
        self.online_only_rows += int(outcomes.online_only.sum())
        self.future_rows += int(outcomes.future.sum())
        self.not_found_rows += int(outcomes.not_found.sum())
        self.offline_rows += int((outcomes.offline_row | outcomes.exact).sum())
        self.not_found_with_offline += int((outcomes.not_found & outcomes.offline_row).sum())
        self.served_lag.add(outcomes.age[has_ts])
        self.stale_lag.add(outcomes.stale_lag[outcomes.stale])
        self.expired_age.add(outcomes.age[outcomes.expired])
        if self.lag_series is not None:
            self.lag_series.update(
                served.request_time[has_ts], outcomes.age[has_ts], outcomes.stale[has_ts]
            )
        if offline_row_hash is not None:
            compared = outcomes.exact
            self.row_compared += int(compared.sum())
            self.row_matches += int((compared & (offline_row_hash == served.row_hash)).sum())
        if entity_labels is not None and len(self.online_only_examples) < 5:
            for i in np.flatnonzero(outcomes.online_only)[: 5 - len(self.online_only_examples)]:
                self.online_only_examples.append(
                    {
                        "entity": entity_labels[i],
                        "served_event_time": _iso(served.event_time[i]),
                        "request_time": _iso(served.request_time[i]),
                    }
                )

    def merge(self, other: ViewComparison) -> None:
        for name in (
            "rows",
            "with_event_time",
            "exact_rows",
            "stale_rows",
            "expired_rows",
            "expired_not_stale",
            "online_only_rows",
            "future_rows",
            "not_found_rows",
            "offline_rows",
            "not_found_with_offline",
            "row_compared",
            "row_matches",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.served_lag.merge(other.served_lag)
        self.stale_lag.merge(other.stale_lag)
        self.expired_age.merge(other.expired_age)
        if self.lag_series is not None and other.lag_series is not None:
            self.lag_series.merge(other.lag_series)
        room = 5 - len(self.online_only_examples)
        self.online_only_examples.extend(other.online_only_examples[: max(room, 0)])

    def result(self) -> dict[str, Any]:
        def rate(part: int, whole: int) -> float | None:
            return None if whole == 0 else part / whole

        return {
            "samples": self.rows,
            "served_lag_seconds": percentiles(self.served_lag.values),
            "served_lag_sample": self.served_lag.values[:2000].tolist(),
            "stale_rows": self.stale_rows,
            "stale_rate": None if self.on_demand else rate(self.stale_rows, self.rows),
            "stale_lag_seconds": percentiles(self.stale_lag.values),
            "expired_rows": self.expired_rows,
            "expired_rate": None if self.on_demand else rate(self.expired_rows, self.rows),
            "expired_age_seconds": percentiles(self.expired_age.values),
            "expired_not_stale_rate": None
            if self.on_demand
            else rate(self.expired_not_stale, self.rows),
            "online_only_rows": self.online_only_rows,
            "online_only_examples": list(self.online_only_examples),
            "future_rows": self.future_rows,
            "not_found_rows": self.not_found_rows,
            "offline_rows": self.offline_rows,
            "not_found_rate": rate(self.not_found_rows, self.rows),
            "not_found_with_offline": self.not_found_with_offline,
            "not_found_default_rate": rate(self.not_found_with_offline, self.rows),
            "row_compared": self.row_compared,
            "row_match_rate": rate(self.row_matches, self.row_compared),
            "served_lag_series": None
            if self.lag_series is None or self.on_demand
            else self.lag_series.result(),
        }


def _iso(micros: int) -> str | None:
    if micros == NO_TIME:
        return None
    return str(np.datetime64(int(micros), "us")) + "Z"
