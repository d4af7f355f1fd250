"""A sample log written by an older plugin version is migrated in place and still checked."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from feast import FeatureStore

from feast_parity import demo, read_samples
from feast_parity.cli import main as cli
from feast_parity.parity.samplelog import LOG_SCHEMA_VERSION
from feast_parity.plugin.check import run_check

V1_DDL = """
CREATE TABLE parity_samples (
    sample_id INTEGER PRIMARY KEY AUTOINCREMENT, log_version INTEGER NOT NULL,
    request_id VARCHAR(36) NOT NULL, request_time FLOAT NOT NULL, feature_service VARCHAR(255),
    entity_key TEXT NOT NULL, entity_key_hash BIGINT NOT NULL, feature_view VARCHAR(255) NOT NULL,
    event_time FLOAT, row_hash BIGINT NOT NULL, schema_fingerprint BIGINT NOT NULL,
    features TEXT NOT NULL, sample_rate FLOAT NOT NULL)
"""
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


def test_v1_log_is_migrated_and_checked(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 20, users=300, videos=100)
    assert store._get_provider().flush_samples()
    current = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    with current.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text("select * from parity_samples"))]
    # the same samples as an older plugin wrote them: v1 table, 4-field cells, no meta table
    old_path = tmp_path / "old.db"
    old = sa.create_engine(f"sqlite:///{old_path}")
    with old.begin() as conn:
        conn.execute(sa.text(V1_DDL))
        for row in rows:
            cells = {k: v[:4] for k, v in json.loads(row["features"]).items()}
            values = {c: row[c] for c in V1_COLUMNS} | {"features": json.dumps(cells)}
            conn.execute(
                sa.text(
                    f"insert into parity_samples ({', '.join(V1_COLUMNS)}) values "
                    f"({', '.join(':' + c for c in V1_COLUMNS)})"
                ),
                values,
            )
    demo.write_config(repo, sample_rate=1.0, store_url=f"sqlite:///{old_path}")

    until = datetime.now(timezone.utc) + timedelta(seconds=1)
    report = run_check(repo, until=until)
    assert report["samples"] == len(rows) == 600
    assert not [f for f in report["findings"] if f["severity"] in ("warn", "fail")]
    ctr = next(
        f for f in report["features"] if f["feature"] == "user_engagement:click_through_rate"
    )
    assert ctr["compared"] == 200 and ctr["schema"]["diverged"] is False
    with old.connect() as conn:
        version = conn.execute(
            sa.text("select value from parity_meta where key = 'log_schema_version'")
        ).scalar()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("parity_samples")}
    assert int(version) == LOG_SCHEMA_VERSION and {"writer", "seed"} <= columns

    # new samples append to the migrated log next to the old ones
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 2, users=300, videos=100)
    assert store._get_provider().flush_samples()
    log = read_samples(f"sqlite:///{old_path}")
    assert log.num_rows == 600 + 60
    assert set(log.column("writer").to_pylist()) == {"unknown", store._get_provider()._writer_id}


def test_a_log_from_a_newer_version_is_refused_clearly(build_repo, capsys):
    repo = build_repo(sample_rate=1.0, materialize=False)
    engine = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    run_check(repo)  # creates the log
    with engine.begin() as conn:
        conn.execute(
            sa.text("update parity_meta set value = '99' where key = 'log_schema_version'")
        )
    assert cli(["check", "--repo", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "newer feast-parity" in err and "v99" in err and "Traceback" not in err
