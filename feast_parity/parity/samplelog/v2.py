"""Reading the JSON-cell sample log of versions 1 and 2 (one SQL row per sampled row and view).

Logs written before the columnar format stay readable: :func:`decode_rows` turns a chunk of
``parity_samples`` rows into :class:`~feast_parity.parity.served.ServedRows` per view, exactly as
:func:`~feast_parity.parity.samplelog.decode_batch` does for v3 batches. A damaged row (cell that
is not JSON, a missing or NULL key, text over :data:`MAX_CELL_CHARS`, an unknown row version)
is skipped and reported in :class:`Skipped`, never raised: one bad row must not stop a check.

A v2 ``features`` cell maps each served feature to ``[value, status, value_hash, online_type,
declared_type]`` (v1 cells lack the declared type); values are JSON with tags for bytes
(``{"$b": base64}``), timestamps (``{"$ts": epoch seconds}``) and maps (``{"$map": {...}}``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from feast_parity.parity.columns import canonical_column
from feast_parity.parity.feature import ONLINE_TYPE_NAMES
from feast_parity.parity.sampling import EntityKeyError, canonical_entity_key
from feast_parity.parity.served import NO_TIME, ServedFeature, ServedRows

MAX_CELL_CHARS = 1_000_000
ROW_VERSIONS = (1, 2)
# online type names of v1/v2 cells -> the protobuf kind v3 logs record (the inverse of the
# names the comparison reports)
ONLINE_KINDS: dict[str, str | None] = {
    **{name: kind for kind, name in ONLINE_TYPE_NAMES.items()},
    "null": None,
}

V2_REDACTED = "$hmac"  # a v2 cell of a redacted feature: {"$hmac": HMAC-SHA256 hex}


def decode_json_value(value: Any) -> Any:
    """A v2 cell value back to the Python value that was served.

    >>> decode_json_value({"$b": "YWI="}), decode_json_value([1, {"$map": {"k": 2}}])
    (b'ab', [1, {'k': 2}])
    """
    if isinstance(value, dict):
        if "$b" in value:
            return base64.b64decode(value["$b"])
        if "$ts" in value:
            return datetime.fromtimestamp(value["$ts"], tz=timezone.utc)
        if "$map" in value:
            return {k: decode_json_value(v) for k, v in value["$map"].items()}
        if "$repr" in value:
            return value["$repr"]
        if V2_REDACTED in value:
            return value
    if isinstance(value, list):
        return [decode_json_value(v) for v in value]
    return value


@dataclass
class Skipped:
    """Rows a reader could not use: how many, why, and the first few sample ids of each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, reason: str, sample_id: int, count: int = 1) -> None:
        """Count ``count`` rows skipped for ``reason`` (in constant time, whatever the count),
        the first of them ``sample_id``."""
        self.counts[reason] = self.counts.get(reason, 0) + count
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 5:
            shown.append(int(sample_id))

    def add_ids(self, reason: str, sample_ids: np.ndarray) -> None:
        """Count every row of ``sample_ids`` skipped for ``reason``; the first few are shown."""
        if not len(sample_ids):
            return
        self.counts[reason] = self.counts.get(reason, 0) + len(sample_ids)
        shown = self.examples.setdefault(reason, [])
        shown.extend(int(i) for i in sample_ids[: 5 - len(shown)])

    def merge(self, other: Skipped) -> None:
        for reason, count in other.counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + count
            shown = self.examples.setdefault(reason, [])
            shown.extend(other.examples.get(reason, [])[: 5 - len(shown)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def notes(self) -> list[str]:
        """One note per reason: ``N log rows skipped: reason (sample ids 3, 9, ...)``."""
        return [
            f"{count} sample-log row(s) skipped: {reason} (first sample ids: "
            f"{', '.join(map(str, self.examples.get(reason, [])))})"
            for reason, count in sorted(self.counts.items())
        ]


@dataclass
class _Row:
    sample_id: int
    request_id: str
    request_time: int
    event_time: int
    keys: dict[str, Any]
    key_hash: int
    service: Any
    cells: dict[str, list[Any]]
    row_hash: int
    writer: str


def _parse_row(raw: Mapping[str, Any], skipped: Skipped) -> _Row | None:
    sample_id = int(raw.get("sample_id") or 0)
    version = raw.get("log_version")
    if version not in ROW_VERSIONS:
        skipped.add(f"unknown row log_version {version!r}", sample_id)
        return None
    view = raw.get("feature_view")
    if not isinstance(view, str) or not view:
        skipped.add("no feature view", sample_id)
        return None
    key_text, cell_text = raw.get("entity_key"), raw.get("features")
    if not isinstance(key_text, str) or not isinstance(cell_text, str):
        skipped.add("NULL entity key or features", sample_id)
        return None
    if len(key_text) > MAX_CELL_CHARS or len(cell_text) > MAX_CELL_CHARS:
        skipped.add(f"cell longer than {MAX_CELL_CHARS:,} characters", sample_id)
        return None
    try:
        keys = json.loads(key_text)
        cells = json.loads(cell_text)
    except (ValueError, RecursionError):
        skipped.add("cell is not valid JSON", sample_id)
        return None
    if not isinstance(keys, dict) or not keys or not isinstance(cells, dict):
        skipped.add("entity key or features is not a JSON object", sample_id)
        return None
    if any(v is None for v in keys.values()):
        skipped.add("NULL join key value", sample_id)
        return None
    if not all(isinstance(c, list) and len(c) >= 4 for c in cells.values()):
        skipped.add("malformed feature cell", sample_id)
        return None
    try:
        decoded_keys = {k: decode_json_value(v) for k, v in keys.items()}
        key_hash = _key_hash(decoded_keys)
        request_time = int(round(float(raw["request_time"]) * 1e6))
        event = raw.get("event_time")
        event_time = NO_TIME if event is None else int(round(float(event) * 1e6))
        if not np.isfinite(float(raw["request_time"])):
            raise ValueError("request time is not finite")
    except (TypeError, ValueError, KeyError, OverflowError, EntityKeyError):
        skipped.add("unreadable entity key or time", sample_id)
        return None
    return _Row(
        sample_id,
        str(raw.get("request_id") or ""),
        request_time,
        event_time,
        decoded_keys,
        key_hash,
        raw.get("feature_service"),
        cells,
        int(raw.get("row_hash") or 0) & (2**64 - 1),
        str(raw.get("writer") or "unknown"),
    )


def _key_hash(keys: Mapping[str, Any]) -> int:
    import xxhash

    return xxhash.xxh3_64_intdigest(canonical_entity_key(keys))


def decode_rows(
    rows: Sequence[Mapping[str, Any]],
    registry_types: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[dict[str, ServedRows], Skipped]:
    """v1/v2 log rows (mappings of column name to value) -> ServedRows per view, and what was
    skipped. ``registry_types`` gives declared types for v1 cells, which lack them."""
    skipped = Skipped()
    by_view: dict[str, list[_Row]] = {}
    for raw in rows:
        row = _parse_row(raw, skipped)
        if row is not None:
            by_view.setdefault(str(raw["feature_view"]), []).append(row)
    out = {}
    for view, parsed in by_view.items():
        decoded = _view_rows(view, parsed, (registry_types or {}).get(view, {}), skipped)
        if decoded is not None:
            out[view] = decoded
    return out, skipped


def _objects(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _view_rows(
    view: str, rows: list[_Row], registry: Mapping[str, str], skipped: Skipped
) -> ServedRows | None:
    n = len(rows)
    names = sorted({name for r in rows for name in r.cells})
    features = {}
    for name in names:
        declared_counts: dict[str, int] = {}
        values: list[Any] = [None] * n
        status = np.zeros(n, dtype=np.int8)
        kinds: list[str | None] = [None] * n
        declared = None
        for i, r in enumerate(rows):
            cell = r.cells.get(name)
            if cell is None:
                continue
            cell_declared = str(cell[4]) if len(cell) > 4 and cell[4] else registry.get(name)
            declared = declared or cell_declared
            if cell_declared:
                declared_counts[cell_declared] = declared_counts.get(cell_declared, 0) + 1
            try:
                status[i] = int(cell[1])
            except (TypeError, ValueError):
                status[i] = 3
            values[i] = decode_json_value(cell[0])
            kinds[i] = ONLINE_KINDS.get(str(cell[3]), str(cell[3]))
        declared = declared or "Invalid"
        redacted = any(isinstance(v, dict) and V2_REDACTED in v for v in values)
        if redacted:
            column = canonical_column([None] * n, declared)
            hashes = np.asarray([_digest_hash(v) for v in values], dtype=np.uint64)
        else:
            column = canonical_column(values, declared)
            hashes = column.hashes()
        features[name] = ServedFeature(
            declared, column, status, hashes, _objects(kinds), declared_counts, redacted
        )
    key_names = sorted({k for r in rows for k in r.keys})
    return ServedRows(
        feature_view=view,
        sample_ids=np.asarray([r.sample_id for r in rows], dtype=np.int64),
        request_id=_objects([r.request_id for r in rows]),
        request_time=np.asarray([r.request_time for r in rows], dtype=np.int64),
        event_time=np.asarray([r.event_time for r in rows], dtype=np.int64),
        keys={k: _objects([r.keys.get(k) for r in rows]) for k in key_names},
        entity_key_hash=np.asarray([r.key_hash for r in rows], dtype=np.uint64),
        feature_service=_objects([r.service for r in rows]),
        features=features,
        row_hash=np.asarray([r.row_hash for r in rows], dtype=np.uint64),
        writer=_objects([r.writer for r in rows]),
    )


def _digest_hash(value: Any) -> int:
    """v2 logs stored redacted values as {"$hmac": hex}: its first 8 bytes as the hash, the
    same derivation as v3's keyed hash (``hashing.keyed_hash``)."""
    if isinstance(value, dict) and V2_REDACTED in value:
        return int.from_bytes(bytes.fromhex(value[V2_REDACTED])[:8], "little")
    import xxhash

    from feast_parity.parity.hashing import NULL_ENCODING

    return xxhash.xxh3_64_intdigest(NULL_ENCODING)
