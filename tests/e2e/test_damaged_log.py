"""A hand-damaged sample log of a real repo never crashes the check.

Real serving writes the log (several batches per view); then, as a bad disk, a half-copied file
or a hostile writer would, stored batches are overwritten with garbage or cut short, a Parquet
file is truncated, and legacy v2 rows with broken cells are added to the SQL log. The check
exits as it would without them (0 here: nothing else is wrong), counts every skipped row by
reason in ``skipped_rows`` and a note, and still compares every undamaged row.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from feast_parity.cli import main as cli
from feast_parity.parity.samplelog import from_ipc, to_ipc
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


# --- issue 29, cases 1-4: batches that decode but lie -------------------------------------------


def _rewrite(engine: sa.Engine, batch_id: int, change) -> int:
    """Decode one stored batch, let ``change(table)`` return a new table, store it back in
    place (same batch id, rows and time range); returns the batch's row count."""
    table = sample_batches_table
    with engine.begin() as conn:
        payload = conn.execute(
            sa.select(table.c.payload).where(table.c.batch_id == batch_id)
        ).scalar_one()
        changed = change(from_ipc(payload)).combine_chunks()
        conn.execute(
            table.update()
            .where(table.c.batch_id == batch_id)
            .values(payload=to_ipc(changed.to_batches()[0]))
        )
    return changed.num_rows


def _set(table: pa.Table, column: str, rows: list[int], value) -> pa.Table:
    """``table`` with ``column`` set to ``value`` on ``rows`` (same Arrow type)."""
    values = table.column(column).to_pylist()
    for row in rows:
        values[row] = value
    index = table.column_names.index(column)
    field = table.schema.field(index)
    return table.set_column(index, field, pa.array(values, field.type))


def _batches(engine: sa.Engine, view: str) -> list[tuple[int, int]]:
    table = sample_batches_table
    with engine.connect() as conn:
        return [
            (int(i), int(n))
            for i, n in conn.execute(
                sa.select(table.c.batch_id, table.c.rows)
                .where(table.c.feature_view == view)
                .order_by(table.c.batch_id)
            )
        ]


