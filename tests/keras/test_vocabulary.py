"""The names ire_keras shares with ire_torch and ire_jax, and the deprecated
aliases kept for one release."""

import keras
import numpy as np
import pytest
from conftest import BACKEND

import ire_core
import ire_keras
from ire_keras import fused


def _optimizer(**settings):
    return ire_keras.IRE(keras.optimizers.SGD(0.1), flat_fraction=0.5, **settings)


def test_refresh_due_is_a_property_following_the_core_timing():
    weight = keras.Variable(np.ones(4))
    opt = _optimizer(interval=2, start_step=1)
    opt.build([weight])
    due = []
    for _ in range(6):
        due.append(bool(keras.ops.convert_to_numpy(opt.refresh_due)))
        opt.apply([keras.ops.ones(4)], [weight])
    assert due == [bool(ire_core.is_refresh_step(t, 2, 1)) for t in range(6)]
    assert due == [False, True, False, True, False, True]


def test_mask_stats_returns_the_core_type():
    weights = [keras.Variable(np.ones((2, 3))), keras.Variable(np.ones(2))]
    opt = _optimizer()
    assert opt.mask_stats() is None  # not built
    grads = [keras.ops.reshape(keras.ops.arange(6.0), (2, 3)),
             keras.ops.convert_to_tensor([0.5, 9.0])]
    opt.apply(grads, weights)
    stats = opt.mask_stats()
    assert type(stats) is ire_core.MaskStats
    assert int(keras.ops.convert_to_numpy(stats.flat_count)) == 4 and stats.total == 8
    assert float(keras.ops.convert_to_numpy(stats.flat_fraction)) == 0.5
    assert float(keras.ops.convert_to_numpy(stats.threshold)) == pytest.approx(4.0)
    assert [float(keras.ops.convert_to_numpy(f)) for f in stats.per_tensor] == [0.5, 0.5]
    assert stats.shapes == [(2, 3), (2,)] and stats.step is None
    assert int(keras.ops.convert_to_numpy(stats.flat_count)) == int(
        keras.ops.convert_to_numpy(opt.mask_flat_count))


def test_is_refresh_step_is_a_deprecated_alias_of_refresh_due():
    weight = keras.Variable(np.ones(2))
    opt = _optimizer(interval=3)
    opt.build([weight])
    for _ in range(2):
        with pytest.warns(DeprecationWarning, match="refresh_due"):
            old = opt.is_refresh_step()
        assert bool(keras.ops.convert_to_numpy(old)) == bool(
            keras.ops.convert_to_numpy(opt.refresh_due))
        opt.apply([keras.ops.ones(2)], [weight])


def test_fused_supported_is_a_deprecated_alias_of_supports_fused_step():
    variables = [keras.Variable(np.ones(2))]
    with pytest.warns(DeprecationWarning, match="supports_fused_step"):
        old = fused.fused_supported(keras.optimizers.Adam(), variables)
    assert old is fused.supports_fused_step(keras.optimizers.Adam(), variables)
    assert old is (BACKEND == "tensorflow")
