"""Mergeable, fixed-size per-feature sketches for parity and drift statistics.

Why sketches: the parity job sees feature values in batches (online reads,
offline retrievals, streaming windows).  Keeping every value would make memory
grow with the number of rows; a histogram over *fixed* bins is tiny, can be
updated batch by batch, merged across workers, and stored as JSON next to a
training reference profile.  PSI and an approximate KS statistic are then
computed from the bin counts alone (see :mod:`feast_parity.parity.stats`).

Conventions shared by both sketches:

* ``counts`` holds one ``int64`` count per bin; missing values never land in
  a bin.
* ``null_count`` counts *nulls*: ``None`` in object input, Arrow nulls, and
  entries flagged by the optional ``mask`` argument (``True`` = null).
* ``nan_count`` counts float ``NaN`` values that were not already null.
* ``total`` is the number of binned (non-missing) values and
  ``n_rows = total + null_count + nan_count``.
* ``merge`` returns a new sketch and leaves both inputs untouched.

This module only depends on numpy and pyarrow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CategoricalHistogram",
    "NumericHistogram",
    "quantile_edges",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_NUMERIC_KIND = "numeric_histogram"
_CATEGORICAL_KIND = "categorical_histogram"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- #
# Input coercion
# --------------------------------------------------------------------------- #
def _mask_array(mask: Any, length: int) -> BoolArray | None:
    if mask is None:
        return None
    if isinstance(mask, (pa.Array, pa.ChunkedArray)):
        mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    out = np.asarray(mask, dtype=np.bool_)
    if out.shape != (length,):
        raise ValueError(f"mask has shape {out.shape}, expected ({length},)")
    return out


def _numeric_values(values: Any, mask: Any = None) -> tuple[FloatArray, BoolArray]:
    """Return ``(float64 values, null mask)`` for numeric input of any supported kind.

    Nulls (``None``, Arrow nulls, ``mask``) come back as ``NaN`` in the value
    array *and* ``True`` in the null mask, so callers can tell them from real
    ``NaN`` values.
    """
    null: BoolArray
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        null = np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=np.bool_)
        floats = np.asarray(
            pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
        )
    else:
        if isinstance(values, np.ma.MaskedArray):
            null = np.ma.getmaskarray(values).copy()
            arr = np.asarray(values.data)
        else:
            arr = np.asarray(values)
            null = np.zeros(arr.shape, dtype=np.bool_)
        if arr.dtype == object:
            null = null | np.equal(arr, np.array(None, dtype=object))
            arr = np.where(null, np.nan, arr)
        elif arr.dtype.kind not in "biuf":
            raise TypeError(f"numeric values required, got dtype {arr.dtype}")
        floats = np.asarray(arr, dtype=np.float64)
    if floats.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {floats.shape}")
    extra = _mask_array(mask, floats.shape[0])
    if extra is not None:
        null = null | extra
    return floats, null


def _valid_numeric(values: Any, mask: Any = None) -> FloatArray:
    """Non-null, non-NaN values as float64 (``+/-inf`` are kept)."""
    floats, null = _numeric_values(values, mask)
    return floats[~null & ~np.isnan(floats)]


def _as_label(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _categorical_value_counts(values: Any, mask: Any = None) -> tuple[dict[str, int], int, int]:
    """Count distinct labels in ``values``; return ``(label -> count, nulls, NaNs)``.

    The per-row work is done by Arrow (``value_counts``); Python only loops over
    the distinct values.  Non-string values are labelled with ``str(value)``
    (``True`` -> ``"True"``, ``1.0`` -> ``"1.0"``).
    """
    arr: Any
    nan_py: BoolArray | None = None
    if isinstance(values, pa.ChunkedArray):
        arr = values.combine_chunks()
    elif isinstance(values, pa.Array):
        arr = values
    else:
        if isinstance(values, np.ma.MaskedArray):
            ma_null = np.ma.getmaskarray(values)
            mask = ma_null if mask is None else (ma_null | np.asarray(mask, dtype=np.bool_))
            values = np.asarray(values.data)
        # Python sequences go through an object array: numpy would otherwise
        # coerce e.g. ["a", nan] to the strings "a" and "nan".
        obj = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
        if obj.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {obj.shape}")
        if obj.dtype == object:
            # Python objects: find float NaNs here (Arrow would reject mixed
            # str/float input), and hand Arrow only None for missing entries.
            nan_py = np.array(
                [isinstance(v, (float, np.floating)) and math.isnan(v) for v in obj],
                dtype=np.bool_,
            )
            obj = obj.copy()
            obj[nan_py] = None
        try:
            arr = pa.array(obj)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed Python types (e.g. str and int): label row by row.
            arr = pa.array([None if v is None else _as_label(v) for v in obj], type=pa.string())
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    n = len(arr)
    null = np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=np.bool_)
    if nan_py is not None:
        nan = nan_py
        null = null & ~nan_py
    elif pa.types.is_floating(arr.type):
        nan = np.asarray(
            pc.fill_null(pc.is_nan(arr), False).to_numpy(zero_copy_only=False), dtype=np.bool_
        )
    else:
        nan = np.zeros(n, dtype=np.bool_)
    extra = _mask_array(mask, n)
    if extra is not None:
        null = null | extra
    nan = nan & ~null
    valid = ~(null | nan)
    counts: dict[str, int] = {}
    if valid.any():
        vc = pc.value_counts(arr.filter(pa.array(valid)))
        for value, count in zip(
            vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
        ):
            label = _as_label(value)
            counts[label] = counts.get(label, 0) + int(count)
    return counts, int(null.sum()), int(nan.sum())


def _readonly(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    view = a.view()
    view.flags.writeable = False
    return view


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _counts_from_list(raw: Any, expected: int) -> IntArray:
    counts = [_check_count("count", c) for c in raw]
    if len(counts) != expected:
        raise ValueError(f"expected {expected} counts, got {len(counts)}")
    return np.asarray(counts, dtype=np.int64).reshape(expected)


def _proportions(counts: IntArray) -> FloatArray:
    total = int(counts.sum())
    if total == 0:
        return np.full(counts.shape, np.nan, dtype=np.float64)
    return counts / float(total)


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
            "version": _FORMAT_VERSION,
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
        if data.get("version") != _FORMAT_VERSION:
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


# --------------------------------------------------------------------------- #
# Categorical histogram
# --------------------------------------------------------------------------- #
class CategoricalHistogram:
    """Histogram of a categorical feature: one bin per category plus "other".

    ``counts[i]`` is the count of ``categories[i]``; the last entry,
    ``counts[-1]``, is the "other" bin for every value outside ``categories``.

    When ``categories`` is ``None`` the histogram *learns* them from the first
    :meth:`update` that contains a non-missing value (meant to be the whole
    reference sample): the ``max_categories`` most frequent labels, ties
    broken by label, in that order.  Less frequent labels of that batch go to
    "other".  After that the categories are frozen.  Build the current-side
    histogram with :meth:`empty_like` so both sides share the bins.

    Values are labelled with ``str(value)`` unless already ``str``.

    >>> ref = CategoricalHistogram(max_categories=2).update(["a", "b", "b", "c", None])
    >>> ref.categories, ref.counts.tolist(), ref.null_count
    (['b', 'a'], [2, 1, 1], 1)
    >>> ref.empty_like().update(["a", "z", "z"]).counts.tolist()
    [0, 1, 2]
    """

    __slots__ = ("_categories", "_counts", "_index", "_max_categories", "_nan_count", "_null_count")

    def __init__(self, categories: Sequence[str] | None = None, max_categories: int = 50) -> None:
        if isinstance(max_categories, bool) or int(max_categories) != max_categories:
            raise ValueError(f"max_categories must be an integer, got {max_categories!r}")
        if max_categories < 1:
            raise ValueError("max_categories must be >= 1")
        self._max_categories = int(max_categories)
        self._categories: list[str] | None = None
        self._index: dict[str, int] = {}
        self._counts: IntArray = np.zeros(1, dtype=np.int64)
        self._null_count = 0
        self._nan_count = 0
        if categories is not None:
            self._freeze(list(categories))

    def _freeze(self, categories: list[str]) -> None:
        if isinstance(categories, str):
            raise TypeError("categories must be a sequence of str, not a str")
        if not all(isinstance(c, str) for c in categories):
            raise TypeError("categories must all be str")
        if len(set(categories)) != len(categories):
            raise ValueError("categories must be unique")
        if len(categories) > self._max_categories:
            raise ValueError(
                f"{len(categories)} categories exceed max_categories={self._max_categories}"
            )
        self._categories = list(categories)
        self._index = {c: i for i, c in enumerate(categories)}
        self._counts = np.zeros(len(categories) + 1, dtype=np.int64)

    # -- accessors ---------------------------------------------------------- #
    @property
    def categories(self) -> list[str] | None:
        """The category bins (a copy), or ``None`` while not learned yet."""
        return None if self._categories is None else list(self._categories)

    @property
    def is_frozen(self) -> bool:
        """Whether the categories are fixed (given or learned)."""
        return self._categories is not None

    @property
    def max_categories(self) -> int:
        """Upper bound on the number of category bins."""
        return self._max_categories

    @property
    def counts(self) -> IntArray:
        """Counts per category, then the "other" count last (read-only view)."""
        return _readonly(self._counts)

    @property
    def n_bins(self) -> int:
        """Number of bins including "other"."""
        return int(self._counts.size)

    @property
    def null_count(self) -> int:
        """Number of null values seen (never binned)."""
        return self._null_count

    @property
    def nan_count(self) -> int:
        """Number of non-null float ``NaN`` values seen (never binned)."""
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
    def update(self, values: Any, mask: Any = None) -> CategoricalHistogram:
        """Add a batch of values; ``mask`` (``True`` = null) is optional. Returns ``self``."""
        label_counts, nulls, nans = _categorical_value_counts(values, mask)
        self._null_count += nulls
        self._nan_count += nans
        if not label_counts:
            return self
        if self._categories is None:
            ranked = sorted(label_counts.items(), key=lambda kv: (-kv[1], kv[0]))
            self._freeze([label for label, _ in ranked[: self._max_categories]])
        other = self._counts.size - 1
        for label, count in label_counts.items():
            self._counts[self._index.get(label, other)] += count
        return self

    def merge(self, other: CategoricalHistogram) -> CategoricalHistogram:
        """Return a new histogram with the sum of both; categories must match.

        A histogram whose categories are not learned yet (it has seen only
        missing values) adopts the other side's categories.
        """
        if not isinstance(other, CategoricalHistogram):
            raise TypeError(f"cannot merge CategoricalHistogram with {type(other).__name__}")
        if self._categories is None:
            base = other
        elif other._categories is None or other._categories == self._categories:
            base = self
        else:
            raise ValueError("cannot merge histograms with different categories")
        out = base.empty_like()
        out._max_categories = max(self._max_categories, other._max_categories)
        for h in (self, other):
            if h._categories is not None:
                out._counts += h._counts
            out._null_count += h._null_count
            out._nan_count += h._nan_count
        return out

    def empty_like(self) -> CategoricalHistogram:
        """A new, empty histogram with the same categories (or still learning)."""
        return CategoricalHistogram(self._categories, self._max_categories)

    def proportions(self) -> FloatArray:
        """Counts divided by :attr:`total`; all ``NaN`` when nothing was binned."""
        return _proportions(self._counts)

    # -- serialisation ------------------------------------------------------ #
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "kind": _CATEGORICAL_KIND,
            "version": _FORMAT_VERSION,
            "categories": self.categories,
            "max_categories": self._max_categories,
            "counts": [int(c) for c in self._counts],
            "null_count": self._null_count,
            "nan_count": self._nan_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalHistogram:
        """Rebuild a histogram from :meth:`to_dict` output (validated)."""
        if data.get("kind") != _CATEGORICAL_KIND:
            raise ValueError(f"not a categorical histogram: kind={data.get('kind')!r}")
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}")
        out = cls(data["categories"], data["max_categories"])
        out._counts = _counts_from_list(data["counts"], out._counts.size)
        out._null_count = _check_count("null_count", data["null_count"])
        out._nan_count = _check_count("nan_count", data["nan_count"])
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoricalHistogram):
            return NotImplemented
        return (
            self._categories == other._categories
            and np.array_equal(self._counts, other._counts)
            and self._null_count == other._null_count
            and self._nan_count == other._nan_count
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        n_cat = None if self._categories is None else len(self._categories)
        return (
            f"CategoricalHistogram(n_categories={n_cat}, total={self.total}, "
            f"null_count={self._null_count}, nan_count={self._nan_count})"
        )
