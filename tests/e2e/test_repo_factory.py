"""The repo factories of tests/e2e/repos.py build repos that work on real Feast 0.67.

Every test writes its repos into ``tmp_path``, runs the real ``feast apply`` CLI, materializes
and reads back through Feast's Python API. The provider is ``local`` so these tests do not
depend on the plugin. Where a test asserts a Feast quirk, docs/feast_facts.md describes it; if
such an assertion starts failing after a Feast upgrade, update that file.
"""

from __future__ import annotations

import json
import math
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.e2e import repos

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # "stream feature views are alpha"
]

PRESENT, NOT_FOUND = 1, 3  # feast.serving.FieldStatus


def _store(repo: Path) -> Any:
    from feast import FeatureStore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureStore(repo_path=str(repo))


def _online(store: Any, features: Any, rows: list[dict], **kw: Any) -> tuple[dict, dict]:
    """(to_dict(), {name: (values, statuses, event seconds)}) of one online read."""
    response = store.get_online_features(features, entity_rows=rows, **kw)
    proto = response.proto
    raw = {
        name: (
            list(vector.values),
            list(vector.statuses),
            [t.seconds for t in vector.event_timestamps],
        )
        for name, vector in zip(proto.metadata.feature_names.val, proto.results)
    }
    return response.to_dict(), raw


def _offline(store: Any, entity_df: pd.DataFrame, features: Any, **kw: Any) -> pd.DataFrame:
    return store.get_historical_features(entity_df=entity_df, features=features, **kw).to_df()


def _by_key(frame: pd.DataFrame, *keys: str) -> dict:
    """Rows of ``frame`` keyed by the join-key tuple (single key: the bare value)."""
    out = {}
    for record in frame.to_dict("records"):
        key = tuple(record[k] for k in keys)
        out[key[0] if len(keys) == 1 else key] = record
    return out


# ----------------------------------------------------------------------------------------------
# Every-type repo
# ----------------------------------------------------------------------------------------------


def _build_every_type(tmp_path: Path, name: str, **options: Any) -> tuple[Path, Any, datetime]:
    repo = repos.write_every_type_repo(tmp_path / name, **options)
    repos.apply(repo)
    end = repos.repo_end(repo)
    repos.materialize(repo, end - timedelta(days=3), end + timedelta(seconds=1))
    return repo, _store(repo), end


def _check_every_type(store: Any, end: datetime, offline: str) -> tuple[dict, dict]:
    """After materialize: every feature is served for every item, equal (normalised) to
    get_historical_features at ``end`` and to the source; the special values land as the
    docs say. Returns (online dict, offline rows by item)."""
    ids = repos.every_type_entity_ids()
    expect = repos.every_type_expectations(offline=offline)
    online, raw = _online(store, repos.every_type_refs(), [{"item_id": i} for i in ids])
    history = _offline(
        store,
        pd.DataFrame({"item_id": ids, "event_timestamp": [end] * len(ids)}),
        repos.every_type_refs(),
    )
    assert sorted(history["item_id"]) == ids
    offline_rows = _by_key(history, "item_id")
    source = {
        r["item_id"]: r for r in repos.every_type_rows(end=end) if r["event_timestamp"] == end
    }

    declared = {f.name: f.dtype for f in store.get_feature_view("every_type").features}
    assert declared == repos.every_type_feast_types()

    for name, exp in expect.items():
        values, statuses, stamps = raw[name]
        assert statuses == [PRESENT] * len(ids), name  # null and NaN included
        assert stamps == [int(end.timestamp())] * len(ids), name
        for pos, item in enumerate(ids):
            on = repos.normalise(exp.value_type, online[name][pos])
            off = repos.normalise(exp.value_type, offline_rows[item][name])
            if item in exp.lossy_ids:
                # Went through float64 online; offline too, except duckdb's structs (V11).
                assert repos.as_floats(on) == repos.as_floats(off), (name, item, on, off)
            else:
                assert on == off, (name, item, online[name][pos], offline_rows[item][name])
                assert on == repos.normalise(exp.value_type, source[item][name]), (name, item)
            kind = values[pos].WhichOneof("val")
            scalar_nan = item in exp.nan_ids and not name.startswith("f_array")
            if name == "f_unix_timestamp" and item in exp.null_ids:
                # A null timestamp is written as the NaT sentinel, not as an empty Value.
                assert kind == "unix_timestamp_val"
                assert values[pos].unix_timestamp_val == -(2**63)
            elif item in exp.null_ids or scalar_nan:
                assert kind is None, (name, item)  # NaN is served as null
            else:
                assert kind is not None, (name, item)
            if item in exp.empty_ids:
                assert online[name][pos] in ("", b"", [], {}) or name == "f_struct"
        if name.startswith("f_array_float"):
            [nan_item] = exp.nan_ids
            assert any(math.isnan(v) for v in online[name][ids.index(nan_item)])
    # -0.0 keeps its sign online.
    [zero] = expect["f_float64"].zero_ids
    assert math.copysign(1.0, online["f_float64"][ids.index(zero)]) == -1.0
    assert math.copysign(1.0, online["f_float32"][ids.index(zero)]) == -1.0
    # Sub-second timestamps: whole seconds online, microseconds offline.
    [extreme] = expect["f_unix_timestamp"].extreme_ids
    assert online["f_unix_timestamp"][ids.index(extreme)].microsecond == 0
    assert pd.Timestamp(offline_rows[extreme]["f_unix_timestamp"]).microsecond == 123456
    # Int64 with nulls goes through float64 when materialized: 2**62 + 1 arrives as 2**62.
    assert online["f_int64"][ids.index(extreme)] == 2**62
    assert online["f_array_int64"][ids.index(extreme)][0] == 2**62 + 1  # arrays stay exact
    # Json / Map: parsed online, text offline; Struct: a dict online.
    assert isinstance(online["f_json"][ids.index(extreme)], dict)
    assert isinstance(offline_rows[extreme]["f_json"], str)
    assert isinstance(offline_rows[extreme]["f_map"], str)
    assert isinstance(online["f_struct"][ids.index(extreme)], dict)
    return online, offline_rows


