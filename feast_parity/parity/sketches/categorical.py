"""Categorical histogram: one bin per learned or given category plus "other"."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feast_parity.parity.sketches.common import (
    FORMAT_VERSION,
    BoolArray,
    FloatArray,
    IntArray,
    _check_count,
    _counts_from_list,
    _mask_array,
    _proportions,
    _readonly,
)

_CATEGORICAL_KIND = "categorical_histogram"


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
        quick = None
        if obj.dtype == object and mask is None:
            try:  # plain strings (the common case) need no NaN scan
                quick = pa.array(obj)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                quick = None
            if quick is not None and not (
                pa.types.is_string(quick.type) or pa.types.is_large_string(quick.type)
            ):
                quick = None
        if quick is None and obj.dtype == object:
            # Python objects: find float NaNs here (Arrow would reject mixed
            # str/float input), and hand Arrow only None for missing entries.
            nan_py = np.array(
                [isinstance(v, (float, np.floating)) and math.isnan(v) for v in obj],
                dtype=np.bool_,
            )
            obj = obj.copy()
            obj[nan_py] = None
        if quick is not None:
            arr = quick
        else:
            try:
                arr = pa.array(obj)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # Mixed Python types (e.g. str and int): label row by row.
                labels = [None if v is None else _as_label(v) for v in obj]
                arr = pa.array(labels, type=pa.string())
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
            "version": FORMAT_VERSION,
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
        if data.get("version") != FORMAT_VERSION:
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
