"""The Parquet sink and the writer in a hostile environment (issue 29, cases 5, 6, 7 and 9).

Real serving through the plugin on the demo repo (plus a view whose name is 28 CJK characters),
writing its Parquet dataset onto a real tmpfs mount of its own: filled to the last page (a full
disk) or remounted read-only, as a host would. What is asserted is the bookkeeping a user relies
on: the dataset holds exactly the rows counted as written, a request is never logged for some of
its views only, an outage is logged once when it starts and once when it ends, and the writer
thread accounts for every row even when it dies.

The mount tests need root (or CAP_SYS_ADMIN) to mount tmpfs; elsewhere they are skipped.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from feast import FeatureStore

from feast_parity import demo, read_samples
from feast_parity.cli import main as cli
from tests.faults import now_hour

LONG_VIEW = "視聴履歴" * 7  # 28 CJK characters: 84 UTF-8 bytes, 252 when URL-quoted
LONG_VIEW_TWIN = "視聴履歴" * 7 + "二"  # the same first 96 quoted characters
EXTRA_VIEWS = f'''

long_named = FeatureView(
    name="{LONG_VIEW}",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[Field(name="sessions", dtype=Int64), Field(name="country", dtype=String)],
    source=user_engagement_source,
)

long_named_twin = FeatureView(
    name="{LONG_VIEW_TWIN}",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[Field(name="watch_minutes", dtype=Float64)],
    source=user_engagement_source,
)
'''
REFS = [
    "user_engagement:watch_minutes",
    "user_engagement:sessions",
    "video_stats:popularity",
    "video_stats:age_days",
]
RETRY_SECONDS = 2.0  # the writer probes a down sink this often (SampleWriter.retry_seconds)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile_sink") / "repo"
    demo.make_demo_repo(path, users=100, videos=40, days=2, end=now_hour(), sample_rate=1.0)
    with open(path / "features.py", "a") as definitions:
        definitions.write(EXTRA_VIEWS)
    demo.feast_apply(path)
    demo.materialize(path, days=3)
    return path


def _config(repo: Path, directory: Path, parity: dict[str, Any]) -> Path:
    """``directory`` as a repo of its own: a feature_store.yaml on ``repo``'s registry and
    online store (the registry holds the sources' absolute paths) with this ``parity:``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["registry"] = str(repo / "data" / "registry.db")
    config["online_store"]["path"] = str(repo / "data" / "online_store.db")
    config["parity"] = parity
    (directory / "feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def _open(repo: Path, directory: Path, sample_log: Path, **parity: Any) -> FeatureStore:
    """A FeatureStore on ``repo`` whose samples go to the Parquet dataset ``sample_log``."""
    block = {
        "sample_rate": 1.0,
        "store": f"sqlite:///{directory / 'parity.db'}",
        "sample_log": str(sample_log),
        "flush_interval_seconds": 0.05,
        **parity,
    }
    return FeatureStore(repo_path=str(_config(repo, directory, block)))


def _serve(store: FeatureStore, requests: int, first_user: int = 0, refs: Any = None) -> None:
    for i in range(requests):
        user = demo.FIRST_USER + (first_user + i) % 100
        rows = [{"user_id": user, "video_id": demo.FIRST_VIDEO + v} for v in range(10)]
        store.get_online_features(refs or REFS, entity_rows=rows)


def _stats(store: FeatureStore) -> dict[str, int]:
    return store._get_provider().parity_stats()


def _flush(store: FeatureStore) -> None:
    assert store._get_provider().flush_samples(timeout=30)


def _dataset_rows(root: Path, reader: Path) -> dict[str, int]:
    """Log rows per request id in the dataset (visible files only); ``reader`` is an empty
    parity store for read_samples, outside the dataset."""
    table = read_samples(f"sqlite:///{reader}", sample_log=str(root))
    counts: dict[str, int] = {}
    if "request_id" in table.column_names:
        for request_id in table.column("request_id").to_pylist():
            counts[request_id] = counts.get(request_id, 0) + 1
    return counts


class Tmpfs:
    """A real tmpfs mount of ``size`` bytes: fill it, or remount it read-only."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount tmpfs here (needs root): {done.stderr.strip()}")

    def free_bytes(self) -> int:
        stats = os.statvfs(self.path)
        return stats.f_bavail * stats.f_frsize

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Tmpfs]]:
    mounts: list[Tmpfs] = []

    def make(size: int) -> Tmpfs:
        mounts.append(Tmpfs(tmp_path / f"mnt{len(mounts)}", size))
        return mounts[-1]

    yield make
    for mount in mounts:
        mount.unmount()


def _outage_lines(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    messages = [r.getMessage() for r in caplog.records if r.name == "feast_parity"]
    failed = sum("failed, dropping rows until it returns" in m for m in messages)
    back = sum(m.endswith(" is back") for m in messages)
    return failed, back


def _serve_through(store: FeatureStore, seconds: float, first_user: int) -> int:
    """Serve a request and flush, over and over for ``seconds`` (several probe periods)."""
    served, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        _serve(store, 1, first_user + served)
        _flush(store)
        served += 1
        time.sleep(0.2)
    return served


def _serve_until_written(store: FeatureStore, first_user: int) -> None:
    written = _stats(store)["written_rows"]
    deadline = time.monotonic() + 6 * RETRY_SECONDS
    served = 0
    while _stats(store)["written_rows"] == written:
        assert time.monotonic() < deadline, f"logging did not resume: {_stats(store)}"
        _serve(store, 1, first_user + served)
        _flush(store)
        served += 1
        time.sleep(0.2)


# --- 5 and 6: a full disk ------------------------------------------------------------------------


def test_a_disk_full_mid_flush_leaves_no_file_of_that_flush_and_logs_the_outage_once(
    repo: Path, tmp_path: Path, tmpfs: Callable[[int], Tmpfs], caplog: pytest.LogCaptureFixture
) -> None:
    mount = tmpfs(4 * 1024 * 1024)
    dataset = mount.path / "samples"
    store = _open(repo, tmp_path / "full", dataset)
    _serve(store, 10)
    _flush(store)
    first = _dataset_rows(dataset, tmp_path / "reader.db")
    assert len(first) == 10 and set(first.values()) == {20}, first
    sizes = {p.parent.parent.name: p.stat().st_size for p in dataset.rglob("*.parquet")}
    assert len(sizes) == 2, sizes
    # the next flush (the same users) writes the two views' files one after the other: leave
    # room for the larger file and a page to spare, which is less than room for both
    assert min(sizes.values()) > 2 * 4096, sizes
    room = (-(-max(sizes.values()) // 4096) + 1) * 4096
    filler = mount.path / "filler"
    filler.write_bytes(b"\0" * max(0, mount.free_bytes() - room))
    assert mount.free_bytes() <= room

    with caplog.at_level(logging.WARNING, logger="feast_parity"):
        _serve(store, 10)
        _flush(store)
        stats = _stats(store)
        assert stats["store_errors"] >= 1 and stats["dropped_store_error"] == 100, stats
        # the failed flush left nothing behind: the room it had is free again
        assert mount.free_bytes() >= room - 4096
        rest = mount.path / "rest"  # now the disk is full to the last page, and stays so
        handle = os.open(rest, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(handle, b"\0" * 4096):
                pass
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(handle)
        _serve_through(store, 2.5 * RETRY_SECONDS, first_user=20)
        assert _outage_lines(caplog) == (1, 0), [r.getMessage() for r in caplog.records]
        filler.unlink()
        rest.unlink()
        _serve_until_written(store, first_user=40)
        _serve(store, 5, first_user=60)
        _flush(store)

    stats = _stats(store)
    logged = _dataset_rows(dataset, tmp_path / "reader.db")
    # whole requests only, and exactly the rows counted as written
    assert set(logged.values()) == {20}, "a request was logged for one view only"
    assert sum(logged.values()) == stats["written_log_rows"]
    assert 10 * len(logged) == stats["written_rows"]
    assert stats["sampled_rows"] == stats["written_rows"] + stats["dropped_rows"]
    assert not [p for p in dataset.rglob(".*") if p.is_file()], "temporary files left behind"
    assert _outage_lines(caplog) == (1, 1), [r.getMessage() for r in caplog.records]


# --- 6: a read-only remount ----------------------------------------------------------------------


def test_a_read_only_remount_is_one_outage_probed_with_a_real_write(
    repo: Path, tmp_path: Path, tmpfs: Callable[[int], Tmpfs], caplog: pytest.LogCaptureFixture
) -> None:
    mount = tmpfs(16 * 1024 * 1024)
    dataset = mount.path / "samples"
    store = _open(repo, tmp_path / "ro", dataset)
    _serve(store, 5)
    _flush(store)
    assert _stats(store)["written_rows"] == 50
    with caplog.at_level(logging.WARNING, logger="feast_parity"):
        mount.remount("ro")
        try:
            served = _serve_through(store, 3 * RETRY_SECONDS, first_user=5)
            stats = _stats(store)
            assert stats["written_rows"] == 50, "nothing can be written on a read-only mount"
            assert stats["dropped_store_error"] == 10 * served
            # the probe really writes: a directory that exists is no proof of a writable disk
            assert _outage_lines(caplog) == (1, 0), [r.getMessage() for r in caplog.records]
        finally:
            mount.remount("rw")
        _serve_until_written(store, first_user=40)
    assert _outage_lines(caplog) == (1, 1), [r.getMessage() for r in caplog.records]
    stats = _stats(store)
    assert sum(_dataset_rows(dataset, tmp_path / "reader.db").values()) == stats["written_log_rows"]
    assert stats["sampled_rows"] == stats["written_rows"] + stats["dropped_rows"]


# --- 7: a view name long in UTF-8 ----------------------------------------------------------------


def test_a_long_utf8_view_name_is_logged_under_a_bounded_directory_and_checked(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "samples"
    store = _open(repo, tmp_path / "long", dataset)
    refs = [
        f"{LONG_VIEW}:sessions",
        f"{LONG_VIEW}:country",
        f"{LONG_VIEW_TWIN}:watch_minutes",
        "user_engagement:click_through_rate",
    ]
    _serve(store, 30, refs=refs)
    _flush(store)
    stats = _stats(store)
    assert stats["written_rows"] == stats["sampled_rows"] == 300, stats
    assert stats["dropped_rows"] == 0
    partitions = {p.name for p in dataset.iterdir()}
    assert len(partitions) == 3, partitions  # the twins share a quoted prefix, not a directory
    assert max(len(name.encode()) for name in partitions) <= 255
    for view in (LONG_VIEW, LONG_VIEW_TWIN, "user_engagement"):
        table = read_samples(
            f"sqlite:///{tmp_path}/reader.db", sample_log=str(dataset), feature_view=view
        )
        assert table.num_rows == 300, view
    files = list(dataset.rglob("*.parquet"))
    assert all(pq.read_schema(f).metadata for f in files)

    capsys.readouterr()
    out = tmp_path / "report.json"
    assert (
        cli(["check", "--repo", str(tmp_path / "long"), "--no-progress", "--json", str(out)]) == 0
    )
    report = json.loads(out.read_text())
    rows = {f["feature"]: f for f in report["features"]}
    assert rows[f"{LONG_VIEW}:sessions"]["compared"] == 300
    assert rows[f"{LONG_VIEW_TWIN}:watch_minutes"]["compared"] == 300
    assert rows[f"{LONG_VIEW}:sessions"]["mismatch_rate"] == 0.0
    assert report["skipped_rows"]["rows"] == 0


# --- 9: the writer thread ------------------------------------------------------------------------


def test_the_writer_thread_accounts_for_every_row_when_it_dies(
    repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _open(repo, tmp_path / "dies", tmp_path / "samples")
    _serve(store, 3)
    _flush(store)
    writer = store._get_provider().writer
    thread = writer._thread
    # an exception raised inside the running writer thread, whatever it is doing (as a bug, a
    # MemoryError or an OverflowError would): the thread's own code must account for it
    with caplog.at_level(logging.ERROR, logger="feast_parity"):
        raised = ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit)
        )
        assert raised == 1
        thread.join(timeout=10)
        assert not thread.is_alive()
        _serve(store, 4, first_user=3)
        _flush(store)
    stats = _stats(store)
    assert stats["written_rows"] == 30
    assert stats["dropped_store_error"] == 40
    assert stats["sampled_rows"] == stats["written_rows"] + stats["dropped_rows"] == 70
    stopped = [r.getMessage() for r in caplog.records if "writer thread stopped" in r.getMessage()]
    assert len(stopped) == 1, stopped


def test_a_huge_flush_interval_does_not_kill_the_writer(repo: Path, tmp_path: Path) -> None:
    store = _open(repo, tmp_path / "huge", tmp_path / "samples")
    writer = store._get_provider().writer
    # set past validation (which refuses it, below): the writer itself must survive it
    writer.flush_interval = float("inf")
    time.sleep(0.2)  # the writer goes back to sleep with the new interval
    _serve(store, 3)
    _flush(store)
    assert writer._thread.is_alive()
    stats = _stats(store)
    assert stats["written_rows"] == stats["sampled_rows"] == 30, stats


@pytest.mark.parametrize("value", [".inf", "1e10", "-1", ".nan"])
def test_a_flush_interval_out_of_range_is_one_line_naming_the_key(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    copy = _config(repo, tmp_path / "repo", {"sample_rate": 1.0})
    body = (copy / "feature_store.yaml").read_text()
    body = body.replace("parity:\n", f"parity:\n  flush_interval_seconds: {value}\n", 1)
    (copy / "feature_store.yaml").write_text(body)
    capsys.readouterr()
    assert cli(["check", "--repo", str(copy), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("feast-parity: error: parity.flush_interval_seconds: "), err
    assert "\n" not in err
