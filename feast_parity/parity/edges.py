"""The first values of a feature, in log order, until they fix its PSI bins.

A feature's bins come from its first :data:`EDGE_ROWS` offline values in log order (quantile
edges for numbers, the frequent categories otherwise), so a report never depends on how the log
was chunked or partitioned. :class:`EdgeBuffer` keeps the values with their log order (sample
ids) until then; buffers of several partitions merge, and the order, not the arrival, decides
which values are first.

>>> buffer = EdgeBuffer()
>>> buffer.add(np.array([5.0]), np.array([5.0]), np.array([7]), np.array([7]))
>>> buffer.add(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([3, 4]), np.array([3, 4]))
>>> buffer.side(1).tolist(), buffer.offline_rows
([1.0, 2.0, 5.0], 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from feast_parity.parity.sketches import CategoricalHistogram, NumericHistogram, quantile_edges

EDGE_ROWS = 50_000  # offline values that fix a feature's PSI bins (quantiles, categories)
Histogram = NumericHistogram | CategoricalHistogram


@dataclass
class EdgeBuffer:
    """Buffered (online, offline, online order, offline order) values of a feature."""

    parts: list[tuple[Any, Any, Any, Any]] = field(default_factory=list)
    offline_rows: int = 0

    def add(self, online: Any, offline: Any, online_order: Any, offline_order: Any) -> None:
        self.parts.append((online, offline, online_order, offline_order))
        self.offline_rows += len(offline)

    @property
    def full(self) -> bool:
        """Enough offline values to fix the bins (a partition keeps no more than this)."""
        return self.offline_rows >= EDGE_ROWS

    def merge(self, other: EdgeBuffer) -> None:
        self.parts.extend(other.parts)
        self.offline_rows += other.offline_rows

    def side(self, index: int) -> np.ndarray:
        """All buffered values of one side (0 online, 1 offline), in log order (stable: a
        buffer filled in order stays as it is)."""
        if not self.parts:
            return np.zeros(0)
        values = np.concatenate([np.asarray(part[index]) for part in self.parts])
        order = np.concatenate([np.asarray(part[index + 2], np.int64) for part in self.parts])
        return values[np.argsort(order, kind="stable")]

    def histograms(self, numeric: bool, bins: int) -> tuple[Histogram, Histogram] | None:
        """(online, offline) histograms binned by the first EDGE_ROWS offline values (numbers
        with no finite offline value fall back to the online ones) and holding every
        buffered value; None when no value can fix bins."""
        online, offline = self.side(0), self.side(1)
        if numeric:
            first = offline[:EDGE_ROWS].astype(np.float64)
            finite = first[np.isfinite(first)]
            if finite.size == 0:
                finite = online[np.isfinite(online.astype(np.float64))].astype(np.float64)
            if finite.size == 0:
                return None
            edges = quantile_edges(finite, bins=bins)
            online_hist: Histogram = NumericHistogram(edges)
            offline_hist: Histogram = NumericHistogram(edges)
        else:
            learner = CategoricalHistogram(None)
            learner.update(pa.array(offline[:EDGE_ROWS], pa.string()))
            online_hist = CategoricalHistogram(learner.categories or [])
            offline_hist = online_hist.empty_like()
        online_hist.update(online)
        offline_hist.update(offline)
        return online_hist, offline_hist