def _check_plant(repo: Path, end: datetime) -> None:
    store = _store(repo)
    refs = repos.every_type_refs()
    before, raw_before = _online(store, refs, [{"item_id": 101}])
    repos.plant_online_change(repo, "every_type", {"item_id": 101}, "f_string", "planted ☃")
    repos.plant_online_change(repo, "every_type", {"item_id": 101}, "f_array_int64", [1, 2**62 + 1])
    after, raw_after = _online(_store(repo), refs, [{"item_id": 101}])
    assert after["f_string"] == ["planted ☃"]
    assert after["f_array_int64"] == [[1, 2**62 + 1]]
    for name in refs:
        short = name.split(":")[1]
        if short not in ("f_string", "f_array_int64"):
            assert raw_after[short][0] == raw_before[short][0], short  # other values untouched
        assert raw_after[short][2] == raw_before[short][2], short  # event time kept
    history = _offline(
        store, pd.DataFrame({"item_id": [101], "event_timestamp": [end]}), ["every_type:f_string"]
    )
    assert history["f_string"].tolist() == before["f_string"]  # offline unchanged
    with pytest.raises(LookupError):
        repos.plant_online_change(repo, "every_type", {"item_id": 999}, "f_string", "x")


def test_every_type_file_sqlite(tmp_path: Path) -> None:
    repo, store, end = _build_every_type(tmp_path, "every", offline="file", online="sqlite")
    _, offline_rows = _check_every_type(store, end, "file")
    # Offline (file store): Int32/Int64 columns with nulls are float64; bool is object.
    history = _offline(
        store,
        pd.DataFrame({"item_id": [101, 102], "event_timestamp": [end] * 2}),
        ["every_type:f_int32", "every_type:f_int64", "every_type:f_bool"],
    )
    assert str(history["f_int32"].dtype) == "float64"
    assert str(history["f_int64"].dtype) == "float64"
    assert str(history["f_bool"].dtype) == "object"
    # A Parquet struct column is a dict offline too.
    assert isinstance(offline_rows[101]["f_struct"], dict)
    _check_plant(repo, end)


def test_every_type_rows_outside_ttl(tmp_path: Path) -> None:
    """Online reads ignore ttl; the file store drops entity rows whose source rows all lie
    outside ttl (keeps unknown entities, with nulls) and reorders rows."""
    end = repos.floor_hour() - timedelta(days=5)  # ttl is 2 days
    repo, store, _ = _build_every_type(tmp_path, "stale", end=end)
    ids = repos.every_type_entity_ids()
    online, raw = _online(store, ["every_type:f_string"], [{"item_id": i} for i in ids])
    assert raw["f_string"][1] == [PRESENT] * len(ids)
    assert online["f_string"][0] is not None
    now = repos.floor_hour()
    asked = [108, 999, 101]  # 999 has no source rows at all
    history = _offline(
        store,
        pd.DataFrame({"item_id": asked, "event_timestamp": [now] * 3}),
        ["every_type:f_string"],
    )
    assert history["item_id"].tolist() == [999]
    assert history["f_string"].isna().all()


