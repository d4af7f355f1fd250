"""A sample log written by an older plugin version is migrated in place and still checked.

The plugin writes v3 batches (Arrow IPC rows of ``parity_sample_batches``), so the older logs
are built by hand here, from what the current plugin logged for real requests: ``read_samples``
of a v3 log gives every served value, status, value hash and protobuf kind, which are written
back as the JSON-cell rows of ``parity_samples`` an older plugin wrote:

* v1: no ``writer``/``seed`` columns, no ``parity_meta`` table, 4-field cells
  ``[value, status, value_hash_hex, online_type]`` (declared types come from the registry);
* v2: ``writer`` and ``seed`` columns, ``parity_meta`` at version 2, 5-field cells
  ``[value, status, value_hash_hex, online_type, declared]``.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import xxhash
from feast import FeatureStore

from feast_parity import demo, read_samples
from feast_parity.cli import main as cli
from feast_parity.parity.hashing import hash_hex, schema_fingerprint, to_signed64
from feast_parity.parity.sampling import canonical_entity_key
from feast_parity.plugin.check import run_check
from feast_parity.store.schema import STORE_VERSION

V1_DDL = """
CREATE TABLE parity_samples (
    sample_id INTEGER PRIMARY KEY AUTOINCREMENT, log_version INTEGER NOT NULL,
    request_id VARCHAR(36) NOT NULL, request_time FLOAT NOT NULL, feature_service VARCHAR(255),
    entity_key TEXT NOT NULL, entity_key_hash BIGINT NOT NULL, feature_view VARCHAR(255) NOT NULL,
    event_time FLOAT, row_hash BIGINT NOT NULL, schema_fingerprint BIGINT NOT NULL,
    features TEXT NOT NULL, sample_rate FLOAT NOT NULL)
