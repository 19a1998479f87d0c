"""ire_keras.refresh: the exact threshold each backend ranks with, and a
refresh's mask against the NumPy reference."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, numpy

import ire_core
import ire_keras
from ire_keras import refresh, selection

# Shapes past ire_torch's kthvalue size, so its own search ranks them.
SHAPES = [(300, 400), (513,), (64, 64)]


def test_threshold_fn_is_the_backends_own():
    if BACKEND == "torch":
        import ire_torch.selection

        expected = ire_torch.selection.exact_threshold
    else:
        expected = selection.exact_threshold
    assert refresh.threshold_fn() is expected


def _curvature(dtype, seed=0):
    """Signed estimates with ties, NaN and ±inf, one array per shape."""
    rng = np.random.default_rng(seed)
    arrays = []
    for shape in SHAPES:
        values = rng.standard_normal(shape) ** 3
        flat = values.reshape(-1)
        flat[::7] = np.round(flat[::7], 1)  # many ties
        flat[3::101] = np.nan
        flat[5::211] = np.inf
        flat[6::307] = -np.inf
        arrays.append(values.astype(dtype))
    return arrays


@pytest.mark.skipif(BACKEND != "torch", reason="the torch backend ranks with ire_torch")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("schedule", [False, True])
def test_a_torch_refresh_ranks_with_ire_torch_and_matches_numpy(dtype, schedule, monkeypatch):
    import torch

    import ire_torch.selection

    ranked = []
    search = ire_torch.selection.exact_threshold
    monkeypatch.setattr(ire_torch.selection, "exact_threshold",
                        lambda values, k: ranked.append([type(v) for v in values])
                        or search(values, k))
    gamma = 0.37
    curvature = _curvature(dtype)
    weights = [keras.Variable(np.zeros(shape, "float32")) for shape in SHAPES]
    optimizer = ire_keras.IRE(keras.optimizers.SGD(0.1), kappa=1.0, estimator="exact",
                              flat_fraction=(lambda t: gamma + 0.0 * t) if schedule else gamma)
    optimizer.apply([keras.ops.zeros(shape) for shape in SHAPES], weights,
                    curvature=[keras.ops.convert_to_tensor(h) for h in curvature])

    expected = ire_core.select_flat_mask([h.copy() for h in curvature], gamma)
    assert ranked and all(kind is torch.Tensor for call in ranked for kind in call)
    assert int(numpy(optimizer.refresh_count)) == 1
    for mask, want in zip(optimizer.flat_masks, expected.mask):
        np.testing.assert_array_equal(numpy(mask), want)
    assert int(numpy(optimizer.mask_flat_count)) == int(expected.flat_count)
    assert numpy(optimizer.mask_threshold) == np.float32(expected.threshold)
