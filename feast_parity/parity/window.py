"""The window of a check, an export or an alert evaluation: ``--since`` inclusive, ``--until``
exclusive, both aware UTC datetimes; one parser for every ISO time the CLI and stored runs give.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

DEFAULT_WINDOW = timedelta(hours=24)


class WindowError(ValueError):
    """A time that does not parse, or a window that is empty; the message names the flag."""


def parse_time(value: str | datetime | None, name: str = "time") -> datetime | None:
    """ISO 8601 date or date-time (``Z`` accepted; naive means UTC) -> aware datetime.

    >>> parse_time("2026-12-01T10:00:00Z", "--since")
    datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone.utc)
    >>> parse_time("2026-12-01", "--until").isoformat()
    '2026-12-01T00:00:00+00:00'
    >>> parse_time("yesterday", "--since")
    Traceback (most recent call last):
    ...
    feast_parity.parity.window.WindowError: --since: not an ISO 8601 time: 'yesterday'
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise WindowError(f"{name}: not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC."""

    start: datetime
    end: datetime

    @classmethod
    def of(
        cls,
        since: str | datetime | None,
        until: str | datetime | None,
        now: datetime | None = None,
        default: timedelta = DEFAULT_WINDOW,
    ) -> Window:
        """The window ``--since`` .. ``--until``: ``until`` defaults to ``now``, ``since`` to
        ``default`` before ``until``.

        >>> w = Window.of("2026-12-01T00:00:00Z", None, now=parse_time("2026-12-02"))
        >>> w.start.isoformat(), w.end.isoformat(), w.start_us
        ('2026-12-01T00:00:00+00:00', '2026-12-02T00:00:00+00:00', 1796083200000000)
        >>> Window.of("2026-12-02", "2026-12-01")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        feast_parity.parity.window.WindowError: empty window: --since 2026-12-02T00:00:00+00:00 ...
        """
        end = parse_time(until, "--until") or now or datetime.now(timezone.utc)
        start = parse_time(since, "--since") or (end - default)
        if start >= end:
            raise WindowError(
                f"empty window: --since {start.isoformat()} is not before --until {end.isoformat()}"
            )
        return cls(start, end)

    @property
    def start_us(self) -> int:
        """Epoch microseconds of ``start`` (the log's time unit)."""
        return _micros(self.start)

    @property
    def end_us(self) -> int:
        return _micros(self.end)
