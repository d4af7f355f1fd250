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

from feast_parity.parity.columns import CanonicalColumn, canonical_column, concat
from feast_parity.parity.served import NO_TIME, ServedFeature, ServedRows
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
class ServedInput:
    """One input feature as the request rows of an on-demand view were served it."""

    values: CanonicalColumn  # canonical served values (null where not served or null)
    hashes: np.ndarray  # uint64 value hashes as logged
    null: np.ndarray  # served without a value (null, NOT_FOUND, ...)
    requested: np.ndarray  # the input was read for this request row (asked for or captured)
    redacted: bool = False  # only hashes were logged: the value cannot be fed again


@dataclass
class _ViewInputs:
    keys: list[np.ndarray] = field(default_factory=list)
    event_time: list[np.ndarray] = field(default_factory=list)
    features: dict[str, list[ServedInput]] = field(default_factory=dict)
    sealed: tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, ServedInput]] | None = None

    def seal(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, ServedInput]]:
        """(sorted keys, order, event times, feature -> all rows), concatenated once."""
        if self.sealed is None:
            keys = np.concatenate(self.keys) if self.keys else np.zeros(0, np.uint64)
            order = np.argsort(keys, kind="stable")
            times = np.concatenate(self.event_time) if self.event_time else np.zeros(0, np.int64)
            features = {
                name: ServedInput(
                    concat([p.values for p in parts]),
                    np.concatenate([p.hashes for p in parts]),
                    np.concatenate([p.null for p in parts]),
                    np.concatenate([p.requested for p in parts]),
                    any(p.redacted for p in parts),
                )
                for name, parts in self.features.items()
            }
            self.sealed = (keys[order], order, times, features)
        return self.sealed


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
                served = ServedInput(
                    canonical_column([None] * n, "Invalid"),
                    np.zeros(n, np.uint64),
                    np.ones(n, bool),
                    np.zeros(n, bool),
                )
            else:
                null = feature.empty | (feature.status != 1)
                if not feature.redacted:
                    null = null | feature.values.null
                requested = feature.requested
                served = ServedInput(
                    feature.values,
                    np.where(requested, feature.hashes, 0),
                    null,
                    requested,
                    feature.redacted,
                )
            view.features.setdefault(name, []).append(served)
        view.sealed = None

    def lookup(
        self, view_name: str, keys: np.ndarray, features: list[str]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, ServedInput]]:
        """(found, served event time, feature -> :class:`ServedInput`) for request-row
        ``keys``; a feature the request row did not read is not ``requested`` (unknown)."""
        n = len(keys)
        found = np.zeros(n, dtype=bool)
        times = np.full(n, NO_TIME, dtype=np.int64)
        view = self._views.get(view_name)
        if view is None or not view.keys:
            return found, times, {}
        sorted_keys, order, event_time, all_features = view.seal()
        position = np.searchsorted(sorted_keys, keys)
        inside = position < len(sorted_keys)
        found[inside] = sorted_keys[position[inside]] == keys[inside]
        picked = order[np.where(found, position, 0)]
        times[found] = event_time[picked[found]]
        served: dict[str, ServedInput] = {}
        for name in features:
            feature = all_features.get(name)
            if feature is None:
                continue
            values = feature.values.take(picked)
            values.set_null(~found)
            served[name] = ServedInput(
                values,
                feature.hashes[picked],
                feature.null[picked] | ~found,
                feature.requested[picked] & found,
                feature.redacted,
            )
        return found, times, served


@dataclass
class _Fingerprint:
    rows: int = 0
    writers: set[str] = field(default_factory=set)
    first_seen: int | None = None
    last_seen: int | None = None
    diverged: dict[str, int] = field(default_factory=dict)

    def merge(self, other: _Fingerprint) -> None:
        self.rows += other.rows
        self.writers |= other.writers
        for mine, theirs, pick in (
            ("first_seen", other.first_seen, min),
            ("last_seen", other.last_seen, max),
        ):
            current = getattr(self, mine)
            if theirs is not None:
                setattr(self, mine, theirs if current is None else pick(current, theirs))
        _add_counts(self.diverged, other.diverged)


