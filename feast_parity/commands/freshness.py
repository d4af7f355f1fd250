"""``feast-parity freshness``: served, materialization and source lag per view vs its SLO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from feast_parity.commands.options import json_option, repo_option
from feast_parity.parity.freshness import format_duration


def render(views: list[dict[str, Any]]) -> str:
    from feast_parity.render.text import printable

    rows = []
    for view in views:
        ratio = view.get("over_ratio")
        rows.append(
            [
                printable(view["feature_view"]),
                view["status"],
                format_duration(view.get("slo_seconds")),
                format_duration(view["served_lag_seconds"].get("p95")),
                format_duration(view.get("materialization_lag_seconds")),
                format_duration(view.get("source_lag_seconds")),
                "-" if ratio is None else f"{ratio:.2f}x",
            ]
        )
    headers = ["feature view", "status", "SLO", "served p95", "materialized", "source", "over SLO"]
    return tabulate(rows, headers=headers, disable_numparse=True)


@click.command()
@repo_option
@json_option
def freshness(repo: Path, json_out: str | None) -> int:
    """Lag of each feature view against its SLO; exit 1 when one is over it."""
    from feast_parity.commands.options import write_json
    from feast_parity.plugin.freshness import freshness as measure
    from feast_parity.plugin.session import load_store

    store, _ = load_store(repo)
    views = measure(store)
    if not write_json(json_out, {"feature_views": views}):
        click.echo(render(views))
    return 1 if any(v["status"] == "fail" for v in views) else 0
