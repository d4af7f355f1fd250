"""Alerts and KPI sources in the parity store.

:func:`store_alerts` replaces a project's alerts and their events with a fresh evaluation (the
evaluation is a deterministic function of the stored runs, so this is idempotent);
:func:`load_alerts` reads them back; :func:`load_kpis` reads the KPI source of
``parity.alerts.kpi_source``: a CSV file or a table of the parity store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from feast_parity.parity.alerts import Alert, AlertEvent, Evaluation
from feast_parity.parity.kpis import KpiSourceError, KpiTable, kpi_table_from_frame
from feast_parity.store.schema import alert_events_table, alerts_table


def load_kpis(
    source: str,
    *,
    engine: sa.Engine | None = None,
    base_dir: str | Path | None = None,
    time_column: str = "timestamp",
    columns: Sequence[str] | None = None,
) -> KpiTable:
    """Read the KPI source: a CSV path (relative to ``base_dir``) or a table in ``engine``."""
    import pandas as pd

    path = Path(source)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if source.lower().endswith((".csv", ".csv.gz")) or path.exists():
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise KpiSourceError(f"alerts.kpi_source: cannot read {path}: {exc}") from None
    else:
        if engine is None:
            raise KpiSourceError(f"alerts.kpi_source: {source!r} is no CSV file and no store")
        schema, _, table = source.rpartition(".")
        if not sa.inspect(engine).has_table(table, schema=schema or None):
            raise KpiSourceError(
                f"alerts.kpi_source: {source!r} is neither a CSV file nor a table in the store"
            )
        with engine.connect() as conn:
            frame = pd.read_sql_table(table, conn, schema=schema or None)
    return kpi_table_from_frame(frame, time_column, columns)


_LIST_FIELDS = ("reasons", "corroboration")


def store_alerts(engine: sa.Engine, evaluation: Evaluation) -> None:
    """Replace the project's alerts and events with ``evaluation``'s, in one transaction."""
    project = evaluation.project
    with engine.begin() as conn:
        conn.execute(alert_events_table.delete().where(alert_events_table.c.project == project))
        conn.execute(alerts_table.delete().where(alerts_table.c.project == project))
        rows: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for alert in evaluation.alerts:
            row = alert.to_dict()
            row.pop("events")
            for name in _LIST_FIELDS:
                row[name] = json.dumps(row[name], default=str)
            rows.append(row)
            events.extend({**asdict(e), "project": project} for e in alert.events)
        if rows:
            conn.execute(alerts_table.insert(), rows)
        if events:
            conn.execute(alert_events_table.insert(), events)


def load_alerts(engine: sa.Engine, project: str | None = None) -> list[Alert]:
    """Stored alerts (with their events), oldest opening first."""
    query = sa.select(alerts_table).order_by(alerts_table.c.opened_at, alerts_table.c.alert_id)
    events_query = sa.select(alert_events_table).order_by(alert_events_table.c.at)
    if project is not None:
        query = query.where(alerts_table.c.project == project)
        events_query = events_query.where(alert_events_table.c.project == project)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
        event_rows = [dict(r._mapping) for r in conn.execute(events_query)]
    by_alert: dict[str, list[AlertEvent]] = {}
    for e in event_rows:
        e.pop("project")
        by_alert.setdefault(e["alert_id"], []).append(AlertEvent(**e))
    alerts = []
    for row in rows:
        for name in _LIST_FIELDS:
            row[name] = json.loads(row[name])
        alerts.append(Alert(**row, events=by_alert.get(row["alert_id"], [])))
    return alerts