@dataclass
class ShadowTally:
    """A request field that shares its name with an input feature (feast_facts T6): how
    often the request value differed from the stored one, and how often the two paths fed
    the transformation different values for it."""

    feature: str  # "view:feature" of the stored input of the same name
    rows: int = 0  # rows whose request carried the field and read the stored input
    differs: int = 0  # of those, rows whose request value differs from the stored one
    fed_apart: int = 0  # of those, rows where serving and training fed different values
    examples: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def merge(self, other: ShadowTally) -> None:
        self.rows += other.rows
        self.differs += other.differs
        self.fed_apart += other.fed_apart
        self.examples = sorted(self.examples + other.examples, key=lambda e: e[0])[:EXAMPLES]


EXAMPLES = 3


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
    fingerprints: dict[str, _Fingerprint] = field(default_factory=dict)
    # outputs against training's computation (point-in-time inputs at request time)
    trained: dict[str, int] = field(default_factory=dict)  # output -> rows compared
    moved: dict[str, int] = field(default_factory=dict)  # output -> rows moved by inputs
    causes: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (output, kind, input)
    shadows: dict[str, ShadowTally] = field(default_factory=dict)  # request field -> tally

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
        whether its inputs were known (logged, so the recomputation fed what serving fed) and
        agreed with training's, and per output whether it diverged from the recomputation."""
        self.rows += len(request_time)
        self.recomputed += int(recomputed.sum())
        known = inputs_known & recomputed
        self.inputs_known += int(known.sum())
        self.inputs_agree += int((inputs_agree & known).sum())
        for name, mask in diverged.items():
            self.diverged[name] = self.diverged.get(name, 0) + int(mask.sum())
            known_count = int((mask & known).sum())
            self.diverged_inputs_known[name] = self.diverged_inputs_known.get(name, 0) + known_count
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

    def update_training(
        self,
        trained: Mapping[str, np.ndarray],
        moved: Mapping[str, np.ndarray],
        causes: Mapping[tuple[str, str], np.ndarray],
    ) -> None:
        """Outputs against training's: per output the rows compared and those whose served
        value (equal to its recomputation from what serving fed) differs from what training
        computes; ``causes`` maps (kind, input) to the rows where that input fed training
        another value (``kind``: the input's row outcome, or ``shadowed_request_field``)."""
        for name, mask in trained.items():
            self.trained[name] = self.trained.get(name, 0) + int(mask.sum())
        for name, mask in moved.items():
            self.moved[name] = self.moved.get(name, 0) + int(mask.sum())
            for (kind, source), rows in causes.items():
                count = int((mask & rows).sum())
                if count:
                    key = (name, kind, source)
                    self.causes[key] = self.causes.get(key, 0) + count

    def update_shadow(
        self,
        name: str,
        feature: str,
        *,
        active: np.ndarray,
        differs: np.ndarray,
        fed_apart: np.ndarray,
        examples: list[tuple[int, dict[str, Any]]],
    ) -> None:
        """One chunk of a request field that a stored input of the same name shadows."""
        tally = self.shadows.setdefault(name, ShadowTally(feature))
        tally.rows += int(active.sum())
        tally.differs += int(differs.sum())
        tally.fed_apart += int(fed_apart.sum())
        tally.examples = sorted(tally.examples + examples, key=lambda e: e[0])[:EXAMPLES]

    def merge(self, other: TransformationParity) -> None:
        """Add another part of the window (a partition): counts add, tallies merge."""
        for name in ("rows", "recomputed", "udf_errors", "inputs_known", "inputs_agree"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first_error = self.first_error or other.first_error
        for name in ("diverged", "diverged_inputs_known", "trained", "moved", "causes"):
            _add_counts(getattr(self, name), getattr(other, name))
        for label, tally in other.fingerprints.items():
            self.fingerprints.setdefault(label, _Fingerprint()).merge(tally)
        for name, shadow in other.shadows.items():
            if name in self.shadows:
                self.shadows[name].merge(shadow)
            else:
                self.shadows[name] = shadow

    def result(self) -> dict[str, Any]:
        """The ``transformation`` block of the view's report row."""
        serving, stale_writers = self._serving()
        drifted_since = [
            str(s["first_seen"])
            for s in serving
            if s["matches_registry"] is False and s["first_seen"]
        ]
        return {
            "registry_udf_fingerprint": self.registry_fingerprint,
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
            "features": self._features(),
            "moved_by_inputs": self._moved(),
            "shadowed_request_fields": self._shadowed(),
        }

    def _serving(self) -> tuple[list[dict[str, Any]], set[str]]:
        """Per fingerprint served (most rows first): its rows, processes, first and last time,
        whether it is the registry's and training's code; and the processes on old code."""
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
        return serving, stale_writers

    def _features(self) -> dict[str, dict[str, int]]:
        """Per output: rows that diverged, those with known inputs, those on registry code."""
        current = self.registry_fingerprint
        features = {}
        for name in sorted(self.diverged):
            on_current = sum(
                t.diverged.get(name, 0)
                for label, t in self.fingerprints.items()
                if current is None or label in (current, "")
            )
            known = self.diverged_inputs_known.get(name, 0)
            features[name] = {
                "diverged": self.diverged[name],
                "diverged_inputs_known": known,
                # recomputed from the very inputs serving fed it, and still different: the
                # code that computed them differs
                "code_differs": known,
                "diverged_on_registry_code": on_current,
            }
        return features

    def _shadowed(self) -> list[dict[str, Any]]:
        """Per request field that shadows a stored input: how often the two differ, and the
        outputs it moved."""
        return [
            {
                "field": name,
                "feature": tally.feature,
                "rows": tally.rows,
                "request_differs": tally.differs,
                "request_differs_share": _share(tally.differs, tally.rows),
                "fed_apart": tally.fed_apart,
                "moved_outputs": {
                    output: count
                    for (output, kind, source), count in sorted(self.causes.items())
                    if kind == SHADOWED and source == name
                },
                "examples": [example for _, example in tally.examples],
            }
            for name, tally in sorted(self.shadows.items())
        ]

    def _moved(self) -> dict[str, Any]:
        """Per output: rows compared with training's computation, rows the inputs moved, and
        which input (and how) moved them."""
        out: dict[str, Any] = {}
        for name in sorted(self.trained):
            causes = [
                {"kind": kind, "input": source, "rows": count}
                for (output, kind, source), count in sorted(self.causes.items())
                if output == name
            ]
            moved = self.moved.get(name, 0)
            out[name] = {
                "compared": self.trained[name],
                "moved": moved,
                "moved_rate": _share(moved, self.trained[name]),
                "causes": sorted(causes, key=lambda c: (-c["rows"], c["kind"], c["input"])),
            }
        return out


SHADOWED = "shadowed_request_field"


def against_training(
    served: Mapping[str, ServedFeature],
    training: Mapping[str, CanonicalColumn],
    trained: np.ndarray,
    untrainable: np.ndarray,
    diverged: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per output, (rows compared with training's computation, rows whose served value differs
    from it). Only rows that asked for the output and whose served value equals its
    recomputation from what serving fed count: a diverged row is the code's, not the inputs'.
    ``untrainable`` rows (training has no row of some input) count as moved.

    >>> from feast_parity.parity.columns import canonical_column
    >>> from feast_parity.parity.served import ServedFeature
    >>> column = canonical_column([1.0, 2.0, 3.0], "Float64")
    >>> out = ServedFeature("Float64", column, np.ones(3, np.int8), column.hashes(),
    ...                     np.array(["double_val"] * 3, dtype=object))
    >>> training = {"out": canonical_column([1.0, 2.5, 3.0], "Float64")}
    >>> compared, moved = against_training({"out": out}, training, np.array([1, 1, 0], bool),
    ...                                    np.array([0, 0, 1], bool), {"out": np.zeros(3, bool)})
    >>> compared["out"].tolist(), moved["out"].tolist()
    ([True, True, True], [False, True, True])
    """
    compared: dict[str, np.ndarray] = {}
    moved: dict[str, np.ndarray] = {}
    for name, feature in served.items():
        own = feature.requested & ~diverged.get(name, np.zeros(len(trained), dtype=bool))
        column = training.get(name)
        if column is None:  # nothing trained in this chunk
            same = np.ones(len(trained), dtype=bool)
        else:
            null = feature.empty | (feature.status != 1)
            if not feature.redacted:
                null = null | feature.values.null
            same = (null & column.null) | (
                ~null & ~column.null & (feature.hashes == column.hashes())
            )
        compared[name] = own & (trained | untrainable)
        moved[name] = own & ((trained & ~same) | untrainable)
    return compared, moved


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _add_counts(mine: dict[Any, int], theirs: Mapping[Any, int]) -> None:
    for key, count in theirs.items():
        mine[key] = mine.get(key, 0) + count


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    moment = datetime.fromtimestamp(micros / 1e6, tz=timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")
