"""Fixed-edge numeric histogram and its quantile bin edges."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from feast_parity.parity.sketches.common import (
    FORMAT_VERSION,
    FloatArray,
    IntArray,
    _check_count,
    _counts_from_list,
    _numeric_values,
    _proportions,
    _readonly,
)

_NUMERIC_KIND = "numeric_histogram"


# --------------------------------------------------------------------------- #
# Bin edges
# --------------------------------------------------------------------------- #
def quantile_edges(values: Any, bins: int = 10) -> FloatArray:
    """Inner bin edges for a :class:`NumericHistogram` from reference quantiles.

    Why this definition: PSI needs bins that each hold about ``1/bins`` of the
    reference, but real feature columns are full of ties (zero-inflated counts,
    capped ratios, constants), which make naive quantile edges repeat.  The
    edges are therefore built from the reference *distribution*, using exact
    integer arithmetic, so that they are

    * always strictly increasing (ties collapse into one bin),
    * identical for ``x``, any permutation of ``x`` and ``np.repeat(x, k)``,
    * actual reference values (no interpolation).

    Definition, with ``n`` finite reference values and ``F(v) = #{x < v} / n``:

    * ``edge_0 = min(x)``;
    * for ``k = 1 .. bins-1``: ``edge_k`` = the smallest reference value ``v``
      with ``F(v) >= k / bins`` (skipped when no such value exists, i.e. the
      remaining mass sits on the maximum);
    * the upper edge is ``nextafter(max(x), +inf)``, the smallest float above
      the maximum, so the maximum itself falls in the last *inner* bin
      ``[edge, upper)`` and the upper out-of-range bin only holds values
      strictly above the reference range;
    * duplicates are dropped.

    Without ties this gives ``bins + 1`` edges and equal-count inner bins.  A
    constant column ``c`` gives ``[c, nextafter(c)]``: one finite bin that holds
    exactly ``c``, with everything else in the out-of-range bins.  ``NaN``,
    nulls and ``+/-inf`` are ignored; ``ValueError`` is raised when no finite
    value remains (or ``bins < 1``).

    >>> quantile_edges(np.arange(10.0), bins=5).tolist()
    [0.0, 2.0, 4.0, 6.0, 8.0, 9.000000000000002]
    >>> quantile_edges([0.0] * 9 + [5.0], bins=10).tolist()  # 90% zeros
    [0.0, 5.0, 5.000000000000001]
    >>> quantile_edges([3.0, 3.0, 3.0]).tolist()  # constant column
    [3.0, 3.0000000000000004]
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    floats, null = _numeric_values(values)
    # ``+ 0.0`` turns -0.0 into 0.0 so the result does not depend on input order.
    finite = floats[~null & np.isfinite(floats)] + 0.0
    if finite.size == 0:
        raise ValueError("cannot compute quantile edges: no finite values")
    uniq, cnt = np.unique(finite, return_counts=True)
    below = np.cumsum(cnt, dtype=np.int64) - cnt  # #{x < uniq[j]}
    n = np.int64(finite.size)
    levels = np.arange(bins, dtype=np.int64)  # k = 0 .. bins-1
    # first j with below[j] / n >= k / bins, i.e. below[j] * bins >= n * k
    idx = np.searchsorted(below * np.int64(bins), n * levels, side="left")
    inner = uniq[idx[idx < uniq.size]]
    with np.errstate(over="ignore"):
        top = np.nextafter(uniq[-1], np.inf)
    if not np.isfinite(top):  # max is the largest float64: keep it as the edge
        top = uniq[-1]
    return np.unique(np.append(inner, top)).astype(np.float64)