def test_every_type_duckdb_sqlite(tmp_path: Path) -> None:
    repo, store, end = _build_every_type(tmp_path, "every", offline="duckdb", online="sqlite")
    _check_every_type(store, end, "duckdb")
    # DuckDB keeps entity rows outside ttl (with nulls) instead of dropping them.
    asked = [108, 999, 101]
    history = _offline(
        store,
        pd.DataFrame({"item_id": asked, "event_timestamp": [end, end, end + timedelta(days=5)]}),
        ["every_type:f_string"],
    )
    got = _by_key(history, "item_id")
    assert sorted(got) == sorted(asked)
    assert got[108]["f_string"] is not None
    assert got[999]["f_string"] is None and got[101]["f_string"] is None


def test_every_type_postgres_sqlite(tmp_path: Path, postgres_url: str) -> None:
    repo, store, end = _build_every_type(
        tmp_path, "every", offline="postgres", online="sqlite", pg_url=postgres_url
    )
    online, offline_rows = _check_every_type(store, end, "postgres")
    # Struct stored as JSON text: offline text, online a dict with exact ints.
    assert isinstance(offline_rows[105]["f_struct"], str)
    assert online["f_struct"][4]["count"] == 2**62 + 1
    # timestamptz comes back tz-naive (UTC) from the postgres offline store.
    assert pd.Timestamp(offline_rows[101]["event_timestamp"]).tzinfo is None


def test_every_type_file_redis(tmp_path: Path) -> None:
    repo, store, end = _build_every_type(tmp_path, "every", offline="file", online="redis")
    try:
        _check_every_type(store, end, "file")
        _check_plant(repo, end)
        # Redis answers an unknown entity with empty values, status PRESENT, time 0
        # (SQLite: NOT_FOUND).
        online, raw = _online(store, ["every_type:f_string"], [{"item_id": 999}])
        assert online["f_string"] == [None]
        assert raw["f_string"][1:] == ([PRESENT], [0])
    finally:
        store.teardown()


# ----------------------------------------------------------------------------------------------
# Object-kinds repo
# ----------------------------------------------------------------------------------------------


def _output_names(store: Any, service: str, full: bool) -> list[str]:
    names = []
    for projection in store.get_feature_service(service).feature_view_projections:
        for feature in projection.features:
            names.append(f"{projection.name_to_use()}__{feature.name}" if full else feature.name)
    return names


PY_ODFV_OUTPUTS = {"order_risk__risk_score", "order_risk__is_large_order"}


def _check_services(repo: Path, store: Any) -> None:
    """Every feature service serves every feature (short and full names)."""
    for service in repos.OBJECT_KINDS_SERVICES:
        rows = repos.entity_rows_for(repo, service, 4, seed=3)
        for full in (False, True):
            online, raw = _online(
                store, store.get_feature_service(service), rows, full_feature_names=full
            )
            expected = _output_names(store, service, full)
            if full and service == "svc_mixed":
                # Feast 0.67: a python-mode on-demand view's outputs vanish from the response
                # under full_feature_names=True (pandas mode is renamed correctly).
                assert not PY_ODFV_OUTPUTS & set(online)
                expected = [n for n in expected if n not in PY_ODFV_OUTPUTS]
            for name in expected:
                assert name in online, (service, full, name, sorted(online))
                assert raw[name][1] == [PRESENT] * len(rows), (service, name, raw[name][1])
                assert all(v is not None for v in online[name]), (service, name)


