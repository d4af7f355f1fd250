"""``feast-parity export``: the latest run's gauges for Prometheus, or a window's samples for Feast.

``--prometheus FILE``: gauges of the latest run, for node-exporter.

Writes the per-feature and per-view gauges of the newest stored check run of the repo's project
(and the open alerts stored by ``feast-parity alerts``) in the Prometheus text exposition format.
The file is written to a temp file in the same directory and renamed over FILE, so node-exporter's
textfile collector (``--collector.textfile.directory``) never reads half a file. Metric names are
listed in docs/monitoring.md.

``--feast-log FEATURE_SERVICE [--since ISO] [--until ISO]``: the window's samples served through
that feature service, in Feast's logging schema, written with Feast's ``write_logged_features``
into the service's logging destination (``feast_parity.plugin.feast_log``), so that
``retrieve_feature_service_logs`` and ``feast monitor run --source-type log`` read them.
"""

from __future__ import annotations

from pathlib import Path

import click

from feast_parity.commands.options import repo_option


@click.command()
@repo_option
@click.option(
    "--prometheus",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Exposition file to write, e.g. /var/lib/node_exporter/textfile/feast_parity.prom",
)
@click.option(
    "--feast-log",
    "feast_log",
    metavar="FEATURE_SERVICE",
    help="Write the window's samples of this feature service into its Feast logging destination.",
)
@click.option(
    "--since", metavar="ISO", help="Window start for --feast-log (default: --until - 24h)."
)
@click.option("--until", metavar="ISO", help="Window end for --feast-log (default: now).")
def export(
    repo: Path,
    prometheus: Path | None,
    feast_log: str | None,
    since: str | None,
    until: str | None,
) -> int:
    """Write the latest run's gauges for Prometheus, or a window's samples for Feast."""
    from feast_parity.commands.options import UsageError

    if (prometheus is None) == (feast_log is None):
        raise UsageError("give exactly one of --prometheus FILE and --feast-log FEATURE_SERVICE")
    if feast_log is not None:
        return _feast_log(repo, feast_log, since, until)
    if since or until:
        raise UsageError("--since and --until go with --feast-log")
    return _prometheus(repo, prometheus)  # type: ignore[arg-type]


def _feast_log(repo: Path, service: str, since: str | None, until: str | None) -> int:
    from datetime import datetime, timezone

    from feast_parity.commands.options import UsageError
    from feast_parity.parity.window import Window, WindowError
    from feast_parity.plugin.feast_log import export_feature_service_log
    from feast_parity.plugin.session import load_store

    try:
        window = Window.of(since, until, datetime.now(timezone.utc))
    except WindowError as exc:
        raise UsageError(str(exc)) from None
    start, end = window.start, window.end
    store, _ = load_store(repo)
    done = export_feature_service_log(store, service, start, end)
    line = (
        f"wrote {done.rows} logged rows of feature service {service!r} "
        f"({start.isoformat()} .. {end.isoformat()}) to its {done.destination}"
    )
    if done.already_logged:
        line += f"; {done.already_logged} rows of the window were already logged"
    click.echo(line)
    for column, count in sorted(done.unfit.items()):
        click.echo(f"  {count} value(s) of {column} do not fit its logging type: exported as null")
    if done.redacted:
        click.echo(f"  redacted, exported as nulls: {', '.join(done.redacted)}")
    return 0


def _prometheus(repo: Path, prometheus: Path) -> int:
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
