"""Stored check runs made by hand, for the alert, Prometheus and trend tests: hourly windows
from T0 with the report contract's fields, PSI ~ 0.02 and served lag p99 ~ 1 h unless a run
overrides them, and a KPI CSV to corroborate alerts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from feast_parity.parity.report import run_id_for

PROJECT = "video_recs"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
WATCH = "user_engagement:watch_minutes"
FEATURES = [WATCH, "user_engagement:click_through_rate", "video_stats:popularity"]
NORMAL, JUMP = 12, 0.30  # runs of normal history; PSI of the jump (0.02 normally)


def report(i: int, values: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Run ``i``: window [T0 + i h, T0 + (i+1) h), PSI ~ 0.02, lag p99 ~ 1 h; ``values``
    overrides metrics per feature (or per view, with ``served_p99``)."""
    values = values or {}
    rng = np.random.default_rng(1000 + i)
    start = T0 + timedelta(hours=i)
    end = start + timedelta(hours=1)
    features = []
    for name in FEATURES:
        row = {
            "feature": name,
            "feature_view": name.split(":")[0],
            "compared": 500,
            "mismatch_rate": 0.0,
            "stale_rate": 0.0,
            "silent_default_rate": 0.0,
            "online_null_rate": round(0.010 + rng.normal(0, 0.001), 5),
            "offline_null_rate": 0.0,
            "psi": round(0.02 + rng.normal(0, 0.004), 5),
            "ks_statistic": 0.03,
            "ks_pvalue": 0.8,
            "schema": {"declared": "Float64", "online": "float64", "offline": "float64"},
            "status": "ok",
        }
        row.update(values.get(name, {}))
        features.append(row)
    views = []
    for view in ("user_engagement", "video_stats"):
        p99 = values.get(view, {}).get("served_p99", 3600 + rng.normal(0, 60))
        views.append(
            {
                "feature_view": view,
                "served_lag_seconds": {"p50": 1800.0, "p95": 3000.0, "p99": p99},
                "materialization_lag_seconds": 900.0,
                "source_lag_seconds": 600.0,
                "slo_seconds": 43200.0,
                "status": "ok",
            }
        )
    return {
        "schema_version": 1,
        "run_id": run_id_for(PROJECT, start, end),
        "project": PROJECT,
        "generated_at": end.isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "samples": 1500,
        "status": "ok",
        "features": features,
        "feature_views": views,
        "findings": [],
    }


def history(n: int, jump: range = range(0), psi: float = JUMP) -> list[dict[str, Any]]:
    """``n`` hourly runs; WATCH's PSI is ``psi`` in the runs of ``jump``."""
    return [report(i, {WATCH: {"psi": psi}} if i in jump else None) for i in range(n)]


def write_kpis(path: Path, hours: int, shifted: range = range(0), **shift: float) -> Path:
    """KPI CSV: a row every 10 minutes; during the hours of ``shifted`` each named column is
    multiplied by its factor (e.g. ``click_through=0.8``)."""
    rng = np.random.default_rng(7)
    rows = []
    for h in range(hours):
        for m in range(0, 60, 10):
            row = {
                "timestamp": (T0 + timedelta(hours=h, minutes=m)).isoformat(),
                "model_score": 0.30 + rng.normal(0, 0.005),
                "click_through": 0.050 + rng.normal(0, 0.001),
                "watch_time": 12.0 + rng.normal(0, 0.2),
            }
            if h in shifted:
                for column, factor in shift.items():
                    row[column] *= factor
            rows.append(row)
    lines = ["timestamp,model_score,click_through,watch_time"]
    lines += [
        f"{r['timestamp']},{r['model_score']:.5f},{r['click_through']:.5f},{r['watch_time']:.4f}"
        for r in rows
    ]
    path.write_text("\n".join(lines) + "\n")
    return path
