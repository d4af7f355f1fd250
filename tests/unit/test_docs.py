"""The docs say what the code does: paths, modules, keys, finding kinds and report fields.

Fast and static (no Feast repo): the docs are read as text, the code as source or through the
pure engine. Each test fails when the code gains something the docs do not name (a threshold,
a config key, a finding kind, a report field), or when a doc names a file, module or anchor
that is not there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from feast_parity.parity.columns import canonical_column
from feast_parity.parity.feature import FeatureComparison
from feast_parity.parity.findings import FINDING_KINDS, CheckThresholds
from feast_parity.parity.report import build_report
from feast_parity.parity.served import FIELD_STATUS_PRESENT, ServedFeature, ServedRows
from feast_parity.parity.view import OfflineRows, ViewComparison, classify, offline_row_hashes
from feast_parity.plugin.config import ParityConfig

# scipy's exact KS falls back to the asymptotic p-value on heavily tied samples, with a warning
pytestmark = pytest.mark.filterwarnings(
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning"
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGE = ROOT / "feast_parity"

# paths in a repo that are created when the demo or a benchmark runs, not committed
GENERATED = ("feast_repo/data",)
TOP_DIRS = ("tests", "feast_parity", "docs", "examples", "benchmarks", "feast_repo", ".ci")
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_TOP = "|".join(re.escape(d) for d in TOP_DIRS)
_REPO_PATH = re.compile(rf"(?<![\w./-])((?:{_TOP})/[\w./-]*)")
_DOTTED = re.compile(r"(?<![\w/.\"'])(feast_parity(?:\.[A-Za-z_]\w*)+)")


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _code_spans(text: str) -> set[str]:
    return set(_CODE_SPAN.findall(text))


# --- (1) every repository path and module a doc names exists ---------------------------------


def _mentioned_paths(doc: Path) -> Iterator[tuple[str, Path]]:
    """Repository paths anywhere in the text (code spans, prose, code blocks; URLs left out),
    and the targets of relative links."""
    text = _text(doc)
    without_urls = re.sub(r"[a-z]+://\S+", "", text)
    for match in _REPO_PATH.findall(without_urls):
        yield match, ROOT / match.rstrip(".,:;")
    for target in _LINK.findall(text):
        if re.match(r"^[a-z]+://|^mailto:|^#", target):
            continue
        yield target, (doc.parent / target.split("#")[0]).resolve()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_a_doc_names_exists(doc: Path) -> None:
    missing = sorted(
        shown
        for shown, path in _mentioned_paths(doc)
        if not path.exists() and not any(shown.startswith(g) for g in GENERATED)
    )
    assert missing == [], f"{doc.name} names paths that do not exist: {missing}"


def _resolves(dotted: str) -> bool:
    """A dotted ``feast_parity...`` name is a package, a module, or a module followed by names
    that its source defines or imports; or a literal string of the code (a metadata key)."""
    parts = dotted.split(".")
    here = ROOT / parts[0]
    rest = parts[1:]
    module = here / "__init__.py"
    while rest:
        if (here / rest[0]).is_dir() and (here / rest[0] / "__init__.py").exists():
            here = here / rest[0]
            module = here / "__init__.py"
        elif (here / f"{rest[0]}.py").exists():
            module = here / f"{rest[0]}.py"
            rest = rest[1:]
            break
        else:
            break
        rest = rest[1:]
    source = _text(module)
    if all(re.search(rf"\b{re.escape(name)}\b", source) for name in rest):
        return True
    literal = re.compile(rf"[\"']{re.escape(dotted)}[\"']")
    return any(literal.search(_text(p)) for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_feast_parity_module_a_doc_names_exists(doc: Path) -> None:
    names = set(_DOTTED.findall(_text(doc)))
    unknown = sorted(n for n in names if not _resolves(n))
    assert unknown == [], f"{doc.name} names modules or attributes that do not exist: {unknown}"


def test_the_module_check_rejects_a_module_that_is_gone() -> None:
    assert _resolves("feast_parity.store.samples.read_samples")
    assert not _resolves("feast_parity.parity.samplelog.read_feature_samples")
    assert not _resolves("feast_parity.parity.report.no_such_function")
    assert _resolves("feast_parity.log_version")  # a batch metadata key, a literal of the code


def test_the_scanners_see_paths_modules_and_anchors(tmp_path: Path) -> None:
    """The checks above pass only if they look at something: a broken pattern must not pass."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Run `tests/e2e/test_point_in_time.py::test_x` and `tests/unit/gone.py`; see "
        "[checks](checks.md#canonical-forms) and `feast_parity.parity.canonical.canonical_value`."
    )
    shown = {s for s, _ in _mentioned_paths(doc)}
    assert {"tests/e2e/test_point_in_time.py", "tests/unit/gone.py"} <= shown
    missing = [s for s, path in _mentioned_paths(doc) if not path.exists()]
    assert "tests/unit/gone.py" in missing and "tests/e2e/test_point_in_time.py" not in missing
    assert _DOTTED.findall(_text(doc)) == ["feast_parity.parity.canonical.canonical_value"]
    assert "canonical-forms" in _anchors(ROOT / "docs" / "checks.md")
    assert "redacted-features-redact" in _anchors(CONFIGURATION)
    total = sum(1 for d in DOCS for _ in _mentioned_paths(d))
    assert total > 50, total


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", _text(path), flags=re.S)  # no headings inside code blocks
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)
    explicit = re.findall(r'<a id="([^"]+)"', text)
    return {_slug(h) for h in headings} | set(explicit)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_anchor_a_doc_links_to_exists(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(_text(doc)):
        if "#" not in target or re.match(r"^[a-z]+://", target):
            continue
        file_part, anchor = target.split("#", 1)
        path = (doc.parent / file_part).resolve() if file_part else doc
        if path.suffix == ".md" and path.exists() and anchor not in _anchors(path):
            broken.append(target)
    assert broken == [], f"{doc.name} links to anchors that do not exist: {broken}"


# --- (2) every configuration key is in configuration.md ----------------------------------------


CONFIGURATION = ROOT / "docs" / "configuration.md"


def _nested_models() -> dict[str, Any]:
    """``parity:`` and each nested block, as the config models them (whatever their class)."""
    fields = ParityConfig.model_fields
    return {
        "parity": ParityConfig,
        "parity.thresholds": fields["thresholds"].annotation,
        "parity.cohorts": fields["cohorts"].annotation,
        "parity.alerts": fields["alerts"].annotation,
    }


def test_the_thresholds_block_is_check_thresholds() -> None:
    assert _nested_models()["parity.thresholds"] is CheckThresholds


@pytest.mark.parametrize("block", list(_nested_models()))
def test_every_parity_key_is_documented_in_configuration_md(block: str) -> None:
    model = _nested_models()[block]
    spans = _code_spans(_text(CONFIGURATION))
    undocumented = sorted(name for name in model.model_fields if name not in spans)
    assert len(model.model_fields) >= 5
    assert undocumented == [], f"configuration.md lacks {block} keys {undocumented}"


def test_every_threshold_default_in_configuration_md_is_the_codes() -> None:
    """The thresholds table gives each key's default; a changed default must change the doc."""
    text = _text(CONFIGURATION)
    for name, value in CheckThresholds().model_dump().items():
        row = re.search(rf"^\| `{name}` \|[^|]*\| `([^`]+)` \|", text, flags=re.M)
        assert row is not None, f"no table row for thresholds.{name}"
        assert float(row.group(1)) == float(value), (name, row.group(1), value)


# --- (3) every finding kind is in checks.md and report.md ---------------------------------------


@pytest.mark.parametrize("doc", ["checks.md", "report.md"])
def test_every_finding_kind_is_documented(doc: str) -> None:
    spans = _code_spans(_text(ROOT / "docs" / doc))
    assert [k for k in FINDING_KINDS if k not in spans] == []


# --- (4) every field of a report is in report.md -------------------------------------------------

T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
SECOND = 1_000_000
N = 60


def _served(values: list[float], event_us: int) -> tuple[ServedRows, ServedFeature]:
    column = canonical_column(values, "Float64")
    feature = ServedFeature(
        "Float64",
        column,
        np.full(N, FIELD_STATUS_PRESENT, dtype=np.int8),
        column.hashes(),
        np.full(N, "double_val", dtype=object),
        {"Float64": N},
    )
    start = int(T0.timestamp() * SECOND)
    rows = ServedRows(
        feature_view="user_engagement",
        sample_ids=np.arange(N, dtype=np.int64),
        request_id=np.asarray([f"r{i // 10}" for i in range(N)], dtype=object),
        request_time=start + np.arange(N, dtype=np.int64) * SECOND,
        event_time=np.full(N, event_us, dtype=np.int64),
        keys={"user_id": np.asarray([1000 + i % 10 for i in range(N)], dtype=object)},
        entity_key_hash=np.arange(N, dtype=np.uint64),
        feature_service=np.full(N, "ranking_model_v1", dtype=object),
        features={"watch_minutes": feature},
        row_hash=np.zeros(N, dtype=np.uint64),
        writer=np.full(N, "host:1", dtype=object),
    )
    return rows, feature


def realistic_results() -> tuple[dict[str, Any], dict[str, Any]]:
    """One feature and one view, through the engine as the check feeds it: 60 rows of 10
    users, all current, 6 rows of even users served x 1.5 (a skew), sliced by user parity."""
    offline_values = [float(i % 10 + 1) for i in range(N)]
    online_values = [
        v * 1.5 if i < 20 and i % 10 in (0, 2, 4) else v for i, v in enumerate(offline_values)
    ]
    event_us = int((T0 - timedelta(hours=1)).timestamp() * SECOND)
    rows, feature = _served(online_values, event_us)
    offline_column = canonical_column(offline_values, "Float64")
    offline = OfflineRows(
        np.full(N, event_us, dtype=np.int64),
        {"watch_minutes": offline_column},
        np.full(N, event_us, dtype=np.int64),
        {"watch_minutes": offline_column},
        {"watch_minutes": "float64"},
    )
    outcomes = classify(rows, offline, ttl_seconds=86400.0)
    labels = [f'{{"user_id": {k}}}' for k in rows.keys["user_id"].tolist()]
    comparison = FeatureComparison("user_engagement:watch_minutes", "Float64", seed=42)
    comparison.update(
        feature,
        offline_column,
        offline_column,
        outcomes,
        offline_type="float64",
        entity_labels=labels,
        request_times=rows.request_time,
        cohort_labels={"key:user_id%2": np.asarray([str(k % 2) for k in rows.keys["user_id"]])},
        cohort_entities=rows.keys["user_id"].astype(np.uint64),
    )
    result = comparison.result()
    # the fields plugin/check.py adds to every feature result
    result.update(
        feature="user_engagement:watch_minutes",
        feature_view="user_engagement",
        declared="Float64",
        missing_offline=False,
        on_demand=False,
        definition_fingerprint="b7696d47c5d488ea",
    )
    view = ViewComparison("user_engagement", seed=42)
    view.update(rows, outcomes, offline_row_hashes(rows, offline), labels)
    view_row = {"feature_view": "user_engagement", "on_demand": False, **view.result()}
    # plugin/freshness.view_freshness, as the check adds it to batch views
    view_row.update(
        materialization_lag_seconds=900.0,
        source_lag_seconds=600.0,
        slo_seconds=43200.0,
        slo_source="tag parity.freshness_slo=12h",
        ttl_seconds=86400.0,
    )
    return result, view_row


def _report(features: list[dict[str, Any]], views: list[dict[str, Any]], **kw: Any) -> dict:
    return build_report(
        window=(T0 - timedelta(days=1), T0),
        samples=N,
        features=features,
        views=views,
        thresholds=CheckThresholds(),
        project="video_recs",
        notes=["a note"],
        timings={
            "read_seconds": 0.1,
            "offline_seconds": 0.2,
            "compare_seconds": 0.3,
            "results_seconds": 0.4,
        },
        skipped={"rows": 0, "reasons": {}},
        **kw,
    )


def every_kind_report(feature: dict[str, Any], view: dict[str, Any]) -> dict:
    """Findings of every kind: a stale, expired, NOT_FOUND and late view whose schema changed,
    a feature with defaults, and one drifting from its training profile."""
    late_view = {
        **view,
        "stale_rows": 6,
        "stale_rate": 0.1,
        "stale_lag_seconds": {"p50": 60.0, "p95": 90.0, "p99": 99.0},
        "expired_rows": 6,
        "expired_not_stale_rate": 0.1,
        "expired_age_seconds": {"p50": 9e4, "p95": 1e5, "p99": 1e5},
        "not_found_with_offline": 6,
        "not_found_default_rate": 0.1,
        "materialization_lag_seconds": 90_000.0,
    }
    changed = {**feature, "declared_at_serving": ["Int64"], "online_type": "int64"}
    defaults = {
        **feature,
        "feature": "video_stats:age_days",
        "feature_view": "video_stats",
        "silent_defaults": 20,
        "silent_default_rate": 20 / 60,
        "fill_values": [0],
        "psi_vs_training": 0.5,
        "psi_vs_training_critical": 0.05,
        "training_dataset_id": "ds-1",
    }
    plain_view = {**view, "feature_view": "video_stats"}
    return _report([changed, defaults], [late_view, plain_view])


def _keys(value: Any, parent: str = "") -> Iterator[str]:
    """Every dict key of a report, except keys that are data (views, dimensions, reasons)."""
    data_keyed = {
        "cohort_dimensions",
        "declared_now",
        "declared_at_serving",
        "deleted_feature_views",
        "reasons",
        "thresholds",  # CheckThresholds: every key is checked in configuration.md
    }
    if isinstance(value, Mapping):
        for key, item in value.items():
            if parent not in data_keyed:
                yield str(key)
            yield from _keys(item, str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item, parent)


REPORT_MD = ROOT / "docs" / "report.md"


def test_every_field_of_a_realistic_report_is_in_report_md() -> None:
    feature, view = realistic_results()
    cohorts = _nested_models()["parity.cohorts"](dimensions=["key:user_id%2"])
    report = _report([feature], [view], cohorts=cohorts)
    assert report["features"][0]["mismatch_magnitude"] is not None  # the skew is measured
    assert report["features"][0]["cohorts"], "the skewed cohort is listed"
    assert report["feature_views"][0]["online_only_examples"] == []
    spans = _code_spans(_text(REPORT_MD))
    keys = set(_keys(report))
    for nested in ("schema", "mismatch_magnitude", "histogram", "stale_lag_seconds"):
        keys |= set(report["features"][0][nested])
    keys |= set(report["feature_views"][0]["served_lag_seconds"])
    assert {"schema_version", "feature", "feature_view", "diverged", "smape"} <= keys
    assert set(report["thresholds"]) == set(CheckThresholds.model_fields)
    assert sorted(keys - spans) == []


def test_every_finding_and_evidence_field_is_in_report_md() -> None:
    feature, view = realistic_results()
    report = every_kind_report(feature, view)
    produced = {f["kind"] for f in report["findings"]}
    # every kind but the reserved one is exercised, feature- and view-level
    assert produced == set(FINDING_KINDS) - {"transformation_divergence"}, produced
    assert any("feature_view" in f and "feature" not in f for f in report["findings"])
    references = {f["evidence"].get("reference") for f in report["findings"]}
    assert "training" in references
    spans = _code_spans(_text(REPORT_MD))
    keys = set(_keys(report["findings"]))
    assert sorted(keys - spans) == []


# --- the worked examples of checks.md hold -------------------------------------------------------


def _fill_value_rows(offline: list[float], online: list[float]) -> dict[str, Any]:
    n = len(offline)
    column = canonical_column(online, "Float64")
    feature = ServedFeature(
        "Float64",
        column,
        np.full(n, FIELD_STATUS_PRESENT, dtype=np.int8),
        column.hashes(),
        np.full(n, "double_val", dtype=object),
        {"Float64": n},
    )
    from feast_parity.parity.view import RowOutcomes

    every = np.ones(n, dtype=bool)
    none = np.zeros(n, dtype=bool)
    outcomes = RowOutcomes(
        exact=every,
        stale=none,
        expired=none,
        online_only=none,
        not_found=none,
        future=none,
        offline_row=every,
        stale_lag=np.zeros(n),
        age=np.zeros(n),
    )
    off = canonical_column(offline, "Float64")
    comparison = FeatureComparison("v:f", "Float64")
    comparison.update(feature, off, off, outcomes)
    defaults = CheckThresholds()
    return comparison.result(
        ratio=defaults.fill_value_ratio,
        min_share=defaults.fill_value_min_share,
        min_rows=defaults.fill_value_min_rows,
    )


def test_the_fill_value_worked_examples_of_checks_md() -> None:
    text = _text(ROOT / "docs" / "checks.md")
    # five users served 20 times each; two of them served 0.0
    offline = [v for v in (3.0, 7.25, 9.5, 12.5, 30.0) for _ in range(20)]
    online = offline[:60] + [0.0] * 40
    found = _fill_value_rows(offline, online)
    assert found["fill_values"] == [0.0] and found["silent_default_rate"] == 0.4
    assert found["mismatch_rate"] == 0.0
    assert "40 / 100 = 0.4" in text
    # thirty users, one of them in two requests, served x 1.5
    users = [round(0.02 + 0.002 * k, 4) for k in range(30)]
    users[0] = 0.08
    offline = [users[0]] * 20 + [u for u in users[1:] for _ in range(10)]
    online = [0.12] * 20 + offline[20:]
    skewed = _fill_value_rows(offline, online)
    assert len(offline) == 310 and skewed["fill_values"] == []
    assert skewed["mismatches"] == 20 and round(100 * skewed["mismatch_rate"], 1) == 6.5
    assert "20 / 310 = 6.5 %" in text
