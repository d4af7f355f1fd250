"""``feast-parity export --prometheus FILE``: gauges of the latest run, for node-exporter.

Writes the per-feature and per-view gauges of the newest stored check run of the repo's project
(and the open alerts stored by ``feast-parity alerts``) in the Prometheus text exposition format.
The file is written to a temp file in the same directory and renamed over FILE, so node-exporter's
textfile collector (``--collector.textfile.directory``) never reads half a file. Metric names are
listed in docs/monitoring.md.
"""

from __future__ import annotations

from pathlib import Path

import click

from feast_parity.commands.options import repo_option


@click.command()
@repo_option
@click.option(
    "--prometheus",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Exposition file to write, e.g. /var/lib/node_exporter/textfile/feast_parity.prom",
)
def export(repo: Path, prometheus: Path) -> int:
    """Write the latest run's gauges for Prometheus (textfile collector)."""
    from feast_parity.commands.options import UsageError
    from feast_parity.plugin.metrics import run_metric_families, write_textfile
    from feast_parity.plugin.session import load_store, open_engine
    from feast_parity.store.alerts import load_alerts
    from feast_parity.store.engine import describe_error
    from feast_parity.store.runs import load_runs

    store, config = load_store(repo)
    engine = open_engine(store, config)
    try:
        reports = load_runs(engine, store.project)
        open_alerts = [a for a in load_alerts(engine, store.project) if a.state == "open"]
    except Exception as exc:
        raise UsageError(f"cannot read the parity store: {describe_error(exc)}") from None
    finally:
        engine.dispose()
    if not reports:
        raise UsageError(
            f"no stored check runs of project {store.project!r}; run `feast-parity check` first"
        )
    latest = reports[-1]
    path = write_textfile(prometheus, run_metric_families(latest, open_alerts))
    click.echo(
        f"wrote {path}: run {latest['run_id']} (window end {latest['window']['end']}), "
        f"{len(latest['features'])} features, {len(latest['feature_views'])} feature views, "
        f"{len(open_alerts)} open alerts"
    )
    return 0
