"""Cohort labels of sampled rows: which cohort of each configured dimension a row is in.

A key bucket comes from the row's logged join keys. A feature dimension is that feature's
*offline* value for the row's entity at request time (the value training saw; a served value
could itself be the fault), asked through Feast once per chunk and dimension view. Rows whose
keys lack the dimension view's join keys, or with no offline value, are ``(null)``. A redacted
feature cannot be a dimension: its labels would print its values (one-line config error).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from feast_parity.parity.canonical import canonical_value
from feast_parity.parity.cohorts import NULL, Dimension, key_label, parse_dimensions, value_label
from feast_parity.parity.served import ServedRows
from feast_parity.plugin.errors import CheckError
from feast_parity.plugin.offline import OfflineReader, entity_frame
from feast_parity.plugin.registry import ViewCatalog

WHERE = "parity.cohorts.dimensions"


def validate_dimensions(
    specs: list[str], catalog: ViewCatalog, store: Any, redacted: set[str]
) -> list[Dimension]:
    """The configured dimensions, checked against the registry (CheckError names the key):
    a feature dimension must be a String, Bool or integer feature of a batch or stream view
    and not redacted, a key dimension a join key of an entity."""
    dims = parse_dimensions(specs)
    join_keys: set[str] | None = None
    for dim in dims:
        if dim.is_key:
            if join_keys is None:
                join_keys = {e.join_key for e in store.registry.list_entities(store.project)}
            if dim.key not in join_keys:
                raise CheckError(
                    f"{WHERE}: {dim.spec!r}: {dim.key!r} is not a join key of any entity "
                    f"(join keys: {', '.join(sorted(join_keys)) or 'none'})"
                )
            continue
        info = catalog.get(str(dim.feature_view))
        if info is None or info.on_demand:
            what = "an on-demand feature view" if info else "not a feature view"
            raise CheckError(
                f"{WHERE}: {dim.spec!r}: {dim.feature_view!r} is {what}; a dimension must be "
                "a feature of a batch feature view"
            )
        declared = info.declared
        if dim.feature not in declared:
            raise CheckError(
                f"{WHERE}: {dim.spec!r}: feature view {dim.feature_view!r} has no feature "
                f"{dim.feature!r}"
            )
        if f"{info.name}:{dim.feature}" in redacted:
            raise CheckError(
                f"{WHERE}: {dim.spec!r} is a redacted feature (parity.redact); its values "
                "cannot label cohorts"
            )
        if declared[str(dim.feature)] not in ("String", "Bool", "Int32", "Int64"):
            raise CheckError(
                f"{WHERE}: {dim.spec!r} is {declared[str(dim.feature)]}; a dimension feature "
                "must be String, Bool, Int32 or Int64 (bucket numbers upstream, or slice by a "
                "join key bucket)"
            )
    return dims


class CohortLabeler:
    """Per dimension, the cohort label of every row of a chunk."""

    def __init__(
        self, dims: list[Dimension], catalog: ViewCatalog, reader: OfflineReader, notes: list[str]
    ):
        self.dims = dims
        self.catalog = catalog
        self.reader = reader
        self.notes = notes

    def labels(self, rows: ServedRows) -> dict[str, np.ndarray]:
        n = len(rows)
        keys = [rows.all_keys(i) for i in range(n)]
        out: dict[str, np.ndarray] = {}
        by_view: dict[str, list[Dimension]] = {}
        for dim in self.dims:
            if dim.is_key:
                out[dim.spec] = np.asarray(
                    [key_label(row.get(str(dim.key)), dim) for row in keys], dtype=object
                )
            else:
                by_view.setdefault(str(dim.feature_view), []).append(dim)
        for view_name, dims in by_view.items():
            values = self._dimension_values(view_name, [str(d.feature) for d in dims], keys, rows)
            for dim in dims:
                column = values.get(str(dim.feature))
                out[dim.spec] = np.asarray(
                    [value_label(v) for v in column] if column is not None else [NULL] * n,
                    dtype=object,
                )
        return out

    def _dimension_values(
        self, view_name: str, features: list[str], keys: list[dict[str, Any]], rows: ServedRows
    ) -> dict[str, list[Any]]:
        info = self.catalog.get(view_name)
        n = len(keys)
        if info is None or info.on_demand or n == 0:
            return {}
        join_keys = list(info.join_keys)
        usable = np.asarray([all(k in row for k in join_keys) for row in keys], dtype=bool)
        if not usable.any():
            return {}
        index = np.flatnonzero(usable)
        frame = entity_frame(
            {k: [keys[i][k] for i in index] for k in join_keys},
            rows.request_time[index],
            time_column="event_timestamp",
        )
        refs = [f"{view_name}:{name}" for name in features]
        try:
            table = self.reader.store.get_historical_features(
                entity_df=frame.frame, features=refs
            ).to_arrow()
        except Exception as exc:
            self.notes.append(
                f"offline retrieval of cohort dimensions of {view_name} failed: {exc}"
            )
            return {}
        answers = frame.answers(table)
        out = {}
        for name in features:
            if name not in answers.column_names:
                continue
            declared = info.declared[name]
            values: list[Any] = [None] * n
            for i, value in zip(index.tolist(), answers.column(name).to_pylist()):
                values[i] = canonical_value(value, declared)
            out[name] = values
        return out
