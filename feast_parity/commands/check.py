"""``feast-parity check``: the parity check job over a window of the sample log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    check = subparsers.add_parser("check", help="compare sampled served rows with offline values")
    check.add_argument("--repo", required=True, type=Path, help="the Feast repo directory")
    check.add_argument("--since", help="window start, ISO 8601 (default: --until minus 24h)")
    check.add_argument("--until", help="window end, ISO 8601 (default: now)")
    check.add_argument("--json", type=Path, help="write the JSON report here")
    check.add_argument("--html", type=Path, help="write the self-contained HTML report here")
    check.add_argument("--chunk-rows", type=int, default=50_000, help=argparse.SUPPRESS)
    check.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    check.set_defaults(handler=run)


def _history(repo: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Stored runs of the project, for the trend charts of the HTML report."""
    from feast_parity.parity.results import load_runs
    from feast_parity.parity.samplelog import create_engine
    from feast_parity.plugin.check import load_store

    _, config = load_store(repo)
    return load_runs(create_engine(config.store_url(repo)), report["project"])


def run(args: argparse.Namespace) -> int:
    from feast_parity.parity.report import exit_code, render_html, render_text, to_json
    from feast_parity.plugin.check import progress_bar, run_check

    progress = None if args.no_progress or not sys.stderr.isatty() else progress_bar()
    report = run_check(
        args.repo, args.since, args.until, chunk_rows=args.chunk_rows, progress=progress
    )
    print(render_text(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(to_json(report))
        print(f"JSON report: {args.json}")
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(render_html(report, history=_history(args.repo, report)))
        print(f"HTML report: {args.html}")
    return exit_code(report)
