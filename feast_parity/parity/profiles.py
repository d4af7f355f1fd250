"""Training profiles: histogram sketches of the values a training dataset received.

A profile is what "served vs trained-on" drift compares against: numeric features get quantile
edges of their own values (the pinned PSI binning), strings and bools their categories plus
"other". Redacted features never get one (a histogram would hold their values in clear).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from feast_parity.parity.columns import NUMERIC_TYPES
from feast_parity.parity.sketches import CategoricalHistogram, NumericHistogram, quantile_edges

CATEGORICAL_TYPES = {"String", "Bool"}


def profile_column(values: Any, declared_type: str, bins: int = 10) -> dict[str, Any] | None:
    """A JSON-able histogram sketch of one feature's training values (None: type not binned).

    Numeric features get quantile edges of their own values (the pinned PSI binning, 10 bins
    plus two out-of-range bins); strings and bools get their categories plus "other".

    >>> p = profile_column([1.0, 2.0, 3.0, 4.0], "Float64", bins=2)
    >>> p["kind"], p["rows"], p["nulls"]
    ('numeric', 4, 0)
    """
    series = pd.Series(values)
    nulls = int(series.isna().sum())
    valid = series.dropna()
    hist: NumericHistogram | CategoricalHistogram
    if declared_type in NUMERIC_TYPES:
        numbers = pd.to_numeric(valid, errors="coerce").to_numpy(dtype=np.float64)
        finite = numbers[np.isfinite(numbers)]
        if finite.size == 0:
            return {"kind": "numeric", "rows": len(series), "nulls": nulls, "histogram": None}
        hist = NumericHistogram(quantile_edges(finite, bins=bins)).update(numbers)
        return {"kind": "numeric", "rows": len(series), "nulls": nulls, "histogram": hist.to_dict()}
    if declared_type in CATEGORICAL_TYPES:
        labels = np.asarray([str(v) for v in valid], dtype=object)
        hist = CategoricalHistogram(None).update(labels)
        return {
            "kind": "categorical",
            "rows": len(series),
            "nulls": nulls,
            "histogram": hist.to_dict(),
        }
    return None


def histogram_from_profile(profile: Mapping[str, Any]) -> NumericHistogram | CategoricalHistogram:
    """The stored sketch as a histogram object (``from_dict`` of the right class)."""
    if profile["kind"] == "numeric":
        return NumericHistogram.from_dict(profile["histogram"])
    return CategoricalHistogram.from_dict(profile["histogram"])


def latest_dataset_for(datasets: Sequence[Mapping[str, Any]], feature_ref: str) -> dict | None:
    """The newest dataset (of ``list_datasets``) that trained on ``feature_ref``."""
    for dataset in datasets:
        if feature_ref in dataset["features"]:
            return dict(dataset)
    return None