"""
V2_DDL = V1_DDL.rstrip().rstrip(")") + (",\n    seed BIGINT NOT NULL, writer VARCHAR(64) NOT NULL)")
META_DDL = "CREATE TABLE parity_meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL)"
V1_COLUMNS = [
    "log_version",
    "request_id",
    "request_time",
    "feature_service",
    "entity_key",
    "entity_key_hash",
    "feature_view",
    "event_time",
    "row_hash",
    "schema_fingerprint",
    "features",
    "sample_rate",
]
V2_COLUMNS = [*V1_COLUMNS, "seed", "writer"]
# protobuf kind served (v3 ``kind:`` column) -> online type name of v1/v2 cells
ONLINE_TYPES = {
    "int32_val": "int32",
    "int64_val": "int64",
    "float_val": "float32",
    "double_val": "float64",
    "string_val": "string",
    "bytes_val": "bytes",
    "bool_val": "bool",
    "unix_timestamp_val": "timestamp",
    "int32_list_val": "list<int32>",
    "int64_list_val": "list<int64>",
    "float_list_val": "list<float32>",
    "double_list_val": "list<float64>",
    "string_list_val": "list<string>",
    "bytes_list_val": "list<bytes>",
    "bool_list_val": "list<bool>",
    "unix_timestamp_list_val": "list<timestamp>",
    "map_val": "map",
    "json_val": "json",
    "struct_val": "struct",
    None: "null",
}
OLD_WRITER = "old-host:4242"


def _json_value(value: Any) -> Any:
    """A served value as a v1/v2 cell holds it (tags for bytes, timestamps and maps)."""
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode()}
    if isinstance(value, datetime):
        return {"$ts": value.timestamp()}
    if isinstance(value, dict):
        return {"$map": {k: _json_value(v) for k, v in value.items()}}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def declared_types(repo: Path) -> dict[str, dict[str, str]]:
    store = FeatureStore(repo_path=str(repo))
    views = [*store.list_feature_views(), *store.list_on_demand_feature_views()]
    return {v.name: {f.name: str(f.dtype) for f in v.features} for v in views}


def old_log_rows(url: str, repo: Path, version: int) -> list[dict[str, Any]]:
    """The rows of a v3 log as a v``version`` plugin wrote them into ``parity_samples``."""
    declared = declared_types(repo)
    out = []
    for view in sorted(declared):
        table = read_samples(url, feature_view=view)
        if not table.num_rows or "request_id" not in table.column_names:
            continue
        keys = sorted(c[len("key:") :] for c in table.column_names if c.startswith("key:"))
        features = sorted(
            c[len("status:") :] for c in table.column_names if c.startswith("status:")
        )
        for row in table.to_pylist():
            cells = {}
            for name in features:
                if row[f"status:{name}"] is None:  # not requested
                    continue
                cell = [
                    _json_value(row[f"value:{name}"]),
                    int(row[f"status:{name}"]),
                    hash_hex(int(row[f"hash:{name}"])),
                    ONLINE_TYPES[row[f"kind:{name}"]],
                ]
                if version >= 2:
                    cell.append(declared[view][name])
                cells[name] = cell
            entity = {k: row[f"key:{k}"] for k in keys}
            record = {
                "log_version": version,
                "request_id": row["request_id"],
                "request_time": row["request_time"].timestamp(),
                "feature_service": row["feature_service"],
                "entity_key": json.dumps(entity, sort_keys=True),
                "entity_key_hash": to_signed64(
                    xxhash.xxh3_64_intdigest(canonical_entity_key(entity))
                ),
                "feature_view": view,
                "event_time": row["event_time"].timestamp() if row["event_time"] else None,
                "row_hash": to_signed64(int(row["row_hash"])),
                "schema_fingerprint": to_signed64(
                    schema_fingerprint({f: declared[view][f] for f in cells})
                ),
                "features": json.dumps(cells),
                "sample_rate": 1.0,
            }
            if version >= 2:
                record |= {"seed": 42, "writer": OLD_WRITER}
            out.append(record)
    return out


def write_old_log(path: Path, rows: list[dict[str, Any]], version: int) -> sa.Engine:
    """A SQLite parity store laid out as plugin version ``version`` (1 or 2) left it."""
    engine = sa.create_engine(f"sqlite:///{path}")
    columns = V1_COLUMNS if version == 1 else V2_COLUMNS
    with engine.begin() as conn:
        conn.execute(sa.text(V1_DDL if version == 1 else V2_DDL))
        if version >= 2:
            conn.execute(sa.text(META_DDL))
            conn.execute(
                sa.text("insert into parity_meta values ('log_schema_version', :v)"),
                {"v": str(version)},
            )
        conn.execute(
            sa.text(
                f"insert into parity_samples ({', '.join(columns)}) values "
                f"({', '.join(':' + c for c in columns)})"
            ),
            [{c: r[c] for c in columns} for r in rows],
        )
    return engine


def serve_and_log(repo: Path, requests: int, seed: int = 0) -> None:
    """Serve ranking requests (10 rows, 3 views) through the plugin and flush the log."""
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, requests, users=300, videos=100, seed=seed)
    provider = store._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["dropped_rows"] == 0 and stats["hook_errors"] == 0, stats


def current_writer(url: str) -> str:
    writers = set(read_samples(url).column("writer").to_pylist())
    assert len(writers) == 1, writers
    return writers.pop()


def store_version(engine: sa.Engine) -> tuple[int, set[str], set[str]]:
    with engine.connect() as conn:
        version = conn.execute(
            sa.text("select value from parity_meta where key = 'log_schema_version'")
        ).scalar()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("parity_samples")}
        tables = set(sa.inspect(conn).get_table_names())
    return int(version), columns, tables


def clean(report: dict) -> list[dict]:
    return [f for f in report["findings"] if f["severity"] in ("warn", "fail")]


def ctr_of(report: dict) -> dict:
    return next(
        f for f in report["features"] if f["feature"] == "user_engagement:click_through_rate"
    )


def test_v1_log_is_migrated_and_checked(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0)
    serve_and_log(repo, 20)
    current_url = f"sqlite:///{repo}/data/parity.db"
    writer = current_writer(current_url)
    rows = old_log_rows(current_url, repo, version=1)
    assert len(rows) == 600 and all(
        len(c) == 4 for r in rows for c in json.loads(r["features"]).values()
    )
    # the same samples as a v1 plugin wrote them: v1 table, 4-field cells, no meta table
    old_path = tmp_path / "old.db"
    old = write_old_log(old_path, rows, version=1)
    demo.write_config(repo, sample_rate=1.0, store_url=f"sqlite:///{old_path}")

    until = datetime.now(timezone.utc) + timedelta(seconds=1)
    report = run_check(repo, until=until)
    assert report["samples"] == len(rows) == 600
    assert not clean(report), clean(report)
    assert report["skipped_rows"]["rows"] == 0
    ctr = ctr_of(report)
    assert ctr["compared"] == 200 and ctr["schema"]["diverged"] is False
    version, columns, tables = store_version(old)
    assert version == STORE_VERSION == 3 and {"writer", "seed"} <= columns
    assert "parity_sample_batches" in tables

    # new samples append to the migrated log (as v3 batches) next to the old rows
    serve_and_log(repo, 2, seed=1)
    log = read_samples(f"sqlite:///{old_path}")
    assert log.num_rows == 600 + 60
    assert set(log.column("writer").to_pylist()) == {"unknown", writer}
    old.dispose()


def test_v2_log_is_migrated_and_checked(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0)
    serve_and_log(repo, 20)
    current_url = f"sqlite:///{repo}/data/parity.db"
    rows = old_log_rows(current_url, repo, version=2)
    assert len(rows) == 600 and all(
        len(c) == 5 for r in rows for c in json.loads(r["features"]).values()
    )
    old_path = tmp_path / "old_v2.db"
    old = write_old_log(old_path, rows, version=2)
    demo.write_config(repo, sample_rate=1.0, store_url=f"sqlite:///{old_path}")

    until = datetime.now(timezone.utc) + timedelta(seconds=1)
    report = run_check(repo, until=until)
    assert report["samples"] == 600
    assert not clean(report), clean(report)
    assert report["skipped_rows"]["rows"] == 0
    ctr = ctr_of(report)
    assert ctr["compared"] == 200 and ctr["schema"]["diverged"] is False
    assert ctr["schema"]["declared_at_serving"] == ["Float32"]
    version, columns, tables = store_version(old)
    assert version == STORE_VERSION and "parity_sample_batches" in tables
    logged = read_samples(f"sqlite:///{old_path}")
    assert logged.num_rows == 600 and set(logged.column("writer").to_pylist()) == {OLD_WRITER}
    old.dispose()


def test_a_window_spanning_v2_rows_and_v3_batches_reads_both(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0)
    serve_and_log(repo, 20)
    current_url = f"sqlite:///{repo}/data/parity.db"
    writer = current_writer(current_url)
    rows = old_log_rows(current_url, repo, version=2)
    old_path = tmp_path / "mixed.db"
    old = write_old_log(old_path, rows, version=2)
    demo.write_config(repo, sample_rate=1.0, store_url=f"sqlite:///{old_path}")
    # the upgraded plugin serves on: v3 batches in the same store, after the v2 rows
    serve_and_log(repo, 10, seed=7)
    with old.connect() as conn:
        batches = conn.execute(sa.text("select count(*) from parity_sample_batches")).scalar()
        legacy = conn.execute(sa.text("select count(*) from parity_samples")).scalar()
    assert batches >= 1 and legacy == 600

    since = datetime.now(timezone.utc) - timedelta(hours=1)
    until = datetime.now(timezone.utc) + timedelta(seconds=1)
    report = run_check(repo, since=since, until=until)
    assert report["samples"] == 600 + 300
    assert not clean(report), clean(report)
    ctr = ctr_of(report)
    assert ctr["rows"] == ctr["compared"] == 200 + 100
    assert ctr["mismatch_rate"] == 0.0 and ctr["schema"]["diverged"] is False
    for view in report["feature_views"]:
        assert view["samples"] == 200 + 100, view
    logged = read_samples(f"sqlite:///{old_path}", since=since, until=until)
    assert logged.num_rows == 900
    assert set(logged.column("writer").to_pylist()) == {OLD_WRITER, writer}
    old.dispose()


def test_a_log_from_a_newer_version_is_refused_clearly(build_repo, capsys):
    repo = build_repo(sample_rate=1.0, materialize=False)
    engine = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    run_check(repo)  # creates the log
    with engine.begin() as conn:
        conn.execute(sa.text("update parity_meta set value = '9' where key = 'log_schema_version'"))
    engine.dispose()
    assert cli(["check", "--repo", str(repo)]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "newer feast-parity" in lines[0] and "v9" in lines[0]
    assert "Traceback" not in captured.err + captured.out
