"""Schedules, timing, curvature helpers and label sampling."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ire_core import (
    IREConfig,
    blend,
    flat_fraction_at,
    hutchinson,
    is_active,
    is_refresh_step,
    kappa_at,
    sample_labels,
    squared,
)


def test_refresh_steps_are_start_plus_multiples_of_interval():
    steps = [t for t in range(30) if is_refresh_step(t, interval=7, start_step=4)]
    assert steps == [4, 11, 18, 25]
    assert [t for t in range(4) if is_refresh_step(t, 1, 0)] == [0, 1, 2, 3]


def test_timing_accepts_arrays():
    steps = np.arange(10)
    np.testing.assert_array_equal(is_refresh_step(steps, 3, 2), [t in (2, 5, 8) for t in range(10)])
    np.testing.assert_array_equal(is_active(steps, 5), steps >= 5)


def test_kappa_following_lr_needs_both_rates():
    config = IREConfig(kappa=3.0, kappa_follows_lr=True)
    assert kappa_at(config, 0, lr=0.5, peak_lr=1.0) == 1.5
    with pytest.raises(ValueError, match="peak lr"):
        kappa_at(config, 0, lr=0.5)
    with pytest.raises(ValueError, match="peak_lr"):
        kappa_at(config, 0, lr=0.5, peak_lr=0.0)


def test_flat_fraction_schedule_is_checked():
    with pytest.raises(ValueError, match="flat_fraction schedule value"):
        flat_fraction_at(IREConfig(flat_fraction=lambda t: 1.5), 0)


def test_blend_without_previous_and_with_zero_decay_is_the_magnitude():
    state, selection = blend(None, [np.array([-2.0, 3.0])], 0.0)
    np.testing.assert_array_equal(state[0], [2.0, 3.0])
    np.testing.assert_array_equal(selection[0], [2.0, 3.0])
    state, _ = blend([np.array([9.0, 9.0])], [np.array([-2.0, 3.0])], 0.0)
    np.testing.assert_array_equal(state[0], [2.0, 3.0])


def test_hutchinson_requires_a_probe():
    with pytest.raises(ValueError, match="probe"):
        hutchinson([], [])


def test_squared():
    np.testing.assert_array_equal(squared([np.array([-3.0])])[0], [9.0])


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**16), classes=st.integers(2, 6))
def test_sampled_labels_follow_the_softmax(seed, classes):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=classes) * 2
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    uniforms = (np.arange(4000) + 0.5) / 4000  # a uniform grid: the CDF is inverted exactly
    labels = sample_labels(np.tile(logits, (uniforms.size, 1)), uniforms)
    frequencies = np.bincount(labels, minlength=classes) / uniforms.size
    np.testing.assert_allclose(frequencies, probs, atol=1.5 / 4000 * classes)


def test_sampled_labels_are_valid_even_at_the_top_of_the_unit_interval():
    labels = sample_labels(np.zeros((2, 3)), np.array([0.0, 1.0 - 1e-17]))
    assert labels.tolist() == [0, 2]
