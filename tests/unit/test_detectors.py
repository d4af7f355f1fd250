"""Change-point detectors (feast_parity.parity.detectors): Page-Hinkley, CUSUM and EWMA.

The alert engine can run one of these over a stored metric to catch a sustained shift inside
the sigma band. The reference values come from river's own doctests and test suite
(river/drift/page_hinkley.py, river/drift/cusum.py, river/drift/ewma.py and
river/drift/test_drift_detectors.py); they must reproduce exactly. The behaviour tests after
them pin resets, direction, warm-up and the argument checks.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feast_parity.parity.detectors import CUSUM, EWMA, PageHinkley, detect_changes

DETECTORS = [PageHinkley, CUSUM, EWMA]
MODES = ["up", "down", "both"]


# --------------------------------------------------------------------------
# river reference values
# --------------------------------------------------------------------------


def test_page_hinkley_river_docstring_reference() -> None:
    rng = random.Random(12345)
    data = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)

    assert detect_changes(PageHinkley(), data) == [1006]


def test_cusum_river_docstring_reference() -> None:
    rng = random.Random(12345)
    stable = [rng.gauss(0, 1) for _ in range(200)]
    shifted = [rng.gauss(3, 1) for _ in range(200)]

    assert detect_changes(CUSUM(), stable + shifted) == [201, 251]


def _river_data_stream_3() -> list[int]:
    """``data_stream_3`` of river/drift/test_drift_detectors.py."""
    np.random.seed(12345)
    stream = np.concatenate(
        [
            np.random.normal(0, 0.1, 500) > 0,
            np.random.normal(0.25, 0.1, 500) > 0,
            np.random.normal(0, 0.1, 500) > 0,
            np.random.normal(0.25, 0.1, 500) > 0,
        ]
    ).astype(int)
    return [int(v) for v in stream]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("up", [588, 1681]), ("down", [1172]), ("both", [588, 1097, 1585])],
)
def test_page_hinkley_river_test_suite_reference(mode: str, expected: list[int]) -> None:
    # In river these values belong to test_page_hinkley (not to EWMA).
    stream = _river_data_stream_3()

    assert detect_changes(PageHinkley(mode=mode), stream) == expected


def test_ewma_river_docstring_reference() -> None:
    rng = random.Random(12345)
    data = [rng.gauss(0, 1) if i < 1000 else rng.gauss(3, 1) for i in range(2000)]

    assert detect_changes(EWMA(alpha=0.1, threshold=4, min_instances=50), data) == [1010]


# --------------------------------------------------------------------------
# behaviour
# --------------------------------------------------------------------------


def _up_then_down(seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return (
        [rng.gauss(0, 1) for _ in range(300)]
        + [rng.gauss(5, 1) for _ in range(300)]
        + [rng.gauss(0, 1) for _ in range(300)]
    )


@pytest.mark.parametrize("cls", DETECTORS)
def test_resets_and_detects_second_change(cls: Any) -> None:
    hits = detect_changes(cls(mode="both"), _up_then_down())

    assert len(hits) == 2, hits
    assert 300 <= hits[0] < 320
    assert 600 <= hits[1] < 620


@pytest.mark.parametrize("cls", DETECTORS)
def test_state_is_reset_on_the_update_after_a_detection(cls: Any) -> None:
    detector = cls()
    data = _up_then_down()
    first = detect_changes(detector, data[:320])[0]
    # Re-run on a fresh detector, stopping exactly at the detection.
    detector = cls()
    for x in data[: first + 1]:
        detector.update(x)
    assert detector.drift_detected
    assert detector.n > 1

    detector.update(data[first + 1])

    assert not detector.drift_detected
    assert detector.n == 1


@pytest.mark.parametrize("cls", DETECTORS)
def test_mode_selects_direction(cls: Any) -> None:
    rng = random.Random(3)
    step_down = [rng.gauss(0, 1) for _ in range(200)] + [rng.gauss(-5, 1) for _ in range(100)]

    assert detect_changes(cls(mode="up"), step_down) == []
    down_hits = detect_changes(cls(mode="down"), step_down)
    assert down_hits and 200 <= down_hits[0] < 220


def _early_jump() -> list[float]:
    return [0.5 * (-1) ** i for i in range(10)] + [100.0] * 100


@pytest.mark.parametrize("cls", DETECTORS)
def test_no_detection_before_min_instances(cls: Any) -> None:
    hits = detect_changes(cls(min_instances=30), _early_jump())

    assert hits, "a jump of 100 must eventually be detected"
    assert hits[0] >= 29


def test_page_hinkley_tests_from_the_min_instances_th_value() -> None:
    # The warm-up count includes the current value: the 30th value (index 29)
    # is the first one tested.
    assert detect_changes(PageHinkley(min_instances=30), _early_jump())[0] == 29


@pytest.mark.parametrize("cls", [PageHinkley, CUSUM])
def test_short_warm_up_detects_early_jump_at_once(cls: Any) -> None:
    # Same stream as above: it is min_instances that delayed the detection.
    assert detect_changes(cls(min_instances=5), _early_jump())[0] == 10


def test_cusum_reference_is_frozen_after_warm_up() -> None:
    rng = random.Random(1)
    warm_up = [rng.gauss(10, 2) for _ in range(30)]
    detector = CUSUM(min_instances=30, threshold=100.0)
    for x in warm_up[:-1]:
        detector.update(x)
    assert detector.reference is None

    detector.update(warm_up[-1])
    assert detector.reference == pytest.approx(statistics.fmean(warm_up), rel=1e-12)
    assert detector.sigma == pytest.approx(statistics.stdev(warm_up), rel=1e-12)

    frozen = (detector.reference, detector.sigma)
    for x in [rng.gauss(12, 5) for _ in range(50)]:
        detector.update(x)
    assert not detector.drift_detected
    assert (detector.reference, detector.sigma) == frozen


def test_ewma_control_limit_has_warm_up_correction() -> None:
    alpha, threshold = 0.3, 2.0
    rng = random.Random(2)
    data = [rng.gauss(0, 1) for _ in range(10)]
    detector = EWMA(alpha=alpha, threshold=threshold, min_instances=1)

    ew_mean = ew_sq_mean = 0.0
    for n, x in enumerate(data, start=1):
        detector.update(x)
        if n == 1:
            ew_mean, ew_sq_mean = x, x * x
        else:
            ew_mean = alpha * x + (1 - alpha) * ew_mean
            ew_sq_mean = alpha * x * x + (1 - alpha) * ew_sq_mean
        sigma = max(ew_sq_mean - ew_mean**2, 0.0) ** 0.5
        factor = alpha / (2 - alpha) * (1 - (1 - alpha) ** (2 * n))
        assert detector.limit == pytest.approx(threshold * sigma * factor**0.5, rel=1e-9)
        assert detector.mean == pytest.approx(statistics.fmean(data[:n]), rel=1e-12)


@pytest.mark.parametrize("cls", DETECTORS)
@pytest.mark.parametrize("mode", MODES)
def test_no_detection_on_stationary_gaussian_stream(cls: Any, mode: str) -> None:
    # CUSUM at its classical settings alarms every few hundred samples on
    # noise (river documents this), so the stream is kept modest.
    rng = random.Random(0)
    data = [rng.gauss(0, 1) for _ in range(300)]

    assert detect_changes(cls(mode=mode), data) == []


@pytest.mark.parametrize("cls", DETECTORS)
@pytest.mark.parametrize("mode", MODES)
def test_no_detection_on_periodic_stream(cls: Any, mode: str) -> None:
    data = [0.5 * (-1) ** i for i in range(2000)]

    assert detect_changes(cls(mode=mode), data) == []


@settings(max_examples=50, deadline=None)
@given(
    value=st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    mode=st.sampled_from(MODES),
)
def test_no_detection_on_constant_stream(value: float, mode: str) -> None:
    # A zero-variance stream gives zero-width limits: rounding noise in the
    # running statistics must not be reported as a change.
    for cls in DETECTORS:
        assert detect_changes(cls(mode=mode), [value] * 200) == [], cls.__name__


def test_detect_changes_reports_indices_where_flag_is_set() -> None:
    class EveryThird:
        drift_detected = False

        def __init__(self) -> None:
            self.seen = 0

        def update(self, x: float) -> None:
            self.seen += 1
            self.drift_detected = self.seen % 3 == 0

    assert detect_changes(EveryThird(), [0.0] * 10) == [2, 5, 8]


def test_detect_changes_does_not_reset_detector() -> None:
    detector = PageHinkley()
    detect_changes(detector, [0.0] * 10)

    assert detector.n == 10
    detect_changes(detector, [0.0] * 5)
    assert detector.n == 15


# --------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (PageHinkley, {"mode": "sideways"}, "mode"),
        (PageHinkley, {"threshold": -1.0}, "threshold"),
        (PageHinkley, {"threshold": 0.0}, "threshold"),
        (PageHinkley, {"delta": -0.1}, "delta"),
        (PageHinkley, {"alpha": 0.0}, "alpha"),
        (PageHinkley, {"alpha": 1.5}, "alpha"),
        (PageHinkley, {"min_instances": 0}, "min_instances"),
        (CUSUM, {"mode": "UP"}, "mode"),
        (CUSUM, {"threshold": -5.0}, "threshold"),
        (CUSUM, {"threshold": float("nan")}, "threshold"),
        (CUSUM, {"slack": -0.5}, "slack"),
        (CUSUM, {"min_instances": 0}, "min_instances"),
        (CUSUM, {"min_instances": 2.5}, "min_instances"),
        (EWMA, {"mode": ""}, "mode"),
        (EWMA, {"alpha": 0.0}, "alpha"),
        (EWMA, {"alpha": -0.1}, "alpha"),
        (EWMA, {"alpha": 1.01}, "alpha"),
        (EWMA, {"threshold": -4.0}, "threshold"),
        (EWMA, {"min_instances": -3}, "min_instances"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(
    cls: Any, kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{name} "):
        cls(**kwargs)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (PageHinkley, {"alpha": 1.0, "delta": 0.0}),
        (CUSUM, {"slack": 0.0, "min_instances": 1}),
        (EWMA, {"alpha": 1.0, "min_instances": 1}),
    ],
)
def test_boundary_arguments_are_accepted(cls: Any, kwargs: dict[str, Any]) -> None:
    detector = cls(**kwargs)
    for key, value in kwargs.items():
        assert getattr(detector, key) == value
