"""On-demand outputs judged from the inputs that were served, on a real Feast repo.

The repo: a batch view ``applicant`` (``income``, ``debt``, ``score``) fed by a push source, a
request source ``application`` whose field ``income`` has the name of the stored feature
(an applicant's stated income beside the verified one) and a field ``loan``, and two on-demand
views: ``risk`` (pandas, over ``applicant`` only) and ``afford`` (python, over ``applicant`` and
``application``, so its ``income`` is shadowed). Requests ask for the on-demand outputs only:
Feast reads their inputs from the online store, feeds them to the transformation and drops them
from the response, and the plugin logs them anyway.

Faults are planted through Feast's own write paths (``write_to_online_store``, ``push`` with
``PushMode.ONLINE``, ``apply`` of a changed transformation from another process), never by
editing the log. docs/feast_facts.md T6 holds what Feast feeds each path for a shadowed name;
``test_feast_feeds_a_shadowed_request_field_differently_on_each_path`` shows it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from feast import FeatureStore
from feast.data_source import PushMode
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import python_values_to_proto_values

import feast_parity
from feast_parity.cli import main as cli
from feast_parity.plugin.check import run_check
from feast_parity.plugin.collect import writer_id
from tests.applied import applied_copy

APPLICANTS = list(range(1, 41))
RISK_V1 = "inputs['debt'] * 2.0 + inputs['score']"
RISK_V2 = "inputs['debt'] * 3.0 + inputs['score']"

DEFINITIONS = """
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast import RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64
from feast.value_type import ValueType

DATA = Path(__file__).parent / "data"
applicant = Entity(name="applicant", join_keys=["applicant_id"], value_type=ValueType.INT64)
applicant_file = FileSource(
    name="applicant_file", path=str(DATA / "applicant.parquet"), timestamp_field="event_timestamp"
)
applicant_push = PushSource(name="applicant_push", batch_source=applicant_file)
applicant_fv = FeatureView(
    name="applicant",
    entities=[applicant],
    ttl=timedelta(days=3),
    schema=[
        Field(name="applicant_id", dtype=Int64),
        Field(name="income", dtype=Float64),
        Field(name="debt", dtype=Float64),
        Field(name="score", dtype=Int64),
    ],
    source=applicant_push,
)
application = RequestSource(
    name="application",
    schema=[Field(name="income", dtype=Float64), Field(name="loan", dtype=Float64)],
)