def test_a_batch_claiming_two_billion_rows_is_skipped_in_constant_time(
    build_repo, tmp_path, capsys
):
    """Case 1: an unreadable batch whose ``rows`` claims 2,000,000,000 is one skipped row (the
    claim named), counted at once; a readable batch's own rows are trusted over its claim.
    The check runs in a child process under a generous guard: counting the claim one row at
    a time (as before) takes many minutes, far past it on any machine."""
    repo = build_repo(sample_rate=1.0, parity_extra={"batch_size": 300})
    serve_refs(repo, REQUESTS)
    engine = _engine(repo)
    (garbage_id, garbage_rows), (lying_id, _), *_ = _batches(engine, "user_engagement")
    table = sample_batches_table
    with engine.begin() as conn:
        conn.execute(
            table.update()
            .where(table.c.batch_id == garbage_id)
            .values(payload=b"\x00garbage", rows=2_000_000_000)
        )
        conn.execute(table.update().where(table.c.batch_id == lying_id).values(rows=2_000_000_000))
    engine.dispose()
    out = tmp_path / "r.json"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "feast_parity.cli",
            "check",
            "--repo",
            str(repo),
            "--no-progress",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    print(f"check with a 2e9-row claim: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    reasons = report["skipped_rows"]["reasons"]
    claim = "damaged v3 batch (unreadable Arrow data); claims 2,000,000,000 rows, counted as one"
    assert reasons == {claim: 1}, reasons
    # the lying batch was read whole (its payload, not its claim): only the unreadable one is
    # missing, and the samples are the rows that were there
    assert feature(report, "user_engagement:click_through_rate")["compared"] == (
        REQUESTS * 10 - garbage_rows
    )
    assert report["samples"] == 2 * REQUESTS * 10 - garbage_rows


def test_rows_with_unrepresentable_event_times_are_skipped_and_the_rest_compared(
    build_repo, tmp_path, capsys
):
    """Case 2: five rows whose event time is near the int64 minimum (in µs) no longer make the
    offline retrieval of their whole view fail: they are skipped and counted, every other row
    of the view is compared."""
    repo = build_repo(sample_rate=1.0, parity_extra={"batch_size": 300})
    serve_refs(repo, REQUESTS)
    engine = _engine(repo)
    batch_id, _ = _batches(engine, "user_engagement")[-1]
    far = -(2**63) + 1_000
    _rewrite(
        engine,
        batch_id,
        lambda t: t.set_column(
            t.column_names.index("event_time"),
            t.schema.field("event_time"),
            pa.array(
                [
                    far if i < 5 else v
                    for i, v in enumerate(pc.cast(t.column("event_time"), pa.int64()).to_pylist())
                ],
                pa.int64(),
            ).cast(t.schema.field("event_time").type),
        ),
    )
    engine.dispose()
    code, report, err = _check(repo, tmp_path / "r.json", capsys)
    assert code == 0, report["findings"]
    assert report["skipped_rows"]["reasons"] == {"event time outside 1678..2261": 5}
    for name in ("click_through_rate", "watch_minutes", "sessions"):
        row = feature(report, f"user_engagement:{name}")
        assert row["status"] == "ok", row
        assert row["compared"] == REQUESTS * 10 - 5
        assert row["mismatch_rate"] == 0.0
    assert any("event time outside" in note for note in report["notes"])


def test_a_status_code_that_is_no_field_status_is_skipped_with_a_note(build_repo, tmp_path, capsys):
    """Case 3: a status of 99 is not a served default: those rows are skipped and counted, and
    no ``silent_default`` finding comes of them."""
    repo = build_repo(sample_rate=1.0, parity_extra={"batch_size": 300})
    serve_refs(repo, REQUESTS)
    engine = _engine(repo)
    batch_id, _ = _batches(engine, "user_engagement")[0]
    bad = list(range(0, 60, 2))  # 30 rows: 5 % of the view, far over the fail threshold
    _rewrite(engine, batch_id, lambda t: _set(t, "status:watch_minutes", bad, 99))
    engine.dispose()
    code, report, err = _check(repo, tmp_path / "r.json", capsys)
    assert code == 0, report["findings"]
    assert [f for f in report["findings"] if f["kind"] == "silent_default"] == []
    reason = "status code that is not a Feast FieldStatus"
    assert report["skipped_rows"]["reasons"] == {reason: len(bad)}
    watch = feature(report, "user_engagement:watch_minutes")
    assert watch["silent_default_rate"] == 0.0
    assert watch["compared"] == REQUESTS * 10 - len(bad)
    assert any(reason in note for note in report["notes"])


def test_rows_without_a_request_time_in_an_in_window_batch_are_counted(
    build_repo, tmp_path, capsys
):
    """Case 4: rows with a null request time inside a batch of the window are skipped and
    counted (they used to vanish: neither compared nor counted)."""
    repo = build_repo(sample_rate=1.0, parity_extra={"batch_size": 300})
    serve_refs(repo, REQUESTS)
    engine = _engine(repo)
    batch_id, _ = _batches(engine, "video_stats")[0]
    _rewrite(engine, batch_id, lambda t: _set(t, "request_time", [1, 2, 3, 4], None))
    engine.dispose()
    code, report, err = _check(repo, tmp_path / "r.json", capsys)
    assert code == 0, report["findings"]
    assert report["skipped_rows"] == {"rows": 4, "reasons": {"no request time": 4}}
    popularity = feature(report, "video_stats:popularity")
    assert popularity["compared"] == REQUESTS * 10 - 4
    assert report["samples"] + report["skipped_rows"]["rows"] == 2 * REQUESTS * 10
