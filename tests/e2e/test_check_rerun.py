"""A check killed mid-run and run again gives the same report and no duplicated metrics."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from feast import FeatureStore

from feast_parity import demo
from feast_parity.plugin.check import run_check

VOLATILE = ("generated_at", "timings")


def stable(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in VOLATILE}


def counts(repo) -> dict[str, int]:
    engine = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    try:
        with engine.connect() as conn:
            return {
                table: conn.execute(sa.text(f"select count(*) from {table}")).scalar()
                for table in ("parity_runs", "parity_feature_metrics", "parity_view_metrics")
            }
    finally:
        engine.dispose()


def test_check_killed_mid_run_then_rerun_is_idempotent(build_repo):
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 30, users=300, videos=100)
    assert store._get_provider().flush_samples()
    until = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    now = datetime.now(timezone.utc).isoformat()
    script = textwrap.dedent(f"""
        import sys, time
        from datetime import datetime
        from feast_parity.plugin.check import run_check
        seen = []
        def progress(done, total):
            seen.append(done)
            print("chunk", done, total, flush=True)
            if len(seen) == 2:
                time.sleep(600)  # killed here, mid-run
        run_check({str(repo)!r}, until={until!r}, chunk_rows=100, progress=progress,
                  now=datetime.fromisoformat({now!r}))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        lines = [child.stdout.readline(), child.stdout.readline()]
        assert all(line.startswith("chunk") for line in lines), lines
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert counts(repo)["parity_runs"] == 0  # nothing half-stored

    fixed_now = datetime.fromisoformat(now)
    first = run_check(repo, until=until, chunk_rows=100, now=fixed_now)
    after_first = counts(repo)
    second = run_check(repo, until=until, chunk_rows=100, now=fixed_now)
    assert stable(first) == stable(second)
    assert counts(repo) == after_first
    assert after_first["parity_runs"] == 1
    assert after_first["parity_feature_metrics"] == len(first["features"])
    assert after_first["parity_view_metrics"] == len(first["feature_views"])
    # chunking does not change the report either (bins are fixed from the first 50,000 offline
    # values whatever the chunk size)
    whole = run_check(repo, until=until, now=fixed_now, store_results=False)
    assert stable(whole)["features"] == stable(first)["features"]
