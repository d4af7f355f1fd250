"""The KPI table that corroborates alerts: per-run means of business KPIs and model scores.

``parity.alerts.kpi_source`` names a CSV file or a table of the parity store
(:func:`feast_parity.store.alerts.load_kpis` reads it); this module turns its rows into a
:class:`KpiTable` and averages each column over a run's window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


class KpiSourceError(ValueError):
    """The KPI table or CSV cannot be read; the message names ``alerts.kpi_source``."""


@dataclass(frozen=True)
class KpiTable:
    """Rows of the KPI source: epoch seconds (sorted) and one float array per column."""

    times: np.ndarray
    columns: Mapping[str, np.ndarray]

    def means(self, runs: Sequence[Any]) -> dict[str, list[float | None]]:
        """Per column, the mean of its rows inside each run's window [start, end)."""
        out: dict[str, list[float | None]] = {name: [] for name in self.columns}
        for run in runs:
            lo = int(np.searchsorted(self.times, run.start.timestamp(), side="left"))
            hi = int(np.searchsorted(self.times, run.end.timestamp(), side="left"))
            for name, values in self.columns.items():
                chunk = values[lo:hi]
                chunk = chunk[np.isfinite(chunk)]
                out[name].append(float(chunk.mean()) if len(chunk) else None)
        return out


def kpi_table_from_frame(frame: Any, time_column: str, columns: Sequence[str] | None) -> KpiTable:
    """A :class:`KpiTable` from a pandas DataFrame (numeric columns unless ``columns``)."""
    import pandas as pd

    if time_column not in frame.columns:
        raise KpiSourceError(
            f"alerts.kpi_time_column: no column {time_column!r} in the KPI source "
            f"(columns: {', '.join(map(str, frame.columns))})"
        )
    try:
        stamps = pd.to_datetime(frame[time_column], utc=True)
    except (ValueError, TypeError) as exc:
        raise KpiSourceError(
            f"alerts.kpi_time_column: {time_column!r} is not a time: {exc}"
        ) from None
    if columns is None:
        names = [
            str(c)
            for c in frame.columns
            if c != time_column and pd.api.types.is_numeric_dtype(frame[c])
        ]
    else:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise KpiSourceError(f"alerts.kpi_columns: not in the KPI source: {missing}")
        names = list(columns)
    seconds = stamps.astype("int64").to_numpy() / 1e9
    order = np.argsort(seconds, kind="stable")
    cols = {}
    for name in names:
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        cols[name] = values[order]
    return KpiTable(times=seconds[order], columns=cols)
