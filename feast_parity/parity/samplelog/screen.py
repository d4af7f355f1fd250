"""Log rows that cannot be compared, found in a v3 table before it is decoded.

A batch can decode and still hold rows no check can use: a hostile writer, a bad disk or a bug
elsewhere put them there. Each such row is skipped and counted by reason, never compared and
never allowed to fail its neighbours:

* **no request time** (null): the row belongs to no window;
* **an event time outside 1678-01-01 .. 2261-12-31 UTC**: the offline side (pandas, Arrow
  nanoseconds, most offline stores) cannot represent it, and one such time made the offline
  retrieval of the whole view fail (``year -144169 is out of range``);
* **a status code that is not a Feast FieldStatus** (0 INVALID, 1 PRESENT, 2 NULL_VALUE,
  3 NOT_FOUND, 4 OUTSIDE_MAX_AGE; null means "not asked"): read as a status, 99 would count as
  a served default.

>>> import pyarrow as pa
>>> table = pa.table({
...     "request_time": pa.array([1, None, 3, 4], pa.timestamp("us", tz="UTC")),
...     "event_time": pa.array([1, 2, -(2**63) + 5, None], pa.timestamp("us", tz="UTC")),
...     "status:x": pa.array([1, 3, 1, 99], pa.int8()),
... })
>>> {reason: mask.tolist() for reason, mask in unusable_rows(table).items()}
... # doctest: +NORMALIZE_WHITESPACE
{'no request time': [False, True, False, False],
 'event time outside 1678..2261': [False, False, True, False],
 'status code that is not a Feast FieldStatus': [False, False, False, True]}
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feast_parity.parity.samplelog.format import TIME

NO_REQUEST_TIME = "no request time"
EVENT_TIME_OUT_OF_RANGE = "event time outside 1678..2261"
UNKNOWN_STATUS = "status code that is not a Feast FieldStatus"
# inside the range of nanosecond timestamps (1677-09-21 .. 2262-04-11), with a margin for the
# check's own arithmetic (a served time is looked up at the end of its second)
EVENT_TIME_MIN_US = int(np.datetime64("1678-01-01", "us").astype(np.int64))
EVENT_TIME_MAX_US = int(np.datetime64("2262-01-01", "us").astype(np.int64)) - 1
FIELD_STATUSES = (0, 1, 2, 3, 4)


def _micros(column: pa.ChunkedArray | pa.Array) -> pa.Array | pa.ChunkedArray:
    return pc.cast(pc.cast(column, TIME), pa.int64())


def _mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


def unusable_rows(table: pa.Table) -> dict[str, np.ndarray]:
    """Per reason, the rows of ``table`` skipped for it (each row under its first reason
    only, in the order above); reasons without a row are left out."""
    found: dict[str, np.ndarray] = {}
    taken = np.zeros(table.num_rows, dtype=bool)

    def note(reason: str, mask: np.ndarray) -> None:
        nonlocal taken
        mask = mask & ~taken
        if mask.any():
            found[reason] = mask
            taken = taken | mask

    names = set(table.column_names)
    if "request_time" in names:
        note(NO_REQUEST_TIME, _mask(pc.is_null(table.column("request_time"))))
    if "event_time" in names:
        micros = _micros(table.column("event_time"))
        outside = pc.or_(pc.less(micros, EVENT_TIME_MIN_US), pc.greater(micros, EVENT_TIME_MAX_US))
        note(EVENT_TIME_OUT_OF_RANGE, _mask(outside))
    statuses = [c for c in table.column_names if c.startswith("status:")]
    if statuses:
        known = pa.array(FIELD_STATUSES, pa.int8())
        bad = np.zeros(table.num_rows, dtype=bool)
        for name in statuses:
            column = pc.cast(table.column(name), pa.int8(), safe=False)
            unknown = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(column, known)))
            bad |= _mask(unknown)
        note(UNKNOWN_STATUS, bad)
    return found
