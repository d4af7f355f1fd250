"""How big a numeric skew is: over the rows whose served value differs from the offline one.

A mismatch rate says how often serving disagrees; it does not say whether the disagreement is
rounding noise or a transformation bug. :class:`SkewMagnitude` keeps, over mismatching rows of a
numeric feature, the symmetric mean absolute percentage error
``SMAPE = mean(2 |a - b| / (|a| + |b|))`` (0 to 2; a row where both are 0 counts 0), the
distribution of ``|a - b|`` (p50 and p95 from a uniform reservoir, the exact max), and the share
of rows within a relative tolerance, ``|a - b| <= tolerance * max(|a|, |b|)``.

>>> m = SkewMagnitude(relative_tolerance=0.01)
>>> m.update(np.array([1.0, 10.0, 0.0]), np.array([1.005, 20.0, 0.0]))
>>> r = m.result(); round(r["smape"], 4), r["abs_diff"]["max"], r["within_tolerance_share"]
(0.2239, 10.0, 0.6666666666666666)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from feast_parity.parity.reservoir import Reservoir


@dataclass
class SkewMagnitude:
    """Mergeable magnitude of the disagreement on mismatching numeric rows."""

    relative_tolerance: float = 0.01
    seed: int = 0
    sample_size: int = 5_000
    rows: int = 0
    smape_sum: float = 0.0
    within_tolerance: int = 0
    max_abs: float = 0.0
    sample: Reservoir = field(default_factory=Reservoir)

    def __post_init__(self) -> None:
        self.sample = Reservoir(size=self.sample_size, seed=self.seed, salt=7)

    def update(self, online: np.ndarray, offline: np.ndarray) -> None:
        """Add mismatching rows where both sides are finite numbers."""
        a = np.asarray(online, dtype=np.float64)
        b = np.asarray(offline, dtype=np.float64)
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
        if a.size == 0:
            return
        diff = np.abs(a - b)
        scale = np.abs(a) + np.abs(b)
        with np.errstate(divide="ignore", invalid="ignore"):
            smape = np.where(scale > 0, 2.0 * diff / scale, 0.0)
        self.rows += int(a.size)
        self.smape_sum += float(smape.sum())
        bound = self.relative_tolerance * np.maximum(np.abs(a), np.abs(b))
        self.within_tolerance += int((diff <= bound).sum())
        self.max_abs = max(self.max_abs, float(diff.max()))
        self.sample.add(diff)

    def merge(self, other: SkewMagnitude) -> None:
        self.rows += other.rows
        self.smape_sum += other.smape_sum
        self.within_tolerance += other.within_tolerance
        self.max_abs = max(self.max_abs, other.max_abs)
        self.sample.merge(other.sample)

    def result(self) -> dict[str, Any] | None:
        if self.rows == 0:
            return None
        p50, p95 = np.percentile(self.sample.values, [50, 95])
        return {
            "rows": self.rows,
            "smape": self.smape_sum / self.rows,
            "abs_diff": {"p50": float(p50), "p95": float(p95), "max": self.max_abs},
            "within_tolerance_share": self.within_tolerance / self.rows,
            "relative_tolerance": self.relative_tolerance,
        }
