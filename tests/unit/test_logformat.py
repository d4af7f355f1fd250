"""The sample-log format: v3 Arrow batches (feast_parity.parity.samplelog) and the JSON cells of
v1/v2 logs that stay readable (feast_parity.parity.samplelog.v2).

The writer thread gathers the sampled rows of one view in a ``BatchBuilder`` and flushes them
as one record batch; every sink stores that batch unchanged and every reader turns it back into
``ServedRows`` with ``decode_batch``. A batch must come back as it was served, with the hashes
computed at serving time, and a reader must refuse what it cannot read: damaged bytes, and a
batch of a newer log version than it knows. Old JSON-cell rows are read row by row; a bad row
is skipped and counted, never raised.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from feast_parity.parity.canonical import MapItems, Seconds
from feast_parity.parity.columns import canonical_column
from feast_parity.parity.hashing import (
    encode_value,
    keyed_hash,
    row_hash,
    schema_fingerprint,
    value_hash,
)
from feast_parity.parity.samplelog import (
    LOG_VERSION,
    META_VERSION,
    BatchBuilder,
    LogFormatError,
    NewerLogError,
    batch_view,
    decode_batch,
    from_ipc,
    rows_table,
    to_ipc,
)
from feast_parity.parity.samplelog.v2 import MAX_CELL_CHARS, Skipped, decode_json_value, decode_rows
from feast_parity.parity.sampling import canonical_entity_key
from feast_parity.parity.served import NO_TIME

T = 1_767_225_600.0  # 2026-01-01T00:00:00Z, epoch seconds
DECLARED = {
    "ctr": "Float32",
    "sessions": "Int64",
    "country": "String",
    "tags": "Array(String)",
    "attrs": "Map",
    "seen": "UnixTimestamp",
    "active": "Bool",
}
FIRST = {  # what the first request was served for user 1001
    "ctr": 0.1,
    "sessions": 7,
    "country": "JP",
    "tags": ["a", "b"],
    "attrs": {"k": 1.0, "a": [1, 2]},
    "seen": 1_767_225_000,  # unix_timestamp_val: epoch seconds
    "active": True,
}


def builder(**kw: Any) -> BatchBuilder:
    return BatchBuilder(
        feature_view="user_engagement",
        declared=DECLARED,
        join_keys=("user_id",),
        sample_rate=0.5,
        seed=42,
        writer="host:123",
        **kw,
    )


def add_two_requests(b: BatchBuilder) -> None:
    """Request r1 (a feature service) asks for every feature for users 1001 and 1002 (1002 not
    found); request r2 (feature refs) asks for ctr only, for user "1003" spelled as text."""
    b.add(
        features=sorted(DECLARED),
        request_id="r1",
        request_time=T + 0.25,
        service="ranking_model_v1",
        projection="user_engagement",
        keys={"user_id": [1001, 1002]},
        key_hashes=[11, 12],
        event_times=[T - 600.0, None],
        values={name: [FIRST[name], None] for name in DECLARED},
        statuses={name: [1, 3] for name in DECLARED},
        kinds={name: ["value", None] for name in DECLARED},
        context={"video_id": [5001, 5002]},
    )
    b.add(
        features=["ctr"],
        request_id="r2",
        request_time=T + 1.0,
        service=None,
        projection="user_engagement",
        keys={"user_id": ["1003"]},
        key_hashes=[13],
        event_times=[T - 0.5],
        values={"ctr": [0.5]},
        statuses={"ctr": [1]},
        kinds={"ctr": ["float_val"]},
        context={"video_id": [5003]},
    )


# --- v3: BatchBuilder.to_batch -> decode_batch -------------------------------------------


def test_a_batch_decodes_to_the_rows_that_were_served() -> None:
    b = builder()
    add_two_requests(b)
    rows = decode_batch(b.to_batch(), first_sample_id=100)
    assert len(rows) == 3 and rows.feature_view == "user_engagement" and not rows.on_demand
    assert rows.sample_ids.tolist() == [100, 101, 102]
    assert rows.request_id.tolist() == ["r1", "r1", "r2"]
    micros = int(T) * 1_000_000
    assert rows.request_time.tolist() == [micros + 250_000, micros + 250_000, micros + 1_000_000]
    assert rows.event_time.tolist() == [micros - 600_000_000, NO_TIME, micros - 500_000]
    assert rows.feature_service.tolist() == ["ranking_model_v1", "ranking_model_v1", None]
    assert rows.entity_key_hash.tolist() == [11, 12, 13]
    assert rows.writer.tolist() == ["host:123"] * 3
    assert rows.context["video_id"].tolist() == [5001, 5002, 5003]  # the request's other keys
    # ints and a number spelled as text: one text column, the same canonical entity keys
    assert rows.keys["user_id"].tolist() == ["1001", "1002", "1003"]
    assert sorted(rows.features) == sorted(DECLARED)


def test_features_come_back_canonical_with_the_hashes_taken_at_serving_time() -> None:
    b = builder()
    add_two_requests(b)
    rows = decode_batch(b.to_batch())
    for name, declared in DECLARED.items():
        feature = rows.features[name]
        assert feature.declared == declared
        first = canonical_value_of(FIRST[name], declared)
        assert feature.values.value(0) == first and feature.values.value(1) is None, name
        assert feature.hashes[0] == value_hash(FIRST[name], declared), name
        assert feature.hashes[1] == value_hash(None, declared), name
    # r2 did not ask for the other features: status 0, and only ctr counts as requested
    assert rows.features["ctr"].status.tolist() == [1, 3, 1]
    assert rows.features["sessions"].status.tolist() == [1, 3, 0]
    assert rows.features["sessions"].requested.tolist() == [True, True, False]
    assert rows.features["seen"].values.value(0) == Seconds(1_767_225_000)
    assert isinstance(rows.features["attrs"].values.value(0), MapItems)


def canonical_value_of(value: Any, declared: str) -> Any:
    return canonical_column([value], declared).value(0)


def test_row_hashes_cover_the_features_each_row_requested() -> None:
    b = builder()
    add_two_requests(b)
    rows = decode_batch(b.to_batch())
    every = {name: value_hash(FIRST[name], t) for name, t in DECLARED.items()}
    assert rows.row_hash[0] == row_hash(every, schema_fingerprint(DECLARED))
    nulls = {name: value_hash(None, t) for name, t in DECLARED.items()}
    assert rows.row_hash[1] == row_hash(nulls, schema_fingerprint(DECLARED))
    only_ctr = {"ctr": value_hash(0.5, "Float32")}
    assert rows.row_hash[2] == row_hash(only_ctr, schema_fingerprint({"ctr": "Float32"}))


def test_redacted_features_keep_only_a_keyed_hash() -> None:
    b = builder(redacted=frozenset({"country"}), redact_key=b"secret")
    add_two_requests(b)
    batch = b.to_batch()
    assert batch.column("value:country").null_count == batch.num_rows  # never in clear
    country = decode_batch(batch).features["country"]
    assert country.redacted and country.values.value(0) is None
    assert country.hashes[0] == keyed_hash(b"secret", encode_value("JP", "String"))
    assert country.hashes[0] != value_hash("JP", "String")


def test_on_demand_batches_carry_request_data_and_the_transformation() -> None:
    b = BatchBuilder(
        "ranking_signals", {"affinity": "Float64"}, ("user_id",), 1.0, 1, "w", on_demand=True
    )
    b.add(
        features=["affinity"],
        request_id="r",
        request_time=T,
        service=None,
        projection="ranking_signals",
        keys={"user_id": [1, 2]},
        key_hashes=[1, 2],
        event_times=[None, None],
        values={"affinity": [0.5, 0.25]},
        statuses={"affinity": [1, 1]},
        kinds={"affinity": ["double_val"] * 2},
        request_data={"boost": [1.5, 2.0]},
        udf_fingerprint="udf123",
    )
    rows = decode_batch(b.to_batch())
    assert rows.on_demand and rows.udf_fingerprint.tolist() == ["udf123", "udf123"]
    assert rows.request_data["boost"].tolist() == [1.5, 2.0]
    assert not rows.has_event_time.any()


SERVED = {  # every declared kind the log stores, with nulls, empty values and edge cases
    "Float64": [1.5, float("nan"), -0.0, float("inf"), None],
    "Float32": [0.1, 1e300, None, 3],
    "Int64": [7, -(2**63), 2**63 - 1, None],
    "Int32": [7, None],
    "String": ["a", "", None, "é\x00"],
    "Bytes": [b"\x00", b"", None],
    "Bool": [True, False, None],
    "UnixTimestamp": [1_767_225_600, 0, -5, None],
    "Array(Int64)": [[1, 2], [], None],
    "Array(Float64)": [[1.0, float("nan")], [], None],
    "Array(String)": [["a"], [], None],
    "Array(UnixTimestamp)": [[1_767_225_600, 5], None],
    "Set(String)": [["b", "a"], None],
    "Map": [{"k": 1, "a": [1, 2.5]}, {}, None, {"blob": b"\x01"}],
    "Json": [{"k": 1}, [1, 2], 5, True, None, "hello"],
    "Struct({a: Int64})": [{"a": 1}, None],
}


@pytest.mark.parametrize("declared", sorted(SERVED))
def test_decoded_values_hash_to_the_logged_hashes(declared: str) -> None:
    """What a reader decodes is the value that was served: its canonical hash is the hash the
    writer logged (so the check may use either)."""
    values = SERVED[declared]
    n = len(values)
    b = BatchBuilder("v", {"f": declared}, ("id",), 1.0, 1, "w")
    b.add(
        features=["f"],
        request_id="r",
        request_time=T,
        service=None,
        projection="v",
        keys={"id": list(range(n))},
        key_hashes=list(range(n)),
        event_times=[T] * n,
        values={"f": values},
        statuses={"f": [1] * n},
        kinds={"f": ["k"] * n},
    )
    feature = decode_batch(from_ipc(to_ipc(b.to_batch()))).features["f"]
    assert feature.hashes.tolist() == [value_hash(v, declared) for v in values]
    decoded = feature.values.hashes().tolist()
    differ = [values[i] for i in range(n) if decoded[i] != feature.hashes[i]]
    assert differ == [], f"{declared}: decoded values that are not what was served: {differ!r}"


# --- v3: bytes, damage and versions -------------------------------------------------------


def test_ipc_bytes_round_trip() -> None:
    b = builder()
    add_two_requests(b)
    batch = b.to_batch()
    table = from_ipc(to_ipc(batch))
    assert table.equals(pa.Table.from_batches([batch]))
    assert table.schema.metadata == batch.schema.metadata
    assert batch_view(table.schema) == "user_engagement"


@pytest.mark.parametrize("cut", ["half", "header", "garbage", "empty"])
def test_a_damaged_payload_raises_log_format_error(cut: str) -> None:
    b = builder()
    add_two_requests(b)
    payload = to_ipc(b.to_batch())
    damaged = {
        "half": payload[: len(payload) // 2],
        "header": payload[:10],
        "garbage": b"not an arrow stream",
        "empty": b"",
    }[cut]
    with pytest.raises(LogFormatError, match="damaged"):
        from_ipc(damaged)


def test_a_batch_without_its_columns_or_metadata_raises_log_format_error() -> None:
    b = builder()
    add_two_requests(b)
    batch = b.to_batch()
    without_rows = batch.drop_columns(["request_time"])
    with pytest.raises(LogFormatError):
        decode_batch(without_rows)
    with pytest.raises(LogFormatError, match="not a sample-log batch"):
        decode_batch(batch.replace_schema_metadata({}))
    with pytest.raises(LogFormatError):
        batch_view(pa.schema([]))


def test_a_batch_of_a_newer_log_version_is_refused() -> None:
    b = builder()
    add_two_requests(b)
    batch = b.to_batch()
    assert batch.schema.metadata[META_VERSION] == str(LOG_VERSION).encode() == b"3"
    newer = batch.replace_schema_metadata({**batch.schema.metadata, META_VERSION: b"4"})
    with pytest.raises(NewerLogError, match="version 4.*up to version 3.*upgrade"):
        decode_batch(newer)
    with pytest.raises(NewerLogError):
        decode_batch(from_ipc(to_ipc(newer)))  # as it would come out of a store
    assert issubclass(NewerLogError, LogFormatError)


def test_rows_table_is_one_row_per_sampled_row_with_canonical_values() -> None:
    b = builder()
    add_two_requests(b)
    table = rows_table(decode_batch(b.to_batch()))
    assert table.num_rows == 3
    assert table.column("value:sessions").to_pylist() == [7, None, None]
    assert table.column("status:sessions").to_pylist() == [1, 3, None]  # not requested: NULL
    assert table.column("value:attrs").to_pylist()[0] == {"a": [1, 2], "k": 1}
    assert table.column("event_time").null_count == 1


# --- v1/v2 JSON cells (logformat_v2) ------------------------------------------------------


def v2_row(sample_id: int, **overrides: Any) -> dict[str, Any]:
    """One parity_samples row of a v2 log: the features cell maps each served feature to
    [value, status, value hash, online type, declared type]."""
    cells = {
        "ctr": [0.25, 1, 0, "float32", "Float32"],
        "country": ["JP", 1, 0, "string", "String"],
        "avatar": [{"$b": base64.b64encode(b"\x01\x02").decode()}, 1, 0, "bytes", "Bytes"],
        "seen": [{"$ts": T}, 1, 0, "timestamp", "UnixTimestamp"],
        "attrs": [{"$map": {"k": 1}}, 1, 0, "map", "Map"],
    }
    row = {
        "sample_id": sample_id,
        "log_version": 2,
        "request_id": f"r{sample_id}",
        "request_time": T + sample_id,
        "feature_service": "svc",
        "entity_key": json.dumps({"user_id": 1000 + sample_id}),
        "feature_view": "user_engagement",
        "event_time": T - 60,
        "row_hash": -1,  # stored as a signed BIGINT
        "features": json.dumps(cells),
        "writer": "host:1",
    }
    row.update(overrides)
    return row


def test_v2_rows_decode_to_served_rows_per_view() -> None:
    other_view = v2_row(
        3,
        feature_view="video_stats",
        features=json.dumps({"popularity": [5, 1, 0, "int64", "Int64"]}),
    )
    views, skipped = decode_rows([v2_row(1), v2_row(2), other_view])
    assert skipped.total == 0 and sorted(views) == ["user_engagement", "video_stats"]
    rows = views["user_engagement"]
    assert rows.sample_ids.tolist() == [1, 2] and rows.request_id.tolist() == ["r1", "r2"]
    assert rows.request_time.tolist() == [int((T + 1) * 1e6), int((T + 2) * 1e6)]
    assert rows.event_time.tolist() == [int((T - 60) * 1e6)] * 2
    assert rows.keys["user_id"].tolist() == [1001, 1002]
    expected_key = canonical_entity_key({"user_id": 1001})
    import xxhash

    assert rows.entity_key_hash[0] == xxhash.xxh3_64_intdigest(expected_key)
    assert rows.row_hash.tolist() == [2**64 - 1] * 2  # read back unsigned
    features = rows.features
    assert features["avatar"].values.value(0) == b"\x01\x02"
    assert features["seen"].values.value(0) == Seconds(int(T))
    assert features["attrs"].values.value(0) == (("k", 1),)
    assert features["ctr"].kinds.tolist() == ["float_val"] * 2  # v2 names as protobuf kinds
    # hashes are recomputed with today's canonical forms, not taken from the old cells
    assert features["ctr"].hashes[0] == value_hash(0.25, "Float32")
    assert views["video_stats"].features["popularity"].values.value(0) == 5


def test_v1_cells_take_their_declared_types_from_the_registry() -> None:
    cells = {"sessions": [3.0, 1, 0, "int64"]}  # v1: no declared type in the cell
    row = v2_row(1, log_version=1, features=json.dumps(cells))
    views, _ = decode_rows([row], {"user_engagement": {"sessions": "Int64"}})
    sessions = views["user_engagement"].features["sessions"]
    assert sessions.declared == "Int64" and sessions.values.value(0) == 3


def test_features_missing_from_a_row_are_not_requested_there() -> None:
    only_ctr = v2_row(2, features=json.dumps({"ctr": [0.5, 1, 0, "float32", "Float32"]}))
    views, _ = decode_rows([v2_row(1), only_ctr])
    assert views["user_engagement"].features["country"].status.tolist() == [1, 0]


BAD_ROWS = {
    "cell is not valid JSON": {"features": '{"ctr": [0.25, 1'},
    "NULL entity key or features": {"entity_key": None},
    "NULL join key value": {"entity_key": json.dumps({"user_id": None})},
    f"cell longer than {MAX_CELL_CHARS:,} characters": {
        "features": json.dumps({"ctr": ["x" * MAX_CELL_CHARS, 1, 0, "string", "String"]})
    },
    "unknown row log_version 7": {"log_version": 7},
    "entity key or features is not a JSON object": {"entity_key": "[1, 2]"},
    "malformed feature cell": {"features": json.dumps({"ctr": [0.25]})},
    "unreadable entity key or time": {"request_time": "soon"},
    "no feature view": {"feature_view": None},
}


def test_malformed_rows_are_skipped_and_counted_by_reason() -> None:
    bad = [v2_row(10 + i, **change) for i, change in enumerate(BAD_ROWS.values())]
    views, skipped = decode_rows([v2_row(1), *bad, v2_row(2)])
    assert views["user_engagement"].sample_ids.tolist() == [1, 2]
    assert skipped.counts == {reason: 1 for reason in BAD_ROWS}
    assert skipped.total == len(BAD_ROWS)
    assert {reason: ids for reason, ids in skipped.examples.items()} == {
        reason: [10 + i] for i, reason in enumerate(BAD_ROWS)
    }
    notes = skipped.notes()
    assert len(notes) == len(BAD_ROWS)
    assert any(n.startswith("1 sample-log row(s) skipped: NULL join key value") for n in notes)


def test_skipped_counts_merge_and_keep_at_most_five_examples() -> None:
    a, b = Skipped(), Skipped()
    for i in range(4):
        a.add("bad", i)
    for i in range(4, 8):
        b.add("bad", i)
    b.add("worse", 99)
    a.merge(b)
    assert a.counts == {"bad": 8, "worse": 1} and a.total == 9
    assert a.examples == {"bad": [0, 1, 2, 3, 4], "worse": [99]}


def test_decode_json_value_undoes_the_v2_tags() -> None:
    assert decode_json_value({"$b": "YWI="}) == b"ab"
    assert decode_json_value({"$ts": 0}) == datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert decode_json_value([1, {"$map": {"k": {"$b": "AA=="}}}]) == [1, {"k": b"\x00"}]
    assert decode_json_value({"plain": 1}) == {"plain": 1}
    assert decode_json_value(np.float64(1.5)) == 1.5
