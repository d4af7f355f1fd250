"""Distribution-shift statistics between reference (offline) and current (served) values.

Why this module: parity checks need a small set of well-pinned statistics whose
numbers are reproducible across jobs and versions, so every definition below is
spelled out (including how empty bins and missing values are handled) instead
of being left to a library default.

* PSI (population stability index) over fixed bins, from raw counts, from raw
  numeric values (reference-quantile bins) or from categorical values.
* The two-sample Kolmogorov-Smirnov test, numerically identical to
  ``scipy.stats.ks_2samp`` (default ``method='auto'``).
* An approximate KS distance from two :class:`NumericHistogram` sketches, for
  the streaming check job.
* A severity classification for PSI.

Missing values (nulls and ``NaN``) are always dropped before a statistic is
computed; track null-rate drift separately.  Only numpy and pyarrow are needed,
except for the KS p-value, which imports scipy lazily.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from feast_parity.parity.sketches import (
    CategoricalHistogram,
    NumericHistogram,
    _valid_numeric,
    quantile_edges,
)

__all__ = [
    "Severity",
    "ks_2samp",
    "ks_from_histograms",
    "psi",
    "psi_categorical",
    "psi_numeric",
    "severity_for_psi",
]

Severity = Literal["ok", "warn", "fail", "insufficient_data"]

#: ``scipy.stats.ks_2samp(method='auto')`` uses the exact distribution when
#: ``max(n1, n2)`` is at most this (``MAX_AUTO_N`` in scipy's source).
_SCIPY_MAX_AUTO_N = 10_000


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


def psi_numeric(reference_values: Any, current_values: Any, bins: int = 10) -> float:
    """PSI of a numeric feature over bins taken from the reference quantiles.

    Why: equal-mass reference bins make PSI sensitive where the reference has
    data.  The bins are :func:`~feast_parity.parity.sketches.quantile_edges`
    of the reference (``bins`` inner bins, fewer when the reference has ties)
    plus the two out-of-range bins of
    :class:`~feast_parity.parity.sketches.NumericHistogram`, so values outside
    the reference range count as drift.  Nulls and ``NaN`` are dropped;
    ``+/-inf`` land in the out-of-range bins.

    Returns ``NaN`` when either side has no non-missing value, or when the
    reference has no finite value (no bins can be built).

    >>> ref = np.arange(100.0)
    >>> psi_numeric(ref, ref[::-1])
    0.0
    >>> psi_numeric(ref, [np.nan, None])
    nan
    """
    ref = _valid_numeric(reference_values)
    cur = _valid_numeric(current_values)
    if ref.size == 0 or cur.size == 0 or not np.any(np.isfinite(ref)):
        return math.nan
    edges = quantile_edges(ref, bins=bins)
    ref_hist = NumericHistogram(edges).update(ref)
    cur_hist = ref_hist.empty_like().update(cur)
    return psi(ref_hist.counts, cur_hist.counts)


def psi_categorical(reference_values: Any, current_values: Any, max_categories: int = 50) -> float:
    """PSI of a categorical feature: reference categories as bins, plus "other".

    Why: unseen categories in served data are a classic training/serving skew;
    they all fall into the "other" bin, which is (floored) empty in the
    reference, so they raise PSI.  The bins are the ``max_categories`` most
    frequent reference labels (see
    :class:`~feast_parity.parity.sketches.CategoricalHistogram`); rarer
    reference labels share "other".  Nulls and ``NaN`` are dropped.

    Returns ``NaN`` when either side has no non-missing value.

    >>> psi_categorical(["a", "b", "a"], ["b", "a", "a"])
    0.0
    >>> psi_categorical(["a", "b"], [None])
    nan
    """
    ref_hist = CategoricalHistogram(None, max_categories=max_categories).update(reference_values)
    if ref_hist.total == 0:
        return math.nan
    cur_hist = ref_hist.empty_like().update(current_values)
    if cur_hist.total == 0:
        return math.nan
    return psi(ref_hist.counts, cur_hist.counts)


def ks_2samp(a: Any, b: Any) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test: ``(D, p-value)``, two-sided.

    Why not just scipy: the statistic is computed here in numpy (sorted
    samples + ``searchsorted``) so it also works on Arrow / masked input, with
    nulls and ``NaN`` dropped first (``+/-inf`` are kept).  The p-value follows
    ``scipy.stats.ks_2samp`` with its default ``method='auto'``: when
    ``max(n1, n2) <= 10000`` the exact p-value is taken from scipy itself
    (which falls back to the asymptotic one if the exact computation fails);
    otherwise it is ``scipy.stats.kstwo.sf(D, round(n1*n2/(n1+n2)))`` exactly
    as in scipy.

    Returns ``(nan, nan)`` when either sample has no non-missing value.

    >>> ks_2samp([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    (0.0, 1.0)
    >>> ks_2samp([1.0, 2.0], [3.0, 4.0, np.nan])[0]
    1.0
    """
    x = np.sort(_valid_numeric(a))
    y = np.sort(_valid_numeric(b))
    n1, n2 = int(x.size), int(y.size)
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    data_all = np.concatenate([x, y])
    cdf1 = np.searchsorted(x, data_all, side="right") / n1
    cdf2 = np.searchsorted(y, data_all, side="right") / n2
    d = float(np.max(np.abs(cdf1 - cdf2)))

    from scipy import stats  # lazy: only the KS p-value needs scipy

    if max(n1, n2) <= _SCIPY_MAX_AUTO_N:
        pvalue = float(stats.ks_2samp(x, y, alternative="two-sided", method="auto").pvalue)
    else:
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en = m * n / (m + n)
        pvalue = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))
    return d, pvalue


def ks_from_histograms(ref_hist: NumericHistogram, cur_hist: NumericHistogram) -> float:
    """Approximate KS distance from two histograms with the same edges.

    Why: the streaming check job only keeps sketches, not samples.  The value
    is ``max |P_ref - P_cur|`` over the cumulative bin proportions (nulls and
    ``NaN`` excluded).  Cumulative proportions are the empirical CDFs just
    below each edge, i.e. the exact CDF difference evaluated at a subset of
    points, so this is a **lower bound** of the exact two-sample KS ``D`` of
    the underlying values; finer edges make it tighter.  No p-value is given
    because the binned statistic does not follow the KS distribution.

    Returns ``NaN`` when either histogram is empty.

    >>> edges = np.array([0.0, 1.0, 2.0])
    >>> ref = NumericHistogram(edges).update(np.array([0.1, 0.2]))
    >>> cur = NumericHistogram(edges).update(np.array([0.3, 1.5]))
    >>> ks_from_histograms(ref, cur)  # exact D is 1.0: both 0.1 and 0.2 < 0.3
    0.5
    """
    if not isinstance(ref_hist, NumericHistogram) or not isinstance(cur_hist, NumericHistogram):
        raise TypeError("ks_from_histograms needs two NumericHistogram instances")
    if not np.array_equal(ref_hist.edges, cur_hist.edges):
        raise ValueError("histograms must have identical edges")
    if ref_hist.total == 0 or cur_hist.total == 0:
        return math.nan
    cdf_ref = np.cumsum(ref_hist.counts) / ref_hist.total
    cdf_cur = np.cumsum(cur_hist.counts) / cur_hist.total
    return float(np.max(np.abs(cdf_ref - cdf_cur)))


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