@on_demand_feature_view(
    sources=[applicant_fv], schema=[Field(name="risk", dtype=Float64)], mode="pandas"
)
def risk(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["risk"] = (@@RISK@@).astype("float64")
    return out


@on_demand_feature_view(
    sources=[applicant_fv, application],
    schema=[Field(name="loan_to_income", dtype=Float64), Field(name="debt_ratio", dtype=Float64)],
    mode="python",
)
def afford(inputs: dict) -> dict:
    return {
        "loan_to_income": [l / i for l, i in zip(inputs["loan"], inputs["income"])],
        "debt_ratio": [d / i for d, i in zip(inputs["debt"], inputs["income"])],
    }


scoring = FeatureService(name="scoring", features=[risk, afford])
scoring_with_inputs = FeatureService(name="scoring_with_inputs", features=[applicant_fv, risk])
"""


def write_repo(path: Path, *, risk: str = RISK_V1, project: str | None = None) -> Path:
    (path / "data").mkdir(parents=True, exist_ok=True)
    config = {
        "project": project or f"odi_{uuid.uuid4().hex[:8]}",
        "registry": {"path": "data/registry.db", "cache_ttl_seconds": 600},
        "provider": "feast_parity.ParityProvider",
        "online_store": {"type": "sqlite", "path": "data/online.db"},
        "offline_store": {"type": "file"},
        "entity_key_serialization_version": 3,
        "parity": {"sample_rate": 1.0, "seed": 5, "store": "sqlite:///data/parity.db"},
    }
    path.joinpath("feature_store.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    path.joinpath("definitions.py").write_text(DEFINITIONS.replace("@@RISK@@", risk))
    return path


def write_source(path: Path, end: datetime) -> pd.DataFrame:
    rows = [
        {
            "applicant_id": a,
            "event_timestamp": end - timedelta(hours=6 * (2 - k)),
            "income": float(1000 * a + 10 * k),
            "debt": float(a + k),
            "score": 600 + a + k,
        }
        for a in APPLICANTS
        for k in range(3)
    ]
    frame = pd.DataFrame(rows)
    frame.to_parquet(path / "data" / "applicant.parquet")
    return frame


def apply(repo: Path) -> None:
    """``feast apply`` in a fresh process, as another team's deploy job would."""
    subprocess.run(
        [str(Path(sys.executable).parent / "feast"), "apply"],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)

    def make(path: Path) -> None:
        write_repo(path)
        write_source(path, end)
        apply(path)

    # applied once per process, each test a copy of its own (tests/applied.py)
    path = applied_copy(tmp_path_factory.getbasetemp(), f"on_demand_inputs:{end}", make)
    FeatureStore(repo_path=str(path)).materialize(
        end - timedelta(days=2), end + timedelta(seconds=1)
    )
    return path


def requests(seed: int, n: int = 10, *, stated: float = 0.0) -> list[dict[str, Any]]:
    """Entity rows with request data; a share ``stated`` of them state an income 20% above
    the stored one (the others state the stored income exactly)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        applicant = int(rng.choice(APPLICANTS))
        income = float(1000 * applicant + 20)  # the newest stored income
        if rng.random() < stated:
            income *= 1.2
        rows.append({"applicant_id": applicant, "income": income, "loan": 5000.0})
    return rows


def serve(
    store: FeatureStore, features: Any, seeds: range, *, stated: float = 0.0, **kw: Any
) -> int:
    served = 0
    for seed in seeds:
        rows = requests(seed, stated=stated)
        store.get_online_features(features, entity_rows=rows, **kw)
        served += len(rows)
    provider = store._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["hook_errors"] == 0 and stats["dropped_rows"] == 0, stats
    return served


def service(store: FeatureStore, name: str) -> Any:
    return store.get_feature_service(name, allow_cache=True)


def write_online(repo: Path, rows: pd.DataFrame) -> None:
    """Write ``rows`` of ``applicant`` online with their own event times (a backfill job)."""
    store = FeatureStore(repo_path=str(repo))
    view = store.get_feature_view("applicant")
    batch = []
    for record in rows.to_dict("records"):
        key = EntityKeyProto(
            join_keys=["applicant_id"],
            entity_values=[ValueProto(int64_val=int(record["applicant_id"]))],
        )
        values = {
            f.name: python_values_to_proto_values([record[f.name]], f.dtype.to_value_type())[0]
            for f in view.features
        }
        ts = pd.Timestamp(record["event_timestamp"]).to_pydatetime()
        batch.append((key, values, ts, ts))
    store._get_provider().online_write_batch(store.config, view, batch, progress=None)


def newest(repo: Path) -> pd.DataFrame:
    frame = pd.read_parquet(repo / "data" / "applicant.parquet")
    return frame.sort_values("event_timestamp").groupby("applicant_id").tail(1)


def skew_debt_of_a_tenth(repo: Path) -> pd.DataFrame:
    """Serve ``debt + 7`` for every applicant with ``applicant_id % 10 == 3``."""
    rows = newest(repo)
    tenth = rows[rows["applicant_id"] % 10 == 3].copy()
    tenth["debt"] = tenth["debt"] + 7.0
    write_online(repo, tenth)
    return tenth


def check(repo: Path) -> dict[str, Any]:
    return run_check(repo, until=datetime.now(timezone.utc) + timedelta(minutes=5))


def kinds(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (f["kind"], f.get("feature") or f.get("feature_view")) for f in report["findings"]
    )


def rows_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["feature"]: f for f in report["features"]}


def views_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["feature_view"]: v for v in report["feature_views"]}


# -- 1. an input's skew explains its outputs -------------------------------------------------------


def test_input_skew_on_a_tenth_is_the_inputs_finding_and_moves_outputs_without_a_divergence(
    repo: Path,
) -> None:
    skew_debt_of_a_tenth(repo)
    store = FeatureStore(repo_path=str(repo))
    served = serve(store, service(store, "scoring"), range(12))  # outputs only, no inputs
    report = check(repo)
    # the inputs were never asked for, yet their skew is found on the input itself ...
    assert kinds(report) == [("value_mismatch", "applicant:debt")], report["findings"]
    (finding,) = report["findings"]
    debt = rows_of(report)["applicant:debt"]
    assert debt["rows"] == served and 0.05 < debt["mismatch_rate"] < 0.2
    # ... and names the outputs it moves, with their rates; they have no finding of their own
    moves = {m["feature"]: m for m in finding["evidence"]["moves_outputs"]}
    assert set(moves) == {"risk:risk", "afford:debt_ratio"}
    for ref in ("risk:risk", "afford:debt_ratio"):
        assert moves[ref]["rows"] == debt["mismatches"]
        assert rows_of(report)[ref]["mismatches"] == 0, rows_of(report)[ref]
    assert "also moves outputs" in finding["message"] and "risk:risk" in finding["message"]
    risk = views_of(report)["risk"]["transformation"]
    assert risk["inputs_known"] == served  # every row recomputed from what serving fed
    assert risk["moved_by_inputs"]["risk"]["causes"] == [
        {"kind": "value_mismatch", "input": "applicant:debt", "rows": debt["mismatches"]}
    ]
    assert cli(["check", "--repo", str(repo), "--no-progress"]) == 1


def test_a_push_written_online_only_moves_outputs_and_is_noted_not_a_divergence(
    repo: Path,
) -> None:
    rows = newest(repo)
    pushed = rows[rows["applicant_id"] % 4 == 0].copy()
    pushed["event_timestamp"] = datetime.now(timezone.utc) - timedelta(minutes=5)
    pushed["debt"] = pushed["debt"] + 50.0
    store = FeatureStore(repo_path=str(repo))
    store.push("applicant_push", pushed, to=PushMode.ONLINE)
    serve(store, ["risk:risk"], range(10))
    report = check(repo)
    assert not [f for f in report["findings"] if f["kind"] == "transformation_divergence"]
    assert rows_of(report)["risk:risk"]["mismatches"] == 0
    assert views_of(report)["applicant"]["online_only_rows"] > 0
    moved = views_of(report)["risk"]["transformation"]["moved_by_inputs"]["risk"]
    assert moved["moved"] > 0
    assert {c["kind"] for c in moved["causes"]} == {"online_only"}
    assert any(
        "input applicant:debt" in note and "only online" in note and "risk:risk" in note
        for note in report["notes"]
    ), report["notes"]


_SERVE_FRESH = """
import sys
from feast import FeatureStore
from feast_parity.plugin.collect import writer_id
from tests.e2e.test_on_demand_inputs import serve
store = FeatureStore(repo_path=sys.argv[1])
serve(store, ["risk:risk"], range(20, 30))
print(writer_id())
"""


def test_changed_code_and_skewed_input_at_once_give_two_findings_each_on_its_cause(
    repo: Path,
) -> None:
    """This process keeps the old ``risk`` in its cached registry while another process
    applies a new one and a third serves with it; a tenth of applicants are served a wrong
    ``debt`` throughout."""
    skew_debt_of_a_tenth(repo)
    stale = FeatureStore(repo_path=str(repo))
    serve(stale, ["risk:risk", "applicant:debt"], range(3))  # caches the registry
    write_repo(repo, risk=RISK_V2, project=stale.project)
    apply(repo)
    serve(stale, ["risk:risk"], range(3, 12))  # old code, from the cached registry
    fresh = subprocess.run(
        [sys.executable, "-c", _SERVE_FRESH, str(repo)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    fresh_writer = fresh.stdout.strip().splitlines()[-1]
    report = check(repo)
    assert kinds(report) == [
        ("transformation_divergence", "risk"),
        ("value_mismatch", "applicant:debt"),
    ], report["findings"]
    by_kind = {f["kind"]: f for f in report["findings"]}
    drift = by_kind["transformation_divergence"]["evidence"]
    assert drift["cause"] == "code_drift" and drift["stale_writers"] == [writer_id()]
    assert fresh_writer not in drift["stale_writers"]
    mismatch = by_kind["value_mismatch"]["evidence"]
    (move,) = mismatch["moves_outputs"]
    assert move["feature"] == "risk:risk" and move["rows"] > 0
    # the rows the old code computed are the code's, the rest moved with their input only
    transformation = views_of(report)["risk"]["transformation"]
    assert (
        transformation["features"]["risk"]["code_differs"]
        == rows_of(report)["risk:risk"]["mismatches"]
    )
    assert transformation["moved_by_inputs"]["risk"]["moved"] == move["rows"]


# -- 2. a request field with a feature's name ------------------------------------------------------


def test_a_request_field_named_like_a_feature_is_logged_as_request_data_and_fed_as_feast_does(
    repo: Path,
) -> None:
    """Serving (bare names) feeds ``afford`` the stored income, training (the file store's
    join) the stated one: where they differ, the outputs differ between training and serving,
    one ``transformation_divergence`` on ``afford`` naming the shadowed field."""
    store = FeatureStore(repo_path=str(repo))
    served = serve(store, service(store, "scoring"), range(20), stated=0.3)
    log = feast_parity.read_samples(f"sqlite:///{repo}/data/parity.db", feature_view="afford")
    names = set(log.column_names)
    assert "request:income" in names and "key:income" not in names
    assert "context:income" not in names
    # the stated income is logged as the request sent it, on every row
    stated = log.column("request:income").to_pylist()
    assert len(stated) == served and all(v is not None for v in stated)
    report = check(repo)
    transformation = views_of(report)["afford"]["transformation"]
    assert transformation["udf_errors"] == 0 and transformation["recomputed"] == served
    assert rows_of(report)["afford:loan_to_income"]["mismatches"] == 0  # the code is fine
    (shadow,) = transformation["shadowed_request_fields"]
    assert (shadow["field"], shadow["feature"], shadow["rows"]) == (
        "income",
        "applicant:income",
        served,
    )
    differs = sum(1 for v in stated if round(v) % 1000 != 20)  # stated above the stored one
    assert shadow["request_differs"] == differs > 0
    findings = [f for f in report["findings"] if f["kind"] == "transformation_divergence"]
    assert len(findings) == 1 and findings[0]["feature_view"] == "afford", report["findings"]
    evidence = findings[0]["evidence"]
    assert evidence["cause"] == "shadowed_request_field"
    assert evidence["request_field"] == "income"
    assert evidence["request_differs_share"] == pytest.approx(differs / served)
    example = evidence["examples"][0]
    assert example["request_value"] == pytest.approx(example["stored_value"] * 1.2)
    assert set(evidence["features"]) == {"afford:loan_to_income", "afford:debt_ratio"}
    assert kinds(report) == [("transformation_divergence", "afford")]


def test_equal_stated_and_stored_values_give_no_finding(repo: Path) -> None:
    store = FeatureStore(repo_path=str(repo))
    served = serve(store, service(store, "scoring"), range(6))
    report = check(repo)
    assert report["findings"] == [], report["notes"]
    (shadow,) = views_of(report)["afford"]["transformation"]["shadowed_request_fields"]
    assert (shadow["rows"], shadow["request_differs"]) == (served, 0)


_FEED = """
import json, sys
from datetime import datetime, timezone
import pandas as pd
from feast import FeatureStore
store = FeatureStore(repo_path=sys.argv[1])
row = {"applicant_id": 3, "income": 7.0, "loan": 70.0}
out = {}
for full in (False, True):
    online = store.get_online_features(["afford:loan_to_income"], entity_rows=[row],
                                       full_feature_names=full).to_dict()
    out[f"online_full_{full}"] = [v for k, v in online.items() if k.endswith("loan_to_income")]
    entity = pd.DataFrame([{**row, "event_timestamp": datetime.now(timezone.utc)}])
    try:
        frame = store.get_historical_features(entity, ["afford:loan_to_income"],
                                              full_feature_names=full).to_df()
        out[f"offline_full_{full}"] = [
            frame[c].tolist() for c in frame.columns if c.endswith("loan_to_income")]
    except Exception as exc:
        out[f"offline_full_{full}"] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.mark.parametrize("offline", ["file", "duckdb"])
def test_feast_feeds_a_shadowed_request_field_differently_on_each_path(
    repo: Path, offline: str
) -> None:
    """feast_facts T6 on Feast 0.67 itself (plain local provider): the stored income is 3020
    and the stated one 7, loan 70. Online with bare names the stored value is fed (70/3020);
    with full names a python-mode view returns no output at all. Offline, the file store feeds
    the stated value under bare names (70/7 = 10) and the stored one under full names (python
    mode: the last of two columns named income); DuckDB refuses bare names."""
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["provider"] = "local"
    config.pop("parity")
    config["offline_store"] = {"type": offline}
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    apply(repo)
    fed = subprocess.run(
        [sys.executable, "-c", _FEED, str(repo)], check=True, capture_output=True, text=True
    )
    out = json.loads(fed.stdout.strip().splitlines()[-1])
    stored = 70.0 / 3020.0
    assert out["online_full_False"] == [[pytest.approx(stored)]]
    assert out["online_full_True"] == []
    if offline == "file":
        assert out["offline_full_False"] == [[pytest.approx(10.0)]]
    else:
        assert out["offline_full_False"] == "IbisInputError", out
    assert out["offline_full_True"] == [[pytest.approx(stored)]]


def test_a_request_field_named_like_a_served_feature_is_never_a_join_key(repo: Path) -> None:
    """Issue 30 item 4: the request asks for ``applicant:income`` itself and sends ``income``
    as request data, so the response holds two ``income`` columns. The hook still samples by
    ``applicant_id`` alone (the same applicants as a request without the field), raises
    nothing, and drops no request."""
    from feast_parity.parity.sampling import Sampler

    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config["parity"]["sample_rate"] = 0.5
    (repo / "feature_store.yaml").write_text(yaml.safe_dump(config))
    store = FeatureStore(repo_path=str(repo))
    rows = [{"applicant_id": a, "income": 1.5 * a, "loan": 10.0} for a in APPLICANTS]
    response = store.get_online_features(
        ["applicant:income", "afford:loan_to_income"], entity_rows=rows
    ).to_dict()
    assert len(response["applicant_id"]) == len(APPLICANTS)
    provider = store._get_provider()
    assert provider.flush_samples()
    stats = provider.parity_stats()
    assert stats["hook_errors"] == 0 and stats["dropped_rows"] == 0, stats
    sampler = Sampler(0.5, 5)
    expected = {a for a in APPLICANTS if sampler.decide({"applicant_id": a})}
    assert 0 < len(expected) < len(APPLICANTS)
    log = feast_parity.read_samples(f"sqlite:///{repo}/data/parity.db", feature_view="afford")
    assert set(log.column("key:applicant_id").to_pylist()) == expected
    assert "key:income" not in log.column_names
    by_key = dict(
        zip(log.column("key:applicant_id").to_pylist(), log.column("request:income").to_pylist())
    )
    assert all(by_key[a] == 1.5 * a for a in expected)
