"""Transformation parity on real Feast repos: on-demand outputs recomputed row by row.

The repo: one batch view (``stats``), a request source (``amount``, ``channel``), a python-mode
and a pandas-mode on-demand view over both, a pandas-mode view written to the online store
at materialization (``write_to_online_store``), and feature services that project the
on-demand views (a feature subset, an alias) and serve, or do not serve, their input view.

Confirmed on Feast 0.67 (docs/feast_facts.md T1-T4): a process whose registry is cached
(``cache_ttl_seconds``) keeps running the transformation it loaded after another process
applies a new one; a ``write_to_online_store`` view is served with the write time as its event
time; ``feast apply`` on the CLI does not create its online table on SQLite
(``FeatureStore.apply`` does, so this repo is applied from Python).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from feast import FeatureStore

from feast_parity.cli import main as cli
from feast_parity.plugin.check import run_check
from feast_parity.plugin.collect import writer_id
from tests.applied import applied_copy

USERS = list(range(1, 13))
RATIO_V1 = "a / (s + 1.0)"
RATIO_V2 = "a / (s + 2.0)"

DEFINITIONS = """
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

DATA = Path(__file__).parent / "data"
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
stats_source = FileSource(
    name="stats_source", path=str(DATA / "stats.parquet"), timestamp_field="event_timestamp"
)
stats = FeatureView(
    name="stats",
    entities=[user],
    ttl=timedelta(days=3),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="spend", dtype=Float64),
        Field(name="orders", dtype=Int64),
    ],
    source=stats_source,
)
order = RequestSource(
    name="order", schema=[Field(name="amount", dtype=Float64), Field(name="channel", dtype=String)]
)


@on_demand_feature_view(
    sources=[stats, order],
    schema=[Field(name="ratio", dtype=Float64), Field(name="big", dtype=Int64)],
    mode="python",
)
def ratio_py(inputs: dict) -> dict:
    return {
        "ratio": [@@RATIO@@ for a, s in zip(inputs["amount"], inputs["spend"])],
        "big": [int(a > 50) for a in inputs["amount"]],
    }


