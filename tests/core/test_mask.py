"""The flat-mask rule (docs/algorithm.md, The flat rule): count, ties, non-finite
values, scale."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ire_core import exact_threshold, flat_count, mask_statistics, select_flat_mask


def split(values, sizes):
    out, start = [], 0
    for size in sizes:
        out.append(np.asarray(values[start : start + size], dtype=np.float64))
        start += size
    return out


def flat_indices(mask):
    return np.flatnonzero(np.concatenate([m.ravel() for m in mask]))


finite_values = hnp.arrays(
    np.float64,
    st.integers(1, 60),
    elements=st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
)


@settings(max_examples=200, deadline=None)
@given(values=finite_values, gamma=st.floats(0, 1), cut=st.integers(0, 60))
def test_count_equals_number_at_or_below_the_kth_smallest(values, gamma, cut):
    cut = min(cut, values.size)
    curvature = [values[:cut], values[cut:]] if 0 < cut < values.size else [values]
    result = select_flat_mask(curvature, gamma)
    k = flat_count(gamma, values.size)
    flat = flat_indices(result.mask)
    if k == 0:
        assert flat.size == 0
        return
    tau = np.sort(values)[k - 1]
    assert float(result.threshold) == tau
    np.testing.assert_array_equal(flat, np.flatnonzero(values <= tau))
    assert int(result.flat_count) == flat.size >= k


@settings(max_examples=100, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(0, 1e3), unique=True),
    gamma=st.floats(0, 1),
)
def test_without_ties_exactly_floor_gamma_n_are_flat(values, gamma):
    result = select_flat_mask([values], gamma)
    assert int(result.flat_count) == flat_count(gamma, values.size)


@settings(max_examples=100, deadline=None)
@given(values=finite_values, gamma=st.floats(0, 1), scale=st.floats(1e-3, 1e3))
def test_mask_is_invariant_to_positive_scaling(values, gamma, scale):
    base = select_flat_mask([values], gamma).mask[0]
    scaled = select_flat_mask([values * scale], gamma).mask[0]
    # Scaling can merge values that were distinct only in the last bit.
    if np.unique(values).size == np.unique(values * scale).size:
        np.testing.assert_array_equal(base, scaled)


def test_ties_at_the_threshold_are_all_flat():
    mask = select_flat_mask([np.array([1.0, 2.0, 2.0, 2.0, 5.0])], 0.4).mask[0]
    assert mask.tolist() == [True, True, True, True, False]


def test_selection_is_global_across_tensors():
    sharp = np.full(4, 10.0)
    flat = np.full(4, 0.1)
    mask = select_flat_mask([sharp, flat], 0.5).mask
    assert not mask[0].any() and mask[1].all()


def test_gamma_zero_marks_nothing_and_gamma_one_marks_all_finite():
    values = [np.array([0.0, 1.0, np.inf]), np.array([[np.nan, 3.0]])]
    assert not any(m.any() for m in select_flat_mask(values, 0.0).mask)
    full = select_flat_mask(values, 1.0).mask
    assert full[0].tolist() == [True, True, False] and full[1].tolist() == [[False, True]]


def test_non_finite_values_are_never_flat():
    values = np.array([np.nan, -np.inf, np.inf, 1.0, 2.0])
    mask = select_flat_mask([values], 0.8).mask[0]
    assert mask.tolist() == [False, False, False, True, True]


def test_negative_estimates_rank_by_magnitude():
    mask = select_flat_mask([np.array([-0.1, 5.0, -7.0, 0.2])], 0.5).mask[0]
    assert mask.tolist() == [True, False, False, True]


def test_the_curvature_passed_in_is_never_written_to():
    clean = np.array([0.3, 0.0, 2.0, np.inf])
    signed = np.array([[np.nan, -1.0], [0.5, -np.inf]])
    originals = [clean.copy(), signed.copy()]
    mask = select_flat_mask([clean, signed], 0.5).mask
    assert [m.tolist() for m in mask] == [[True, True, False, False], [[False, True], [True, False]]]
    for passed, original in zip([clean, signed], originals):
        np.testing.assert_array_equal(passed, original)


def test_all_non_finite_keeps_the_previous_mask():
    previous = [np.array([True, False, True])]
    values = [np.array([np.nan, np.inf, -np.inf])]
    result = select_flat_mask(values, 0.5, previous=previous)
    assert result.mask[0].tolist() == [True, False, True]
    assert not select_flat_mask(values, 0.5).mask[0].any()


def test_a_single_coordinate():
    assert select_flat_mask([np.array([3.0])], 0.99).mask[0].tolist() == [False]
    assert select_flat_mask([np.array([3.0])], 1.0).mask[0].tolist() == [True]


def test_scalar_and_array_flat_fraction_agree():
    rng = np.random.default_rng(0)
    values = [rng.random(7), rng.random((3, 4))]
    for gamma in (0.0, 0.1, 0.29, 0.5, 1.0):
        a = select_flat_mask(values, gamma)
        b = select_flat_mask(values, np.asarray(gamma))
        for x, y in zip(a.mask, b.mask):
            np.testing.assert_array_equal(x, y)
        assert float(a.threshold) == float(b.threshold)


def test_flat_count_rounds_like_arithmetic_by_hand():
    assert flat_count(0.29, 100) == 29
    assert flat_count(0.6, 10) == 6
    assert flat_count(1.0, 7) == 7
    assert flat_count(0.5, 3) == 1
    assert int(flat_count(np.float32(0.29), 100)) == 29


def test_half_precision_estimates_are_ranked_in_float32():
    values = [np.array([1.0, 2.0], dtype=np.float16), np.array([0.5], dtype=np.float32)]
    result = select_flat_mask(values, 2 / 3)
    assert result.threshold.dtype == np.float32
    assert [m.tolist() for m in result.mask] == [[True, False], [True]]


def test_empty_curvature_is_an_error():
    with pytest.raises(ValueError, match="curvatures"):
        select_flat_mask([], 0.5)


def test_exact_threshold_is_the_kth_smallest():
    values = [np.array([5.0, 1.0]), np.array([3.0])]
    assert float(exact_threshold(values, 2)) == 3.0
    assert math.isinf(float(exact_threshold(values, 0)))


def test_custom_threshold_function_is_used():
    result = select_flat_mask([np.array([1.0, 2.0, 3.0])], 0.5, threshold_fn=lambda v, k: 2.5)
    assert result.mask[0].tolist() == [True, True, False]


def test_mask_statistics():
    stats = mask_statistics([np.array([True, False, False, False]), np.ones((2, 2), bool)])
    assert int(stats.flat_count) == 5 and stats.total == 8
    assert float(stats.flat_fraction) == pytest.approx(5 / 8)
    assert [float(f) for f in stats.per_tensor] == [0.25, 1.0]
