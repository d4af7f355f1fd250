"""Hostile and odd input end to end: names with quotes, SQL metacharacters and unicode, very
long strings, NaN and infinities, list features; views added or removed after sampling."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast import FeatureStore

from feast_parity import demo, read_samples
from feast_parity.plugin.check import run_check

VIEW = "odd_ünïcode_view"
FEATURES = ["quote'name", 'semi;colon"--', "名前", "embedding", "tags", "count"]
DEFINITIONS = """
from datetime import timedelta
from pathlib import Path
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Array, Float64, Int64, String
from feast.value_type import ValueType

DATA = Path(__file__).parent / "data"
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
source = FileSource(name="odd_source", path=str(DATA / "odd.parquet"),
                    timestamp_field="event_timestamp")
odd = FeatureView(
    name="odd_ünïcode_view", entities=[user], ttl=timedelta(days=1), source=source,
    schema=[
        Field(name="quote'name", dtype=String),
        Field(name='semi;colon"--', dtype=Float64),
        Field(name="名前", dtype=String),
        Field(name="embedding", dtype=Array(Float64)),
        Field(name="tags", dtype=Array(String)),
        Field(name="count", dtype=Int64),
    ],
)
"""
LONG = "日本語テキスト" * 3000  # 21,000 characters


@pytest.fixture
def odd_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "odd"
    (repo / "data").mkdir(parents=True)
    (repo / "features.py").write_text(DEFINITIONS)
    now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    n = 60
    pd.DataFrame(
        {
            "user_id": np.arange(n, dtype=np.int64),
            "quote'name": ["it's \"x\" ' OR 1=1; DROP TABLE parity_samples; --"] * n,
            'semi;colon"--': [math.inf, -math.inf, -0.0, 1.5, 2.5, 1e308] * 10,
            "名前": [LONG] * n,
            "embedding": [[0.1 * i, -0.0, 1e-300] for i in range(n)],
            "tags": [["a", "b'c", "ü"]] * n,
            "count": np.arange(n, dtype=np.int64),
            "event_timestamp": now,
        }
    ).to_parquet(repo / "data" / "odd.parquet")
    demo.write_config(repo, sample_rate=1.0, project="hostile")
    demo.feast_apply(repo)
    demo.materialize(repo, days=2)
    return repo


def test_odd_names_values_and_lists_are_logged_exactly_and_check_clean(odd_repo):
    store = FeatureStore(repo_path=str(odd_repo))
    refs = [f"{VIEW}:{name}" for name in FEATURES]
    served = store.get_online_features(refs, entity_rows=[{"user_id": i} for i in range(60)])
    got = served.to_dict()
    assert store._get_provider().flush_samples()
    log = read_samples(f"sqlite:///{odd_repo}/data/parity.db")
    assert log.num_rows == 60 and set(log.column("feature_view").to_pylist()) == {VIEW}
    assert read_samples(f"sqlite:///{odd_repo}/data/parity.db", feature_view=VIEW).num_rows == 60
    by_user = {record["key:user_id"]: record for record in log.to_pylist()}
    assert set(by_user) == set(range(60))
    for i in range(60):
        for name in FEATURES:
            logged, caller = by_user[i][f"value:{name}"], got[name][i]
            assert by_user[i][f"status:{name}"] == 1, (name, i)  # PRESENT
            assert by_user[i][f"hash:{name}"] is not None, (name, i)
            if isinstance(caller, float) and math.isnan(caller):
                assert math.isnan(logged)
            else:
                assert logged == caller, (name, i)
    assert by_user[0]["value:名前"] == LONG
    assert math.isinf(by_user[0]['value:semi;colon"--'])
    assert by_user[0]["kind:embedding"] == "double_list_val"

    report = run_check(odd_repo)
    assert [f for f in report["findings"] if f["severity"] != "ok"] == []
    rows = {f["feature"]: f for f in report["features"]}
    assert set(rows) == set(refs)
    assert rows[f"{VIEW}:quote'name"]["compared"] == 60
    assert rows[f"{VIEW}:quote'name"]["mismatch_rate"] == 0.0
    assert rows[f"{VIEW}:embedding"]["schema"]["diverged"] is False
    assert rows[f"{VIEW}:embedding"]["mismatch_rate"] == 0.0
    assert rows[f'{VIEW}:semi;colon"--']["mismatch_rate"] == 0.0  # inf == inf, -0.0 == 0.0


def test_a_view_added_after_sampling_is_harmless(build_repo):
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    demo.serve(store, 10, users=300, videos=100)
    assert store._get_provider().flush_samples()
    features = (repo / "features.py").read_text()
    features += """

extra_view = FeatureView(
    name="user_extra",
    entities=[user],
    ttl=timedelta(days=1),
    schema=[Field(name="sessions", dtype=Int64)],
    source=user_engagement_source,
)
"""
    (repo / "features.py").write_text(features)
    demo.feast_apply(repo)
    report = run_check(repo, until=datetime.now(timezone.utc) + timedelta(seconds=1))
    assert report["samples"] == 300
    assert not any(f["severity"] == "fail" for f in report["findings"])
    assert "user_extra" not in {v["feature_view"] for v in report["feature_views"]}
