"""The two acts of ``make demo``: a healthy day, then an incident caught, explained and gated.

Act 1 serves the demo repo, checks the window (exit 0, the on-demand view compared row by row)
and lets the training gate pass. Act 2 makes an incident the way incidents happen, through
Feast and the sources, never by touching the sample log:

* a "hotfix" of the on-demand view's transformation is applied by another process (the real
  ``feast apply`` CLI) while this serving process keeps its cached registry, and so the old
  code (Feast's registry cache, docs/feast_facts.md T1);
* the upstream job lands a new snapshot of both sources, but only ``user_engagement`` is
  materialized: the ``video_stats`` job stalled;
* a backfill job writes ``watch_minutes = 0.0`` for every fifth user through Feast's
  ``write_to_online_store``.

Then it serves three bursts, checks each burst's window (three stored runs, so alerts can
open after their ``sustain_runs``), and shows ``feast-parity check``, ``alerts``,
``freshness`` and the training gate. :func:`run` returns what each step returned, for the
demo's own test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feast_parity import demo
from feast_parity.parity.freshness import format_duration

HOTFIX = ("(ctr or 0.0) * (pop or 0.0)", "(ctr or 0.0) * (pop or 0.0) * 100.0")
FILLED_EVERY = 5  # every fifth user gets the fill value
BURSTS = 3


@dataclass
class Story:
    """What each step of the two acts returned (exit codes, reports, gate results)."""

    repo: Path
    healthy_exit: int = -1
    healthy_report: dict[str, Any] = field(default_factory=dict)
    healthy_gate: list[dict[str, Any]] = field(default_factory=list)
    incident_exits: list[int] = field(default_factory=list)
    incident_report: dict[str, Any] = field(default_factory=dict)
    alerts_exit: int = -1
    freshness_exit: int = -1
    gate_refused: dict[str, list[str]] = field(default_factory=dict)
    html: Path | None = None


def _say(text: str) -> None:
    print(text, flush=True)


def _check(repo: Path, start: datetime, end: datetime, name: str, quiet: bool) -> tuple[int, dict]:
    """``feast-parity check`` of one window, its JSON and HTML next to the repo's data;
    ``quiet`` keeps its summary off the narrative."""
    from feast_parity.cli import main as cli

    data = repo / "data"
    args = ["check", "--repo", str(repo), "--since", start.isoformat(), "--until", end.isoformat()]
    args += ["--json", str(data / f"{name}.json"), "--html", str(data / f"{name}.html")]
    if quiet:
        args.append("--no-progress")
        with contextlib.redirect_stdout(io.StringIO()):
            code = cli(args)
    else:
        code = cli(args)
    return code, json.loads((data / f"{name}.json").read_text())


def _serve_window(
    store: Any, refs: list[str], requests: int, seed: int
) -> tuple[datetime, datetime]:
    """Serve ``requests`` ranking requests of ``refs``, flush the log; the window that holds
    them."""
    start = datetime.now(timezone.utc)
    demo.serve(store, requests, seed=seed, features=refs)
    provider = store._get_provider()
    provider.flush_samples()
    return start, datetime.now(timezone.utc)


def _land_new_snapshot(repo: Path, at: datetime, rng: np.random.Generator) -> None:
    """The upstream job writes a new snapshot of each source at ``at``: every entity's latest
    row, values moved a little, as the generator's own snapshots move."""
    for file_name, key in (
        ("user_engagement.parquet", "user_id"),
        ("video_stats.parquet", "video_id"),
    ):
        path = repo / "data" / file_name
        frame = pd.read_parquet(path)
        latest = frame.sort_values("event_timestamp").groupby(key).tail(1).copy()
        moved = latest.select_dtypes("floating").columns
        for column in moved:
            latest[column] = (latest[column] * rng.lognormal(0, 0.1, len(latest))).astype(
                latest[column].dtype
            )
        stamp = pd.Timestamp(at).tz_convert(frame["event_timestamp"].dt.tz)
        latest["event_timestamp"] = stamp
        latest["created"] = stamp
        pd.concat([frame, latest], ignore_index=True).to_parquet(path)


def _write_fill_values(repo: Path) -> int:
    """A backfill job writes 0.0 as ``watch_minutes`` of every fifth user, at the row's own
    event time, through Feast's ``write_to_online_store``."""
    from feast import FeatureStore

    frame = pd.read_parquet(repo / "data" / "user_engagement.parquet")
    latest = frame.sort_values("event_timestamp").groupby("user_id").tail(1)
    filled = latest[latest["user_id"] % FILLED_EVERY == 0].copy()
    filled["watch_minutes"] = 0.0
    FeatureStore(repo_path=str(repo)).write_to_online_store("user_engagement", filled)
    return len(filled)


def _gate(repo: Path) -> list[dict[str, Any]]:
    """The training gate over the feature service the ranking model trains on."""
    from feast import FeatureStore

    from feast_parity import training_gate

    store = FeatureStore(repo_path=str(repo))
    return training_gate(store, store.get_feature_service("ranking_model_v1"))


