"""The hook into the inner optimizer's writes (``ire_keras._inner_hooks``):
active on the installed Keras, refused where what it relies on is missing,
and the generic step then gives the same result."""

import keras
import numpy as np
import pytest
from conftest import BACKEND
from keras_helpers import dense_model, regression_data

import ire_keras
from ire_keras import _inner_hooks, fused

BUILT_INS = [keras.optimizers.SGD, keras.optimizers.Adam, keras.optimizers.AdamW,
             keras.optimizers.Lion, keras.optimizers.RMSprop]


@pytest.mark.parametrize("cls", BUILT_INS, ids=lambda cls: cls.__name__)
def test_the_hook_is_active_on_the_installed_keras(cls):
    # Fails on a Keras the hook was not checked against, or one whose base
    # optimizer renamed or re-shaped a method the hook replaces or calls:
    # the fused step would silently fall back to the generic one.
    low, high = _inner_hooks.KNOWN_KERAS
    assert low <= _inner_hooks.keras_version() < high, (
        f"Keras {keras.__version__} is outside {_inner_hooks.KNOWN_KERAS}: check that its "
        "optimizers still write through assign_add/assign_sub/_apply_weight_decay")
    assert _inner_hooks.hooks_supported(cls())
    variables = [keras.Variable(np.ones(3))]
    assert fused.supports_fused_step(cls(), variables) is (BACKEND == "tensorflow")


class _NoWriteMethods:
    """Not a Keras optimizer: none of the methods the hook needs."""


class _RenamedParameter(keras.optimizers.SGD):
    def assign_add(self, var, value):  # another parameter name than Keras's
        super().assign_add(var, value)


class _NoDecayHelper(keras.optimizers.SGD):
    _use_weight_decay = None


@pytest.mark.parametrize("make", [_NoWriteMethods, _RenamedParameter, _NoDecayHelper])
def test_detection_refuses_an_optimizer_without_the_expected_methods(make):
    assert not _inner_hooks.hooks_supported(make())


def test_detection_refuses_a_keras_outside_the_known_range(monkeypatch):
    monkeypatch.setattr(_inner_hooks, "keras_version", lambda: (99, 0))
    assert not _inner_hooks.hooks_supported(keras.optimizers.SGD())
    assert not fused.supports_fused_step(keras.optimizers.SGD(), [keras.Variable(np.ones(2))])


def test_detection_refuses_an_instance_whose_writes_are_already_replaced():
    inner = keras.optimizers.SGD()
    object.__setattr__(inner, "assign_add", lambda variable, value: None)
    assert not _inner_hooks.hooks_supported(inner)


def test_hooked_replaces_the_methods_for_the_step_and_restores_them():
    inner = keras.optimizers.SGD(0.1)
    weight = keras.Variable(np.ones(2))
    inner.build([weight])
    written = []
    with _inner_hooks.hooked(inner, assign_add=lambda v, x: written.append("add"),
                             assign_sub=lambda v, x: written.append("sub"),
                             apply_weight_decay=lambda variables: written.append("decay")):
        assert all(name in vars(inner) for name in _inner_hooks.HOOKED)
        inner.apply([keras.ops.ones(2)], [weight])
    assert not any(name in vars(inner) for name in _inner_hooks.HOOKED)
    assert "decay" in written
    if BACKEND == "torch":
        # Keras on torch writes the step with its own torch._foreach kernels,
        # which these methods do not see (why the fused step is TensorFlow's).
        assert "sub" not in written and "add" not in written
        np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), [0.9, 0.9])
    else:
        assert "sub" in written or "add" in written
        np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), [1.0, 1.0])  # all hooked


def _train(inner, steps=4):
    model = dense_model()
    x, y = regression_data()
    optimizer = ire_keras.IRE(inner, kappa=1.5, flat_fraction=0.5, interval=2, seed=0)
    model.compile(optimizer=optimizer, loss="mse")
    for _ in range(steps):
        model.train_on_batch(x, y)
    return model.get_weights()


@pytest.mark.parametrize("make", [lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
                                  lambda: keras.optimizers.SGD(0.05, momentum=0.9)],
                         ids=["adamw", "sgd-momentum"])
def test_a_refused_hook_takes_the_generic_step_with_the_same_result(make, monkeypatch, float64):
    taken = []
    original = fused.amplified_writes

    def counted(*args):
        taken.append(1)
        return original(*args)

    monkeypatch.setattr(fused, "amplified_writes", counted)
    hooked = _train(make())
    hooked_steps = len(taken)
    monkeypatch.setattr(_inner_hooks, "keras_version", lambda: (99, 0))
    generic = _train(make())
    assert (hooked_steps > 0) is (BACKEND == "tensorflow")  # counts traces of the step
    assert len(taken) == hooked_steps  # the refused run never entered the hook
    for a, b in zip(hooked, generic):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
