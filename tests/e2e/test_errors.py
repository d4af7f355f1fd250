"""Errors a user meets: races on the results store, an unreachable store, Ctrl-C in a check.

Each command must end with one line and a documented exit code, never a traceback or a
driver's "Background on this error" paragraph, and never leave half a run stored.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from feast import FeatureStore

from feast_parity import demo
from feast_parity.cli import main as cli
from feast_parity.plugin.check import run_check
from feast_parity.store.engine import open_store
from feast_parity.store.runs import load_runs, store_run
from feast_parity.store.schema import feature_metrics_table, findings_table, runs_table


def _opened(pid: int, name: str) -> bool:
    """Whether process ``pid`` holds a file called ``name`` open (Linux /proc)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name):
                return True
        except OSError:
            continue
    return False


def _window() -> tuple[str, str]:
    until = datetime.now(timezone.utc) + timedelta(minutes=5)
    return (until - timedelta(days=1)).isoformat(), until.isoformat()


def test_ten_forced_races_of_one_window_never_hit_a_unique_constraint(build_repo, postgres_url):
    repo = build_repo(sample_rate=1.0, store_url=postgres_url)
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 10, users=300, videos=100)
    assert store._get_provider().flush_samples()
    since, until = _window()
    report = run_check(repo, since, until, store_results=False)
    engine = open_store(postgres_url)
    errors: list[BaseException] = []
    for _ in range(10):
        barrier = threading.Barrier(2)

        def write(barrier: threading.Barrier = barrier) -> None:
            try:
                barrier.wait()
                store_run(engine, report)
            except BaseException as exc:  # the test reports every failure
                errors.append(exc)

        threads = [threading.Thread(target=write) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    with engine.connect() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(runs_table)).scalar()
        metrics = conn.execute(
            sa.select(sa.func.count()).select_from(feature_metrics_table)
        ).scalar()
        found = conn.execute(sa.select(sa.func.count()).select_from(findings_table)).scalar()
    assert runs == 1
    assert metrics == len(report["features"]) and found == len(report["findings"])
    engine.dispose()


def test_two_check_processes_of_one_window_both_succeed(build_repo, postgres_url):
    repo = build_repo(sample_rate=1.0, store_url=postgres_url)
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 10, users=300, videos=100)
    assert store._get_provider().flush_samples()
    since, until = _window()
    command = [
        sys.executable,
        "-m",
        "feast_parity.cli",
        "check",
        "--repo",
        str(repo),
        "--since",
        since,
        "--until",
        until,
        "--no-progress",
    ]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    engine = open_store(postgres_url)
    assert len(load_runs(engine)) == 1
    engine.dispose()


COMMANDS = [
    ["check", "--no-progress"],
    ["freshness"],
    ["lineage", "user_engagement:country"],
    ["alerts"],
    ["export", "--prometheus", "{tmp}/out.prom"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_an_unreachable_parity_store_is_one_line_with_the_url_masked(
    build_repo, tmp_path, capsys, command
):
    url = "postgresql+psycopg://parity:s3cr3t-pw@127.0.0.1:1/parity"
    repo = build_repo(sample_rate=0.0, store_url=url)
    argv = [part.format(tmp=tmp_path) for part in command] + ["--repo", str(repo)]
    code = cli(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("feast-parity: error:")
    assert "127.0.0.1:1" in lines[0] and "s3cr3t-pw" not in captured.err + captured.out
    assert "Traceback" not in captured.err and "Background on this error" not in captured.err


def test_ctrl_c_ends_a_check_with_one_line_exit_130_and_a_consistent_store(build_repo):
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 150, entities=100, users=300, videos=100)  # 45,000 log rows
    assert store._get_provider().flush_samples()
    since, until = _window()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "feast_parity.cli",
            "check",
            "--repo",
            str(repo),
            "--since",
            since,
            "--until",
            until,
            "--chunk-rows",
            "50",
            "--no-progress",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # interrupt once the check has opened its store (it is then reading the window), not
    # after a fixed sleep: how long a check of these rows takes depends on the machine
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if _opened(process.pid, "parity.db"):
            break
        time.sleep(0.02)
    assert process.poll() is None, "the check ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["feast-parity: interrupted"], err
    engine = sa.create_engine(f"sqlite:///{repo}/data/parity.db")
    with engine.connect() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(runs_table)).scalar()
        metrics = conn.execute(
            sa.select(sa.func.count()).select_from(feature_metrics_table)
        ).scalar()
    assert runs == 0 and metrics == 0  # interrupted before storing: nothing half-stored
    engine.dispose()
