"""A hand-damaged sample log of a real repo never crashes the check.

Real serving writes the log (several batches per view); then, as a bad disk, a half-copied file
or a hostile writer would, stored batches are overwritten with garbage or cut short, a Parquet
file is truncated, and legacy v2 rows with broken cells are added to the SQL log. The check
exits as it would without them (0 here: nothing else is wrong), counts every skipped row by
reason in ``skipped_rows`` and a note, and still compares every undamaged row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from feast_parity.cli import main as cli
from feast_parity.store.schema import sample_batches_table, samples_v2_table
from tests.faults import feature, serve_refs

REQUESTS = 60  # 600 request rows, 1,800 log rows over 3 views


def _check(repo: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = cli(["check", "--repo", str(repo), "--json", str(out), "--no-progress"])
    return code, json.loads(out.read_text()), capsys.readouterr().err


def _engine(repo: Path) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{repo / 'data' / 'parity.db'}")


def test_damaged_sql_batches_and_v2_rows_are_skipped_and_counted(build_repo, tmp_path, capsys):
    repo = build_repo(sample_rate=1.0, parity_extra={"batch_size": 300})
    serve_refs(repo, REQUESTS)
    code, clean, _ = _check(repo, tmp_path / "clean.json", capsys)
    assert code == 0 and clean["skipped_rows"]["rows"] == 0
    engine = _engine(repo)
    with engine.begin() as conn:
        batches = conn.execute(
            sa.select(sample_batches_table.c.batch_id, sample_batches_table.c.rows)
            .where(sample_batches_table.c.feature_view == "user_engagement")
            .order_by(sample_batches_table.c.batch_id)
        ).all()
        assert len(batches) >= 3, batches
        (garbage_id, garbage_rows), (cut_id, cut_rows) = batches[0], batches[1]
        payload = conn.execute(
            sa.select(sample_batches_table.c.payload).where(
                sample_batches_table.c.batch_id == cut_id
            )
        ).scalar_one()
        table = sample_batches_table
        conn.execute(
            table.update().where(table.c.batch_id == garbage_id).values(payload=b"\x00garbage")
        )
        conn.execute(
            table.update()
            .where(table.c.batch_id == cut_id)
            .values(payload=payload[: len(payload) // 2])
        )
        # legacy v2 rows in the window: bad JSON, a huge text, a view no longer registered
        request_time = sa.select(sa.func.max(table.c.max_request_time)).scalar_subquery()
        common = {
            "log_version": 2,
            "request_id": "00000000-0000-0000-0000-000000000000",
            "feature_service": None,
            "entity_key": json.dumps({"user_id": 1001}),
            "entity_key_hash": 1,
            "event_time": None,
            "row_hash": 0,
            "schema_fingerprint": 0,
            "sample_rate": 1.0,
            "seed": 42,
            "writer": "hostile:1",
        }
        broken = [
            {"feature_view": "user_engagement", "features": "{not json"},
            {"feature_view": "user_engagement", "features": "x" * 1_100_000},
            {"feature_view": "gone_view", "features": "{}"},  # a view deleted since
        ]
        for row in broken:
            conn.execute(
                samples_v2_table.insert().values(**common, **row, request_time=request_time)
            )
    engine.dispose()

    code, report, err = _check(repo, tmp_path / "damaged.json", capsys)
    assert code == 0, report["findings"]
    assert "Traceback" not in err
    skipped = report["skipped_rows"]
    damaged_rows = garbage_rows + cut_rows
    assert skipped["reasons"]["damaged v3 batch (unreadable Arrow data)"] == damaged_rows
    assert skipped["reasons"]["cell is not valid JSON"] == 1
    assert skipped["reasons"]["cell longer than 1,000,000 characters"] == 1
    assert skipped["rows"] == damaged_rows + 2, skipped
    assert report["deleted_feature_views"] == {"gone_view": 1}
    assert any("damaged v3 batch" in note and "skipped" in note for note in report["notes"])
    # every undamaged row still compared; the other views untouched
    ctr = feature(report, "user_engagement:click_through_rate")
    assert ctr["compared"] == REQUESTS * 10 - damaged_rows
    assert ctr["mismatch_rate"] == 0.0
    assert feature(report, "video_stats:popularity")["compared"] == REQUESTS * 10
    assert report["samples"] == clean["samples"] - damaged_rows


def test_a_truncated_parquet_file_is_skipped_and_counted(build_repo, tmp_path, capsys):
    log_dir = tmp_path / "samples"
    repo = build_repo(sample_rate=1.0, parity_extra={"batch_size": 300, "sample_log": str(log_dir)})
    serve_refs(repo, REQUESTS)
    files = sorted(p for p in log_dir.rglob("*.parquet") if "user_engagement" in str(p))
    assert len(files) >= 2, files
    code, clean, _ = _check(repo, tmp_path / "clean.json", capsys)
    assert code == 0 and clean["skipped_rows"]["rows"] == 0
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 3])  # a half-copied file: no footer
    files[1].write_bytes(b"PAR1 but not really")

    code, report, err = _check(repo, tmp_path / "damaged.json", capsys)
    assert code == 0, report["findings"]
    assert "Traceback" not in err
    reasons = report["skipped_rows"]["reasons"]
    assert {r for r in reasons} == {
        f"damaged Parquet file {files[0].name}",
        f"damaged Parquet file {files[1].name}",
    }, reasons
    lost = REQUESTS * 10 - feature(report, "user_engagement:click_through_rate")["compared"]
    assert lost > 0
    assert report["samples"] == clean["samples"] - lost
    assert feature(report, "video_stats:popularity")["compared"] == REQUESTS * 10
    assert any("damaged Parquet file" in note for note in report["notes"])