def run(
    repo: Path = demo.DEMO_SOURCE,
    *,
    requests: int = 400,
    sample_rate: float = 0.1,
    say: Callable[[str], None] = _say,
) -> Story:
    """Both acts on a fresh demo repo at ``repo``; returns what each step gave."""
    import shutil

    from feast import FeatureStore

    from feast_parity import TrainingGateError
    from feast_parity.cli import main as cli

    os.environ.setdefault("COLUMNS", "120")
    story = Story(repo=repo)
    data = repo / "data"
    if data.exists():
        shutil.rmtree(data)
    say("== Act 1: a healthy day ==")
    say(f"1/4 generating source data in {data}, feast apply, materialize")
    demo.make_demo_repo(
        repo,
        sample_rate=sample_rate,
        parity_extra={"alerts": {"kpi_source": f"data/{demo.KPI_FILE}"}},
    )
    features_file = repo / "features.py"
    original = features_file.read_text()
    try:
        demo.feast_apply(repo)
        demo.materialize(repo)
        # the ranking service resolves its feature service once at start-up and then requests
        # its feature refs, which Feast answers from the cached registry (feast_facts.md T1)
        store = FeatureStore(repo_path=str(repo))
        service = store.get_feature_service("ranking_model_v1")
        refs = [
            f"{p.name_to_use()}:{f.name}"
            for p in service.feature_view_projections
            for f in p.features
        ]
        say(f"2/4 serving {requests} ranking requests (sample rate {sample_rate})")
        start, end = _serve_window(store, refs, requests, seed=0)
        say("3/4 feast-parity check of that window")
        story.healthy_exit, story.healthy_report = _check(repo, start, end, "healthy", False)
        odfv = [r for r in story.healthy_report["features"] if r.get("on_demand")]
        for row in odfv:
            say(f"    on-demand {row['feature']}: {row['compared']} rows recomputed and compared")
        say("4/4 training gate for ranking_model_v1")
        story.healthy_gate = _gate(repo)
        say(f"    passed for {len(story.healthy_gate)} features")

        say("\n== Act 2: an incident ==")
        rng = np.random.default_rng(3)
        say("1/6 another process applies a 'hotfix' of ranking_signals (x 100) with feast apply;")
        say("    this serving process keeps its cached registry and the old transformation")
        features_file.write_text(original.replace(*HOTFIX))
        demo.feast_apply(repo)
        say("2/6 a new snapshot of both sources lands; only user_engagement is materialized")
        landed = datetime.now(timezone.utc) - timedelta(seconds=1)
        _land_new_snapshot(repo, landed, rng)
        demo.materialize(repo, views=["user_engagement"], days=1)
        say(f"3/6 a backfill job writes watch_minutes = 0.0 for every {FILLED_EVERY}th user")
        filled = _write_fill_values(repo)
        say(f"    {filled} users written through write_to_online_store")
        say(f"4/6 serving {BURSTS} bursts of {requests} requests, checking each burst's window")
        windows = [_serve_window(store, refs, requests, seed=10 + b) for b in range(BURSTS)]
        for i, (start, end) in enumerate(windows[:-1]):
            code, report = _check(repo, start, end, f"incident-{i + 1}", True)
            story.incident_exits.append(code)
            kinds = sorted({f["kind"] for f in report["findings"] if f["severity"] == "fail"})
            say(f"    burst {i + 1}: exit {code}, fail findings: {', '.join(kinds)}")
        say(f"    burst {BURSTS}, the whole report:")
        code, story.incident_report = _check(repo, *windows[-1], "incident", False)
        story.incident_exits.append(code)
        story.html = data / "incident.html"
        say(
            "\n5/6 feast-parity alerts (the runs above are stored; alerts open after "
            "3 abnormal runs)"
        )
        story.alerts_exit = cli(["alerts", "--repo", str(repo)])
        say("\n    feast-parity freshness")
        story.freshness_exit = cli(["freshness", "--repo", str(repo)])
        stalled = next(
            v for v in story.incident_report["feature_views"] if v["feature_view"] == "video_stats"
        )
        say(
            f"    video_stats serves rows {format_duration(stalled['served_lag_seconds']['p50'])} "
            f"old while its source's newest is {format_duration(stalled['source_lag_seconds'])} "
            f"old: its materialization stopped. Its SLO ({format_duration(stalled['slo_seconds'])})"
            " is not crossed yet; the row-level check caught the stall first."
        )
        say("\n6/6 training gate for ranking_model_v1")
        try:
            _gate(repo)
        except TrainingGateError as refused:
            story.gate_refused = refused.offenders
            say(f"    {refused}")
        say(f"\nHTML report: {story.html}")
        say("    look first at the header's 'What is wrong' lines: each links to its evidence.")
    finally:
        features_file.write_text(original)
    return story


def main(argv: list[str] | None = None) -> int:
    """``make demo``: both acts on ``feast_repo/``; exit 0 when each ended as it should
    (healthy check 0, incident check 1, gate refused)."""
    parser = argparse.ArgumentParser(description="Build the demo repo and play its two acts.")
    parser.add_argument("--repo", type=Path, default=demo.DEMO_SOURCE)
    parser.add_argument("--requests", type=int, default=400, help="requests per serving burst")
    parser.add_argument("--sample-rate", type=float, default=0.1)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    story = run(args.repo, requests=args.requests, sample_rate=args.sample_rate)
    as_expected = (
        story.healthy_exit == 0 and story.incident_exits[-1:] == [1] and bool(story.gate_refused)
    )
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0 if as_expected else 1


if __name__ == "__main__":
    sys.exit(main())
