"""Distribution statistics (feast_parity.parity.stats) and their bins (parity.sketches).

Expected numbers are derived inside the tests, from the written definitions (PSI, quantile
edges), from scipy (KS, chi-square quantiles) or from published tables; none is copied from the
code under test. The drift check bins a numeric feature on the reference (offline) quantiles,
counts both sides in those bins and takes PSI of the counts; ``binned_psi`` below does exactly
that with the public pieces, and the significance section checks that a drift finding's
"PSI above the no-drift critical value" means what it says.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import scipy.stats
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from feast_parity.parity.sketches import CategoricalHistogram, NumericHistogram, quantile_edges
from feast_parity.parity.stats import (
    ks_2samp,
    psi,
    psi_chi_square_bound,
    psi_critical_value,
    severity_for_psi,
)

FLOAT_MAX = sys.float_info.max


def hand_psi(
    ref_counts: Sequence[float], cur_counts: Sequence[float], floor: float = 1e-4
) -> float:
    """The pinned PSI definition, in plain Python floats, written independently."""
    ref_total = sum(ref_counts)
    cur_total = sum(cur_counts)
    p = [c / ref_total for c in ref_counts]
    q = [c / cur_total for c in cur_counts]
    p = [floor if x == 0 else x for x in p]
    q = [floor if x == 0 else x for x in q]
    p_sum = sum(p)
    q_sum = sum(q)
    p = [x / p_sum for x in p]
    q = [x / q_sum for x in q]
    return sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))


def binned_psi(reference: Any, current: Any, bins: int = 10) -> float:
    """PSI of a numeric feature as the drift check computes it: bins from the quantiles of
    the reference (plus the two out-of-range bins of NumericHistogram), PSI of the counts.
    NaN when the reference has no finite value (no bins) or a side has nothing to count."""
    values = np.asarray(reference, dtype=np.float64)
    if not np.any(np.isfinite(values)):
        return math.nan
    edges = quantile_edges(values, bins=bins)
    counts = NumericHistogram(edges).update(reference).counts
    return psi(counts, NumericHistogram(edges).update(current).counts)


def categorical_psi(reference: Any, current: Any, max_categories: int = 50) -> float:
    """PSI of a categorical feature: the reference's most frequent labels as bins, plus
    "other". NaN when the reference has no label or the current side none to count."""
    ref = CategoricalHistogram(max_categories=max_categories).update(reference)
    if ref.categories is None:
        return math.nan
    return psi(ref.counts, ref.empty_like().update(current).counts)


# Strategies ------------------------------------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
any_floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
# A small pool forces many duplicated values.
pooled_floats = st.sampled_from([-3.5, -1.0, 0.0, 0.0, 0.0, 0.25, 1.0, 2.0, 1e6])
float_lists = st.one_of(
    st.lists(any_floats, max_size=60),
    st.lists(pooled_floats, max_size=60),
    st.lists(st.one_of(pooled_floats, any_floats), max_size=60),
)


# ============================================================================
# KS: must equal scipy.stats.ks_2samp (default method='auto')
# ============================================================================


def _assert_ks_matches_scipy(a: np.ndarray, b: np.ndarray) -> None:
    expected = scipy.stats.ks_2samp(a, b)
    d, p = ks_2samp(a, b)
    assert d == pytest.approx(float(expected.statistic), abs=1e-9, rel=0)
    assert p == pytest.approx(float(expected.pvalue), abs=1e-6, rel=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 42])
@pytest.mark.parametrize(
    ("n1", "n2", "shift"),
    [
        (20, 20, 0.0),  # exact path, equal sizes
        (20, 20, 1.0),  # exact path, clear shift (small p-value)
        (20, 31, 0.3),  # exact path, unequal sizes
        (5000, 5000, 0.05),  # scipy 'auto' is still exact here (max n <= 10000)
        (5000, 7001, 0.0),  # exact, unequal sizes
        (12000, 12000, 0.03),  # asymptotic path (max n > 10000)
        (15000, 4000, 0.0),  # asymptotic path, unequal sizes
        (3, 20000, 0.5),  # asymptotic path, very unbalanced
    ],
)
def test_ks_matches_scipy_continuous(seed: int, n1: int, n2: int, shift: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n1)
    b = rng.normal(loc=shift, size=n2)
    _assert_ks_matches_scipy(a, b)


@pytest.mark.parametrize("seed", [3, 4, 5])
@pytest.mark.parametrize(("n1", "n2"), [(20, 20), (30, 47), (5000, 6000), (11000, 13000)])
def test_ks_matches_scipy_with_ties(seed: int, n1: int, n2: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, size=n1).astype(np.float64)
    b = rng.integers(0, 6, size=n2).astype(np.float64)
    _assert_ks_matches_scipy(a, b)


def test_large_samples_really_use_the_asymptotic_path() -> None:
    # Guards the assumption behind the n > 10000 branch: scipy's 'auto' result
    # equals its 'asymp' result there, and our p-value equals both.
    rng = np.random.default_rng(7)
    a = rng.normal(size=12000)
    b = rng.normal(loc=0.02, size=11000)
    auto = scipy.stats.ks_2samp(a, b)
    asymp = scipy.stats.ks_2samp(a, b, method="asymp")
    assert auto.pvalue == asymp.pvalue
    assert ks_2samp(a, b)[1] == pytest.approx(float(asymp.pvalue), abs=1e-12)


# scipy itself may fall back from 'exact' to 'asymp' (with a RuntimeWarning)
SCIPY_EXACT_FALLBACK = pytest.mark.filterwarnings(
    "ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning"
)


@SCIPY_EXACT_FALLBACK
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-3, 3), min_size=1, max_size=40),
    st.lists(st.integers(-3, 3), min_size=1, max_size=40),
)
def test_ks_matches_scipy_hypothesis_small_ties(a: list[int], b: list[int]) -> None:
    _assert_ks_matches_scipy(np.asarray(a, dtype=float), np.asarray(b, dtype=float))


def test_ks_drops_missing_values_and_handles_empty() -> None:
    a = np.array([0.1, np.nan, 0.5, 0.9, 1.3])
    b = pa.array([0.2, None, 0.4, 2.0])
    expected = scipy.stats.ks_2samp([0.1, 0.5, 0.9, 1.3], [0.2, 0.4, 2.0])
    d, p = ks_2samp(a, b)
    assert d == pytest.approx(float(expected.statistic), abs=1e-12)
    assert p == pytest.approx(float(expected.pvalue), abs=1e-9)
    d, p = ks_2samp([np.nan, None], [1.0])
    assert math.isnan(d) and math.isnan(p)
    # Hand-checked: disjoint samples have D = 1.
    assert ks_2samp([1.0, 2.0], [3.0, 4.0])[0] == 1.0


# ============================================================================
# PSI: pinned definition
# ============================================================================


def test_psi_hand_computation_with_empty_bins() -> None:
    ref = [10, 0, 30, 60]
    cur = [20, 10, 0, 70]
    # Step 1: proportions.
    p = [0.10, 0.00, 0.30, 0.60]
    q = [0.20, 0.10, 0.00, 0.70]
    # Step 2: floor the exact zeros at 1e-4 on both sides ...
    p = [0.10, 1e-4, 0.30, 0.60]
    q = [0.20, 0.10, 1e-4, 0.70]
    # ... and renormalise each side (both sums are now 1.0001).
    p = [x / 1.0001 for x in p]
    q = [x / 1.0001 for x in q]
    # Step 3: sum of (q - p) * ln(q / p).
    terms = [(qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True)]
    expected = terms[0] + terms[1] + terms[2] + terms[3]
    # Rough hand value: 0.0693 + 0.6900 + 2.4009 + 0.0154
    assert expected == pytest.approx(3.1756, abs=1e-3)
    assert psi(ref, cur) == pytest.approx(expected, rel=1e-12)
    assert psi(np.array(ref), np.array(cur)) == pytest.approx(hand_psi(ref, cur), rel=1e-12)


def test_psi_hand_two_bins() -> None:
    # p = [0.5, 0.5]; q = [1, 0] -> [1, 1e-4] / 1.0001
    q0, q1 = 1 / 1.0001, 1e-4 / 1.0001
    expected = (q0 - 0.5) * math.log(q0 / 0.5) + (q1 - 0.5) * math.log(q1 / 0.5)
    assert psi([50, 50], [7, 0]) == pytest.approx(expected, rel=1e-12)


def test_psi_floor_only_applies_to_exact_zeros() -> None:
    ref = [1, 999_999]
    cur = [999_999, 1]
    p = [1e-6, 0.999999]  # 1e-6 < floor, but not zero: kept as is
    q = [0.999999, 1e-6]
    expected = sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))
    assert psi(ref, cur) == pytest.approx(expected, rel=1e-9)
    assert psi(ref, cur) == pytest.approx(hand_psi(ref, cur), rel=1e-12)


def test_psi_custom_floor_and_proportion_inputs() -> None:
    assert psi([1, 0], [0, 1], floor=0.01) == pytest.approx(
        hand_psi([1, 0], [0, 1], floor=0.01), rel=1e-12
    )
    # PSI depends on proportions only: scaling counts changes nothing.
    assert psi([0.1, 0.0, 0.9], [0.2, 0.3, 0.5]) == pytest.approx(
        psi([10, 0, 90], [20, 30, 50]), rel=1e-12
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 1000), min_size=1, max_size=12).flatmap(
        lambda r: st.tuples(
            st.just(r), st.lists(st.integers(0, 1000), min_size=len(r), max_size=len(r))
        )
    )
)
def test_psi_matches_hand_definition(pair: tuple[list[int], list[int]]) -> None:
    ref, cur = pair
    assume(sum(ref) > 0 and sum(cur) > 0)
    result = psi(ref, cur)
    assert result >= 0.0
    assert result == pytest.approx(hand_psi(ref, cur), rel=1e-9, abs=1e-12)


def test_psi_nan_and_errors() -> None:
    assert math.isnan(psi([0, 0], [1, 2]))
    assert math.isnan(psi([1, 2], [0, 0]))
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        psi([1, -1], [1, 1])
    with pytest.raises(ValueError):
        psi([1, 1], [1, 1], floor=0.0)


def test_binned_psi_worked_through_edges() -> None:
    reference = np.arange(10.0)  # 0, 1, ..., 9
    # Edges: min, then for k=1..4 the smallest v with #{x < v} >= 10*k/5 = 2k,
    # i.e. v = 2k, then the float just above the max 9.
    expected_edges = [0.0, 2.0, 4.0, 6.0, 8.0, float(np.nextafter(9.0, np.inf))]
    edges = quantile_edges(reference, bins=5)
    assert edges.tolist() == expected_edges

    current = np.array([-1.0, 0.5, 1.0, 2.5, 3.0, 9.0, 9.5, 20.0, np.nan])
    # bins: (<0) [0,2) [2,4) [4,6) [6,8) [8,9+) (>=9+)
    expected_ref_counts = [0, 2, 2, 2, 2, 2, 0]
    expected_cur_counts = [1, 2, 2, 0, 0, 1, 2]  # NaN is not binned
    ref_hist = NumericHistogram(edges).update(reference)
    cur_hist = NumericHistogram(edges).update(current)
    assert ref_hist.counts.tolist() == expected_ref_counts
    assert cur_hist.counts.tolist() == expected_cur_counts
    assert cur_hist.nan_count == 1

    # PSI by hand: p = [0, .2, .2, .2, .2, .2, 0] -> zeros floored, sum 1.0002
    p = [1e-4, 0.2, 0.2, 0.2, 0.2, 0.2, 1e-4]
    # q = [1, 2, 2, 0, 0, 1, 2] / 8 -> zeros floored, sum 1.0002
    q = [0.125, 0.25, 0.25, 1e-4, 1e-4, 0.125, 0.25]
    p = [x / 1.0002 for x in p]
    q = [x / 1.0002 for x in q]
    expected = sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))
    assert binned_psi(reference, current, bins=5) == pytest.approx(expected, rel=1e-12)


def test_psi_categorical_hand() -> None:
    reference = ["a", "a", "b", "c", None]
    current = ["a", "b", "b", "d", float("nan")]
    # bins learned from the reference: a (2), then b and c (1 each, by label), other
    ref_hist = CategoricalHistogram().update(reference)
    assert ref_hist.categories == ["a", "b", "c"]
    assert ref_hist.counts.tolist() == [2, 1, 1, 0]
    cur_hist = ref_hist.empty_like().update(current)
    assert cur_hist.counts.tolist() == [1, 2, 0, 1]  # "d" -> other
    assert (cur_hist.nan_count, cur_hist.null_count) == (1, 0)
    p = [2 / 4, 1 / 4, 1 / 4, 1e-4]
    q = [1 / 4, 2 / 4, 1e-4, 1 / 4]
    p = [x / 1.0001 for x in p]
    q = [x / 1.0001 for x in q]
    expected = sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))
    assert categorical_psi(reference, current) == pytest.approx(expected, rel=1e-12)


def test_psi_insufficient_data_is_nan() -> None:
    assert math.isnan(binned_psi([], [1.0, 2.0]))
    assert math.isnan(binned_psi([1.0, 2.0], [np.nan, None]))
    assert math.isnan(binned_psi([np.inf, -np.inf], [1.0]))  # no finite reference
    assert math.isnan(categorical_psi([None, None], ["a"]))
    assert math.isnan(categorical_psi(["a"], pa.array([None], type=pa.string())))


@settings(max_examples=150, deadline=None)
@given(float_lists, st.randoms(use_true_random=False))
def test_psi_of_sample_against_itself_is_zero(values: list[float], rnd: Any) -> None:
    x = np.asarray(values, dtype=np.float64)
    shuffled = x.copy()
    rnd.shuffle(shuffled)
    if np.any(np.isfinite(x)):
        assert binned_psi(x, x) == 0.0
        assert binned_psi(x, shuffled) == 0.0
        assert binned_psi(x, np.repeat(x, 3)) == 0.0
    else:
        assert math.isnan(binned_psi(x, x))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "x", "y", None]), max_size=40))
def test_psi_categorical_of_sample_against_itself_is_zero(values: list[str | None]) -> None:
    if any(v is not None for v in values):
        assert categorical_psi(values, values) == 0.0
        assert categorical_psi(values, list(reversed(values)) + [None]) == 0.0
    else:
        assert math.isnan(categorical_psi(values, values))


def test_psi_detects_a_shift() -> None:
    rng = np.random.default_rng(11)
    ref = rng.normal(size=5000)
    assert binned_psi(ref, rng.normal(size=5000)) < 0.1
    assert binned_psi(ref, rng.normal(loc=1.0, size=5000)) >= 0.25


# ============================================================================
# Quantile edges
# ============================================================================


def _check_edges(edges: np.ndarray, finite: np.ndarray) -> None:
    assert edges.dtype == np.float64
    assert edges.ndim == 1 and edges.size >= 1
    assert np.all(np.isfinite(edges))
    assert np.all(np.diff(edges) > 0), edges
    assert edges[0] == finite.min()
    if finite.max() < FLOAT_MAX:
        assert edges[-1] == np.nextafter(finite.max(), np.inf)
        # every reference value lands in an inner bin
        counts = NumericHistogram(edges).update(finite).counts
        assert counts[0] == 0 and counts[-1] == 0


@settings(max_examples=200, deadline=None)
@given(float_lists, st.integers(1, 12), st.integers(2, 4), st.randoms(use_true_random=False))
def test_quantile_edges_strictly_increasing_and_stable(
    values: list[float], bins: int, reps: int, rnd: Any
) -> None:
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    assume(finite.size > 0)
    edges = quantile_edges(x, bins=bins)
    _check_edges(edges, finite)
    assert edges.size <= bins + 1
    # NaN/inf are ignored
    np.testing.assert_array_equal(quantile_edges(finite, bins=bins), edges)
    # duplicated values: the same distribution gives the same edges
    np.testing.assert_array_equal(quantile_edges(np.repeat(x, reps), bins=bins), edges)
    np.testing.assert_array_equal(quantile_edges(np.tile(x, reps), bins=bins), edges)
    shuffled = x.copy()
    rnd.shuffle(shuffled)
    np.testing.assert_array_equal(quantile_edges(shuffled, bins=bins), edges)


@settings(max_examples=100, deadline=None)
@given(st.sets(finite_floats, min_size=10, max_size=80), st.integers(1, 10))
def test_quantile_edges_equal_mass_without_ties(values: set[float], bins: int) -> None:
    x = np.asarray(sorted(values), dtype=np.float64)
    x = x[x < FLOAT_MAX]
    x = np.unique(x + 0.0)  # -0.0 and 0.0 are one value
    assume(x.size >= bins)
    edges = quantile_edges(x, bins=bins)
    assert edges.size == bins + 1
    inner = NumericHistogram(edges).update(x).counts[1:-1]
    n = x.size
    assert set(inner.tolist()) <= {n // bins, -(-n // bins)}
    assert inner.sum() == n


def test_quantile_edges_sorted_decile_example() -> None:
    x = np.arange(1.0, 101.0)  # 1..100, deciles
    expected = [1.0, 11.0, 21.0, 31.0, 41.0, 51.0, 61.0, 71.0, 81.0, 91.0]
    expected.append(float(np.nextafter(100.0, np.inf)))
    assert quantile_edges(x).tolist() == expected
    assert quantile_edges(np.repeat(x, 3)).tolist() == expected


def test_quantile_edges_ninety_percent_zeros() -> None:
    x = np.array([0.0] * 90 + [float(v) for v in range(1, 11)])
    # #{x < 1} = 90 >= 10*k for every k = 1..9, so all inner deciles are 1.
    expected = [0.0, 1.0, float(np.nextafter(10.0, np.inf))]
    edges = quantile_edges(x)
    assert edges.tolist() == expected
    assert NumericHistogram(edges).update(x).counts.tolist() == [0, 90, 10, 0]
    rng = np.random.default_rng(0)
    big = np.where(rng.random(10_000) < 0.9, 0.0, rng.exponential(size=10_000))
    _check_edges(quantile_edges(big), big)
    assert binned_psi(big, big) == 0.0


def test_quantile_edges_constant_column() -> None:
    x = np.full(50, 7.5)
    edges = quantile_edges(x)
    assert edges.tolist() == [7.5, float(np.nextafter(7.5, np.inf))]
    hist = NumericHistogram(edges).update(np.array([7.4, 7.5, 7.5, 7.5, 7.6]))
    assert hist.counts.tolist() == [1, 3, 1]
    assert binned_psi(x, x) == 0.0
    assert severity_for_psi(binned_psi(x, x + 1.0)) == "fail"


def test_quantile_edges_errors_and_extremes() -> None:
    with pytest.raises(ValueError):
        quantile_edges([np.nan, np.inf])
    with pytest.raises(ValueError):
        quantile_edges([1.0, 2.0], bins=0)
    # -0.0 and 0.0 are the same value
    assert quantile_edges([-0.0, 0.0, 1.0], bins=2).tolist()[0] == 0.0
    assert math.copysign(1.0, quantile_edges([-0.0, 1.0], bins=2)[0]) == 1.0
    # largest float: no float above it, the edge stays the max
    edges = quantile_edges([0.0, FLOAT_MAX], bins=2)
    assert edges.tolist() == [0.0, FLOAT_MAX]


# ============================================================================
# Sketches
# ============================================================================


edge_lists = st.lists(finite_floats, min_size=1, max_size=8, unique=True).map(
    lambda v: np.unique(np.asarray(v) + 0.0)
)


@settings(max_examples=150, deadline=None)
@given(edge_lists, float_lists, float_lists)
def test_numeric_merge_equals_update_with_concatenation(
    edges: np.ndarray, a: list[float], b: list[float]
) -> None:
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    combined = NumericHistogram(edges).update(np.concatenate([xa, xb]))
    ha = NumericHistogram(edges).update(xa)
    hb = NumericHistogram(edges).update(xb)
    merged = ha.merge(hb)
    assert merged == combined
    assert hb.merge(ha) == combined
    # merge leaves its inputs alone
    assert ha == NumericHistogram(edges).update(xa)
    # incremental updates equal one big update
    assert NumericHistogram(edges).update(xa).update(xb) == combined
    assert combined.total == int(np.sum(~np.isnan(np.concatenate([xa, xb]))))
    assert combined.n_rows == xa.size + xb.size


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", "e", None]), max_size=40),
    st.lists(st.sampled_from(["a", "b", "c", "d", "e", None]), max_size=40),
    st.lists(st.sampled_from(["a", "b", "c", "z"]), unique=True, max_size=4),
)
def test_categorical_merge_equals_update_with_concatenation(
    a: list[str | None], b: list[str | None], categories: list[str]
) -> None:
    combined = CategoricalHistogram(categories).update(a + b)
    merged = (
        CategoricalHistogram(categories).update(a).merge(CategoricalHistogram(categories).update(b))
    )
    assert merged == combined
    assert combined.total == sum(v is not None for v in a + b)
    assert combined.null_count == sum(v is None for v in a + b)
    expected = [sum(v == c for v in a + b) for c in categories]
    expected.append(sum(v is not None and v not in categories for v in a + b))
    assert combined.counts.tolist() == expected


def test_categorical_learned_then_frozen() -> None:
    ref = CategoricalHistogram(max_categories=2)
    ref.update([None])  # only nulls: nothing learned yet
    assert ref.categories is None and ref.null_count == 1
    ref.update(["x", "y", "y", "z", "z", "z"])
    assert ref.categories == ["z", "y"]  # top 2 by frequency
    assert ref.counts.tolist() == [3, 2, 1]  # "x" -> other
    ref.update(["w", "w", "w", "w"])  # frozen: no new category
    assert ref.categories == ["z", "y"]
    assert ref.counts.tolist() == [3, 2, 5]
    # an unlearned sketch adopts the categories when merged
    merged = CategoricalHistogram(max_categories=2).update([None, None]).merge(ref)
    assert merged.categories == ["z", "y"]
    assert merged.counts.tolist() == [3, 2, 5]
    assert merged.null_count == 3
    with pytest.raises(ValueError):
        ref.merge(CategoricalHistogram(["y", "z"]))
    with pytest.raises(ValueError):
        CategoricalHistogram(["a", "b", "c"], max_categories=2)


def test_categorical_non_string_and_arrow_inputs() -> None:
    hist = CategoricalHistogram(["1", "2", "True"])
    hist.update(np.array([1, 2, 2, 3]))
    hist.update(pa.chunked_array([[True, None], [False]]))
    assert hist.counts.tolist() == [1, 2, 1, 2]  # "3" and "False" -> other
    assert hist.null_count == 1
    # mixed Python objects, with NaN and a mask
    hist2 = CategoricalHistogram(["a"]).update(
        ["a", float("nan"), None, 5, "a"], mask=[False, False, False, False, True]
    )
    assert hist2.counts.tolist() == [1, 1]
    assert (hist2.null_count, hist2.nan_count) == (2, 1)


def test_serialisation_round_trips_through_json() -> None:
    edges = quantile_edges(np.random.default_rng(1).normal(size=1000))
    num = NumericHistogram(edges).update(np.array([-10.0, 0.1, np.nan, 1e9]))
    num.update(np.array([0.3, 2.0]), mask=np.array([True, False]))
    num_back = NumericHistogram.from_dict(json.loads(json.dumps(num.to_dict())))
    assert num_back == num
    assert num_back.edges.tolist() == edges.tolist()  # bit-exact floats
    assert (num_back.null_count, num_back.nan_count) == (1, 1)

    cat = CategoricalHistogram(max_categories=3).update(["b", "a", "a", None, "c", "d"])
    cat_back = CategoricalHistogram.from_dict(json.loads(json.dumps(cat.to_dict())))
    assert cat_back == cat
    assert cat_back.categories == cat.categories
    assert cat_back.max_categories == 3

    fresh = CategoricalHistogram()
    fresh_back = CategoricalHistogram.from_dict(json.loads(json.dumps(fresh.to_dict())))
    assert fresh_back.categories is None
    fresh_back.update(["q"])
    assert fresh_back.categories == ["q"]

    bad = num.to_dict()
    bad["counts"] = bad["counts"][:-1]
    with pytest.raises(ValueError):
        NumericHistogram.from_dict(bad)
    with pytest.raises(ValueError):
        CategoricalHistogram.from_dict(num.to_dict())


def test_out_of_range_values_land_in_extra_bins() -> None:
    hist = NumericHistogram(np.array([0.0, 1.0, 2.0]))
    hist.update(np.array([-np.inf, -1.0, -1e-300, 0.0, 0.999, 1.0, 1.999, 2.0, 3.0, np.inf]))
    # bins: (<0) [0,1) [1,2) (>=2)
    assert hist.counts.tolist() == [3, 2, 2, 3]
    assert hist.n_bins == 4
    assert hist.proportions().tolist() == [0.3, 0.2, 0.2, 0.3]


def test_missing_values_are_not_binned() -> None:
    edges = np.array([0.0, 1.0])
    floats = NumericHistogram(edges).update(np.array([0.5, np.nan, np.nan]))
    assert floats.counts.tolist() == [0, 1, 0]
    assert (floats.nan_count, floats.null_count, floats.total) == (2, 0, 1)

    objects = NumericHistogram(edges).update([0.5, None, 2.0])
    assert objects.counts.tolist() == [0, 1, 1]
    assert (objects.nan_count, objects.null_count, objects.total) == (0, 1, 2)

    arrow = NumericHistogram(edges).update(pa.array([0.5, None, float("nan"), -1.0]))
    assert arrow.counts.tolist() == [1, 1, 0]
    assert (arrow.nan_count, arrow.null_count) == (1, 1)

    masked = NumericHistogram(edges).update(
        np.array([0.5, 0.7, np.nan]), mask=np.array([False, True, True])
    )
    assert masked.counts.tolist() == [0, 1, 0]
    assert (masked.nan_count, masked.null_count) == (0, 2)

    ints = NumericHistogram(edges).update(pa.chunked_array([[0, None], [5]]))
    assert ints.counts.tolist() == [0, 1, 1]
    assert ints.null_count == 1

    empty = NumericHistogram(edges)
    assert np.all(np.isnan(empty.proportions()))
    assert empty.counts.dtype == np.int64


def test_histogram_validation() -> None:
    with pytest.raises(ValueError):
        NumericHistogram(np.array([1.0, 1.0]))
    with pytest.raises(ValueError):
        NumericHistogram(np.array([]))
    with pytest.raises(ValueError):
        NumericHistogram(np.array([0.0, np.inf]))
    with pytest.raises(ValueError):
        NumericHistogram(np.array([0.0, 1.0])).merge(NumericHistogram(np.array([0.0, 2.0])))
    with pytest.raises(TypeError):
        NumericHistogram(np.array([0.0])).update(np.array(["a"]))
    with pytest.raises(ValueError):
        NumericHistogram(np.array([0.0])).update(np.array([1.0]), mask=np.array([True, False]))
    hist = NumericHistogram(np.array([0.0]))
    with pytest.raises(ValueError):
        hist.counts[0] = 5  # read-only view


# ============================================================================
# Drift significance: the no-drift critical value of PSI
# ============================================================================


def test_the_chi_square_bound_is_the_scaled_chi_square_quantile() -> None:
    # Published chi-square table: the 0.95 quantile with 9 degrees of freedom is 16.919.
    assert psi_chi_square_bound(100, 100, 10) == pytest.approx(
        (1 / 100 + 1 / 100) * 16.919, abs=1e-4
    )
    for n, m, bins, q in [(100, 100, 10, 0.95), (1000, 250, 12, 0.95), (10**5, 10**4, 5, 0.99)]:
        expected = (1 / n + 1 / m) * scipy.stats.chi2.ppf(q, bins - 1)
        assert psi_chi_square_bound(n, m, bins, q) == pytest.approx(expected, rel=1e-12)
    assert psi_chi_square_bound(100, 100, 1) is None  # one bin: nothing can drift
    assert psi_chi_square_bound(0, 100, 10) is None


def test_the_bootstrap_critical_value_agrees_with_the_chi_square_bound_on_well_filled_bins() -> (
    None
):
    """With every bin well filled, the bootstrap and the asymptotic bound agree (within the
    noise of 400 draws); with empty bins nothing changes the number of degrees of freedom."""
    for n in (1000, 100_000):
        counts = [n // 10] * 10
        bound = psi_chi_square_bound(n, n, 10)
        assert psi_critical_value(counts, counts) == pytest.approx(bound, rel=0.15)
    assert psi_critical_value([10, 0, 0], [10, 0, 0]) is None  # one bin holds every value
    assert psi_critical_value([0, 0], [3, 4]) is None  # an empty side
    assert psi_critical_value([5, 5], [5, 5], seed=1) == psi_critical_value([5, 5], [5, 5], seed=1)


def drift_statistics(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(PSI, its no-drift critical value) exactly as the check scores a numeric feature:
    reference-quantile bins, and the bins that hold a value on either side."""
    edges = quantile_edges(reference, bins=10)
    ref = NumericHistogram(edges).update(reference).counts
    cur = NumericHistogram(edges).update(current).counts
    critical = psi_critical_value(ref, cur)
    assert critical is not None
    return psi(ref, cur), critical


