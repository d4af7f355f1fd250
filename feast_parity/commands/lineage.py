"""``feast-parity lineage FEATURE_REF...``: where features come from and how trustworthy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from feast_parity.commands.options import json_option, repo_option
from feast_parity.parity.freshness import format_duration


def render(records: list[dict[str, Any]]) -> str:
    from feast_parity.render.text import printable as p

    lines = []
    for r in records:
        source = r["source"]
        where = source.get("path") or source.get("table") or source.get("query") or "-"
        lines.append(f"{p(r['feature'])}  ({p(r['declared_type'])})")
        if r.get("inputs") is not None:  # on-demand: computed from what it names
            lines.append(
                f"  source      {p(str(source.get('name')))} [{source.get('kind')}] computed from "
                f"{p(', '.join(i['name'] for i in r['inputs'])) or '-'}"
            )
            lines.extend(_input_lines(r["inputs"], "  input       "))
        else:
            lines.append(
                f"  source      {p(str(source.get('name')))} [{source.get('kind')}] {p(where)}"
            )
        lines.append(
            f"  entities    {p(', '.join(r['entities'])) or '-'}   ttl "
            f"{format_duration(r['ttl_seconds'])}   owner {p(r['owner'] or '-')}"
        )
        lines.append(
            f"  fingerprint definition {r['definition_fingerprint']}  schema "
            f"{r['schema_fingerprint']}"
        )
        transformation = r.get("transformation")
        if transformation:
            trained_udf = transformation["training"] or "-"
            lines.append(
                f"  transformation registry {transformation['registry']}  trained {trained_udf}"
            )
            for s in transformation["serving"]:
                mark = "" if s["matches_registry"] else "  (NOT the registry's)"
                lines.append(
                    f"    served {s['udf_fingerprint']} by {p(', '.join(s['writers']))} "
                    f"{s['first_seen']} .. {s['last_seen']}{mark}"
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
                lines.append(f"    {f['severity']}: {f['kind']}: {p(f['message'])}")
    return "\n".join(lines)


_KIND_NAMES = {
    "feature_view": "feature view",
    "stream_feature_view": "stream feature view",
    "on_demand_feature_view": "on-demand view",
    "request_source": "request source",
}


def _input_lines(inputs: list[dict[str, Any]], lead: str) -> list[str]:
    """One line per input of an on-demand view (an on-demand input's own inputs below it)."""
    from feast_parity.render.text import printable as p

    lines = []
    for item in inputs:
        kind = _KIND_NAMES.get(item["kind"], item["kind"])
        if item["kind"] == "request_source":
            fields = ", ".join(f"{f['name']} ({f['type']})" for f in item["fields"])
            lines.append(f"{lead}{p(item['name'])} [{kind}] fields {p(fields) or '-'}")
            continue
        reads = p(", ".join(item.get("features", []))) or "-"
        source = item.get("source") or {}
        if item["kind"] == "on_demand_feature_view":
            upstream = ", ".join(i["name"] for i in item.get("inputs", []))
            lines.append(
                f"{lead}{p(item['name'])} [{kind}] reads {reads}; computed from "
                f"{p(upstream) or '-'}"
            )
            lines.extend(_input_lines(item.get("inputs", []), lead + "  "))
            continue
        where = source.get("path") or source.get("table") or source.get("query") or "-"
        lines.append(
            f"{lead}{p(item['name'])} [{kind}] reads {reads}; source "
            f"{p(str(source.get('name')))} [{source.get('kind')}] {p(where)}"
        )
    return lines


@click.command()
@click.argument("features", nargs=-1, required=True, metavar="FEATURE_REF...")
@repo_option
@json_option
def lineage(features: tuple[str, ...], repo: Path, json_out: str | None) -> int:
    """Lineage, fingerprints, freshness and parity of features (refs like view:feature)."""
    from feast_parity.commands.options import write_json
    from feast_parity.plugin.lineage import lineage as trace
    from feast_parity.plugin.session import load_store

    store, _ = load_store(repo)
    records = trace(store, list(features))
    if not write_json(json_out, records):
        click.echo(render(records))
    return 0
