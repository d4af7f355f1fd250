"""The HTML report in a real browser: headless Chromium renders the report of a healthy repo and
of repos with one planted fault each, at 1,000 and 2,000 pixels wide.

A copy of each report gets a small probe script (the report itself has none) that measures the
page as laid out and writes what it found into the DOM, which ``chromium --dump-dom`` prints:
the causes listed in the header, whether each cause's links land on a finding of that kind,
every in-page link's target, and any element whose box leaves the viewport. Screenshots are
taken at both widths; with ``FEAST_PARITY_SCREENSHOTS=DIR`` they are also copied to DIR (the
ones in docs/img come from this test).
"""

from __future__ import annotations

import html as html_escape
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from feast_parity.cli import main as cli
from tests import services
from tests.faults import (
    age_days_as_string,
    serve_refs,
    skew_a_tenth,
    stall_video_stats,
    zero_a_fifth,
)

CHROMIUM: list[str] = []  # the browser's path, found by the autouse fixture below


@pytest.fixture(autouse=True)
def _chromium() -> None:
    """Chromium from PATH; where it is missing each test is skipped before building its repo
    (failed under FEAST_PARITY_TEST_STRICT=1, as in .ci/run) and the run's last line says so."""
    if not CHROMIUM:
        found = services.program(
            "chromium", "chromium", "chromium-browser", install=services.INSTALL["chromium"]
        )
        CHROMIUM.append(found)


PROBE = """<script>
(function () {
  var width = document.documentElement.clientWidth;
  var outside = [];
  document.querySelectorAll("body *").forEach(function (el) {
    var box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) return;
    if (box.right > width + 1 || box.left < -1) {
      outside.push(el.tagName + "." + el.getAttribute("class") + " right=" + Math.round(box.right));
    }
  });
  var missing = [];
  var links = document.querySelectorAll('a[href^="#"]');
  links.forEach(function (a) {
    var href = a.getAttribute("href");
    if (!document.getElementById(href.slice(1))) missing.push(href);
  });
  var causes = [];
  document.querySelectorAll("li.cause").forEach(function (li) {
    var kind = li.querySelector("b").textContent;
    var landed = [];
    li.querySelectorAll("a").forEach(function (a) {
      var target = document.getElementById(a.getAttribute("href").slice(1));
      var what = target && target.querySelector(".what b");
      landed.push(what ? what.textContent : null);
    });
    causes.push({kind: kind, severity: li.querySelector(".badge").textContent, landed: landed});
  });
  var probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    width: width,
    scroll_width: document.documentElement.scrollWidth,
    outside: outside,
    links: links.length,
    missing: missing,
    causes: causes,
    header: document.querySelector("#summary").innerText,
    scripts: document.querySelectorAll("script").length
  });
  document.body.appendChild(probe);
})();
</script>"""


def chromium(*args: str) -> str:
    done = subprocess.run(
        [CHROMIUM[0], "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def probe(page: Path, width: int) -> dict:
    """The probe's findings on ``page`` laid out ``width`` pixels wide."""
    probed = page.with_name(f"{page.stem}-probe-{width}.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium(
        f"--window-size={width},1200", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(html_escape.unescape(found.group(1)))


def screenshot(page: Path, name: str, width: int, height: int) -> Path:
    shot = page.with_name(f"{name}-{width}.png")
    chromium(f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (width, height)
    assert len(data) > 20_000, "a near-empty screenshot"
    keep = os.environ.get("FEAST_PARITY_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return shot


def check_in_browser(page: Path, name: str) -> dict:
    """Lay the page out at 1,000 and 2,000 pixels; assert nothing leaves the viewport and every
    in-page link lands; screenshot both widths; return the probe at 1,000."""
    results = {}
    for width in (1000, 2000):
        found = probe(page, width)
        assert found["scripts"] == 1, "the report itself carries no script"
        assert found["outside"] == [], (width, found["outside"][:10])
        assert found["scroll_width"] <= found["width"], (width, found)
        assert found["missing"] == [], found["missing"]
        results[width] = found
    screenshot(page, name, 1000, 2400)
    screenshot(page, name, 2000, 1400)
    return results[1000]


def check_html(repo: Path, out: Path) -> tuple[int, Path]:
    page = out / "report.html"
    code = cli(["check", "--repo", str(repo), "--html", str(page), "--json", str(out / "r.json")])
    return code, page


def planted(found: dict) -> dict[str, str]:
    """Cause kind -> severity from the header, asserting each cause's links land on a finding of
    that kind."""
    for cause in found["causes"]:
        assert cause["landed"] and all(kind == cause["kind"] for kind in cause["landed"]), cause
    return {c["kind"]: c["severity"].lower() for c in found["causes"]}


def test_healthy_repo_report_says_so_in_the_browser(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0)
    serve_refs(repo, 40)
    code, page = check_html(repo, tmp_path)
    assert code == 0
    found = check_in_browser(page, "report-healthy")
    assert found["causes"] == []
    assert "No findings: served values match the offline store." in found["header"]
    assert "user_engagement" in page.read_text() and "video_stats" in page.read_text()


def test_value_mismatch_is_listed_and_linked_in_the_browser(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0)
    skew_a_tenth(repo)
    serve_refs(repo, 100)
    code, page = check_html(repo, tmp_path)
    assert code == 1
    found = check_in_browser(page, "report-value-mismatch")
    assert planted(found) == {"value_mismatch": "fail"}
    assert "user_engagement:watch_minutes" in found["header"]
    # the evidence names served and offline values of example rows
    text = page.read_text()
    evidence = text[text.index('id="finding-0"') :]
    assert "served" in evidence[:4000] and "offline" in evidence[:4000]


def test_stalled_view_is_listed_and_linked_in_the_browser(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0, materialize=False)
    stall_video_stats(repo)
    serve_refs(repo, 40)
    code, page = check_html(repo, tmp_path)
    assert code == 1
    found = check_in_browser(page, "report-stale-view")
    assert planted(found) == {"stale_serving": "fail", "freshness_slo": "fail"}
    # the stalled view comes first and says it is over its SLO
    text = page.read_text()
    assert text.index('id="view-video-stats"') < text.index('id="view-user-engagement"')
    assert "(over SLO)" in text[text.index('id="view-video-stats"') :]


def test_silent_default_is_listed_and_linked_in_the_browser(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0)
    zero_a_fifth(repo)
    serve_refs(repo, 100)
    code, page = check_html(repo, tmp_path)
    assert code == 1
    found = check_in_browser(page, "report-silent-default")
    # the drift the defaults cause is folded into the silent_default finding: one cause
    assert planted(found) == {"silent_default": "fail"}
    assert "user_engagement:click_through_rate" in found["header"]


def test_schema_divergence_is_listed_and_linked_in_the_browser(build_repo, tmp_path):
    repo = build_repo(sample_rate=1.0)
    age_days_as_string(repo)
    serve_refs(repo, 40)
    code, page = check_html(repo, tmp_path)
    assert code == 1
    found = check_in_browser(page, "report-schema-divergence")
    assert planted(found) == {"schema_divergence": "fail"}
    assert "video_stats:age_days" in found["header"]
