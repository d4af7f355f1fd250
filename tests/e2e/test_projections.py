"""A feature service built with ``with_projection`` (a subset under an alias), served with
``full_feature_names=True``: the check compares exactly the projected features, under the
registry's view name, and finds a planted skew there alone.
"""

from __future__ import annotations

import copy

import numpy as np
from feast import FeatureService, FeatureStore

from feast_parity import demo
from feast_parity.plugin.check import run_check
from tests.faults import fails, feature, skew_a_tenth

PROJECTED = ("watch_minutes", "sessions")


def test_a_with_projection_service_served_with_full_names_counts_only_its_features(build_repo):
    repo = build_repo(sample_rate=1.0)
    store = FeatureStore(repo_path=str(repo))
    view = store.get_feature_view("user_engagement")
    projection = copy.copy(view.projection)
    projection.features = [f for f in view.features if f.name in PROJECTED]
    projection.name_alias = "ue_subset"
    store.apply(
        [FeatureService(name="svc_projection", features=[view.with_projection(projection)])]
    )
    skew_a_tenth(repo)

    server = FeatureStore(repo_path=str(repo))
    service = server.get_feature_service("svc_projection")
    rng = np.random.default_rng(4)
    served = 0
    for _ in range(40):
        users = rng.choice(300, size=10, replace=False) + demo.FIRST_USER
        answer = server.get_online_features(
            service, entity_rows=[{"user_id": int(u)} for u in users], full_feature_names=True
        ).to_dict()
        assert set(answer) == {"user_id", "ue_subset__watch_minutes", "ue_subset__sessions"}
        served += len(users)
    assert server._get_provider().flush_samples()

    report = run_check(repo)
    names = {r["feature"] for r in report["features"]}
    # the registry's names, not the alias; only the projected features
    assert names == {f"user_engagement:{name}" for name in PROJECTED}, names
    for name in PROJECTED:
        assert feature(report, f"user_engagement:{name}")["compared"] == served
    assert fails(report) == [("value_mismatch", "user_engagement:watch_minutes")]
    assert feature(report, "user_engagement:sessions")["mismatch_rate"] == 0.0
