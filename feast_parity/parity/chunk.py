"""One chunk of one feature view: row outcomes into the view's and the features' states.

The one piece of the check that both engines run: the local engine on each chunk it reads
(:mod:`feast_parity.plugin.check`), the Spark engine inside ``mapInArrow`` on each partition
(:mod:`feast_parity.plugin.spark_partition`). :class:`ComparisonSettings` makes a feature's
empty state the same way in either place, so partition states merge into what one process
would have built.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feast_parity.parity.columns import canonical_column
from feast_parity.parity.feature import FeatureComparison
from feast_parity.parity.fills import configured_hashes
from feast_parity.parity.hashing import value_hash
from feast_parity.parity.served import ServedRows
from feast_parity.parity.view import OfflineRows, RowOutcomes, ViewComparison, offline_row_hashes


@dataclass
class ComparisonSettings:
    """What a feature's comparison state starts from (thresholds, seed, fill values, the
    training reference, and on Spark the bins the edge pass fixed).

    >>> settings = ComparisonSettings(seed=7, fill_values=[-1])
    >>> state = settings.new("v:f", "Int64")
    >>> state.seed, len(state.fills.configured)
    (7, 1)
    """

    seed: int = 0
    relative_tolerance: float = 0.01
    drift_confidence: float = 0.95
    max_cohorts: int = 50
    redacted: frozenset[str] = frozenset()
    fill_values: list[Any] = field(default_factory=list)
    training: Mapping[str, tuple[Any, str]] = field(default_factory=dict)  # ref -> (hist, id)
    defer_edges: bool = False  # a partition: buffer the first values, the driver fixes bins
    edges: Mapping[str, FeatureComparison] = field(default_factory=dict)  # ref -> edge pass

    def new(self, ref: str, declared: str, on_demand: bool = False) -> FeatureComparison:
        comparison = FeatureComparison(
            feature=ref,
            declared=declared,
            on_demand=on_demand,
            redacted=ref in self.redacted,
            seed=self.seed,
            relative_tolerance=self.relative_tolerance,
            drift_confidence=self.drift_confidence,
            max_cohorts=self.max_cohorts,
            defer_edges=self.defer_edges,
        )
        if not comparison.redacted:  # configured values are in clear
            comparison.fills.configured = configured_hashes(
                value_hash(v, declared) for v in self.fill_values
            )
        reference = self.training.get(ref)
        if reference is not None and not comparison.redacted:
            comparison.set_training_reference(*reference)
        if ref in self.edges:
            comparison.adopt_edges(self.edges[ref])
        return comparison


def compare_chunk(
    view: ViewComparison,
    comparison: Callable[[str], FeatureComparison],
    rows: ServedRows,
    offline: OfflineRows,
    outcomes: RowOutcomes,
    entity_labels: Sequence[str],
    *,
    cohort_labels: Mapping[str, np.ndarray] | None = None,
    cohort_entities: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Add a chunk to the view's state and to each served feature's (``comparison(name)``
    gives that state); returns, per feature, which rows' values diverged."""
    view.update(rows, outcomes, offline_row_hashes(rows, offline), entity_labels)
    diverged: dict[str, np.ndarray] = {}
    n = len(rows)
    for name in sorted(rows.features):
        state = comparison(name)
        absent = canonical_column([None] * n, state.declared)
        diverged[name] = state.update(
            rows.features[name],
            offline.at_request.get(name) or absent,
            offline.at_served.get(name) or absent,
            outcomes,
            offline_type=offline.offline_types.get(name),
            entity_labels=entity_labels,
            request_times=rows.request_time,
            cohort_labels=cohort_labels,
            cohort_entities=cohort_entities,
            order=rows.sample_ids,
        )
    return diverged


class EntityLabels(Sequence[str]):
    """Per row, the view's entity key as sorted-keys JSON, made only for the rows that are
    shown (examples, cohorts): most rows never need one."""

    def __init__(self, rows: ServedRows) -> None:
        self.names = sorted(rows.keys)
        self.columns = [rows.keys[k] for k in self.names]
        self.n = len(rows)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        values = {name: column[i] for name, column in zip(self.names, self.columns)}
        return json.dumps(values, sort_keys=True, default=str)
