"""Row rules of the comparison engine on small hand-written arrays (no Feast)."""

from __future__ import annotations

import numpy as np
import pytest

from feast_parity.parity.compare import FeatureComparison
from feast_parity.plugin.config import ParityConfig, ParityConfigError


def _feed(online, offline, declared="Float64"):
    comparison = FeatureComparison(feature="v:f", declared_type=declared)
    n = len(online)
    comparison.update(
        online_values=online,
        online_status=np.ones(n, dtype=int),
        online_types=["float64"] * n,
        declared_at_serving=[declared] * n,
        offline_at_event=offline,
        has_event_row=np.ones(n, dtype=bool),
        offline_at_request=offline,
        offline_type="float64",
    )
    return comparison.result()


def test_skew_served_repeatedly_for_one_entity_is_a_mismatch_not_a_fill_value():
    # 100 rows of distinct real values; one entity served 20 times with a skewed value
    offline = [float(i) for i in range(100)] + [500.0] * 20
    online = [float(i) for i in range(100)] + [777.0] * 20
    result = _feed(online, offline)
    assert result["fill_values"] == []
    assert result["mismatches"] == 20 and result["silent_default_rate"] == 0.0


def test_a_value_replacing_many_real_values_is_found_as_fill_value():
    offline = [float(i) + 0.5 for i in range(100)]
    online = [0.0 if i % 5 == 0 else v for i, v in enumerate(offline)]
    result = _feed(online, offline)
    assert result["fill_values"] == [0.0]
    assert result["silent_default_rate"] == pytest.approx(0.2)
    assert result["mismatches"] == 0  # defaults are not double-counted as skew


def test_float32_values_compare_at_float32_precision():
    offline = [0.1, 0.2, 0.3]
    online = [float(np.float32(v)) for v in offline]
    assert _feed(online, offline, "Float32")["mismatches"] == 0
    assert _feed(online, offline, "Float64")["mismatches"] == 3


def test_inverted_thresholds_are_rejected_with_the_key_named():
    with pytest.raises(ParityConfigError, match=r"parity\.thresholds: psi_warn \(0\.5\)"):
        ParityConfig.from_mapping({"thresholds": {"psi_warn": 0.5}})
