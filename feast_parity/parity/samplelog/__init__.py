"""The sample log format: one owner for its columns, versions, encoding and decoding.

* :mod:`.format`: the v3 columns, Arrow types, versions and byte form (IPC);
* :mod:`.encode`: rows of one view -> one batch (the writer thread);
* :mod:`.decode`: batches -> :class:`~feast_parity.parity.served.ServedRows` and flat tables;
* :mod:`.v2`: the JSON-cell rows of log versions 1 and 2, still read.
"""

from feast_parity.parity.samplelog.decode import decode_batch, decode_keys, rows_table
from feast_parity.parity.samplelog.encode import BatchBuilder
from feast_parity.parity.samplelog.format import (
    LOG_VERSION,
    META_DECLARED,
    META_ON_DEMAND,
    META_REDACTED,
    META_VERSION,
    META_VIEW,
    TIME,
    LogFormatError,
    NewerLogError,
    arrow_type,
    batch_version,
    batch_view,
    from_ipc,
    json_text,
    to_ipc,
)

__all__ = [
    "LOG_VERSION",
    "META_DECLARED",
    "META_ON_DEMAND",
    "META_REDACTED",
    "META_VERSION",
    "META_VIEW",
    "TIME",
    "BatchBuilder",
    "LogFormatError",
    "NewerLogError",
    "arrow_type",
    "batch_version",
    "batch_view",
    "decode_batch",
    "decode_keys",
    "from_ipc",
    "json_text",
    "rows_table",
    "to_ipc",
]
