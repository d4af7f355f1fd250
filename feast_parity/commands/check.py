"""``feast-parity check``: the parity check job over a window of the sample log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from feast_parity.commands.options import json_option, repo_option


def describe_model(scope: dict[str, Any]) -> str:
    """One line: the model and the features it was trained on."""
    from feast_parity.render.text import printable

    service = scope.get("feature_service")
    source = f"feature service {service}" if service else scope.get("resolved_by") or "-"
    return printable(
        f"model {scope.get('model')}: {len(scope['features'])} feature(s) from {source}"
    )


def _history(store: Any, project: str) -> list[dict[str, Any]]:
    """Stored runs of the project, for the trend charts of the HTML report."""
    from feast_parity.plugin.session import open_engine
    from feast_parity.store.runs import load_runs

    engine = open_engine(store)
    try:
        return load_runs(engine, project)
    finally:
        engine.dispose()


def _alerts(history: list[dict[str, Any]], config: Any) -> list[dict[str, Any]]:
    """The alerts over the stored runs, for the trend charts (not stored: that is the job of
    ``feast-parity alerts``); none when the rules cannot be evaluated."""
    from feast_parity.parity.alerts import evaluate

    if len(history) < 2:
        return []
    try:
        evaluation = evaluate(history, config.alerts)
    except Exception:  # the report still renders, only without alert marks
        return []
    return [alert.to_dict() for alert in evaluation.alerts]


@click.command()
@repo_option
@click.option("--since", metavar="ISO", help="Window start (default: --until minus 24h).")
@click.option("--until", metavar="ISO", help="Window end (default: now).")
@json_option
@click.option(
    "--html",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Write the self-contained HTML report here.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    default=None,
    help="Where the check runs (default: parity.engine, else local); spark needs "
    "feast-parity[spark], Java and the Spark offline store.",
)
@click.option(
    "--model",
    metavar="URI",
    help="Check only the features this MLflow model was trained on (models:/NAME/VERSION, "
    "runs:/RUN_ID/PATH), resolved through Feast's mlflow: block.",
)
@click.option("--chunk-rows", type=int, default=50_000, hidden=True)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def check(
    repo: Path,
    since: str | None,
    until: str | None,
    json_out: str | None,
    html: Path | None,
    engine: str | None,
    chunk_rows: int,
    no_progress: bool,
    model: str | None,
) -> int:
    """Compare sampled served rows with point-in-time offline values; exit 1 on a fail."""
    from feast_parity.commands.options import write_json
    from feast_parity.parity.report import exit_code
    from feast_parity.plugin.check import open_check, progress_bar
    from feast_parity.render import render_html, render_text

    progress = None if no_progress or not sys.stderr.isatty() else progress_bar()
    job = open_check(
        repo, since, until, engine=engine, chunk_rows=chunk_rows, progress=progress, model=model
    )
    report = job.run()
    to_stdout = json_out == "-"
    if model is not None and "scope" in report:
        click.echo(describe_model(report["scope"]), err=to_stdout)
    click.echo(render_text(report), err=to_stdout)
    write_json(json_out, report)
    if json_out and not to_stdout:
        click.echo(f"JSON report: {json_out}")
    if html:
        html.parent.mkdir(parents=True, exist_ok=True)
        history = _history(job.store, report["project"])
        html.write_text(
            render_html(
                report,
                history=history,
                thresholds=job.config.thresholds,
                alerts=_alerts(history, job.config),
            )
        )
        click.echo(f"HTML report: {html}", err=to_stdout)
    return exit_code(report)
