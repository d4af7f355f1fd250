"""The render layer: a report dict in, text / JSON / HTML out. No Feast repo, no database.

Reports are built by hand after the schema-1 contract (DESIGN.md, docs/checks.md).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from feast_parity.render import exit_code, printable, render_html, render_text, to_json

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
ESC = "\x1b"


def feature_row(name: str, **overrides: Any) -> dict[str, Any]:
    """A healthy numeric feature row: 500 rows compared, PSI 0.012, a 4-bin histogram."""
    row: dict[str, Any] = {
        "feature": name,
        "feature_view": name.split(":")[0],
        "on_demand": False,
        "rows": 500,
        "compared": 500,
        "offline_rows": 500,
        "mismatch_rate": 0.0,
        "mismatches": 0,
        "mismatch_examples": [],
        "stale_rate": 0.0,
        "stale_rows": 0,
        "stale_lag_seconds": {"p50": None, "p95": None, "p99": None},
        "silent_default_rate": 0.0,
        "silent_defaults": 0,
        "fill_values": [],
        "online_null_rate": 0.0,
        "offline_null_rate": 0.0,
        "psi": 0.012,
        "ks_statistic": 0.02,
        "ks_pvalue": 0.9,
        "histogram": {
            "labels": ["< 0.0009929", "[0.0009929, 0.004279)", "[0.004279, 1.5)", ">= 1.5"],
            "online": [10, 240, 230, 20],
            "offline": [12, 238, 231, 19],
        },
        "schema": {
            "declared": "Float32",
            "online": "float32",
            "offline": "float32",
            "diverged": False,
            "declared_at_serving": ["Float32"],
        },
        "status": "ok",
    }
    row.update(overrides)
    return row


def view_row(name: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "feature_view": name,
        "samples": 500,
        "served_lag_seconds": {"p50": 266.8, "p95": 266.9, "p99": 267.0},
        "served_lag_histogram": {
            "labels": ["<0", ">=0s", ">=1.0m", ">=5.0m", ">=15.0m"],
            "counts": [0, 0, 500, 0, 0],
        },
        "materialization_lag_seconds": 27.2,
        "source_lag_seconds": 271.5,
        "slo_seconds": 43200.0,
        "slo_source": "tag",
        "status": "ok",
    }
    row.update(overrides)
    return row


def make_report(
    *,
    features: list[dict[str, Any]] | None = None,
    views: list[dict[str, Any]] | None = None,
    findings: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
    samples: int = 1500,
    hour: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """A schema-1 report of the window [T0 + hour, T0 + hour + 1h)."""
    start = T0 + timedelta(hours=hour)
    end = start + timedelta(hours=1)
    findings = findings or []
    worst = {f["severity"] for f in findings}
    report: dict[str, Any] = {
        "schema_version": 1,
        "run_id": f"{hour:016x}",
        "project": "video_recs",
        "generated_at": end.isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "samples": samples,
        "status": "fail" if "fail" in worst else "warn" if "warn" in worst else "ok",
        "features": (
            [feature_row("user_engagement:watch_minutes")] if features is None else features
        ),
        "feature_views": [view_row("user_engagement")] if views is None else views,
        "findings": findings,
        "deleted_feature_views": {},
        "notes": notes or [],
        "timings": {"read_seconds": 0.1, "offline_seconds": 0.4, "compare_seconds": 0.2},
    }
    report.update(extra)
    return report


def mismatch(feature: str, severity: str = "fail", message: str | None = None) -> dict[str, Any]:
    return {
        "kind": "value_mismatch",
        "feature": feature,
        "severity": severity,
        "message": message or "9.4% of 1000 served values differ from the offline value",
        "evidence": {"mismatches": 94, "compared": 1000, "examples": []},
    }


def svg_of(page: str, start: int = 0) -> str:
    begin = page.index("<svg", start)
    return page[begin : page.index("</svg>", begin)]


# --- text ---------------------------------------------------------------------------------------


def test_long_names_sharing_a_prefix_print_in_full_and_distinct() -> None:
    prefix = "user_engagement:rolling_average_of_watch_minutes_over_the_last_"
    a, b = prefix + "seven_days", prefix + "thirty_days"
    view = "a_feature_view_with_a_name_well_past_twenty_four_characters"
    report = make_report(
        features=[feature_row(a), feature_row(b)],
        views=[view_row(view)],
        findings=[mismatch(a)],
    )
    text = render_text(report)
    feature_lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert [line.split()[0] for line in feature_lines] == [a, b]
    assert f"{a}: 9.4% of 1000" in text
    assert any(line.startswith(view + " ") for line in text.splitlines())


def test_control_characters_in_data_print_as_visible_escapes() -> None:
    name = f"user_engagement:{ESC}[31mred{ESC}[0m"
    message = f"served\r\x08{ESC}[2Jcleared\nsecond line \u202egnp.exe"
    note = f"offline store said {ESC}]0;pwned\x07 and \x9b then \u2066x\u2069"
    report = make_report(
        features=[feature_row(name)], findings=[mismatch(name, message=message)], notes=[note]
    )
    text = render_text(report)
    for raw in (ESC, "\r", "\x08", "\x07", "\x9b", "\u202e", "\u2066", "\u2069"):
        assert raw not in text
    assert "user_engagement:\\x1b[31mred\\x1b[0m" in text
    (line,) = [line for line in text.splitlines() if "cleared" in line]
    assert "served\\r\\x08\\x1b[2Jcleared\\nsecond line \\u202egnp.exe" in line
    assert "note: offline store said \\x1b]0;pwned\\x07 and \\x9b then \\u2066x\\u2069" in text


def test_printable_is_plain_text_for_ordinary_values() -> None:
    assert printable("video_stats:äge_days · 12.0h") == "video_stats:äge_days · 12.0h"
    assert printable("a\tb\nc") == "a\\tb\\nc"
    assert printable(None) == "None"


def test_findings_are_grouped_by_cause_worst_group_first_with_any_kind() -> None:
    findings = [
        {
            "kind": "stale_serving",
            "feature": "video_stats:popularity",
            "severity": "warn",
            "message": "2.0% of rows served an older row",
            "evidence": {},
        },
        mismatch("user_engagement:sessions", "warn"),
        mismatch("user_engagement:watch_minutes", "fail"),
        {
            "kind": "freshness_slo",
            "feature_view": "video_stats",
            "severity": "fail",
            "message": "materialization lag 3.0d over the 2.0d SLO (2 x ttl)",
            "evidence": {},
        },
        {
            "kind": "expired_serving",
            "feature": "video_stats:age_days",
            "severity": "warn",
            "message": "served rows older than the ttl",
            "evidence": {"future": True},
            "new_field": [1, 2],
        },
        {
            "kind": "transformation_divergence",
            "feature_view": "ranking_signals",
            "severity": "fail",
            "message": "on-demand transformation differs",
        },
    ]
    text = render_text(make_report(findings=findings, new_top_level={"ignored": True}))
    rows = [line.split()[:3] for line in text.splitlines() if line.startswith("  ")]
    assert rows == [
        ["FAIL", "freshness_slo", "video_stats:"],
        ["FAIL", "transformation_divergence", "ranking_signals:"],
        ["FAIL", "value_mismatch", "user_engagement:watch_minutes:"],
        ["WARN", "value_mismatch", "user_engagement:sessions:"],
        ["WARN", "expired_serving", "video_stats:age_days:"],
        ["WARN", "stale_serving", "video_stats:popularity:"],
    ]
    assert "6 finding(s)" in text and text.endswith("result: FAIL (exit 1)")
    page = render_html(make_report(findings=findings))
    causes = re.findall(r'<li class="cause">.*?<b>([a-z_]+)</b> \((\d+)\)', page)
    assert causes == [
        ("freshness_slo", "1"),
        ("transformation_divergence", "1"),
        ("value_mismatch", "2"),
        ("expired_serving", "1"),
        ("stale_serving", "1"),
    ]
    # every cause links to its evidence, and every link target exists on the page
    links = re.findall(r'<a href="#(finding-\d+)">', page)
    assert len(links) == 6 and all(f'id="{anchor}"' in page for anchor in links)


def test_a_zero_sample_report_renders_everywhere_and_says_so() -> None:
    report = make_report(
        features=[], views=[], samples=0, notes=["no samples in the window 2026-03-01 .. x"]
    )
    text = render_text(report)
    assert "no samples in the window: nothing was compared" in text
    assert "no findings" not in text and "no features were served" in text
    assert text.endswith("result: OK (exit 0)")
    page = render_html(report)
    header = page[page.index('id="summary"') : page.index("</section>")]
    assert "No samples in the window: nothing was compared." in header
    assert "No findings" not in page and "<svg" not in page
    assert json.loads(to_json(report))["samples"] == 0
    assert exit_code(report) == 0


def test_a_minimal_report_with_missing_optional_fields_renders() -> None:
    report = {"samples": 10, "findings": [{"severity": "warn", "kind": "value_mismatch"}]}
    text = render_text(report)
    assert "WARN  value_mismatch  -:" in text and "result: WARN (exit 0)" in text
    bare = {
        "features": [{"feature": "v:f", "status": "ok", "psi": None, "histogram": None}],
        "feature_views": [{"feature_view": "v"}],
    }
    assert "v:f" in render_text(bare) and "v:f" in render_html(bare)
    assert "<td>v:f</td>" in render_html(bare)  # healthy: one compact table row


# --- JSON ---------------------------------------------------------------------------------------


def test_to_json_turns_nan_and_infinity_into_null() -> None:
    report = make_report(
        features=[feature_row("v:f", psi=float("nan"), ks_statistic=float("inf"))],
        views=[view_row("v", source_lag_seconds=float("-inf"))],
    )
    text = to_json(report)
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back["features"][0]["psi"] is None and back["features"][0]["ks_statistic"] is None
    assert back["feature_views"][0]["source_lag_seconds"] is None
    assert back["features"][0]["compared"] == 500 and text.startswith('{\n  "schema_version": 1')
    report["features"][0]["psi"] = 0.012
    assert json.loads(to_json(report))["features"][0]["psi"] == 0.012


def test_exit_code_is_1_only_with_a_failing_finding() -> None:
    assert exit_code(make_report(findings=[mismatch("v:f", "warn")])) == 0
    assert exit_code(make_report(findings=[mismatch("v:f", "warn"), mismatch("v:g")])) == 1
    assert exit_code({}) == 0


# --- HTML ---------------------------------------------------------------------------------------


def test_html_escapes_markup_and_control_characters_from_data() -> None:
    name = "user_engagement:<script>alert(1)</script>"
    message = f'"quoted" & <b>bold</b> {ESC}[31m'
    note = f"<img src=x onerror=alert(2)> {ESC}[0m \u202e"
    report = make_report(
        features=[feature_row(name)],
        views=[view_row("<i>view</i>")],
        findings=[mismatch(name, message=message)],
        notes=[note],
        project="<b>proj</b>",
    )
    page = render_html(report)
    assert "<script" not in page and "<img" not in page and "<b>bold" not in page
    assert "<b>proj" not in page
    assert "<i>view" not in page and "&lt;i&gt;view&lt;/i&gt;" in page
    assert "user_engagement:&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&#34;quoted&#34; &amp; &lt;b&gt;bold&lt;/b&gt; \\x1b[31m" in page
    assert "&lt;img src=x onerror=alert(2)&gt; \\x1b[0m \\u202e" in page
    assert ESC not in page and "\u202e" not in page


def test_html_is_self_contained() -> None:
    report = make_report(
        features=[feature_row("v:f", histogram=None), feature_row("v:g")],
        findings=[mismatch("v:g", message="see https://example.com/runbook")],
    )
    history = [make_report(hour=h) for h in range(3)]
    page = render_html(report, history=history)
    assert "<svg" in page and "<style>" in page
    urls = re.findall(r"https?://[^\s\"'<>]+", page.replace("https://example.com/runbook", ""))
    assert set(urls) == {"http://www.w3.org/2000/svg"}
    for tag in ("<script", "<link", "<img", "<iframe", "src=", "@import", "url("):
        assert tag not in page.lower()


def test_histograms_compare_side_by_side_with_full_bin_labels() -> None:
    unhealthy = feature_row("v:f", status="warn", psi=0.3)
    text = feature_row(
        "v:text",
        status="warn",
        histogram={
            "labels": ["b", "other", "a"],
            "edges": None,
            "online": [10, 5, 30],
            "offline": [20, 0, 25],
        },
    )
    report = make_report(features=[unhealthy, text, feature_row("v:healthy")])
    page = render_html(report)
    chart = svg_of(page, page.index('class="paired"') - 40)
    # one row per bin, served and offline as two bars (no overlay), the full range as label
    assert chart.count("<rect") == 4 * 2
    assert "<title>[0.0009929, 0.004279): served 48.0%, offline 47.6%</title>" in chart
    assert ">[0.004279, 1.5)</text>" in chart
    # categorical: sorted by share, "other" last
    second = svg_of(page, page.index('class="paired"', page.index('class="paired"') + 1) - 40)
    assert re.findall(r'text-anchor="end">([^<]+)</text>', second) == ["a", "b", "other"]
    assert 'PSI <span class="psi fail">0.300</span> (warn at 0.100, fail at 0.250)' in page
    # the healthy feature is one table row, not a card
    assert "<td>v:healthy</td>" in page and page.count('class="card"') == 2
    lag = svg_of(page, page.index("served lag distribution") - 2000)
    assert "<title>served lag &gt;=1.0m: 100.0%</title>" in lag


def test_a_view_section_shows_freshness_against_the_slo_and_the_lag_over_the_window() -> None:
    series = {
        "bucket_seconds": 3600.0,
        "buckets": [
            {
                "start": f"2026-03-01T0{h}:00:00Z",
                "rows": 10,
                "mean_seconds": 3600.0 * (h + 1),
                "max_seconds": 3600.0 * (h + 2),
                "stale_rows": h,
            }
            for h in range(4)
        ],
    }
    view = view_row(
        "v",
        served_lag_series=series,
        slo_seconds=7200.0,
        status="fail",
        materialization_lag_seconds=9000.0,
    )
    page = render_html(make_report(features=[feature_row("v:f")], views=[view]))
    section = page[page.index('id="view-v"') :]
    assert 'class="over" title="over the SLO">materialization lag <b>2.5h</b>' in section
    assert "mean served lag per 1.0h of request time" in section
    assert "<title>2026-03-01T03:00:00Z: 4.0h</title>" in section
    assert "<title>SLO 2.0h</title>" in section


def psi_rules(page: str) -> dict[str, float]:
    """Label -> y of the dashed rules in the PSI trend chart."""
    trends = page[page.index('id="trends"') :]
    at = trends.index("<figcaption>PSI")
    chart = svg_of(trends, trends.rindex('class="trend"', 0, at) - 40)
    found = re.findall(r'<g class="rule"><title>([^<]+)</title><line [^>]*y1="([0-9.]+)"', chart)
    return {title: float(y) for title, y in found}


def trend_report(psi: float, hour: int) -> dict[str, Any]:
    status = "fail" if psi >= 0.25 else "ok"
    return make_report(features=[feature_row("v:f", psi=psi, status=status)], hour=hour)


def test_trend_charts_draw_the_given_psi_thresholds() -> None:
    history = [trend_report(0.02, h) for h in range(4)]
    current = trend_report(0.3, 4)
    default = psi_rules(render_html(current, history=history))
    assert list(default) == ["warn 0.100", "fail 0.250"]
    given = render_html(current, history=history, thresholds={"psi_warn": 0.05, "psi_fail": 0.4})
    rules = psi_rules(given)
    assert list(rules) == ["warn 0.050", "fail 0.400"]
    assert rules["fail 0.400"] < rules["warn 0.050"]  # higher value, higher on the chart
    assert rules["warn 0.050"] != default["warn 0.100"]

    class Thresholds:  # any object with the attributes, such as the config's thresholds
        psi_warn, psi_fail = 0.2, 0.35

    assert list(psi_rules(render_html(current, history, thresholds=Thresholds()))) == [
        "warn 0.200",
        "fail 0.350",
    ]
    own = dict(current, thresholds={"psi_warn": 0.15, "psi_fail": 0.3})
    assert list(psi_rules(render_html(own, history=history))) == ["warn 0.150", "fail 0.300"]


def test_history_gives_trend_charts_of_unhealthy_features_with_alert_state() -> None:
    history = [trend_report(0.02, h) for h in range(5)]
    current = trend_report(0.3, 5)
    alert = {
        "target": "v:f",
        "signal": "psi",
        "state": "open",
        "severity": "fail",
        "opened_at": current["window"]["end"],
    }
    page = render_html(current, history=history, alerts=[alert])
    end = current["window"]["end"]
    trends = page[page.index('id="trends"') :]
    first = history[0]["window"]["end"]
    assert f'over the last 6 stored runs</h2><span class="meta">{first} .. {end}' in trends
    # mismatch, stale, silent default and PSI of the unhealthy feature
    assert trends.count('class="trend"') == 4
    assert f"<title>{end}: 0.300</title>" in trends
    assert 'r="3.5" fill="#c62828"><title>' + end + ": 0.300" in trends  # over fail: marked
    assert f'<span class="alert fail">alert open (fail) since {end}</span>' in trends
    assert 'id="trends"' not in render_html(current)
    assert 'id="trends"' not in render_html(current, history=[current])  # one run: no trend
    other = dict(trend_report(0.02, 1), project="another")
    assert 'id="trends"' not in render_html(current, history=[other])
    healthy = trend_report(0.02, 6)
    assert 'id="trends"' not in render_html(healthy, history=history)  # nothing unhealthy


def test_cohorts_render_in_text_and_html() -> None:
    name = "user_engagement:watch_minutes"
    cohort = {
        "feature": name,
        "label": "user_engagement:country=JP",
        "metric": "mismatch_rate",
        "mismatch_rate": 1.0,
        "mismatches": 94,
        "compared": 94,
        "entities": 26,
        "delta": 0.906,
    }
    section = {"dimensions": ["user_engagement:country"], "min_rows": 30, "top": [cohort]}
    report = make_report(features=[feature_row(name, mismatch_rate=0.094)], cohorts=section)
    text = render_text(report)
    assert "cohorts by user_engagement:country: rates above all rows" in text
    (line,) = [line for line in text.splitlines() if "country=JP" in line]
    assert "100.0% vs 9.4% all rows, +90.6 pts" in line and "94/94 compared, 26 entities" in line
    page = render_html(report)
    assert "<td>user_engagement:country=JP</td>" in page and "at least 30 rows" in page
    empty = render_text(dict(report, cohorts={"dimensions": ["d"], "top": []}))
    assert "no cohort stands out" in empty


@pytest.mark.parametrize("render", [render_text, render_html, to_json])
def test_renderers_do_not_change_the_report(render: Any) -> None:
    report = make_report(findings=[mismatch("user_engagement:watch_minutes")])
    before = json.dumps(report, sort_keys=True)
    render(report)
    assert json.dumps(report, sort_keys=True) == before


def test_features_named_by_a_view_finding_are_not_listed_as_healthy() -> None:
    stale = {
        "kind": "stale_serving",
        "feature_view": "v",
        "severity": "fail",
        "message": "all rows stale",
        "evidence": {"features": ["v:a"], "stale_rows": 10},
    }
    page = render_html(
        make_report(
            features=[feature_row("v:a"), feature_row("v:b")],
            views=[view_row("v", status="fail")],
            findings=[stale],
        )
    )
    table = page[page.index('<table class="healthy">') :]
    assert "feature (no finding of its own)" in table
    row_a = table[table.index("<td>v:a</td>") :].split("</tr>")[0]
    assert '<a href="#finding-0">see view: stale_serving</a>' in row_a
    row_b = table[table.index("<td>v:b</td>") :].split("</tr>")[0]
    assert "see view" not in row_b and ">ok<" in row_b
    assert 'id="finding-0"' in page