@on_demand_feature_view(
    sources=[stats, order],
    schema=[Field(name="weighted", dtype=Float64)],
    mode="pandas",
)
def weighted_pd(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    weight = (inputs["channel"] == "web").astype("float64") + 1.0
    out["weighted"] = inputs["amount"].astype("float64") * weight + inputs["orders"]
    return out


@on_demand_feature_view(
    sources=[stats],
    schema=[Field(name="avg_order", dtype=Float64)],
    mode="pandas",
    write_to_online_store=True,
    entities=[user],
)
def avg_order(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["avg_order"] = inputs["spend"] / inputs["orders"].clip(lower=1)
    return out


svc_with_inputs = FeatureService(
    name="svc_with_inputs",
    features=[stats[["spend", "orders"]], ratio_py, weighted_pd, avg_order],
)
svc_projected = FeatureService(name="svc_projected", features=[ratio_py[["ratio"]]])
svc_alias = FeatureService(
    name="svc_alias", features=[weighted_pd.with_name("weighted_v2"), stats[["spend"]]]
)
"""


def write_repo(path: Path, *, ratio: str = RATIO_V1, project: str | None = None) -> Path:
    (path / "data").mkdir(parents=True, exist_ok=True)
    config = {
        "project": project or f"tp_{uuid.uuid4().hex[:8]}",
        "registry": {"path": "data/registry.db", "cache_ttl_seconds": 600},
        "provider": "feast_parity.ParityProvider",
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
        "parity": {"sample_rate": 1.0, "seed": 3, "store": "sqlite:///data/parity.db"},
    }
    path.joinpath("feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    path.joinpath("definitions.py").write_text(DEFINITIONS.replace("@@RATIO@@", ratio))
    return path


def write_stats(path: Path, end: datetime) -> None:
    rows = [
        {
            "user_id": user,
            "event_timestamp": end - timedelta(hours=6 * (2 - k)),
            "spend": float(user * 10 + k),
            "orders": k + 1,
        }
        for user in USERS
        for k in range(3)
    ]
    pd.DataFrame(rows).to_parquet(path / "data" / "stats.parquet")


_APPLY = """
import importlib.util, sys
from feast import FeatureStore
from feast.base_feature_view import BaseFeatureView
from feast.data_source import DataSource
from feast.entity import Entity
from feast.feature_service import FeatureService
spec = importlib.util.spec_from_file_location("definitions", sys.argv[1] + "/definitions.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
kinds = (BaseFeatureView, DataSource, Entity, FeatureService)
objects = [v for v in vars(module).values() if isinstance(v, kinds)]
FeatureStore(repo_path=sys.argv[1]).apply(objects)
"""


def apply(repo: Path) -> None:
    """``FeatureStore.apply`` in a fresh process (T4: the CLI's apply skips the online table
    of a write_to_online_store view), as another team's deploy job would."""
    subprocess.run([sys.executable, "-c", _APPLY, str(repo)], check=True, capture_output=True)


def requests(seed: int, n: int = 8) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "user_id": int(rng.choice(USERS)),
            "amount": float(np.round(rng.uniform(5, 120), 2)),
            "channel": str(rng.choice(["web", "app"])),
        }
        for _ in range(n)
    ]


REFS = ["stats:spend", "stats:orders", "ratio_py:ratio", "ratio_py:big", "weighted_pd:weighted"]


def serve(store: FeatureStore, services: list[str], seeds: range) -> int:
    """Serve feature services (or, for ``"refs"``, the feature refs :data:`REFS`)."""
    served = 0
    for name in services:
        # allow_cache=True as `feast serve` asks: the default (False) reloads the registry
        features = REFS if name == "refs" else store.get_feature_service(name, allow_cache=True)
        for seed in seeds:
            rows = requests(seed)
            store.get_online_features(features, entity_rows=rows)
            served += len(rows)
    provider = store._get_provider()
    assert provider.flush_samples()
    assert provider.parity_stats()["hook_errors"] == 0, provider.parity_stats()
    return served


@pytest.fixture
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # an hour before the last full hour: room for rows newer than the materialization
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)

    def make(path: Path) -> None:
        write_repo(path)
        write_stats(path, end)
        apply(path)

    # applied once per process, each test a copy of its own (tests/applied.py)
    path = applied_copy(tmp_path_factory.getbasetemp(), f"transformation:{end}", make)
    store = FeatureStore(repo_path=str(path))
    store.materialize(end - timedelta(days=2), end + timedelta(seconds=1))
    return path


def _check(repo: Path) -> dict[str, Any]:
    return run_check(repo, until=datetime.now(timezone.utc) + timedelta(minutes=5))


def _rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["feature"]: f for f in report["features"]}


def _views(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["feature_view"]: v for v in report["feature_views"]}


def test_healthy_on_demand_views_are_compared_row_by_row_and_check_clean(repo: Path) -> None:
    store = FeatureStore(repo_path=str(repo))
    with_inputs = serve(store, ["svc_with_inputs"], range(3))
    projected = serve(store, ["svc_projected"], range(3, 5))
    aliased = serve(store, ["svc_alias"], range(5, 7))
    report = _check(repo)
    assert [f["message"] for f in report["findings"]] == [], report["notes"]
    rows = _rows(report)
    # every output row was recomputed and compared, counted only where it was asked for
    assert rows["ratio_py:ratio"]["rows"] == with_inputs + projected
    assert rows["ratio_py:big"]["rows"] == with_inputs  # svc_projected asks for ratio only
    assert rows["weighted_pd:weighted"]["rows"] == with_inputs + aliased
    for ref in ("ratio_py:ratio", "ratio_py:big", "weighted_pd:weighted", "avg_order:avg_order"):
        assert rows[ref]["compared"] == rows[ref]["rows"], (ref, rows[ref], report["notes"])
        assert rows[ref]["mismatches"] == 0
    views = _views(report)
    ratio = views["ratio_py"]["transformation"]
    # svc_projected does not ask for the input view: Feast reads it for the transformation
    # and drops it from the response, and the hook logs it anyway, so every row's inputs are
    # known (what serving fed) and agree with training's
    assert ratio["recomputed"] == with_inputs + projected
    assert ratio["inputs_known"] == with_inputs + projected
    assert ratio["inputs_agreed"] == with_inputs + projected
    moved = ratio["moved_by_inputs"]["ratio"]
    assert (moved["compared"], moved["moved"], moved["causes"]) == (with_inputs + projected, 0, [])
    assert ratio["code_drift"] is False
    assert [s["writers"] for s in ratio["serving"]] == [[writer_id()]]
    assert ratio["serving"][0]["matches_registry"] is True
    # write_to_online_store: served with its write time, recomputed from the inputs then
    assert views["avg_order"]["served_lag_seconds"]["p50"] > 0
    assert views["ratio_py"]["served_lag_seconds"]["p50"] is None  # computed at request time
    assert cli(["check", "--repo", str(repo), "--no-progress"]) == 0


