"""``feast-parity freshness``: served, materialization and source lag per view vs its SLO."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from feast_parity.parity.freshness import format_duration


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("freshness", help="lag of each feature view against its SLO")
    parser.add_argument("--repo", required=True, type=Path, help="the Feast repo directory")
    parser.add_argument("--json", type=Path, help="write the views as JSON here")
    parser.set_defaults(handler=run)


def render(views: list[dict[str, Any]]) -> str:
    lines = [
        f"{'feature view':24} {'status':6} {'SLO':>6} {'served p95':>10} "
        f"{'materialized':>12} {'source':>8} {'over SLO':>9}"
    ]
    for view in views:
        ratio = view.get("over_ratio")
        over = "-" if ratio is None else f"{ratio:.2f}x"
        lines.append(
            f"{view['feature_view'][:24]:24} {view['status']:6} "
            f"{format_duration(view.get('slo_seconds')):>6} "
            f"{format_duration(view['served_lag_seconds'].get('p95')):>10} "
            f"{format_duration(view.get('materialization_lag_seconds')):>12} "
            f"{format_duration(view.get('source_lag_seconds')):>8} {over:>9}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from feast_parity.plugin.check import load_store
    from feast_parity.plugin.lineage import freshness

    store, _ = load_store(args.repo)
    views = freshness(store)
    print(render(views))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"feature_views": views}, indent=2, default=str))
    return 1 if any(v["status"] == "fail" for v in views) else 0