@pytest.mark.parametrize(("n", "runs"), [(100, 400), (1000, 400), (100_000, 200)])
def test_no_drift_exceeds_the_critical_value_in_at_most_5_percent_of_samples(
    n: int, runs: int
) -> None:
    """Same distribution on both sides: the critical value is the 95th percentile of PSI,
    so at most 5 % of runs (plus three binomial standard errors) may exceed it."""
    rng = np.random.default_rng(20260301 + n)
    over = 0
    for _ in range(runs):
        value, critical = drift_statistics(rng.normal(size=n), rng.normal(size=n))
        over += value > critical
    allowed = 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
    assert over / runs <= allowed, f"{over} of {runs} no-drift samples over the critical value"


def test_a_half_sigma_mean_shift_at_1000_rows_is_found() -> None:
    rng = np.random.default_rng(7)
    found, runs = 0, 200
    for _ in range(runs):
        value, critical = drift_statistics(rng.normal(size=1000), rng.normal(0.5, 1.0, 1000))
        found += value > 0.1 and value > critical
    assert found / runs >= 0.95


# ============================================================================
# Severity
# ============================================================================


def test_severity_exact_boundaries() -> None:
    assert severity_for_psi(0.0) == "ok"
    assert severity_for_psi(float(np.nextafter(0.1, 0.0))) == "ok"
    assert severity_for_psi(0.1) == "warn"
    assert severity_for_psi(float(np.nextafter(0.25, 0.0))) == "warn"
    assert severity_for_psi(0.25) == "fail"
    assert severity_for_psi(10.0) == "fail"
    assert severity_for_psi(float("nan")) == "insufficient_data"
    assert severity_for_psi(None) == "insufficient_data"
    assert severity_for_psi(0.2, warn=0.05, fail=0.2) == "fail"
    assert severity_for_psi(0.07, warn=0.05, fail=0.2) == "warn"
    with pytest.raises(ValueError):
        severity_for_psi(0.1, warn=0.3, fail=0.2)
