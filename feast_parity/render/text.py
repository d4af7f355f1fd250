r"""The terminal summary of a report, and the value formatting every renderer shares.

Everything printed that comes from data (feature and view names, messages, notes, cohort
labels) goes through :func:`printable` first: a feature name is whatever the registry says, and
a note can quote an offline store's error, so either may hold terminal escapes.

>>> print(printable("watch\x1b[2J_minutes"))
watch\x1b[2J_minutes
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from feast_parity.parity.findings import SEVERITY_RANK
from feast_parity.parity.freshness import format_duration
from feast_parity.parity.metrics import cohort_metrics
from feast_parity.parity.stats import pct
from feast_parity.render.json_report import exit_code

# C0 controls, DEL and C1 controls (unicode category Cc), the line/paragraph separators that
# some terminals treat as newlines, zero-width space and BOM, and the bidi marks, embeddings,
# overrides and isolates that reorder what is displayed ("Trojan Source"). The joiners
# U+200C/U+200D stay: scripts such as Persian and Devanagari need them.
_INVISIBLE = [
    0x061C,
    0x200B,
    0x200E,
    0x200F,
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0xFEFF,
]
_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
_ESCAPES = {c: _NAMED.get(c, f"\\x{c:02x}") for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({c: f"\\u{c:04x}" for c in _INVISIBLE})


def printable(text: object) -> str:
    r"""``text`` with every control character shown as a visible escape, safe for a terminal.

    ANSI escapes (ESC), carriage return, backspace, the other C0 and C1 controls, newlines
    and tabs, and unicode bidi overrides become ``\xNN`` / ``\uNNNN`` text, so a value can
    neither move the cursor, recolour or clear the screen, nor span lines or display reversed.
    Backslashes are left alone: the point is harmless display, not a reversible encoding.
    A non-string is shown as ``str(text)``.

    >>> print(printable("\x1b[31mred\x1b[0m"))
    \x1b[31mred\x1b[0m
    >>> print(printable("line one\nline two\r\b"))
    line one\nline two\r\x08
    >>> print(printable("user\u202egnp.exe"), printable("\x9b"), printable(3.5))
    user\u202egnp.exe \x9b 3.5
    >>> printable("user_engagement:watch_minutes · ünïcode")
    'user_engagement:watch_minutes · ünïcode'
    """
    return (text if isinstance(text, str) else str(text)).translate(_ESCAPES)


# --- value formatting shared by the text and HTML renderers -------------------------------------


def number(value: Any) -> float | None:
    """A finite real number as float, else None (None, NaN, inf, strings, bools).

    >>> number(0.5), number(3), number(float("nan")), number("0.5"), number(None), number(True)
    (0.5, 3.0, None, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def fixed(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals, '-' when unknown.

    >>> fixed(0.2704), fixed(None)
    ('0.270', '-')
    """
    out = number(value)
    return "-" if out is None else f"{out:.{digits}f}"


def duration(seconds: Any) -> str:
    """Seconds of any report value as ``freshness.format_duration`` prints them; '-' when
    unknown or not finite.

    >>> duration(259200.0), duration(5400), duration(42), duration(None), duration(float("inf"))
    ('3.0d', '1.5h', '42s', '-', '-')
    """
    return format_duration(number(seconds))


def count(value: Any, grouped: bool = False) -> str:
    """A count (optionally with thousands separators), '-' when unknown.

    >>> count(1500), count(1500, grouped=True), count(None)
    ('1500', '1,500', '-')
    """
    out = number(value)
    if out is None:
        return "-"
    return f"{out:,.0f}" if grouped else f"{out:.0f}"


def rank(severity: Any) -> int:
    """Order of a severity or status, worst highest; an unknown one ranks with ``ok``."""
    return SEVERITY_RANK.get(severity, 0) if isinstance(severity, str) else 0


def rows_of(report: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """The mappings of a list field of the report (features, feature_views, findings)."""
    return [row for row in report.get(key) or [] if isinstance(row, Mapping)]


def finding_target(finding: Mapping[str, Any]) -> str:
    """What a finding is about: its feature, or for a view-level finding its feature view."""
    target = finding.get("feature") or finding.get("feature_view")
    return "-" if target is None else str(target)


def findings_by_cause(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The findings grouped by kind (their cause), the group with the worst finding first;
    within a group worst first, then by target. Any kind is accepted."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for finding in rows_of(report, "findings"):
        groups.setdefault(str(finding.get("kind", "unknown")), []).append(finding)
    for group in groups.values():
        group.sort(key=lambda f: (-rank(f.get("severity")), finding_target(f)))
    order = sorted(groups, key=lambda kind: (-rank(groups[kind][0].get("severity")), kind))
    return [finding for kind in order for finding in groups[kind]]


def overall_status(report: Mapping[str, Any]) -> str:
    """The report's status; derived from the findings when absent."""
    status = report.get("status")
    if isinstance(status, str):
        return status
    worst = max((rank(f.get("severity")) for f in rows_of(report, "findings")), default=0)
    return {3: "fail", 2: "warn"}.get(worst, "ok")


def schema_text(schema: Any) -> str:
    """``declared/online/offline`` types of a feature row's ``schema``."""
    schema = schema if isinstance(schema, Mapping) else {}
    return "/".join(str(schema.get(k)) for k in ("declared", "online", "offline"))


def window_bounds(report: Mapping[str, Any]) -> tuple[str, str]:
    """(start, end) of the report's window, '-' for a missing one."""
    window = report.get("window")
    if not isinstance(window, Mapping):
        return "-", "-"
    return str(window.get("start", "-")), str(window.get("end", "-"))


def served_lags(view: Mapping[str, Any]) -> str:
    """Served lag ``p50/p95/p99`` of a view row."""
    lag = view.get("served_lag_seconds")
    lag = lag if isinstance(lag, Mapping) else {}
    return "/".join(duration(lag.get(p)) for p in ("p50", "p95", "p99"))


# metric -> (short name, count field, denominator field, denominator noun)
_COHORT_METRICS = {  # metric -> (short name, hits, whole, noun), from the metrics table
    m.name: (m.cohort.short, m.cohort.count, m.cohort.denominator, m.cohort.noun)
    for m in cohort_metrics()
    if m.cohort is not None
}


def cohort_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """The top cohorts of the report's ``cohorts`` section, as display strings: ``feature``,
    ``cohort``, ``metric``, ``versus`` (cohort rate vs all rows) and ``counts``."""
    section = report.get("cohorts")
    if not isinstance(section, Mapping):
        return []
    features = {row.get("feature"): row for row in rows_of(report, "features")}
    out = []
    for c in section.get("top") or []:
        if not isinstance(c, Mapping):
            continue
        metric = str(c.get("metric", ""))
        name, hits, whole, noun = _COHORT_METRICS.get(metric, (metric, "", "", ""))
        overall = features.get(c.get("feature"), {}).get(metric)
        delta = number(c.get("delta"))
        versus = f"{pct(c.get(metric))} vs {pct(overall)} all rows"
        if delta is not None:
            versus += f", {delta * 100:+.1f} pts"
        counts = f"{count(c.get(hits))}/{count(c.get(whole))} {noun}" if hits else "-"
        if c.get("entities") is not None:
            counts += f", {count(c.get('entities'))} entities"
        out.append(
            {
                "feature": str(c.get("feature", "-")),
                "cohort": str(c.get("label", "-")),
                "metric": name or "-",
                "versus": versus,
                "counts": counts,
            }
        )
    return out


def cohort_dimensions(report: Mapping[str, Any]) -> str:
    section = report.get("cohorts")
    dimensions = section.get("dimensions") if isinstance(section, Mapping) else None
    return ", ".join(str(d) for d in dimensions or [])


# --- the text summary ---------------------------------------------------------------------------


def _table(
    rows: Sequence[Sequence[str]],
    headers: Sequence[str] = (),
    align: Sequence[str] = (),
    indent: str = "",
) -> list[str]:
    """A tabulate table of display strings, every cell made printable. Numbers are already
    formatted, so tabulate must not re-parse them ("0.270" would become "0.27")."""
    text = tabulate(
        [[printable(cell) for cell in row] for row in rows],
        headers=list(headers),
        tablefmt="simple" if headers else "plain",
        disable_numparse=True,
        preserve_whitespace=True,
        colalign=tuple(align) or None,
    )
    return [f"{indent}{line}".rstrip() for line in text.splitlines()]


def _findings(report: Mapping[str, Any]) -> list[str]:
    findings = findings_by_cause(report)
    if not findings:
        if report.get("samples") == 0:
            return ["no samples in the window: nothing was compared"]
        return ["no findings: served values match the offline store"]
    rows = [
        (
            str(f.get("severity", "-")).upper(),
            str(f.get("kind", "unknown")),
            f"{finding_target(f)}: {f.get('message', '')}",
        )
        for f in findings
    ]
    table = _table(rows, indent="  ")
    lines = [f"{len(findings)} finding(s), worst first, grouped by cause:"]
    kinds = [str(f.get("kind", "unknown")) for f in findings]
    for index, line in enumerate(table):
        if index == 0 or kinds[index] != kinds[index - 1]:
            size = kinds.count(kinds[index])
            worst = str(findings[index].get("severity", "-")).upper()
            lines.append(f"{kinds[index]}: {size} finding(s), worst {worst}")
        lines.append(line)
    return lines


def _features(report: Mapping[str, Any]) -> list[str]:
    features = sorted(
        rows_of(report, "features"),
        key=lambda r: (-rank(r.get("status")), str(r.get("feature", ""))),
    )
    if not features:
        return ["no features were served in the window"]
    rows = [
        (
            str(r.get("feature", "-")),
            str(r.get("status", "-")),
            count(r.get("compared")),
            pct(r.get("mismatch_rate")),
            pct(r.get("stale_rate")),
            pct(r.get("silent_default_rate")),
            fixed(r.get("psi")),
        )
        for r in features
    ]
    headers = ("feature", "status", "compared", "mismatch", "stale", "default", "psi")
    return _table(rows, headers, ("left", "left", "right", "right", "right", "right", "right"))


def _views(report: Mapping[str, Any]) -> list[str]:
    views = rows_of(report, "feature_views")
    if not views:
        return []
    rows = [
        (
            str(v.get("feature_view", "-")),
            str(v.get("status", "-")),
            served_lags(v),
            duration(v.get("materialization_lag_seconds")),
            duration(v.get("source_lag_seconds")),
            duration(v.get("slo_seconds")),
        )
        for v in views
    ]
    headers = ("feature view", "status", "served p50/p95/p99", "materialized", "source", "SLO")
    return ["", *_table(rows, headers, ("left", "left", "right", "right", "right", "right"))]


def _cohorts(report: Mapping[str, Any]) -> list[str]:
    if not isinstance(report.get("cohorts"), Mapping):
        return []
    lines = ["", f"cohorts by {printable(cohort_dimensions(report))}: rates above all rows"]
    rows = cohort_rows(report)
    if not rows:
        return [*lines, "  no cohort stands out"]
    headers = ("feature", "cohort", "metric", "cohort vs all rows", "counts")
    table = [(r["feature"], r["cohort"], r["metric"], r["versus"], r["counts"]) for r in rows]
    return [*lines, *_table(table, headers, indent="  ")]


def render_text(report: Mapping[str, Any]) -> str:
    """The terminal summary: header, findings worst first (grouped by cause), per-feature and
    per-view tables, top cohorts, notes and the result line. Names are never shortened."""
    samples = count(report.get("samples"), grouped=True)
    lines = [
        f"feast-parity check  project {printable(report.get('project', '-'))}  "
        f"run {printable(report.get('run_id', '-'))}",
        f"window {printable(' .. '.join(window_bounds(report)))}  samples {samples}",
        "",
        *_findings(report),
        "",
        *_features(report),
        *_views(report),
        *_cohorts(report),
    ]
    notes = [n for n in report.get("notes") or [] if n is not None]
    if notes:
        lines.append("")
        lines.extend(f"note: {printable(note)}" for note in notes)
    lines.append("")
    lines.append(f"result: {printable(overall_status(report).upper())} (exit {exit_code(report)})")
    return "\n".join(lines)
