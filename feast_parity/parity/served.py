"""What serving returned for a set of sampled rows of one feature view: the engine's input.

Whatever the log's version or sink, the check turns a window of it into :class:`ServedRows`, one
per feature view and chunk: aligned arrays with one entry per logged row. A feature counts for a
row only where that request asked for it (``requested``): feature services project subsets of a
view, and two models may read different features of one view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from feast_parity.parity.columns import CanonicalColumn, concat

FIELD_STATUS_INVALID = 0
FIELD_STATUS_PRESENT = 1
FIELD_STATUS_NULL_VALUE = 2
FIELD_STATUS_NOT_FOUND = 3
FIELD_STATUS_OUTSIDE_MAX_AGE = 4

NO_TIME = np.iinfo(np.int64).min  # "no event time" in int64 microsecond arrays
NULL_KINDS = frozenset({None, "null_val"})  # protobuf kinds that carry no value


@dataclass
class ServedFeature:
    """One feature of one view over the rows of a :class:`ServedRows`."""

    declared: str  # the registry's type when it was served (the first one, if it changed)
    values: CanonicalColumn  # canonical served values (null where null, NOT_FOUND or redacted)
    status: np.ndarray  # int8 Feast FieldStatus; 0 where the request did not ask for it
    hashes: np.ndarray  # uint64 value hash as logged (keyed for redacted features)
    kinds: np.ndarray  # object: the protobuf value kind served ("float_val", None for null)
    declared_at_serving: dict[str, int] = field(default_factory=dict)  # type -> rows
    redacted: bool = False
    # rows where Feast read the feature only as an on-demand view's input and did not return it
    input_only: np.ndarray | None = None

    @property
    def requested(self) -> np.ndarray:
        return self.status != FIELD_STATUS_INVALID

    @property
    def only_input(self) -> np.ndarray:
        """Rows where the feature was read only for on-demand views (not returned)."""
        if self.input_only is None:
            return np.zeros(len(self.status), dtype=bool)
        return self.input_only & self.requested

    @property
    def empty(self) -> np.ndarray:
        """Rows served without a value (no protobuf kind, or ``null_val``)."""
        kinds = np.asarray(self.kinds, dtype=object)
        return np.equal(kinds, np.array(None)) | np.equal(kinds, "null_val")

    def take(self, index: np.ndarray) -> ServedFeature:
        return ServedFeature(
            self.declared,
            self.values.take(index),
            self.status[index],
            self.hashes[index],
            self.kinds[index],
            dict(self.declared_at_serving),
            self.redacted,
            None if self.input_only is None else self.input_only[index],
        )


@dataclass
class ServedRows:
    """Sampled rows of one feature view: per row the request, the entity and the view's values."""

    feature_view: str
    sample_ids: np.ndarray  # int64: where each row is in the log (for notes about bad rows)
    request_id: np.ndarray  # object
    request_time: np.ndarray  # int64 UTC microseconds
    event_time: np.ndarray  # int64 UTC microseconds of the served row, NO_TIME when unset
    keys: dict[str, np.ndarray]  # join key -> values (object), as the request spelled them
    entity_key_hash: np.ndarray  # uint64 hash of the canonical entity key
    feature_service: np.ndarray  # object (None for feature-ref requests)
    features: dict[str, ServedFeature]
    row_hash: np.ndarray  # uint64, as logged
    writer: np.ndarray  # object: host:pid that served and logged the row
    request_data: dict[str, np.ndarray] = field(default_factory=dict)  # request-source inputs
    udf_fingerprint: np.ndarray | None = None  # object: on-demand views' transformation hash
    on_demand: bool = False
    context: dict[str, np.ndarray] = field(default_factory=dict)  # the request's other keys
    # on-demand views: whether the request used full feature names (it decides which value a
    # request field that shares a feature's name feeds the transformation, feast_facts T6)
    full_feature_names: np.ndarray | None = None

    def all_keys(self, i: int) -> dict[str, object]:
        """Row ``i``'s join keys: the view's and the request's others."""
        out = {k: v[i] for k, v in self.context.items() if v[i] is not None}
        out.update({k: v[i] for k, v in self.keys.items()})
        return out

    def __len__(self) -> int:
        return int(self.request_time.shape[0])

    @property
    def has_event_time(self) -> np.ndarray:
        return self.event_time != NO_TIME

    def take(self, index: np.ndarray) -> ServedRows:
        return ServedRows(
            self.feature_view,
            self.sample_ids[index],
            self.request_id[index],
            self.request_time[index],
            self.event_time[index],
            {k: v[index] for k, v in self.keys.items()},
            self.entity_key_hash[index],
            self.feature_service[index],
            {k: f.take(index) for k, f in self.features.items()},
            self.row_hash[index],
            self.writer[index],
            {k: v[index] for k, v in self.request_data.items()},
            None if self.udf_fingerprint is None else self.udf_fingerprint[index],
            self.on_demand,
            {k: v[index] for k, v in self.context.items()},
            None if self.full_feature_names is None else self.full_feature_names[index],
        )


