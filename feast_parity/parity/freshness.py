"""Freshness arithmetic: SLO durations and lag status, independent of Feast."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> float:
    """``90m``, ``2h``, ``1d``, ``1.5h``, ``30s``, ``1w`` -> seconds.

    >>> parse_duration("90m"), parse_duration("2h"), parse_duration("1d")
    (5400.0, 7200.0, 86400.0)
    >>> parse_duration("2 hours")
    Traceback (most recent call last):
    ...
    ValueError: malformed duration '2 hours': use a number and a unit s, m, h, d or w (e.g. 90m, 2h)
    """
    match = _DURATION.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(
            f"malformed duration {text!r}: use a number and a unit s, m, h, d or w (e.g. 90m, 2h)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float | None) -> str:
    """Seconds as a short human duration.

    >>> format_duration(259200.0), format_duration(5400), format_duration(42), format_duration(None)
    ('3.0d', '1.5h', '42s', '-')
    """
    if seconds is None:
        return "-"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.1f}m"
    return f"{seconds:.0f}s"


def freshness_status(
    slo_seconds: float | None,
    served_p95: float | None,
    materialization_lag: float | None,
    source_lag: float | None,
) -> tuple[str, float | None]:
    """Status of a view and the worst lag/SLO ratio.

    Over the SLO on what serving sees (served p95 or materialization lag) fails; a source that
    is itself late only warns (training data is late too, serving is not the culprit).

    >>> freshness_status(3600, 100, 7200, 100)
    ('fail', 2.0)
    >>> freshness_status(3600, 100, 100, 7200)
    ('warn', 2.0)
    """
    if slo_seconds is None or slo_seconds <= 0:
        return "ok", None
    serving = [v for v in (served_p95, materialization_lag) if v is not None]
    worst_serving = max(serving) / slo_seconds if serving else 0.0
    worst_source = (source_lag or 0.0) / slo_seconds
    worst = max(worst_serving, worst_source)
    if worst_serving > 1:
        return "fail", worst
    if worst_source > 1:
        return "warn", worst
    return "ok", worst
