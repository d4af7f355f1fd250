"""Transformation parity bookkeeping (feast_parity.parity.transformation) and its findings.

The references are written out by hand: which request rows were served which inputs, which
serving process ran which fingerprint, and what a finding must then say.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from feast_parity.parity.findings import CheckThresholds, divergence_finding, feature_findings
from feast_parity.parity.hashing import value_hash
from feast_parity.parity.served import FIELD_STATUS_INVALID, NO_TIME, ServedRows
from feast_parity.parity.transformation import (
    ServedInputs,
    TransformationParity,
    request_row_keys,
)
from feast_parity.parity.transformation_findings import transformation_view_findings
from tests.unit.test_feature import served_feature

T = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds


def objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def input_rows(request_ids: list[str], keys: list[int], spend: list[Any], **kw: Any) -> ServedRows:
    n = len(request_ids)
    status = kw.get("status")
    return ServedRows(
        feature_view=kw.get("view", "stats"),
        sample_ids=np.arange(n, dtype=np.int64),
        request_id=objects(request_ids),
        request_time=np.full(n, T, dtype=np.int64),
        event_time=np.asarray(kw.get("event_time", [T - 60_000_000] * n), dtype=np.int64),
        keys={"user_id": objects(keys)},
        entity_key_hash=np.asarray(keys, dtype=np.uint64),
        feature_service=objects([None] * n),
        features={"spend": served_feature(spend, "Float64", status)},
        row_hash=np.zeros(n, dtype=np.uint64),
        writer=objects(["host:1"] * n),
    )


def test_request_row_keys_tell_request_rows_apart_and_agree_across_views() -> None:
    ids = objects(["r1", "r1", "r2", "r2"])
    keys = request_row_keys(ids, np.array([1, 2, 1, 2], dtype=np.uint64))
    assert len(set(keys.tolist())) == 4
    again = request_row_keys(objects(["r2", "r1"]), np.array([1, 2], dtype=np.uint64))
    assert again.tolist() == [keys[2], keys[1]]


def test_served_inputs_are_found_by_request_row_with_their_time_and_hashes() -> None:
    inputs = ServedInputs({"stats": {"spend", "orders"}})
    inputs.add(input_rows(["r1", "r2"], [7, 8], [1.5, None], event_time=[T - 5, T - 9]))
    inputs.add(input_rows(["r3"], [7], [2.5], view="other"))  # not an input view: ignored
    inputs.add(input_rows(["r3"], [9], [4.0], status=[FIELD_STATUS_INVALID]))  # not asked
    probe = request_row_keys(objects(["r2", "r1", "r9", "r3"]), np.array([8, 7, 7, 9], np.uint64))
    found, times, served = inputs.lookup("stats", probe, ["spend", "orders"])
    assert found.tolist() == [True, True, False, True]
    assert times.tolist() == [T - 9, T - 5, NO_TIME, T - 60_000_000]
    spend = served["spend"]
    assert spend.requested.tolist() == [True, True, False, False]
    assert spend.null.tolist()[:2] == [True, False]
    assert spend.hashes[1] == value_hash(1.5, "Float64")
    # the served values themselves come back too: the transformation is fed them again
    assert spend.values.value(1) == 1.5 and spend.values.null[0] and spend.values.null[2]
    assert not served["orders"].requested.any()  # never logged: unknown, not null
    assert inputs.lookup("nowhere", probe, ["spend"])[0].tolist() == [False] * 4


def _update(parity: TransformationParity, fingerprints: list[str | None], **kw: Any) -> None:
    n = len(fingerprints)
    ones = np.ones(n, dtype=bool)
    parity.update(
        fingerprints=objects(fingerprints),
        writers=objects(kw.get("writers", ["a:1"] * n)),
        request_time=np.asarray(kw.get("times", [T] * n), dtype=np.int64),
        recomputed=np.asarray(kw.get("recomputed", ones), dtype=bool),
        inputs_known=np.asarray(kw.get("known", ones), dtype=bool),
        inputs_agree=np.asarray(kw.get("agree", ones), dtype=bool),
        diverged={k: np.asarray(v, dtype=bool) for k, v in kw.get("diverged", {}).items()},
    )


def test_divergence_is_attributed_to_the_fingerprint_and_writer_that_served_it() -> None:
    parity = TransformationParity("risk", registry_fingerprint="new", training_fingerprint="new")
    _update(
        parity,
        ["old", "old", "new", "new"],
        writers=["a:1", "a:1", "b:2", "b:2"],
        times=[T + 3_000_000, T + 1_000_000, T, T + 5_000_000],
        known=[True, False, True, True],
        agree=[True, False, False, True],
        diverged={"score": [True, True, False, False], "flag": [False] * 4},
    )
    _update(parity, ["old"], writers=["c:3"], times=[T + 9_000_000], diverged={"score": [True]})
    result = parity.result()
    assert result["code_drift"] is True
    assert result["stale_writers"] == ["a:1", "c:3"]
    assert result["stale_since"] == "2026-01-01T00:00:01Z"
    assert result["training_drift"] is True  # the old fingerprint was not trained on
    old = next(s for s in result["serving"] if s["udf_fingerprint"] == "old")
    assert (old["rows"], old["diverged"], old["matches_registry"]) == (
        3,
        {"flag": 0, "score": 3},
        False,
    )
    assert old["last_seen"] == "2026-01-01T00:00:09Z"
    score = result["features"]["score"]
    # of the 3 diverged rows, 2 had their inputs served and 2 of those agreed: code differs
    assert score == {
        "diverged": 3,
        "diverged_inputs_known": 2,
        "code_differs": 2,
        "diverged_on_registry_code": 0,
    }
    assert result["features"]["flag"]["diverged"] == 0
    assert (result["inputs_known"], result["inputs_agreed"]) == (4, 3)


def test_rows_without_a_fingerprint_never_count_as_drift() -> None:
    parity = TransformationParity("risk", registry_fingerprint="new")
    _update(parity, [None, "new"], diverged={"score": [True, False]})
    result = parity.result()
    assert result["code_drift"] is False
    assert result["features"]["score"]["diverged_on_registry_code"] == 1
    parity.failed(5, "ZeroDivisionError: division by zero")
    parity.failed(2, "ValueError: later")
    assert (parity.result()["udf_errors"], parity.result()["first_error"]) == (
        7,
        "ZeroDivisionError: division by zero",
    )


def _view_row(parity: TransformationParity, **extra: Any) -> dict[str, Any]:
    return {"feature_view": "risk", "on_demand": True, "transformation": parity.result(), **extra}


def test_code_drift_is_one_view_finding_naming_the_diverged_outputs() -> None:
    parity = TransformationParity("risk", registry_fingerprint="new")
    _update(parity, ["old", "new"], writers=["a:1", "b:2"], diverged={"score": [True, False]})
    (finding,) = transformation_view_findings(_view_row(parity), [])
    assert finding["kind"] == "transformation_divergence"
    assert finding["feature_view"] == "risk"
    assert finding["severity"] == "fail"
    assert finding["evidence"]["cause"] == "code_drift"
    assert finding["evidence"]["features"] == ["risk:score"]
    assert finding["evidence"]["stale_writers"] == ["a:1"]
    assert "a:1" in finding["message"] and "old vs new" in finding["message"]
    quiet = TransformationParity("risk", registry_fingerprint="new")
    _update(quiet, ["old"], diverged={"score": [False]})
    (warn,) = transformation_view_findings(_view_row(quiet), [])
    assert warn["severity"] == "warn" and "no sampled output differed" in warn["message"]


def test_training_drift_and_request_types_are_their_own_view_findings() -> None:
    parity = TransformationParity("risk", registry_fingerprint="new", training_fingerprint="old")
    _update(parity, ["new"], diverged={"score": [False]})
    request_schema = {"channel": {"declared": "String", "unfit": 3}}
    found = transformation_view_findings(_view_row(parity, request_schema=request_schema), [])
    assert [(f["kind"], f["severity"]) for f in found] == [
        ("transformation_divergence", "warn"),
        ("schema_divergence", "fail"),
    ]
    assert found[0]["evidence"]["cause"] == "training_code_drift"
    assert found[1]["evidence"] == {"request_field": "channel", "declared": "String", "unfit": 3}
    assert transformation_view_findings({"feature_view": "risk", "on_demand": True}, []) == []


def _feature_result(**kw: Any) -> dict[str, Any]:
    base = {
        "feature": "risk:score",
        "on_demand": True,
        "compared": 100,
        "mismatches": 5,
        "mismatch_rate": 0.05,
        "rows": 100,
        "offline_rows": 100,
        "silent_defaults": 0,
        "online_null_rate": 0.0,
        "schema": {"diverged": False},
        "transformation": {
            "diverged": 5,
            "diverged_inputs_known": 4,
            "code_differs": 4,
            "diverged_on_registry_code": 0,
        },
    }
    base.update(kw)
    return base


def test_an_on_demand_output_diverges_instead_of_mismatching() -> None:
    thresholds = CheckThresholds()
    finding = divergence_finding(_feature_result(), thresholds)
    assert finding is not None
    assert finding["kind"] == "transformation_divergence" and finding["severity"] == "fail"
    assert finding["evidence"]["code_differs"] is True
    assert "the code differs" in finding["message"]
    unknown = _feature_result(transformation={"diverged_inputs_known": 0})
    assert "cannot be ruled out" in divergence_finding(unknown, thresholds)["message"]  # type: ignore[index]
    assert divergence_finding(_feature_result(mismatch_rate=0.0, mismatches=0), thresholds) is None
    assert divergence_finding(_feature_result(compared=10), thresholds) is None  # too few
    found, folded = feature_findings(_feature_result(), thresholds, set())
    assert [f["kind"] for f in found] == ["transformation_divergence"] and folded == []


def test_a_divergence_on_old_code_only_folds_into_the_view_code_drift_finding() -> None:
    thresholds = CheckThresholds()
    causes = {"transformation_divergence"}
    found, folded = feature_findings(_feature_result(), thresholds, causes)
    assert found == [] and [f["kind"] for f in folded] == ["transformation_divergence"]
    on_new_code = _feature_result(
        transformation={"diverged_inputs_known": 0, "diverged_on_registry_code": 2}
    )
    found, folded = feature_findings(on_new_code, thresholds, causes)
    assert [f["kind"] for f in found] == ["transformation_divergence"] and folded == []
