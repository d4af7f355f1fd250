"""A fault confined to one country of a real demo repo, found as a cohort while the aggregate
stays below the fail threshold (moved from tests/test_cohorts.py; the pure units are in
tests/unit/test_cohorts.py)."""

from __future__ import annotations

import json

import pytest

from feast_parity import demo
from feast_parity.cli import main as cli
from feast_parity.plugin.check import ParityCheck
from feast_parity.plugin.cohort_labels import validate_dimensions
from feast_parity.plugin.errors import CheckError
from feast_parity.render import render_text
from tests.faults import fails, feature, latest_rows, serve_refs, write_online

# -- on the demo repo ---------------------------------------------------------------------------

COHORTS = {
    "dimensions": ["user_engagement:country", "user_engagement:device", "key:user_id%10"],
    "top_k": 5,
    "min_rows": 30,
}


def test_fault_confined_to_one_country_is_the_top_cohort(build_repo, tmp_path, capsys) -> None:
    repo = build_repo(
        sample_rate=1.0,
        parity_extra={
            "cohorts": COHORTS,
            "thresholds": {"mismatch_warn": 0.05, "mismatch_fail": 0.2},
        },
    )
    rows = latest_rows(repo, "user_engagement")
    jp = rows[rows["country"] == "JP"].copy()
    assert 0.05 < len(jp) / len(rows) < 0.15  # about a tenth of the users
    jp["watch_minutes"] = jp["watch_minutes"] * 1.5 + 1.0
    write_online(repo, "user_engagement", jp)
    serve_refs(repo, 100)
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = cli(["check", "--repo", str(repo), "--json", str(out_json), "--html", str(out_html)])
    report = json.loads(out_json.read_text())
    assert code == 1

    wm = feature(report, "user_engagement:watch_minutes")
    assert 0.05 < wm["mismatch_rate"] < 0.2  # the aggregate alone stays below fail
    aggregate = [
        f for f in report["findings"] if f["kind"] == "value_mismatch" and "cohort" not in f
    ]
    assert [f["severity"] for f in aggregate] == ["warn"]
    top = wm["cohorts"][0]
    assert top["label"] == "user_engagement:country=JP" and top["metric"] == "mismatch_rate"
    assert top["mismatch_rate"] == 1.0 and top["mismatch_share"] == 1.0
    assert top["delta"] > 0.8 and top["compared"] >= 30 and 20 <= top["entities"] <= len(jp)
    assert all(c["delta"] < 0.3 for c in wm["cohorts"][1:])

    assert fails(report) == [("value_mismatch", "user_engagement:watch_minutes")]
    (finding,) = [f for f in report["findings"] if f["severity"] == "fail"]
    assert finding["cohort"]["label"] == "user_engagement:country=JP"
    assert finding["evidence"]["cohort"]["value"] == "JP"
    assert finding["evidence"]["mismatches"] == finding["evidence"]["compared"] == top["compared"]
    assert "user_engagement:country=JP" in finding["message"]

    # healthy features have nothing standing out; a dimension of another view applies too
    for name in ("user_engagement:sessions", "video_stats:popularity"):
        row = feature(report, name)
        assert row["cohorts"] == [] and row["status"] == "ok"
    pop = feature(report, "video_stats:popularity")["cohort_dimensions"]
    assert pop["user_engagement:country"]["cohorts"] == 8
    assert pop["user_engagement:country"]["null_rows"] == 0
    assert report["cohorts"]["top"][0]["feature"] == "user_engagement:watch_minutes"
    assert "user_engagement:country=JP" in out_html.read_text()

    assert "user_engagement:country=JP" in render_text(report)

    # dimensions are checked against the registry: exit 2, one line naming the key
    check = ParityCheck(repo)
    for dims, message in [
        (["user_engagement:nope"], "has no feature 'nope'"),
        (["user_engagement:watch_minutes"], "is Float64; a dimension feature must be"),
        (["ranking_signals:affinity_score"], "is an on-demand feature view"),
        (["nope:country"], "'nope' is not a feature view"),
        (["key:account_id%4"], "'account_id' is not a join key"),
    ]:
        with pytest.raises(CheckError, match=r"^parity\.cohorts\.dimensions: .*" + message):
            validate_dimensions(dims, check.catalog, check.store, set())
    demo.write_config(
        repo, sample_rate=1.0, parity_extra={"cohorts": {"dimensions": ["key:account_id%4"]}}
    )
    assert cli(["check", "--repo", str(repo), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("feast-parity: error: parity.cohorts.dimensions: 'key:account_id%4'")
    assert len(err.splitlines()) == 1
