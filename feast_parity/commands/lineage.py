"""``feast-parity lineage FEATURE_REF...``: where features come from and how trustworthy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from feast_parity.parity.freshness import format_duration


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("lineage", help="lineage, freshness and parity of features")
    parser.add_argument(
        "features",
        nargs="+",
        metavar="FEATURE_REF",
        help="feature refs like user_engagement:country",
    )
    parser.add_argument("--repo", type=Path, default=Path("."), help="the Feast repo directory")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run)


def render(records: list[dict[str, Any]]) -> str:
    lines = []
    for r in records:
        source = r["source"]
        where = source.get("path") or source.get("table") or source.get("query") or "-"
        lines.append(f"{r['feature']}  ({r['declared_type']})")
        lines.append(f"  source      {source.get('name')} [{source.get('kind')}] {where}")
        lines.append(
            f"  entities    {', '.join(r['entities']) or '-'}   ttl "
            f"{format_duration(r['ttl_seconds'])}   owner {r['owner'] or '-'}"
        )
        lines.append(
            f"  fingerprint definition {r['definition_fingerprint']}  schema "
            f"{r['schema_fingerprint']}"
        )
        trained = r["last_trained"]
        if trained is None:
            lines.append("  trained     never (no training dataset recorded for this feature)")
        else:
            changed = " — definition CHANGED since" if trained["definition_changed_since"] else ""
            lines.append(
                f"  trained     {trained['created_at']} dataset {trained['dataset_id']}"
                f" ({trained['row_count']} rows){changed}"
            )
        fresh = r["freshness"]
        if fresh is not None:
            lines.append(
                f"  freshness   {fresh['status']}: materialized "
                f"{format_duration(fresh['materialization_lag_seconds'])} ago, source "
                f"{format_duration(fresh['source_lag_seconds'])}, SLO "
                f"{format_duration(fresh['slo_seconds'])}"
            )
        parity = r["parity"]
        if parity is None:
            lines.append("  parity      never checked")
        else:
            lines.append(
                f"  parity      {parity['status']} (run {parity['run_id']}, window end "
                f"{parity['window_end']})"
            )
            for f in parity["findings"]:
                lines.append(f"    {f['severity']}: {f['kind']}: {f['message']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from feast_parity.cli import UsageError
    from feast_parity.plugin.check import load_store
    from feast_parity.plugin.lineage import LineageError, lineage

    store, _ = load_store(args.repo)
    try:
        records = lineage(store, args.features)
    except LineageError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(records, indent=2, default=str) if args.json else render(records))
    return 0
