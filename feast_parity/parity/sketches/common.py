"""What both sketches share: input coercion, count checks, the serialised format version."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

FORMAT_VERSION = 1


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


def valid_numeric(values: Any, mask: Any = None) -> FloatArray:
    """Non-null, non-NaN values as float64 (``+/-inf`` are kept)."""
    floats, null = _numeric_values(values, mask)
    return floats[~null & ~np.isnan(floats)]


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
