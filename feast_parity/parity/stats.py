"""Distribution-shift statistics between reference (offline) and current (served) values.

Why this module: parity checks need a small set of well-pinned statistics whose
numbers are reproducible across jobs and versions, so every definition below is
spelled out (including how empty bins and missing values are handled) instead
of being left to a library default.

* PSI (population stability index) over fixed bins, from the bins' counts, and the
  PSI a sample with no drift stays under (its no-drift critical value).
* The two-sample Kolmogorov-Smirnov test: scipy's, on values with nulls dropped.
* A severity classification for PSI.

Missing values (nulls and ``NaN``) are always dropped before a statistic is
computed; track null-rate drift separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from feast_parity.parity.sketches import valid_numeric

__all__ = [
    "Severity",
    "pct",
    "percentiles",
    "ks_2samp",
    "psi",
    "psi_chi_square_bound",
    "psi_critical_value",
    "severity_for_psi",
]

Severity = Literal["ok", "warn", "fail", "insufficient_data"]


def _counts_vector(name: str, counts: Sequence[float] | npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty one-dimensional array")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    return arr


def _floored_proportions(counts: npt.NDArray[np.float64], floor: float) -> npt.NDArray[np.float64]:
    prop = counts / counts.sum()
    prop = np.where(prop == 0.0, floor, prop).astype(np.float64)
    out: npt.NDArray[np.float64] = prop / prop.sum()
    return out


def psi(
    reference_counts: Sequence[float] | npt.ArrayLike,
    current_counts: Sequence[float] | npt.ArrayLike,
    floor: float = 1e-4,
) -> float:
    """Population stability index between two binned distributions.

    Why pinned: PSI is undefined for empty bins (``ln 0``) and every tool
    patches that differently, which changes the number.  Definition used here:

    1. ``p = reference_counts / sum(reference_counts)`` and
       ``q = current_counts / sum(current_counts)``;
    2. every proportion that is exactly ``0`` becomes ``floor`` (on *both*
       sides), then each side is renormalised to sum to 1;
    3. ``PSI = sum((q - p) * ln(q / p))``.

    Returns ``NaN`` if either side has a zero total (nothing to compare).
    The result is always ``>= 0`` and exactly ``0.0`` for identical proportions.

    >>> psi([10, 0, 30, 60], [10, 0, 30, 60])
    0.0
    >>> round(psi([50, 50], [100, 0]), 6)  # q = [1, 1e-4] renormalised
    4.604249
    >>> psi([1, 2], [0, 0])
    nan
    """
    p = _counts_vector("reference_counts", reference_counts)
    q = _counts_vector("current_counts", current_counts)
    if p.shape != q.shape:
        raise ValueError(f"bin count mismatch: {p.size} reference vs {q.size} current")
    if not 0.0 < floor < 1.0:
        raise ValueError(f"floor must be in (0, 1), got {floor!r}")
    if p.sum() == 0.0 or q.sum() == 0.0:
        return math.nan
    p = _floored_proportions(p, floor)
    q = _floored_proportions(q, floor)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_2samp(a: Any, b: Any) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test, two-sided: ``scipy.stats.ks_2samp(method="auto")``
    on the values with nulls and ``NaN`` dropped (``+/-inf`` kept).

    Returns ``(nan, nan)`` when either sample has no non-missing value. Never a finding on its
    own: at large n a harmless shift has a tiny p-value (docs/checks.md).

    >>> ks_2samp([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    (0.0, 1.0)
    >>> ks_2samp([1.0, 2.0], [3.0, 4.0, np.nan])[0]
    1.0
    """
    x = valid_numeric(a)
    y = valid_numeric(b)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan
    from scipy import stats  # lazy: importing scipy.stats costs ~0.3 s

    result = stats.ks_2samp(x, y, alternative="two-sided", method="auto")
    return float(result.statistic), float(result.pvalue)


def psi_chi_square_bound(n: float, m: float, bins: int, quantile: float = 0.95) -> float | None:
    """The asymptotic no-drift quantile of PSI: ``(1/n + 1/m) * chi2.ppf(quantile, B - 1)``.

    PSI is the symmetric Kullback-Leibler divergence, and ``PSI / (1/n + 1/m)`` tends to
    chi-square with B - 1 degrees of freedom when nothing changed. At n = m = 100 and 10 bins
    the 95th percentile is 0.34: PSI > 0.1 is common by chance alone. Bins with few expected
    values (the out-of-range bins, a rare category) break the approximation, which is why the
    check uses :func:`psi_critical_value`; this bound is kept for documentation and tests.

    >>> round(psi_chi_square_bound(100, 100, 10), 3)
    0.338
    >>> round(psi_chi_square_bound(10**5, 10**5, 10), 5)
    0.00034
    """
    if bins < 2 or n <= 0 or m <= 0:
        return None
    from scipy.stats import chi2

    return float((1.0 / n + 1.0 / m) * chi2.ppf(quantile, bins - 1))