def concat_rows(parts: Sequence[ServedRows]) -> ServedRows:
    """One :class:`ServedRows` from several of the same view (features missing in a part are
    not requested there)."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    names = sorted({name for p in parts for name in p.features})
    key_names = sorted({name for p in parts for name in p.keys})
    request_names = sorted({name for p in parts for name in p.request_data})
    context_names = sorted({name for p in parts for name in p.context})

    def objects(part: ServedRows, mapping: dict[str, np.ndarray], name: str) -> np.ndarray:
        if name in mapping:
            return mapping[name]
        return np.full(len(part), None, dtype=object)

    features = {}
    for name in names:
        pieces = [p.features.get(name) or _absent(p, name, parts) for p in parts]
        declared_counts: dict[str, int] = {}
        for piece in pieces:
            for k, v in piece.declared_at_serving.items():
                declared_counts[k] = declared_counts.get(k, 0) + v
        features[name] = ServedFeature(
            next(p.declared for p in pieces if p.status.any())
            if any(p.status.any() for p in pieces)
            else pieces[0].declared,
            concat([p.values for p in pieces]),
            np.concatenate([p.status for p in pieces]),
            np.concatenate([p.hashes for p in pieces]),
            np.concatenate([p.kinds for p in pieces]),
            declared_counts,
            any(p.redacted for p in pieces),
            np.concatenate([p.only_input for p in pieces])
            if any(p.input_only is not None for p in pieces)
            else None,
        )
    udf = None
    if any(p.udf_fingerprint is not None for p in parts):
        udf = np.concatenate(
            [
                p.udf_fingerprint
                if p.udf_fingerprint is not None
                else np.full(len(p), None, dtype=object)
                for p in parts
            ]
        )
    full_names = None
    if any(p.full_feature_names is not None for p in parts):
        full_names = np.concatenate(
            [
                p.full_feature_names
                if p.full_feature_names is not None
                else np.zeros(len(p), dtype=bool)
                for p in parts
            ]
        )
    return ServedRows(
        first.feature_view,
        np.concatenate([p.sample_ids for p in parts]),
        np.concatenate([p.request_id for p in parts]),
        np.concatenate([p.request_time for p in parts]),
        np.concatenate([p.event_time for p in parts]),
        {k: np.concatenate([objects(p, p.keys, k) for p in parts]) for k in key_names},
        np.concatenate([p.entity_key_hash for p in parts]),
        np.concatenate([p.feature_service for p in parts]),
        features,
        np.concatenate([p.row_hash for p in parts]),
        np.concatenate([p.writer for p in parts]),
        {k: np.concatenate([objects(p, p.request_data, k) for p in parts]) for k in request_names},
        udf,
        first.on_demand,
        {k: np.concatenate([objects(p, p.context, k) for p in parts]) for k in context_names},
        full_names,
    )


def _absent(part: ServedRows, name: str, parts: Sequence[ServedRows]) -> ServedFeature:
    """A feature no request of ``part`` asked for: every row not requested."""
    from feast_parity.parity.columns import canonical_column

    declared = next(p.features[name].declared for p in parts if name in p.features)
    n = len(part)
    return ServedFeature(
        declared,
        canonical_column([None] * n, declared),
        np.zeros(n, dtype=np.int8),
        np.zeros(n, dtype=np.uint64),
        np.full(n, None, dtype=object),
        {},
    )
