"""Transformation parity of on-demand views: served inputs, recomputed outputs, code drift.

An on-demand output can differ from what training computes for two reasons: its inputs were
different (a stale input row, request data that training never saw) or its code was (a
serving process that still runs the transformation it loaded before the last ``feast apply``).
This module keeps what tells them apart, with no Feast in it:

* :class:`ServedInputs` remembers, for the input views of on-demand views, what each sampled
  request row was served (event time and value hashes), keyed by request id and entity key:
  the same request row has the same key in every view's log rows;
* :class:`TransformationParity` tallies one on-demand view over the window: rows recomputed,
  rows whose inputs were known and agreed, outputs that diverged, and per transformation
  fingerprint the serving processes that ran it and since when.

>>> parity = TransformationParity("risk", registry_fingerprint="new")
>>> parity.update(
...     fingerprints=np.array(["old", "new"], dtype=object),
...     writers=np.array(["a:1", "b:2"], dtype=object),
...     request_time=np.array([10_000_000, 20_000_000]),
...     recomputed=np.array([True, True]),
...     inputs_known=np.array([True, True]),
...     inputs_agree=np.array([True, True]),
...     diverged={"score": np.array([True, False])},
... )
>>> result = parity.result()
>>> result["code_drift"], result["stale_writers"], result["features"]["score"]["code_differs"]
(True, ['a:1'], 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from feast_parity.parity.columns import canonical_column
from feast_parity.parity.served import NO_TIME, ServedRows
from feast_parity.parity.xxh3 import xxh3_64_fixed


def request_row_keys(request_id: np.ndarray, entity_key_hash: np.ndarray) -> np.ndarray:
    """One uint64 per log row naming its request row: the same in every view's rows of it.

    >>> ids = np.array(["r1", "r1", "r2"], dtype=object)
    >>> keys = request_row_keys(ids, np.array([7, 8, 7], dtype=np.uint64))
    >>> len(set(keys.tolist()))
    3
    """
    ids = canonical_column(list(request_id), "String").hashes()
    pairs = np.stack([ids, np.asarray(entity_key_hash, dtype=np.uint64)], axis=1)
    return xxh3_64_fixed(np.ascontiguousarray(pairs).view(np.uint8).reshape(len(ids), 16))


@dataclass
class _ViewInputs:
    keys: list[np.ndarray] = field(default_factory=list)
    event_time: list[np.ndarray] = field(default_factory=list)
    hashes: dict[str, list[np.ndarray]] = field(default_factory=dict)
    null: dict[str, list[np.ndarray]] = field(default_factory=dict)
    requested: dict[str, list[np.ndarray]] = field(default_factory=dict)
    sorted_keys: np.ndarray | None = None
    order: np.ndarray | None = None

    def seal(self) -> None:
        keys = np.concatenate(self.keys) if self.keys else np.zeros(0, np.uint64)
        self.order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[self.order]


class ServedInputs:
    """What the input views of on-demand views were served, per request row (see module)."""

    def __init__(self, views: Mapping[str, set[str]]) -> None:
        """``views``: input view name -> the features on-demand views read from it."""
        self.wanted = {name: set(features) for name, features in views.items()}
        self._views: dict[str, _ViewInputs] = {}

    def add(self, rows: ServedRows) -> None:
        """Remember a chunk of an input view's log rows (other views are ignored)."""
        wanted = self.wanted.get(rows.feature_view)
        if wanted is None or not len(rows):
            return
        view = self._views.setdefault(rows.feature_view, _ViewInputs())
        view.keys.append(request_row_keys(rows.request_id, rows.entity_key_hash))
        view.event_time.append(rows.event_time)
        n = len(rows)
        for name in wanted:
            feature = rows.features.get(name)
            if feature is None:
                hashes, null, requested = (
                    np.zeros(n, np.uint64),
                    np.ones(n, bool),
                    np.zeros(n, bool),
                )
            else:
                hashes, requested = feature.hashes, feature.requested
                null = feature.empty | (feature.status != 1)
                if not feature.redacted:
                    null = null | feature.values.null
            view.hashes.setdefault(name, []).append(np.where(requested, hashes, 0))
            view.null.setdefault(name, []).append(null)
            view.requested.setdefault(name, []).append(requested)
        view.sorted_keys = None

    def lookup(
        self, view_name: str, keys: np.ndarray, features: list[str]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """(found, served event time, feature -> (hashes, null, requested)) for request-row
        ``keys``; a feature the request did not ask for is not ``requested`` (unknown)."""
        n = len(keys)
        found = np.zeros(n, dtype=bool)
        times = np.full(n, NO_TIME, dtype=np.int64)
        view = self._views.get(view_name)
        if view is None or not view.keys:
            return found, times, {}
        if view.sorted_keys is None:
            view.seal()
        assert view.sorted_keys is not None and view.order is not None
        position = np.searchsorted(view.sorted_keys, keys)
        inside = position < len(view.sorted_keys)
        found[inside] = view.sorted_keys[position[inside]] == keys[inside]
        picked = view.order[np.where(found, position, 0)]
        times[found] = np.concatenate(view.event_time)[picked[found]]
        served: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for name in features:
            if name not in view.hashes:
                continue
            hashes = np.concatenate(view.hashes[name])[picked]
            null = np.concatenate(view.null[name])[picked]
            requested = np.concatenate(view.requested[name])[picked] & found
            served[name] = (hashes, null, requested)
        return found, times, served


@dataclass
class _Fingerprint:
    rows: int = 0
    writers: set[str] = field(default_factory=set)
    first_seen: int | None = None
    last_seen: int | None = None
    diverged: dict[str, int] = field(default_factory=dict)


@dataclass
class TransformationParity:
    """Mergeable tallies of one on-demand view (see the module docstring)."""

    feature_view: str
    registry_fingerprint: str | None = None
    training_fingerprint: str | None = None
    rows: int = 0
    recomputed: int = 0
    udf_errors: int = 0
    first_error: str | None = None
    inputs_known: int = 0
    inputs_agree: int = 0
    diverged: dict[str, int] = field(default_factory=dict)
    diverged_inputs_known: dict[str, int] = field(default_factory=dict)
    diverged_inputs_agree: dict[str, int] = field(default_factory=dict)
    fingerprints: dict[str, _Fingerprint] = field(default_factory=dict)

    def failed(self, rows: int, error: str) -> None:
        """Rows whose transformation raised on the logged inputs."""
        self.udf_errors += rows
        if self.first_error is None:
            self.first_error = error

    def update(
        self,
        *,
        fingerprints: np.ndarray,
        writers: np.ndarray,
        request_time: np.ndarray,
        recomputed: np.ndarray,
        inputs_known: np.ndarray,
        inputs_agree: np.ndarray,
        diverged: Mapping[str, np.ndarray],
    ) -> None:
        """One chunk: per row its serving fingerprint and writer, whether it was recomputed,
        whether its inputs were known (logged) and agreed, and per output whether it diverged."""
        self.rows += len(request_time)
        self.recomputed += int(recomputed.sum())
        known, agree = inputs_known & recomputed, inputs_agree & inputs_known & recomputed
        self.inputs_known += int(known.sum())
        self.inputs_agree += int(agree.sum())
        for name, mask in diverged.items():
            self.diverged[name] = self.diverged.get(name, 0) + int(mask.sum())
            known_count = int((mask & known).sum())
            self.diverged_inputs_known[name] = self.diverged_inputs_known.get(name, 0) + known_count
            self.diverged_inputs_agree[name] = self.diverged_inputs_agree.get(name, 0) + int(
                (mask & agree).sum()
            )
        labels = np.asarray([str(f) if f is not None else "" for f in fingerprints], dtype=object)
        for label in np.unique(labels).tolist():
            rows = labels == label
            tally = self.fingerprints.setdefault(label, _Fingerprint())
            tally.rows += int(rows.sum())
            tally.writers.update(str(w) for w in np.unique(writers[rows].astype(str)).tolist())
            times = request_time[rows]
            low, high = int(times.min()), int(times.max())
            tally.first_seen = low if tally.first_seen is None else min(tally.first_seen, low)
            tally.last_seen = high if tally.last_seen is None else max(tally.last_seen, high)
            for name, mask in diverged.items():
                tally.diverged[name] = tally.diverged.get(name, 0) + int((mask & rows).sum())

    def result(self) -> dict[str, Any]:
        """The ``transformation`` block of the view's report row."""
        current = self.registry_fingerprint
        serving: list[dict[str, Any]] = []
        stale_writers: set[str] = set()
        for label, tally in sorted(self.fingerprints.items(), key=lambda kv: -kv[1].rows):
            fingerprint = label or None
            drifted = fingerprint is not None and current is not None and fingerprint != current
            if drifted:
                stale_writers |= tally.writers
            serving.append(
                {
                    "udf_fingerprint": fingerprint,
                    "rows": tally.rows,
                    "writers": sorted(tally.writers),
                    "first_seen": _iso(tally.first_seen),
                    "last_seen": _iso(tally.last_seen),
                    "matches_registry": None if fingerprint is None else not drifted,
                    "matches_training": None
                    if fingerprint is None or self.training_fingerprint is None
                    else fingerprint == self.training_fingerprint,
                    "diverged": dict(sorted(tally.diverged.items())),
                }
            )
        features = {}
        for name in sorted(self.diverged):
            on_current = sum(
                t.diverged.get(name, 0)
                for label, t in self.fingerprints.items()
                if current is None or label in (current, "")
            )
            features[name] = {
                "diverged": self.diverged[name],
                "diverged_inputs_known": self.diverged_inputs_known.get(name, 0),
                # inputs equal and outputs different: the code that computed them differs
                "code_differs": self.diverged_inputs_agree.get(name, 0),
                "diverged_on_registry_code": on_current,
            }
        drifted_since = [
            str(s["first_seen"])
            for s in serving
            if s["matches_registry"] is False and s["first_seen"]
        ]
        return {
            "registry_udf_fingerprint": current,
            "training_udf_fingerprint": self.training_fingerprint,
            "rows": self.rows,
            "recomputed": self.recomputed,
            "udf_errors": self.udf_errors,
            "first_error": self.first_error,
            "inputs_known": self.inputs_known,
            "inputs_agreed": self.inputs_agree,
            "serving": serving,
            "code_drift": bool(stale_writers),
            "stale_writers": sorted(stale_writers),
            "stale_since": min(drifted_since) if drifted_since else None,
            "training_drift": bool(
                self.training_fingerprint is not None
                and any(s["matches_training"] is False for s in serving)
            ),
            "features": features,
        }


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    moment = datetime.fromtimestamp(micros / 1e6, tz=timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")
