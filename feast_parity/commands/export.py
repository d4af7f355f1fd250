"""``feast-parity export --prometheus FILE``: gauges of the latest stored run, for node-exporter.

Writes the per-feature and per-view gauges of the newest stored check run of the repo's project
(and the open alerts stored by ``feast-parity alerts``) in the Prometheus text exposition format.
The file is written to a temp file in the same directory and renamed over FILE, so node-exporter's
textfile collector (``--collector.textfile.directory``) never reads half a file. Metric names are
listed in docs/monitoring.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    export = subparsers.add_parser(
        "export", help="write the latest run's gauges for Prometheus (textfile collector)"
    )
    export.add_argument("--repo", required=True, type=Path, help="the Feast repo directory")
    export.add_argument(
        "--prometheus",
        required=True,
        type=Path,
        metavar="FILE",
        help="exposition file to write, e.g. /var/lib/node_exporter/textfile/feast_parity.prom",
    )
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from feast_parity.cli import UsageError
    from feast_parity.parity.alerts import load_alerts
    from feast_parity.parity.results import load_runs
    from feast_parity.parity.samplelog import create_engine, redact_url
    from feast_parity.plugin.check import load_store
    from feast_parity.plugin.metrics import run_metric_families, write_textfile

    store, config = load_store(args.repo)
    url = config.store_url(args.repo)
    engine = create_engine(url)
    try:
        reports = load_runs(engine, store.project)
        open_alerts = [a for a in load_alerts(engine, store.project) if a.state == "open"]
    except Exception as exc:
        raise UsageError(f"cannot read the parity store {redact_url(url)}: {exc}") from None
    finally:
        engine.dispose()
    if not reports:
        raise UsageError(
            f"no stored check runs of project {store.project!r} in {redact_url(url)}; "
            "run `feast-parity check` first"
        )
    latest = reports[-1]
    path = write_textfile(args.prometheus, run_metric_families(latest, open_alerts))
    print(
        f"wrote {path}: run {latest['run_id']} (window end {latest['window']['end']}), "
        f"{len(latest['features'])} features, {len(latest['feature_views'])} feature views, "
        f"{len(open_alerts)} open alerts"
    )
    return 0
