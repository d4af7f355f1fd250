"""Served lag over the window, in fixed time buckets: what the report draws as a time series.

A view's lag percentiles say how old served rows were over the whole window; a stalled
materialization shows as lag that *grows* with request time. :class:`LagSeries` keeps, per
bucket of request time, the rows, the mean and the largest served lag, and the stale rows.
Buckets are fixed by the window (``start``, ``bucket_seconds``), so two series of one window
merge by adding.

>>> series = LagSeries(start_us=0, bucket_us=60_000_000)
>>> series.update(np.array([10, 70, 80]) * 1_000_000, np.array([5.0, 10.0, 20.0]),
...               np.array([False, True, True]))
>>> [(b["rows"], b["mean_seconds"], b["max_seconds"], b["stale_rows"])
...  for b in series.result()["buckets"]]
[(1, 5.0, 5.0, 0), (2, 15.0, 20.0, 2)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SERIES_BUCKETS = 24  # buckets per window drawn in the report


@dataclass
class LagSeries:
    """Mergeable per-bucket served lag of one view (see the module docstring)."""

    start_us: int
    bucket_us: int
    rows: dict[int, int] = field(default_factory=dict)
    lag_sum: dict[int, float] = field(default_factory=dict)
    lag_max: dict[int, float] = field(default_factory=dict)
    stale: dict[int, int] = field(default_factory=dict)

    @classmethod
    def for_window(cls, start_us: int, end_us: int, buckets: int = SERIES_BUCKETS) -> LagSeries:
        """About ``buckets`` buckets over the window, each a whole number of minutes."""
        minute = 60_000_000
        width = max(minute, -(-(end_us - start_us) // buckets) // minute * minute)
        return cls(start_us, width)

    def update(self, request_us: np.ndarray, lag_seconds: np.ndarray, stale: np.ndarray) -> None:
        """Rows with a served lag: request times (µs), lags (s), and which rows were stale."""
        if not len(request_us):
            return
        index = (np.asarray(request_us, dtype=np.int64) - self.start_us) // self.bucket_us
        buckets, inverse = np.unique(index, return_inverse=True)
        lags = np.asarray(lag_seconds, dtype=np.float64)
        sums = np.bincount(inverse, weights=lags)
        counts = np.bincount(inverse)
        stale_counts = np.bincount(inverse, weights=np.asarray(stale, dtype=np.float64))
        maxima = np.full(len(buckets), -np.inf)
        np.maximum.at(maxima, inverse, lags)
        for j, bucket in enumerate(buckets.tolist()):
            self.rows[bucket] = self.rows.get(bucket, 0) + int(counts[j])
            self.lag_sum[bucket] = self.lag_sum.get(bucket, 0.0) + float(sums[j])
            self.lag_max[bucket] = max(self.lag_max.get(bucket, -np.inf), float(maxima[j]))
            self.stale[bucket] = self.stale.get(bucket, 0) + int(stale_counts[j])

    def merge(self, other: LagSeries) -> None:
        for bucket, rows in other.rows.items():
            self.rows[bucket] = self.rows.get(bucket, 0) + rows
            self.lag_sum[bucket] = self.lag_sum.get(bucket, 0.0) + other.lag_sum[bucket]
            self.lag_max[bucket] = max(self.lag_max.get(bucket, -np.inf), other.lag_max[bucket])
            self.stale[bucket] = self.stale.get(bucket, 0) + other.stale[bucket]

    def result(self) -> dict[str, Any]:
        """``served_lag_series`` of a view row: ``bucket_seconds`` and per non-empty bucket its
        ``start`` (ISO), ``rows``, ``mean_seconds``, ``max_seconds`` and ``stale_rows``."""
        buckets = []
        for bucket in sorted(self.rows):
            rows = self.rows[bucket]
            start = self.start_us + bucket * self.bucket_us
            buckets.append(
                {
                    "start": str(np.datetime64(int(start), "us")) + "Z",
                    "rows": rows,
                    "mean_seconds": round(self.lag_sum[bucket] / rows, 3),
                    "max_seconds": round(self.lag_max[bucket], 3),
                    "stale_rows": self.stale[bucket],
                }
            )
        return {"bucket_seconds": self.bucket_us / 1e6, "buckets": buckets}