def test_a_changed_udf_served_from_a_cached_registry_diverges_on_its_outputs_only(
    repo: Path,
) -> None:
    """The test process serves with its registry cached, another process applies a new
    ratio formula, a third serves with it: only the cached process's ratio rows diverge, and
    the finding names that process."""
    stale = FeatureStore(repo_path=str(repo))
    serve(stale, ["refs"], range(2))  # loads (and caches) the registry
    write_repo(repo, ratio=RATIO_V2, project=stale.project)
    apply(repo)
    # feature refs read the cached registry (T1), so this process runs the old function
    stale_rows = serve(stale, ["refs"], range(2, 5))
    fresh = subprocess.run(
        [sys.executable, "-c", _SERVE_FRESH, str(repo)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    fresh_writer = fresh.stdout.strip().splitlines()[-1]
    report = _check(repo)
    drift = [
        f
        for f in report["findings"]
        if f["kind"] == "transformation_divergence" and f.get("feature_view") == "ratio_py"
    ]
    assert len(drift) == 1, report["findings"]
    finding = drift[0]
    assert finding["severity"] == "fail"
    evidence = finding["evidence"]
    assert evidence["cause"] == "code_drift"
    assert evidence["stale_writers"] == [writer_id()]
    assert fresh_writer not in evidence["stale_writers"]
    assert evidence["features"] == ["ratio_py:ratio"]  # big and weighted are unchanged
    assert evidence["registry_udf_fingerprint"] not in evidence["serving_udf_fingerprints"]
    assert writer_id() in finding["message"] and socket.gethostname() in writer_id()
    # the per-output divergence folds into the view's finding; nothing else is flagged
    kinds = {(f["kind"], f.get("feature") or f.get("feature_view")) for f in report["findings"]}
    assert kinds == {("transformation_divergence", "ratio_py")}, report["findings"]
    folded = evidence["folded"]
    assert {f["feature"] for f in folded} == {"ratio_py:ratio"}
    rows = _rows(report)
    all_rows = rows["ratio_py:ratio"]["rows"]
    # rows served before the apply and by the fresh process agree with the new registry code
    # only where the formula's change does not show; the cached process's rows all differ
    assert rows["ratio_py:ratio"]["mismatches"] >= stale_rows
    assert rows["ratio_py:ratio"]["mismatches"] < all_rows
    assert rows["ratio_py:big"]["mismatches"] == 0
    assert rows["weighted_pd:weighted"]["mismatches"] == 0
    serving = {
        s["udf_fingerprint"]: s for s in _views(report)["ratio_py"]["transformation"]["serving"]
    }
    assert len(serving) == 2
    assert cli(["check", "--repo", str(repo), "--no-progress"]) == 1


_SERVE_FRESH = """
import sys
from feast import FeatureStore
from feast_parity.plugin.collect import writer_id
from tests.e2e.test_transformation import serve
store = FeatureStore(repo_path=sys.argv[1])
serve(store, ["refs"], range(5, 7))
print(writer_id())
"""


def test_a_udf_that_raises_on_the_logged_inputs_is_counted_in_a_note(repo: Path) -> None:
    store = FeatureStore(repo_path=str(repo))
    served = serve(store, ["svc_projected"], range(3))
    # raises on real spend values (>= 10), not on the random input feast apply tries
    write_repo(repo, ratio="(a / (s - s) if s > 5 else 0.0)", project=store.project)
    apply(repo)
    report = _check(repo)
    transformation = _views(report)["ratio_py"]["transformation"]
    assert transformation["udf_errors"] == served
    assert transformation["recomputed"] == 0
    assert transformation["first_error"].startswith("ZeroDivisionError")
    assert any("ratio_py raised" in n and "ZeroDivisionError" in n for n in report["notes"])
    assert _rows(report)["ratio_py:ratio"]["status"] == "insufficient_data"


def test_request_data_of_an_undeclared_type_is_schema_divergence_of_that_input(
    repo: Path,
) -> None:
    store = FeatureStore(repo_path=str(repo))
    rows = [{**row, "channel": 7} for row in requests(11)]  # declared String, sent as int
    store.get_online_features(store.get_feature_service("svc_projected"), entity_rows=rows)
    assert store._get_provider().flush_samples()
    report = _check(repo)
    found = [
        f
        for f in report["findings"]
        if f["kind"] == "schema_divergence" and f.get("feature_view") == "ratio_py"
    ]
    assert len(found) == 1, report["findings"]
    assert found[0]["evidence"]["request_field"] == "channel"
    assert found[0]["evidence"]["declared"] == "String"
    assert found[0]["evidence"]["unfit"] == len(rows)
    assert textwrap.shorten(found[0]["message"], 200).startswith("request input channel")


def test_inputs_newer_offline_than_materialized_are_not_a_divergence(repo: Path) -> None:
    """Rows that reach the offline source after the last materialization are not online yet:
    serving computed from the materialized row, and so does the recomputation from what was
    served, so the outputs have no transformation finding. Training, reading the newer row at
    request time, computes other outputs: that is the input view's staleness, one finding on
    ``stats`` that names the outputs it moves."""
    data = pd.read_parquet(repo / "data" / "stats.parquet")
    newest = data["event_timestamp"].max()
    later = data[data["event_timestamp"] == newest].copy()
    later["event_timestamp"] = newest + pd.Timedelta(minutes=30)
    later["spend"] = later["spend"] + 1000.0
    pd.concat([data, later]).to_parquet(repo / "data" / "stats.parquet")
    store = FeatureStore(repo_path=str(repo))
    served = serve(store, ["svc_projected"], range(4))
    report = _check(repo)
    kinds = [(f["kind"], f.get("feature") or f.get("feature_view")) for f in report["findings"]]
    assert kinds == [("stale_serving", "stats")], report["findings"]
    stale = report["findings"][0]
    assert stale["evidence"]["moves_outputs"] == [
        {"feature": "ratio_py:ratio", "rows": served, "rate": 1.0}
    ]
    assert "also moves outputs ratio_py:ratio (100.0%)" in stale["message"]
    assert _rows(report)["ratio_py:ratio"]["compared"] == served
    assert _rows(report)["ratio_py:ratio"]["mismatches"] == 0
    # ... whereas Feast's point-in-time read at request time gives the newer row
    entity = pd.DataFrame({"user_id": USERS, "event_timestamp": datetime.now(timezone.utc)})
    at_request = store.get_historical_features(entity, ["stats:spend"]).to_df()
    assert (at_request["spend"] > 1000).all()


def test_lineage_shows_the_registry_training_and_serving_fingerprints(repo: Path, capsys) -> None:
    stale = FeatureStore(repo_path=str(repo))
    serve(stale, ["refs"], range(2))
    write_repo(repo, ratio=RATIO_V2, project=stale.project)
    apply(repo)
    serve(stale, ["refs"], range(2, 3))
    _check(repo)
    from feast_parity import lineage

    (record,) = lineage(str(repo), ["ratio_py:ratio"])
    transformation = record["transformation"]
    assert transformation["registry"] == record["udf_fingerprint"]
    assert transformation["training"] is None  # no training dataset recorded
    (served,) = transformation["serving"]
    assert served["writers"] == [writer_id()]
    assert served["matches_registry"] is False
    capsys.readouterr()
    assert cli(["lineage", "ratio_py:ratio", "--repo", str(repo)]) == 0
    text = capsys.readouterr().out
    assert f"transformation registry {record['udf_fingerprint']}" in text
    assert f"served {served['udf_fingerprint']} by {writer_id()}" in text
    assert "NOT the registry's" in text
