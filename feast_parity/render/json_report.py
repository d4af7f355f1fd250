"""The report as JSON (the schema-1 contract of DESIGN.md), and the exit code it implies."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np

from feast_parity.parity.report import exit_code  # the one owner of the exit-code rule

__all__ = ["exit_code", "jsonable", "to_json"]


def jsonable(value: Any) -> Any:
    """``value`` with only JSON types: NaN and ±inf become None (JSON has no such numbers, and
    a null rate already means "not computable"), numpy scalars and arrays become Python
    numbers and lists, datetimes ISO strings, anything else ``str``.

    >>> jsonable({"psi": float("nan"), "lag": [np.float32(1.5), float("inf")], 3: np.int64(7)})
    {'psi': None, 'lag': [1.5, None], '3': 7}
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return jsonable(value.tolist())
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def to_json(report: Mapping[str, Any]) -> str:
    """The report as JSON, indented by 2; strictly valid (no NaN/Infinity tokens)."""
    return json.dumps(jsonable(report), indent=2, allow_nan=False)