def test_object_kinds_file_sqlite(tmp_path: Path) -> None:
    repo, summary = repos.build_object_kinds_repo(tmp_path / "kinds", offline="file")
    assert summary["materialize_errors"] == {}
    assert summary["push_offline_error"] is None
    store = _store(repo)
    end = repos.repo_end(repo)
    _check_services(repo, store)
    at = end + timedelta(hours=1)
    users = pd.DataFrame({"user_id": repos.USERS, "event_timestamp": [at] * len(repos.USERS)})

    # Created-timestamp ties: online always the later-created row ...
    online, _ = _online(store, ["user_profile:tier"], [{"user_id": u} for u in repos.TIE_USERS])
    assert online["tier"] == [f"winner-{u}" for u in repos.TIE_USERS]
    # ... the file (Dask) store picks either row: its tie-break sort is not stable.
    history = _by_key(_offline(store, users, ["user_profile:tier"]), "user_id")
    tiers = {u: history[u]["tier"] for u in repos.TIE_USERS}
    assert all(t in (f"winner-{u}", f"loser-{u}") for u, t in tiers.items())
    assert any(t.startswith("loser") for t in tiers.values()), (
        "the file store resolved every created-timestamp tie: update docs/feast_facts.md O4",
        tiers,
    )

    _check_pushes(store, end, users, offline_push_reaches_offline=True)
    _check_views(store, end, users)

    # Dask and an entityless view: entity rows sharing a timestamp collapse into one row.
    both = _offline(store, users, ["global_stats:active_users", "user_daily:logins"])
    assert len(both) == 1
    only = _offline(store, pd.DataFrame({"event_timestamp": [at]}), ["global_stats:active_users"])
    assert only["active_users"].tolist() == [
        repos.object_kinds_rows(end)["global_stats"][-1]["active_users"]
    ]

    # An ONLINE_AND_OFFLINE push prepends the rows to the source Parquet file.
    clicks = pd.read_parquet(repo / "data" / "user_clicks.parquet")
    assert clicks["user_id"].head(2).tolist() == repos.OFFLINE_PUSH_USERS


def _check_pushes(
    store: Any, end: datetime, users: pd.DataFrame, offline_push_reaches_offline: bool
) -> None:
    """Pushed / directly written rows are served; only ONLINE_AND_OFFLINE ones reach offline
    (where the offline store can write). ``users``: entity_df of every user after the pushes."""
    pushed = repos.pushed_rows(end)
    history = _by_key(
        _offline(store, users, ["user_clicks:clicks", "user_clicks:last_page"]), "user_id"
    )
    batch_latest = {
        r["user_id"]: r["clicks"]
        for r in repos.object_kinds_rows(end)["user_clicks"]
        if r["event_timestamp"] == end
    }
    # PushMode.ONLINE: served, never offline.
    online_rows = pushed["online"]
    online, raw = _online(
        store, ["user_clicks:clicks"], [{"user_id": u} for u in online_rows.user_id]
    )
    assert online["clicks"] == online_rows["clicks"].tolist()
    for user in online_rows.user_id:
        assert history[user]["clicks"] == batch_latest[user]
        assert history[user]["last_page"] != "/pushed-online"
    # PushMode.ONLINE_AND_OFFLINE: served; offline too where the store can write.
    both_rows = pushed["online_and_offline"]
    online, _ = _online(store, ["user_clicks:clicks"], [{"user_id": u} for u in both_rows.user_id])
    assert online["clicks"] == both_rows["clicks"].tolist()
    for user, value in zip(both_rows.user_id, both_rows.clicks):
        assert history[user]["clicks"] == (
            value if offline_push_reaches_offline else batch_latest[user]
        )
    # write_to_online_store: online only.
    pairs = pushed["online_only_pairs"]
    rows = [{"user_id": u, "merchant_id": m} for u, m in zip(pairs.user_id, pairs.merchant_id)]
    online, _ = _online(store, ["user_merchant:txn_count"], rows)
    assert online["txn_count"] == pairs["txn_count"].tolist()
    frame = pairs[["user_id", "merchant_id"]].assign(
        event_timestamp=users["event_timestamp"].iloc[0]
    )
    assert _offline(store, frame, ["user_merchant:txn_count"])["txn_count"].isna().all()


