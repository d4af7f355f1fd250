"""Right on repos shaped unlike the demo: every Feast value type, every object kind.

A healthy repo must check clean: no false mismatch, schema divergence or default from how the
two paths represent a value (Json parsed vs text, Struct ints widened, NaN served as null,
timestamps in whole seconds online, bytes, empty values). A change of one value of one type is
found as a value mismatch on that feature alone. The object-kinds repo covers field mapping with
created-timestamp ties, ttl=0, composite and mapped join keys, an entityless view, a push-fed
stream view with rows that exist online only, an online=False view, on-demand views with and
without request data, and feature services projecting subsets of one view.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from feast import FeatureStore

from feast_parity.cli import main as cli
from feast_parity.plugin.check import run_check
from tests.e2e import repos

PLUGIN = "feast_parity.ParityProvider"
PARITY = {"sample_rate": 1.0, "seed": 7, "store": "sqlite:///data/parity.db"}
ENTITIES = 24
REQUESTS = 5


def _changed(value: Any, dtype: str) -> Any:
    """A value of the same declared type that is not equal to ``value``."""
    if dtype.startswith("Array"):
        items = list(value or [])
        if "String" in dtype:
            return [*items, "changed"]
        if "Bytes" in dtype:
            return [*items, b"changed"]
        if "Bool" in dtype:
            return [*items, True]
        if "UnixTimestamp" in dtype:
            return [*items, datetime(2020, 1, 1)]
        if "Float" in dtype:
            return [*items, 42.5]
        return [*items, 42]
    if dtype in ("Int32", "Int64"):
        return int(value or 0) + 7
    if dtype in ("Float32", "Float64"):
        return float(value or 0.0) * 2.0 + 3.5
    if dtype == "String":
        return f"{value}-changed"
    if dtype == "Bytes":
        return (value or b"") + b"!"
    if dtype == "Bool":
        return not value
    if dtype == "UnixTimestamp":
        return value + timedelta(hours=3)
    if dtype in ("Map", "Json"):
        return {**(value or {}), "planted": "yes"}
    return {**(value or {}), "label": "planted"}  # Struct


def _serve(repo: Path, refs: list[str], ids: list[int], requests: int = REQUESTS) -> None:
    store = FeatureStore(repo_path=str(repo))
    for _ in range(requests):
        store.get_online_features(refs, entity_rows=[{"item_id": i} for i in ids])
    provider = store._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["dropped_rows"] == 0 and stats["hook_errors"] == 0, stats


def _no_findings(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (f["kind"], f.get("feature") or f.get("feature_view"), f["message"])
        for f in report["findings"]
        if f["severity"] in ("warn", "fail")
    ]


STORES = [("file", "sqlite"), ("duckdb", "sqlite"), ("postgres", "sqlite"), ("file", "redis")]


@pytest.mark.parametrize("offline,online", STORES, ids=[f"{a}-{b}" for a, b in STORES])
def test_every_type_checks_clean_then_each_planted_change_is_its_own_mismatch(
    tmp_path, request, offline, online
):
    pg_url = request.getfixturevalue("postgres_url") if offline == "postgres" else None
    repo = repos.write_every_type_repo(
        tmp_path / "repo",
        offline=offline,
        online=online,
        pg_url=pg_url,
        provider=PLUGIN,
        parity=PARITY,
        entities=ENTITIES,
        project=f"every_{uuid.uuid4().hex[:8]}",
    )
    repos.apply(repo)
    end = repos.repo_end(repo)
    repos.materialize(repo, end - timedelta(days=3), end + timedelta(seconds=1))
    refs = repos.every_type_refs()
    ids = repos.every_type_entity_ids(ENTITIES)
    try:
        _serve(repo, refs, ids)
        clean = run_check(repo, until=datetime.now(end.tzinfo) + timedelta(minutes=1))
        rows = {f["feature"]: f for f in clean["features"]}
        assert set(rows) == set(refs)
        for ref, row in rows.items():
            assert row["rows"] == REQUESTS * ENTITIES, ref
            assert row["compared"] == REQUESTS * ENTITIES, ref
            assert row["mismatch_rate"] == 0.0, (ref, row["mismatch_examples"])
            assert row["schema"]["diverged"] is False, (ref, row["schema"])
        assert _no_findings(clean) == []

        # one planted change per type, each on its own ordinary item
        ordinary = [i for i in ids if repos.every_type_role(i) == "ordinary"]
        dtypes = {name: str(t) for name, t in repos.every_type_feast_types().items()}
        store = FeatureStore(repo_path=str(repo))
        planted = {}
        for (name, dtype), item in zip(sorted(dtypes.items()), ordinary):
            current = store.get_online_features([f"every_type:{name}"], [{"item_id": item}])
            value = current.to_dict()[name][0]
            repos.plant_online_change(
                repo, "every_type", {"item_id": item}, name, _changed(value, dtype)
            )
            planted[f"every_type:{name}"] = item
        since = datetime.now(end.tzinfo)
        _serve(repo, refs, ids)
        report = run_check(repo, since=since, until=since + timedelta(hours=1))
        mismatches = {f["feature"]: f for f in report["findings"] if f["kind"] == "value_mismatch"}
        assert set(mismatches) == set(planted), sorted(mismatches)
        for ref, item in planted.items():
            row = next(f for f in report["features"] if f["feature"] == ref)
            assert row["mismatches"] == REQUESTS, (ref, row["mismatches"])
            examples = mismatches[ref]["evidence"]["examples"]
            assert examples and all(f'"item_id": {item}' in e["entity"] for e in examples), ref
        other_kinds = {f["kind"] for f in report["findings"] if f["severity"] == "fail"}
        assert other_kinds == {"value_mismatch"}, report["findings"]
    finally:
        if online == "redis":
            FeatureStore(repo_path=str(repo)).teardown()


def _serve_services(repo: Path, services: list[str], requests: int = 4) -> dict[str, int]:
    store = FeatureStore(repo_path=str(repo))
    served: dict[str, int] = {}
    for name in services:
        service = store.get_feature_service(name)
        for seed in range(requests):
            rows = repos.entity_rows_for(repo, name, 10, seed)
            store.get_online_features(service, entity_rows=rows)
            served[name] = served.get(name, 0) + len(rows)
    provider = store._get_provider()
    assert provider.flush_samples()
    assert provider.parity_stats()["hook_errors"] == 0, provider.parity_stats()
    return served


OBJECT_STORES = [("file", "sqlite"), ("duckdb", "redis"), ("postgres", "sqlite")]


@pytest.mark.parametrize(
    "offline,online", OBJECT_STORES, ids=[f"{a}-{b}" for a, b in OBJECT_STORES]
)
def test_every_object_kind_checks_clean_and_counts_only_what_was_served(
    tmp_path, request, offline, online
):
    pg_url = request.getfixturevalue("postgres_url") if offline == "postgres" else None
    repo, summary = repos.build_object_kinds_repo(
        tmp_path / "repo",
        offline=offline,
        online=online,
        pg_url=pg_url,
        provider=PLUGIN,
        parity=PARITY,
        project=f"kinds_{uuid.uuid4().hex[:8]}",
    )
    services = list(repos.OBJECT_KINDS_SERVICES)
    if summary["materialize_errors"].get("global_stats"):
        services.remove("svc_global")  # Feast cannot materialize an entityless view here (M2)
    try:
        served = _serve_services(repo, services)
        report = run_check(
            repo, until=datetime.now(repos.repo_end(repo).tzinfo) + timedelta(hours=1)
        )
        assert _no_findings(report) == [], report["notes"]
        rows = {f["feature"]: f for f in report["features"]}
        # only what each request asked for counts for a feature, directly or through an
        # on-demand view that read it (counted apart in input_only_rows)
        age, score = rows["user_profile:age"], rows["user_profile:credit_score"]
        assert age["rows"] - age["input_only_rows"] == (
            served["svc_profile_subset"] + served["svc_alias"]
        )
        assert score["rows"] - score["input_only_rows"] == (
            served["svc_profile_score"] + served["svc_alias"] + served["svc_mixed"]
        )
        for ref in ("user_profile:age", "user_profile:credit_score", "user_profile:tier"):
            assert rows[ref]["silent_default_rate"] in (0.0, None), rows[ref]
            assert rows[ref]["online_null_rate"] == 0.0, rows[ref]
            assert rows[ref]["compared"] == rows[ref]["rows"], rows[ref]  # ties included
        # the join-key-mapped projection is looked up under the view's own keys
        assert rows["user_merchant:txn_count"]["compared"] > 0
        # rows pushed online only (and written with write_to_online_store) are counted apart
        views = {v["feature_view"]: v for v in report["feature_views"]}
        assert views["user_clicks"]["online_only_rows"] > 0
        assert any(
            "have no offline row" in note and "user_clicks" in note for note in report["notes"]
        )
        assert rows["user_clicks:clicks"]["mismatches"] == 0
        # on-demand outputs with request data are recomputed offline, not reported missing
        assert rows["order_risk:risk_score"]["offline_rows"] > 0, report["notes"]
        assert not any("order_risk" in note for note in report["notes"]), report["notes"]
        # the online=False view is never served, so never checked
        assert not any(ref.startswith("user_ltv:") for ref in rows)
        assert (
            cli(
                [
                    "check",
                    "--repo",
                    str(repo),
                    "--no-progress",
                    "--since",
                    report["window"]["start"],
                    "--until",
                    report["window"]["end"],
                ]
            )
            == 0
        )
    finally:
        if online == "redis":
            FeatureStore(repo_path=str(repo)).teardown()
