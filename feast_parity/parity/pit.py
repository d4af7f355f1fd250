"""Point-in-time lookups over offline rows, with Feast's semantics, vectorised.

Given a view's offline rows (entity codes, event time, created time) and queries (entity code,
time), :func:`point_in_time` returns, per query, the offline row Feast's
``get_historical_features`` picks: the newest row at or before the query time, not older than
``ttl`` (no limit when ttl is 0), ties on the event time broken by the latest created time (a
null created time loses). Rows and queries are matched on integer entity codes, so the caller
decides what makes two keys the same entity (see ``plugin/offline.py``).

>>> rows_entity = np.array([0, 0, 0, 1]); rows_time = np.array([10, 20, 20, 5])
>>> rows_created = np.array([1, 2, 3, 1])
>>> point_in_time(rows_entity, rows_time, rows_created, np.array([0, 0, 1, 1]),
...               np.array([15, 25, 4, 100]), ttl=50).tolist()
[0, 2, -1, -1]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NO_ROW = -1


def point_in_time(
    row_entity: np.ndarray,
    row_time: np.ndarray,
    row_created: np.ndarray | None,
    query_entity: np.ndarray,
    query_time: np.ndarray,
    *,
    ttl: int = 0,
) -> np.ndarray:
    """Per query, the index of the point-in-time row, or :data:`NO_ROW`.

    Times are int64 in one unit (microseconds in the check); ``ttl`` is in the same unit.
    """
    n = len(query_time)
    out = np.full(n, NO_ROW, dtype=np.int64)
    if n == 0 or len(row_time) == 0:
        return out
    created = (
        np.full(len(row_time), np.iinfo(np.int64).min, dtype=np.int64)
        if row_created is None
        else np.asarray(row_created, dtype=np.int64)
    )
    rows = pd.DataFrame(
        {
            "entity": np.asarray(row_entity, dtype=np.int64),
            "time": np.asarray(row_time, dtype=np.int64),
            "created": created,
            "row": np.arange(len(row_time), dtype=np.int64),
        }
    )
    # one row per (entity, event time): the latest created wins (stable, so equal created
    # times keep the later row of the source, as materialization writes it last)
    rows = rows.sort_values(["entity", "time", "created"], kind="stable")
    rows = rows.drop_duplicates(["entity", "time"], keep="last")
    rows = rows.sort_values("time", kind="stable")
    queries = pd.DataFrame(
        {
            "entity": np.asarray(query_entity, dtype=np.int64),
            "qtime": np.asarray(query_time, dtype=np.int64),
            "query": np.arange(n, dtype=np.int64),
        }
    ).sort_values("qtime", kind="stable")
    merged = pd.merge_asof(
        queries,
        rows[["entity", "time", "row"]],
        left_on="qtime",
        right_on="time",
        by="entity",
        direction="backward",
        allow_exact_matches=True,
    )
    found = merged["row"].notna().to_numpy()
    if ttl > 0:
        found &= (merged["qtime"].to_numpy() - merged["time"].fillna(0).to_numpy()) <= ttl
    index = merged["query"].to_numpy()
    out[index[found]] = merged["row"].to_numpy()[found].astype(np.int64)
    return out