def _check_views(store: Any, end: datetime, users: pd.DataFrame) -> None:
    sqlite = store.config.online_store.type == "sqlite"
    at = users["event_timestamp"].iloc[0]
    rows = [{"user_id": u} for u in repos.USERS]
    # ttl=0: nine-day-old rows are served online and found offline.
    daily_latest = {
        r["user_id"]: r["logins"]
        for r in repos.object_kinds_rows(end)["user_daily"]
        if r["event_timestamp"] == end - repos.DAILY_AGE
    }
    online, _ = _online(store, ["user_daily:logins"], rows)
    history = _by_key(_offline(store, users, ["user_daily:logins"]), "user_id")
    assert online["logins"] == [daily_latest[u] for u in repos.USERS]
    assert [history[u]["logins"] for u in repos.USERS] == online["logins"]
    # online=False: never materialized; online reads give null (SQLite NOT_FOUND, Redis
    # PRESENT), offline has the values.
    online, raw = _online(store, ["user_ltv:lifetime_value"], rows[:2])
    assert online["lifetime_value"] == [None, None]
    assert raw["lifetime_value"][1] == [NOT_FOUND if sqlite else PRESENT] * 2
    assert _offline(store, users, ["user_ltv:lifetime_value"])["lifetime_value"].notna().all()
    # Entityless online: [{}] is rejected; any key (Feast's own __dummy_id) works, unechoed.
    with pytest.raises(KeyError):
        store.get_online_features(["global_stats:active_users"], entity_rows=[{}])
    online, raw = _online(store, ["global_stats:active_users"], [{"__dummy_id": ""}])
    assert list(online) == ["active_users"] and online["active_users"][0] is not None
    # On-demand outputs: PRESENT with event time 0; python mode equal online and offline.
    rows = repos.entity_rows_for(store.repo_path, "svc_mixed", 8, seed=4)
    odfv_refs = ["order_risk:risk_score", "spend_per_txn:spend_per_txn"]
    online, raw = _online(store, odfv_refs, rows)
    assert raw["risk_score"][1:] == ([PRESENT] * 8, [0] * 8)
    assert raw["spend_per_txn"][1:] == ([PRESENT] * 8, [0] * 8)
    history = _offline(store, pd.DataFrame(rows).assign(event_timestamp=at), odfv_refs)
    offline_by_row = _by_key(history, "user_id", "merchant_id", "amount")
    for pos, row in enumerate(rows):
        if row["user_id"] in repos.TIE_USERS:  # the file store may pick the tie's loser (O4)
            continue
        match = offline_by_row[(row["user_id"], row["merchant_id"], row["amount"])]
        assert match["risk_score"] == pytest.approx(online["risk_score"][pos])
        assert match["spend_per_txn"] == pytest.approx(online["spend_per_txn"][pos])
    # Aliases and full feature names: "<alias>__<feature>" on both sides.
    frame = _offline(store, users, store.get_feature_service("svc_alias"), full_feature_names=True)
    assert {"profile_v2__age", "user_daily__logins"} <= set(frame.columns)
    # Join-key map: the service takes buyer_id / seller_id, online and offline.
    rows = repos.entity_rows_for(store.repo_path, "svc_join_key_map", 3, seed=5)
    online, _ = _online(store, store.get_feature_service("svc_join_key_map"), rows)
    frame = pd.DataFrame(rows).assign(event_timestamp=at)
    history = _by_key(
        _offline(store, frame, store.get_feature_service("svc_join_key_map")),
        "buyer_id",
        "seller_id",
    )
    for pos, row in enumerate(rows):
        assert history[(row["buyer_id"], row["seller_id"])]["txn_count"] == online["txn_count"][pos]


def _clicks(repo: Path, user: int) -> Any:
    """``user_clicks:clicks`` of one user online, through a fresh FeatureStore."""
    return _online(_store(repo), ["user_clicks:clicks"], [{"user_id": user}])[0]["clicks"][0]


def test_object_kinds_duckdb_redis(tmp_path: Path) -> None:
    repo, summary = repos.build_object_kinds_repo(
        tmp_path / "kinds", offline="duckdb", online="redis"
    )
    store = _store(repo)
    try:
        # DuckDB cannot materialize an entityless view in Feast 0.67.
        assert set(summary["materialize_errors"]) == {"global_stats"}
        assert "__dummy_id" in summary["materialize_errors"]["global_stats"]
        end = repos.repo_end(repo)
        at = end + timedelta(hours=1)
        users = pd.DataFrame({"user_id": repos.USERS, "event_timestamp": [at] * len(repos.USERS)})
        # Ties: the later-created row online and offline.
        online, _ = _online(store, ["user_profile:tier"], [{"user_id": u} for u in repos.TIE_USERS])
        assert online["tier"] == [f"winner-{u}" for u in repos.TIE_USERS]
        history = _by_key(_offline(store, users, ["user_profile:tier"]), "user_id")
        assert [history[u]["tier"] for u in repos.TIE_USERS] == online["tier"]
        # DuckDB keeps one row per entity row with an entityless view.
        both = _offline(store, users, ["global_stats:active_users", "user_daily:logins"])
        assert len(both) == len(repos.USERS)
        _check_pushes(store, end, users, offline_push_reaches_offline=True)
        # Redis keeps the sub-second part of event times (SQLite: whole seconds).
        response = store.get_online_features(
            ["user_clicks:clicks"], entity_rows=[{"user_id": 1001}]
        )
        assert response.proto.results[1].event_timestamps[0].nanos == 250_000_000
        # Redis drops a write whose event time is not newer; plant_online_change handles it.
        store.write_to_online_store(
            "user_clicks",
            pd.DataFrame(
                {
                    "user_id": [1007],
                    "event_timestamp": [pd.Timestamp(end)],
                    "clicks": [-1],
                    "last_page": ["/same-time"],
                }
            ),
        )
        assert _clicks(repo, 1007) != -1
        repos.plant_online_change(repo, "user_clicks", {"user_id": 1007}, "clicks", -1)
        assert _clicks(repo, 1007) == -1
    finally:
        store.teardown()