def psi_critical_value(
    reference_counts: Sequence[float] | npt.ArrayLike,
    current_counts: Sequence[float] | npt.ArrayLike,
    quantile: float = 0.95,
    *,
    draws: int = 1000,
    seed: int = 0,
    floor: float = 1e-4,
) -> float | None:
    """The PSI that ``quantile`` of samples with no drift stay under, given these bins.

    With nothing changed, the current rows fall in the bins with the reference's own bin
    probabilities, which the reference's counts only estimate. So, per draw, the bin
    probabilities are drawn from their posterior ``Dirichlet(reference counts)`` (an empty bin,
    such as an out-of-range bin of quantile edges, counts as one: one gap between order
    statistics), the current side is drawn ``Multinomial(m, probabilities)``, and the pinned PSI
    (same floor) is computed against the reference as it is. The quantile of those PSIs is the
    critical value: about ``(1/n + 1/m) chi2(B - 1)`` on well-filled bins
    (:func:`psi_chi_square_bound`), larger where single values fall in nearly empty bins and the
    1e-4 floor makes each one count. Deterministic for a seed. None when a side is empty or
    fewer than 2 bins could hold values.

    >>> ref = cur = [100] * 10
    >>> bound = psi_chi_square_bound(1000, 1000, 10)
    >>> 0.7 * bound < psi_critical_value(ref, cur) < 1.3 * bound
    True
    """
    r = _counts_vector("reference_counts", reference_counts)
    c = _counts_vector("current_counts", current_counts)
    n, m = float(r.sum()), float(c.sum())
    if n <= 0 or m <= 0 or np.count_nonzero(r + c) < 2 or len(r) < 2:
        return None
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.where(r == 0, 1.0, r), size=draws)
    current = rng.multinomial(int(round(m)), probabilities).astype(np.float64)
    reference = _floored_proportions(r, floor)
    proportions = current / current.sum(axis=1, keepdims=True)
    proportions = np.where(proportions == 0.0, floor, proportions)
    proportions /= proportions.sum(axis=1, keepdims=True)
    values = np.sum((proportions - reference) * np.log(proportions / reference), axis=1)
    return float(np.quantile(values, quantile))


def severity_for_psi(psi: float | None, warn: float = 0.1, fail: float = 0.25) -> Severity:
    """Map a PSI value to ``"ok"``, ``"warn"``, ``"fail"`` or ``"insufficient_data"``.

    Why: the usual rule of thumb (``< 0.1`` stable, ``0.1 - 0.25`` moderate
    shift, ``>= 0.25`` major shift), with inclusive lower bounds so a PSI of
    exactly ``warn`` warns and exactly ``fail`` fails.  ``NaN`` or ``None``
    (PSI could not be computed) gives ``"insufficient_data"``.

    >>> [severity_for_psi(v) for v in (0.0999, 0.1, 0.2499, 0.25, float("nan"))]
    ['ok', 'warn', 'warn', 'fail', 'insufficient_data']
    """
    if not warn <= fail:
        raise ValueError(f"warn ({warn}) must be <= fail ({fail})")
    if psi is None or math.isnan(psi):
        return "insufficient_data"
    if psi >= fail:
        return "fail"
    if psi >= warn:
        return "warn"
    return "ok"


def pct(rate: Any) -> str:
    """A rate as a percentage with one decimal, '-' when unknown (the one format of rates in
    messages, text and HTML).

    >>> pct(0.0943), pct(None), pct(float("nan"))
    ('9.4%', '-', '-')
    """
    if rate is None or isinstance(rate, bool):
        return "-"
    try:
        value = float(rate)
    except (TypeError, ValueError):
        return "-"
    return f"{value:.1%}" if math.isfinite(value) else "-"


def percentiles(values: Sequence[float] | npt.ArrayLike) -> dict[str, float | None]:
    """p50, p95, p99 (numpy's linear interpolation), rounded to milliseconds for lags; nulls
    when there are no values.

    >>> percentiles([1.0, 2.0, 3.0, 4.0])
    {'p50': 2.5, 'p95': 3.85, 'p99': 3.97}
    >>> percentiles([])
    {'p50': None, 'p95': None, 'p99': None}
    """
    array = np.asarray(values, dtype=np.float64)
    if not array.size:
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}
