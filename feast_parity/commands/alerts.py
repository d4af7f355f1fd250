"""``feast-parity alerts``: evaluate the alert rules over the stored runs, list the alerts.

The rules are the ``parity.alerts`` block (docs/monitoring.md). Every call re-evaluates all
stored runs of the repo's project (a causal, deterministic evaluation, so the same runs always
give the same alerts with the same ids) and replaces the project's rows in the ``parity_alerts``
and ``parity_alert_events`` tables of the parity store. Exit code 1 when an open alert has
severity ``fail``, 0 otherwise, 2 on a usage or configuration error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from feast_parity.commands.options import json_option, repo_option


def evaluate_repo(repo: str | Path, *, store: bool = True) -> tuple[Any, Any]:
    """Evaluate (and store) the alerts of a repo; return (Evaluation, AlertRules)."""
    from feast_parity.commands.options import UsageError
    from feast_parity.parity.alerts import evaluate
    from feast_parity.parity.kpis import KpiSourceError
    from feast_parity.plugin.session import load_store, open_engine
    from feast_parity.store.alerts import load_kpis, store_alerts
    from feast_parity.store.engine import describe_error
    from feast_parity.store.runs import load_runs

    feature_store, config = load_store(repo)
    settings = config.alerts
    engine = open_engine(feature_store, config)
    try:
        try:
            reports = load_runs(engine, feature_store.project)
        except Exception as exc:
            raise UsageError(f"cannot read the stored runs: {describe_error(exc)}") from None
        kpis = None
        if settings.kpi_source:
            try:
                kpis = load_kpis(
                    settings.kpi_source,
                    engine=engine,
                    base_dir=repo,
                    time_column=settings.kpi_time_column,
                    columns=settings.kpi_columns,
                )
            except KpiSourceError as exc:
                raise UsageError(str(exc)) from None
        evaluation = evaluate(reports, settings, kpis=kpis, project=feature_store.project)
        if store:
            store_alerts(engine, evaluation)
    finally:
        engine.dispose()
    return evaluation, settings


def _line(alert: Any) -> str:
    from feast_parity.render.text import printable

    if alert.state == "open":
        when = f"since {alert.first_abnormal_at} ({alert.abnormal_runs} abnormal runs)"
    else:
        when = f"{alert.first_abnormal_at} .. resolved {alert.resolved_at}"
    head = f"  {alert.severity.upper():5} {alert.signal:20} {printable(alert.target)}  {when}"
    return f"{head}\n        {printable(alert.message)}"


@click.command()
@repo_option
@json_option
@click.option(
    "--resolved-hours",
    type=float,
    help="List alerts resolved this many hours before the newest run "
    "(default: parity.alerts.resolved_retention_hours).",
)
def alerts(repo: Path, json_out: str | None, resolved_hours: float | None) -> int:
    """Evaluate alert rules over the stored runs; list open and resolved alerts."""
    from feast_parity.commands.options import write_json

    evaluation, settings = evaluate_repo(repo)
    hours = resolved_hours if resolved_hours is not None else settings.resolved_retention_hours
    open_alerts = evaluation.open_alerts()
    resolved = evaluation.recently_resolved(hours)
    payload = {
        "project": evaluation.project,
        "runs": len(evaluation.runs),
        "latest_window_end": evaluation.latest_end.isoformat() if evaluation.latest_end else None,
        "kpi_columns": evaluation.kpi_columns,
        "open": [a.to_dict() for a in open_alerts],
        "resolved": [a.to_dict() for a in resolved],
        "exit_code": evaluation.exit_code(),
    }
    if write_json(json_out, payload):
        return evaluation.exit_code()
    runs = evaluation.runs
    from feast_parity.render.text import printable

    lines = [
        f"feast-parity alerts  project {printable(evaluation.project)}  {len(runs)} stored run(s)"
    ]
    if runs:
        lines.append(f"runs {runs[0].end.isoformat()} .. {runs[-1].end.isoformat()}")
    if evaluation.kpi_columns:
        names = ", ".join(printable(c) for c in evaluation.kpi_columns)
        lines.append(f"KPI columns for corroboration: {names}")
    lines.append("")
    if open_alerts:
        lines.append(f"{len(open_alerts)} open alert(s), worst first:")
        lines.extend(_line(a) for a in open_alerts)
    else:
        lines.append("no open alerts")
    if resolved:
        lines.append("")
        lines.append(f"{len(resolved)} resolved in the {hours:g} h before the newest run:")
        lines.extend(_line(a) for a in resolved)
    lines.append("")
    worst = "FAIL" if evaluation.exit_code() else ("WARN" if open_alerts else "OK")
    lines.append(f"result: {worst} (exit {evaluation.exit_code()})")
    click.echo("\n".join(lines))
    return evaluation.exit_code()