def test_object_kinds_postgres_sqlite(tmp_path: Path, postgres_url: str) -> None:
    repo, summary = repos.build_object_kinds_repo(
        tmp_path / "kinds", offline="postgres", pg_url=postgres_url
    )
    assert set(summary["materialize_errors"]) == {"global_stats"}
    # The postgres offline store has no offline write: the online half of the push landed.
    assert summary["push_offline_error"].startswith("NotImplementedError")
    store = _store(repo)
    end = repos.repo_end(repo)
    users = pd.DataFrame(
        {"user_id": repos.USERS, "event_timestamp": [end + timedelta(hours=1)] * len(repos.USERS)}
    )
    history = _by_key(_offline(store, users, ["user_profile:tier"]), "user_id")
    assert [history[u]["tier"] for u in repos.TIE_USERS] == [f"winner-{u}" for u in repos.TIE_USERS]
    _check_pushes(store, end, users, offline_push_reaches_offline=False)
    # SQLite overwrites whatever comes last, even an older event time.
    store.write_to_online_store(
        "user_clicks",
        pd.DataFrame(
            {
                "user_id": [1007],
                "event_timestamp": [pd.Timestamp(end - timedelta(days=1))],
                "clicks": [-1],
                "last_page": ["/older"],
            }
        ),
    )
    assert _online(store, ["user_clicks:clicks"], [{"user_id": 1007}])[0]["clicks"] == [-1]
    # SQLite keeps event times in whole seconds (the push was at +250 ms).
    response = store.get_online_features(["user_clicks:clicks"], entity_rows=[{"user_id": 1001}])
    assert response.proto.results[1].event_timestamps[0].nanos == 0
    # ... and a later materialize overwrites the newer pushed row with the older batch row.
    before = _online(store, ["user_clicks:clicks"], [{"user_id": 1001}])[0]["clicks"]
    assert before == [repos.pushed_rows(end)["online"]["clicks"].iloc[0]]
    repos.materialize(repo, end - timedelta(days=1), end + timedelta(seconds=1), ["user_clicks"])
    after = _online(store, ["user_clicks:clicks"], [{"user_id": 1001}])[0]["clicks"]
    assert after != before
    # Materializing an online=False view by name is an error (materialize-all skips it).
    with pytest.raises(ValueError, match="not configured to be served online"):
        repos.materialize(repo, end - timedelta(days=1), end, ["user_ltv"])


def test_parquet_map_column_breaks_materialize(tmp_path: Path) -> None:
    """Why the factory stores Map as JSON text: a Parquet map<string, string> column is read
    back by materialization as an array of pairs, which Feast 0.67 rejects."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = repos.write_every_type_repo(tmp_path / "map", offline="file")
    path = repo / "data" / "every_type.parquet"
    table = pq.read_table(path)
    pairs = [
        None if v is None else [(k, str(x)) for k, x in json.loads(v).items()]
        for v in table["f_map"].to_pylist()
    ]
    index = table.schema.get_field_index("f_map")
    table = table.set_column(index, "f_map", pa.array(pairs, pa.map_(pa.string(), pa.string())))
    pq.write_table(table, path)
    repos.apply(repo)
    end = repos.repo_end(repo)
    with pytest.raises(TypeError, match="Expected dict for MAP type"):
        repos.materialize(repo, end - timedelta(days=1), end + timedelta(seconds=1))
