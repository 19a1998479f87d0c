"""ire_core run on Keras tensors (the keras.ops view used on TensorFlow, and
native arrays elsewhere) agrees with ire_core on NumPy, NaN, inf and ties
included, so the two paths cannot drift."""

import keras
import numpy as np
import pytest
from conftest import numpy

import ire_core
from ire_keras import _xp

RNG = np.random.default_rng(0)


def awkward_curvature(seed):
    rng = np.random.default_rng(seed)
    h = [rng.normal(size=(4, 5)), rng.normal(size=(7,)), rng.normal(size=(2, 1, 3))]
    h[0][0, 0] = np.nan
    h[1][2] = np.inf
    h[2][0, 0, 1] = -np.inf
    h[1][3] = h[0][1, 1]  # a tie
    h[1][4] = -h[0][1, 1]  # a tie after |·|
    h[2][1, 0, 2] = 0.0
    return [x.astype(np.float32) for x in h]


def views(arrays):
    """Both ways ire_keras hands tensors to ire_core."""
    tensors = [keras.ops.convert_to_tensor(a) for a in arrays]
    return {"keras_ops": [_xp.KerasArray(t) for t in tensors], "to_core": _xp.to_core(tensors)}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.77, 1.0])
def test_select_flat_mask_matches_numpy(seed, gamma):
    h = awkward_curvature(seed)
    previous = [RNG.random(x.shape) < 0.5 for x in h]
    expected = ire_core.select_flat_mask(h, gamma, previous=previous)
    for name, view in views(h).items():
        prev = views(previous)[name]
        # γ as a Python number and as a tensor (the traced path)
        gamma_tensor = _xp.to_core([keras.ops.convert_to_tensor(gamma, "float32")])[0]
        if name == "keras_ops":
            gamma_tensor = _xp.KerasArray(keras.ops.convert_to_tensor(gamma, "float32"))
        for g in (gamma, gamma_tensor):
            got = ire_core.select_flat_mask(view, g, previous=prev)
            for mine, theirs in zip(got.mask, expected.mask):
                np.testing.assert_array_equal(numpy(_xp.from_core(mine)), theirs)
            assert float(numpy(_xp.from_core(got.threshold))) == float(expected.threshold)
            assert int(numpy(_xp.from_core(got.flat_count))) == int(expected.flat_count)


def test_all_non_finite_keeps_previous_mask():
    h = [np.full((3,), np.nan, np.float32), np.array([np.inf, -np.inf], np.float32)]
    previous = [np.array([True, False, True]), np.array([False, True])]
    for name, view in views(h).items():
        prev = views(previous)[name]
        got = ire_core.select_flat_mask(view, 0.5, previous=prev)
        for mine, theirs in zip(got.mask, previous):
            np.testing.assert_array_equal(numpy(_xp.from_core(mine)), theirs)


@pytest.mark.parametrize("beta", [0.0, 0.9])
def test_blend_matches_numpy(beta):
    h = awkward_curvature(3)
    old = [np.abs(RNG.normal(size=x.shape)).astype(np.float32) for x in h]
    state, selection = ire_core.blend(old, h, beta)
    for name, view in views(h).items():
        old_view = views(old)[name]
        got_state, got_selection = ire_core.blend(old_view, view, beta)
        for a, b in zip(got_state + got_selection, state + selection):
            np.testing.assert_allclose(numpy(_xp.from_core(a)), b, rtol=1e-6)


def test_combination_sam_and_labels_match_numpy():
    moved, original = RNG.normal(size=(5,)), RNG.normal(size=(5,))
    mask = RNG.random(5) < 0.5
    expected = ire_core.amplify_displacement(moved, original, mask, 1.5)
    a, b, m = (_xp.KerasArray(keras.ops.convert_to_tensor(v)) for v in (moved, original, mask))
    got = ire_core.amplify_displacement(a, b, m, 1.5)
    np.testing.assert_allclose(numpy(_xp.from_core(got)), expected, rtol=1e-12)

    grads, params = [RNG.normal(size=(3, 2))], [RNG.normal(size=(3, 2))]
    for adaptive in (False, True):
        expected = ire_core.sam_perturbation(grads, params, 0.3, adaptive)
        got = ire_core.sam_perturbation(
            [_xp.KerasArray(keras.ops.convert_to_tensor(grads[0]))],
            [_xp.KerasArray(keras.ops.convert_to_tensor(params[0]))], 0.3, adaptive,
        )
        np.testing.assert_allclose(numpy(_xp.from_core(got[0])), expected[0], rtol=1e-10)

    logits, uniforms = RNG.normal(size=(6, 4)), RNG.random(6)
    expected = ire_core.sample_labels(logits, uniforms)
    got = ire_core.sample_labels(
        _xp.KerasArray(keras.ops.convert_to_tensor(logits)),
        _xp.KerasArray(keras.ops.convert_to_tensor(uniforms)),
    )
    np.testing.assert_array_equal(numpy(_xp.from_core(got)), expected)


def test_truth_value_of_a_wrapped_tensor_is_refused():
    with pytest.raises(TypeError, match="keras.ops.cond"):
        bool(_xp.KerasArray(keras.ops.convert_to_tensor(True)))


@pytest.mark.parametrize("shape", [(), (7,), (8,), (3, 5), (4, 8), (2, 3, 12)])
def test_count_true_equals_a_sum(shape):
    # Packed into words of four bools on TensorFlow and JAX where the last
    # axis allows it; a plain sum otherwise and on the other backends.
    mask = RNG.random(shape) < 0.4
    count = _xp.count_true(keras.ops.convert_to_tensor(mask))
    assert int(keras.ops.convert_to_numpy(count)) == int(mask.sum())
    stats = ire_core.mask_statistics(_xp.to_core([keras.ops.convert_to_tensor(mask)]))
    assert int(keras.ops.convert_to_numpy(_xp.from_core(stats.flat_count))) == int(mask.sum())