# --------------------------------------------------------------------------- #
# Numeric histogram
# --------------------------------------------------------------------------- #
class NumericHistogram:
    """Fixed-edge histogram of a numeric feature, with two out-of-range bins.

    With ``k`` edges there are ``k + 1`` bins:

    * bin ``0``: values ``< edges[0]`` (including ``-inf``),
    * bin ``i`` (``1 <= i <= k-1``): ``edges[i-1] <= v < edges[i]``,
    * bin ``k``: values ``>= edges[-1]`` (including ``+inf``).

    Memory is ``O(len(edges))`` whatever the number of rows.  Use
    :func:`quantile_edges` on the reference to get the edges, then build the
    current-side histogram with :meth:`empty_like` (or the same edges) so the
    two can be compared.

    >>> h = NumericHistogram(np.array([0.0, 1.0, 2.0]))
    >>> h.update(np.array([-5.0, 0.0, 0.5, 1.0, 2.0, np.inf, np.nan])).counts.tolist()
    [1, 2, 1, 2]
    >>> (h.total, h.nan_count, h.null_count, h.n_rows)
    (6, 1, 0, 7)
    """

    __slots__ = ("_counts", "_edges", "_nan_count", "_null_count")

    def __init__(self, edges: Any) -> None:
        e = np.array(edges, dtype=np.float64, copy=True)
        if e.ndim != 1 or e.size == 0:
            raise ValueError("edges must be a non-empty one-dimensional array")
        if not np.all(np.isfinite(e)):
            raise ValueError("edges must be finite")
        if not np.all(e[1:] > e[:-1]):
            raise ValueError("edges must be strictly increasing")
        e = e + 0.0  # normalise -0.0
        e.flags.writeable = False
        self._edges: FloatArray = e
        self._counts: IntArray = np.zeros(e.size + 1, dtype=np.int64)
        self._null_count = 0
        self._nan_count = 0

    # -- accessors ---------------------------------------------------------- #
    @property
    def edges(self) -> FloatArray:
        """The inner bin edges (read-only)."""
        return self._edges

    @property
    def counts(self) -> IntArray:
        """Counts per bin, ``len(edges) + 1`` of them (read-only view)."""
        return _readonly(self._counts)

    @property
    def n_bins(self) -> int:
        """Number of bins including the two out-of-range bins."""
        return int(self._counts.size)

    @property
    def null_count(self) -> int:
        """Number of null values seen (never binned)."""
        return self._null_count

    @property
    def nan_count(self) -> int:
        """Number of non-null ``NaN`` values seen (never binned)."""
        return self._nan_count

    @property
    def total(self) -> int:
        """Number of binned values, i.e. excluding nulls and ``NaN``."""
        return int(self._counts.sum())

    @property
    def n_rows(self) -> int:
        """All values seen: ``total + null_count + nan_count``."""
        return self.total + self._null_count + self._nan_count

    # -- operations --------------------------------------------------------- #
    def update(self, values: Any, mask: Any = None) -> NumericHistogram:
        """Add a batch of values; ``mask`` (``True`` = null) is optional.

        Accepts numpy arrays (any numeric dtype, or object with ``None``),
        masked arrays, sequences and Arrow arrays.  Returns ``self``.
        """
        floats, null = _numeric_values(values, mask)
        nan = np.isnan(floats) & ~null
        valid = floats[~(null | nan)]
        if valid.size:
            idx = np.searchsorted(self._edges, valid, side="right")
            self._counts += np.bincount(idx, minlength=self._counts.size).astype(np.int64)
        self._null_count += int(null.sum())
        self._nan_count += int(nan.sum())
        return self

    def merge(self, other: NumericHistogram) -> NumericHistogram:
        """Return a new histogram with the sum of both; edges must be identical."""
        if not isinstance(other, NumericHistogram):
            raise TypeError(f"cannot merge NumericHistogram with {type(other).__name__}")
        if not np.array_equal(self._edges, other._edges):
            raise ValueError("cannot merge histograms with different edges")
        out = self.empty_like()
        out._counts = self._counts + other._counts
        out._null_count = self._null_count + other._null_count
        out._nan_count = self._nan_count + other._nan_count
        return out

    def empty_like(self) -> NumericHistogram:
        """A new, empty histogram with the same edges."""
        return NumericHistogram(self._edges)

    def proportions(self) -> FloatArray:
        """Counts divided by :attr:`total`; all ``NaN`` when nothing was binned."""
        return _proportions(self._counts)

    # -- serialisation ------------------------------------------------------ #
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (floats round-trip exactly through ``json``)."""
        return {
            "kind": _NUMERIC_KIND,
            "version": FORMAT_VERSION,
            "edges": [float(x) for x in self._edges],
            "counts": [int(c) for c in self._counts],
            "null_count": self._null_count,
            "nan_count": self._nan_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericHistogram:
        """Rebuild a histogram from :meth:`to_dict` output (validated)."""
        if data.get("kind") != _NUMERIC_KIND:
            raise ValueError(f"not a numeric histogram: kind={data.get('kind')!r}")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}")
        out = cls(data["edges"])
        out._counts = _counts_from_list(data["counts"], out._edges.size + 1)
        out._null_count = _check_count("null_count", data["null_count"])
        out._nan_count = _check_count("nan_count", data["nan_count"])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericHistogram):
            return NotImplemented
        return (
            np.array_equal(self._edges, other._edges)
            and np.array_equal(self._counts, other._counts)
            and self._null_count == other._null_count
            and self._nan_count == other._nan_count
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"NumericHistogram(n_edges={self._edges.size}, total={self.total}, "
            f"null_count={self._null_count}, nan_count={self._nan_count})"
        )
