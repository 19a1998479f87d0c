"""ire_keras.IRE in model.compile/model.fit: equivalence with the NumPy
reference, identities, serialization, callbacks, accumulation, mixed
precision and errors."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, numpy
from keras_helpers import KerasAdamW, KerasSGD, dense_model, mse_grads, regression_data

import ire_core
import ire_keras
from ire_core.reference import ReferenceIRE

STEPS = 12
APPLY_STEPS = 7  # eager steps, one at a time: refreshes at 2 and 5


def reference_trajectory(base, config, x, y, params, steps, batches=1):
    opt = ReferenceIRE(base, config)
    state = opt.init(params)
    for _ in range(steps):
        grads = [np.mean(parts, axis=0) for parts in zip(
            *[mse_grads(params, xb, yb) for xb, yb in zip(np.split(x, batches), np.split(y, batches))]
        )]
        params, state = opt.step(params, grads, state)
    return params, state


def fit(model, x, y, steps, batch_size=None, **kwargs):
    model.fit(x, y, batch_size=batch_size or len(x), epochs=steps, shuffle=False, verbose=0, **kwargs)


ADAMW = dict(beta_1=0.875, beta_2=1 - 2**-10, epsilon=2**-20, weight_decay=0.0625)
CASES = {
    "sgd": (lambda: keras.optimizers.SGD(0.05), lambda: KerasSGD(0.05)),
    "momentum": (lambda: keras.optimizers.SGD(0.02, momentum=0.875),
                 lambda: KerasSGD(0.02, momentum=0.875)),
    "nesterov": (lambda: keras.optimizers.SGD(0.02, momentum=0.875, nesterov=True),
                 lambda: KerasSGD(0.02, momentum=0.875, nesterov=True)),
    # Hyperparameters exact in float32: Keras casts some of them through
    # float32 and others not, differently per backend.
    "adamw": (lambda: keras.optimizers.AdamW(0.01, **ADAMW), lambda: KerasAdamW(0.01, **ADAMW)),
}


def _apply_case(base):
    """A model, IRE around ``base`` for its weights, and the NumPy reference
    from the same start: ``(model, optimizer, reference, params, state)``."""
    keras_base, numpy_base = CASES[base]
    config = dict(kappa=1.5, flat_fraction=0.4, interval=3, ema=0.5, start_step=2)
    model = dense_model()
    params = [w.copy() for w in model.get_weights()]
    reference = ReferenceIRE(numpy_base(), ire_core.IREConfig(**config))
    return model, ire_keras.IRE(keras_base(), **config), reference, params, reference.init(params)


@pytest.mark.parametrize("base", ["nesterov", "adamw"])
def test_apply_matches_reference_float64(float64, base):
    # The same gradients fed to both, step by step: IRE's own arithmetic.
    x, y = regression_data()
    model, optimizer, reference, params, state = _apply_case(base)
    weights = model.trainable_variables
    for _ in range(APPLY_STEPS):
        grads = mse_grads([numpy(w) for w in weights], x, y)
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], weights)
        params, state = reference.step(params, mse_grads(params, x, y), state)
        for got, want in zip(weights, params):
            np.testing.assert_allclose(numpy(got), want, rtol=1e-12, atol=1e-14)
    for mask, want in zip(optimizer.flat_masks, state.mask):
        np.testing.assert_array_equal(numpy(mask), want)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function is TensorFlow's")
def test_apply_inside_a_users_tf_function_matches_reference_float64(float64, caplog):
    # A custom training loop compiles apply with AutoGraph on: it must run the
    # step as written, without AutoGraph's "could not transform" warnings.
    import tensorflow as tf

    x, y = regression_data()
    model, optimizer, reference, params, state = _apply_case("adamw")
    weights = model.trainable_variables

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = keras.ops.mean((model(x) - y) ** 2)
        optimizer.apply(tape.gradient(loss, weights), weights)

    with caplog.at_level("WARNING", logger="tensorflow"):
        for _ in range(APPLY_STEPS):
            train_step()
            params, state = reference.step(params, mse_grads(params, x, y), state)
    assert not [r for r in caplog.records if "AutoGraph" in r.getMessage()]
    for got, want in zip(weights, params):
        np.testing.assert_allclose(numpy(got), want, rtol=1e-10, atol=1e-12)
    for mask, want in zip(optimizer.flat_masks, state.mask):
        np.testing.assert_array_equal(numpy(mask), want)
    assert int(numpy(optimizer.refresh_count)) == state.refreshes


# Keras's fit path computes the "mse" gradient float64-exactly on TensorFlow
# only; on JAX and torch it differs from the exact one by about 1e-7
# relative (the direct-apply test above checks IRE's arithmetic to 1e-12).
FIT_RTOL = 1e-10 if BACKEND == "tensorflow" else 1e-5


@pytest.mark.parametrize("base", sorted(CASES))
def test_fit_matches_reference_float64(float64, base):
    keras_base, numpy_base = CASES[base]
    config = dict(kappa=1.5, flat_fraction=0.4, interval=3, ema=0.5, start_step=2)
    x, y = regression_data()
    model = dense_model()
    params = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=ire_keras.IRE(keras_base(), **config), loss="mse")
    fit(model, x, y, STEPS)
    expected, state = reference_trajectory(numpy_base(), ire_core.IREConfig(**config), x, y, params, STEPS)
    for got, want in zip(model.get_weights(), expected):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=FIT_RTOL, atol=1e-12)
    optimizer = model.optimizer
    for mask, want in zip(optimizer.flat_masks, state.mask):
        np.testing.assert_array_equal(numpy(mask), want)
    assert int(numpy(optimizer.refresh_count)) == state.refreshes == 4
    assert float(numpy(optimizer.mask_flat_fraction)) == pytest.approx(6 / 15)


@pytest.mark.skipif(BACKEND != "tensorflow", reason=(
    "fit's gradient is float64-exact on TensorFlow only; elsewhere its 1e-7 error "
    "flips near-ties among 5k coordinates"))
@pytest.mark.parametrize("base, ema", [("adamw", 0.0), ("momentum", 0.5)])
def test_fit_past_the_sorting_size_matches_reference_float64(float64, base, ema, monkeypatch):
    # 5,184 coordinates: τ comes from the histograms, inside the compiled
    # step's refresh branch.
    from ire_keras import selection

    ranked = []
    kth_smallest = selection._kth_by_histograms
    monkeypatch.setattr(selection, "_kth_by_histograms",
                        lambda *a: ranked.append(1) or kth_smallest(*a))
    keras_base, numpy_base = CASES[base]
    config = dict(kappa=1.5, flat_fraction=0.4, interval=3, ema=ema, start_step=2)
    x, y = regression_data(n=16, features=80, outputs=64)
    model = dense_model(features=80, outputs=64)
    params = [w.copy() for w in model.get_weights()]
    assert sum(p.size for p in params) > selection.SAMPLE_SIZE
    model.compile(optimizer=ire_keras.IRE(keras_base(), **config), loss="mse")
    fit(model, x, y, STEPS)
    expected, state = reference_trajectory(numpy_base(), ire_core.IREConfig(**config), x, y, params, STEPS)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=FIT_RTOL, atol=1e-12)
    for mask, want in zip(model.optimizer.flat_masks, state.mask):
        np.testing.assert_array_equal(numpy(mask), want)
    assert ranked


@pytest.mark.skipif(BACKEND == "torch", reason="Keras on torch ranks with ire_torch, eagerly")
def test_a_refresh_over_g_equals_the_refresh_over_g_squared(float64, monkeypatch):
    # Where τ is searched (XLA; JAX), a large model's "gradient" refresh
    # ranks |g| and never holds g² in full: the same masks, bit for bit.
    from ire_keras import refresh, selection

    calls = []
    of_squares = selection.exact_threshold_of_squares
    monkeypatch.setattr(selection, "exact_threshold_of_squares",
                        lambda *a: calls.append(1) or of_squares(*a))

    def trained(min_size):
        monkeypatch.setattr(refresh, "SQUARES_MIN_SIZE", min_size)
        x, y = regression_data(n=16, features=80, outputs=64)
        model = dense_model(features=80, outputs=64)
        model.compile(optimizer=ire_keras.IRE(CASES["adamw"][0](), kappa=1.5, flat_fraction=0.4,
                                              interval=3, start_step=2),
                      loss="mse", jit_compile=True)
        fit(model, x, y, STEPS)
        return model

    over_g = trained(0)
    searched = len(calls)
    over_squares = trained(1 << 62)
    assert searched > 0 and len(calls) == searched
    for a, b in zip(over_g.get_weights(), over_squares.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(over_g.optimizer.flat_masks, over_squares.optimizer.flat_masks):
        np.testing.assert_array_equal(numpy(a), numpy(b))
    assert numpy(over_g.optimizer.mask_threshold) == numpy(over_squares.optimizer.mask_threshold)
    assert int(numpy(over_g.optimizer.refresh_count)) == 4


def test_apply_matches_reference_float32_with_schedules():
    config = dict(kappa=lambda t: 0.5 + 0.1 * t, flat_fraction=lambda t: 0.2 + 0.05 * t,
                  interval=2)
    x, y = regression_data()
    model = dense_model()
    params = [w.astype(np.float64) for w in model.get_weights()]
    weights = model.trainable_variables
    optimizer = ire_keras.IRE(keras.optimizers.SGD(0.05), **config)
    reference = ReferenceIRE(KerasSGD(0.05), ire_core.IREConfig(**config))
    state = reference.init(params)
    for _ in range(APPLY_STEPS):
        grads = mse_grads(params, x, y)
        optimizer.apply([keras.ops.convert_to_tensor(g.astype("float32")) for g in grads], weights)
        params, state = reference.step(params, grads, state)
    for got, want in zip(weights, params):
        assert numpy(got).dtype == np.float32
        np.testing.assert_allclose(numpy(got), want, rtol=1e-5, atol=1e-6)
    for mask, want in zip(optimizer.flat_masks, state.mask):
        np.testing.assert_array_equal(numpy(mask), want)
    assert int(numpy(optimizer.mask_flat_count)) == int((0.2 + 0.05 * 6) * 15)


@pytest.mark.parametrize("identity", [dict(kappa=0.0), dict(flat_fraction=0.0),
                                      dict(start_step=STEPS + 1)])
def test_identities_are_bitwise_the_inner_optimizer(identity):
    x, y = regression_data()
    config = dict(dict(kappa=2.0, flat_fraction=0.6, interval=2), **identity)
    plain, wrapped = dense_model(), dense_model()
    plain.compile(optimizer=keras.optimizers.AdamW(0.01), loss="mse")
    wrapped.compile(optimizer=ire_keras.IRE(keras.optimizers.AdamW(0.01), **config), loss="mse")
    fit(plain, x, y, STEPS)
    fit(wrapped, x, y, STEPS)
    for a, b in zip(plain.get_weights(), wrapped.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_amplifies_flat_weights_only():
    # One step of SGD from the same point: flat coordinates move (1 + κ)
    # times as far, the others exactly as far.
    x, y = regression_data()
    plain, wrapped = dense_model(), dense_model()
    start = [w.copy() for w in plain.get_weights()]
    plain.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    wrapped.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.05), kappa=2.0,
                                            flat_fraction=0.4), loss="mse")
    fit(plain, x, y, 1)
    fit(wrapped, x, y, 1)
    for p0, p, q, mask in zip(start, plain.get_weights(), wrapped.get_weights(),
                              wrapped.optimizer.flat_masks):
        mask = numpy(mask)
        np.testing.assert_allclose((q - p0)[mask], 3.0 * (p - p0)[mask], rtol=1e-5)
        np.testing.assert_array_equal(q[~mask], p[~mask])
    assert numpy(wrapped.optimizer.mask_flat_count) == int(0.4 * 15)


def test_save_load_and_continue_identically(tmp_path):
    x, y = regression_data()
    model = dense_model()
    model.compile(optimizer=ire_keras.IRE(keras.optimizers.Adam(0.01), kappa=1.0,
                                          flat_fraction=0.5, interval=3, ema=0.9, seed=7),
                  loss="mse")
    fit(model, x, y, 4)
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.optimizer, ire_keras.IRE)
    assert isinstance(restored.optimizer.inner_optimizer, keras.optimizers.Adam)
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    assert len(restored.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(model.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(numpy(a), numpy(b))
    fit(model, x, y, 5)
    fit(restored, x, y, 5)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(numpy(restored.optimizer.iterations)) == 9
    assert int(numpy(restored.optimizer.refresh_count)) == 3


def test_config_round_trip():
    optimizer = ire_keras.IRE(keras.optimizers.SGD(0.1, momentum=0.5), kappa=3.0,
                              flat_fraction=0.25, interval=4, ema=0.5, start_step=2,
                              estimator="hutchinson", num_probes=2, kappa_follows_lr=True,
                              peak_learning_rate=0.2, rho=0.05, adaptive=True, seed=3)
    clone = ire_keras.IRE.from_config(optimizer.get_config())
    assert clone.get_config() == optimizer.get_config()
    assert clone.inner_optimizer.get_config()["momentum"] == 0.5
    assert clone.ire_config == optimizer.ire_config
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, ire_keras.IRE) and again.num_probes == 2


def test_learning_rate_callbacks_reach_the_inner_optimizer():
    x, y = regression_data()
    model = dense_model()
    optimizer = ire_keras.IRE(keras.optimizers.SGD(0.05), kappa=1.0)
    model.compile(optimizer=optimizer, loss="mse")
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.05 / (epoch + 1))
    fit(model, x, y, 4, callbacks=[schedule])
    assert float(numpy(optimizer.inner_optimizer.learning_rate)) == pytest.approx(0.05 / 4)
    assert float(numpy(optimizer.learning_rate)) == pytest.approx(0.05 / 4)

    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0,
                                                min_delta=1e9)
    fit(model, x, y, 2, callbacks=[plateau])
    assert float(numpy(optimizer.inner_optimizer.learning_rate)) == pytest.approx(0.05 / 8)
    optimizer.learning_rate = 0.3
    assert float(numpy(optimizer.inner_optimizer.learning_rate)) == pytest.approx(0.3)


def test_kappa_follows_lr():
    # κ_t = κ·lr_t/peak: halving the rate halves the amplification.
    x, y = regression_data()
    models = []
    for lr in (0.05, 0.025):
        model = dense_model()
        model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(lr), kappa=2.0,
                                              flat_fraction=0.5, kappa_follows_lr=True,
                                              peak_learning_rate=0.05), loss="mse")
        models.append(model)
    start = dense_model().get_weights()
    for model in models:
        fit(model, x, y, 1)
    for i, mask in enumerate(models[0].optimizer.flat_masks):
        mask = numpy(mask)
        fast = models[0].get_weights()[i] - start[i]
        slow = models[1].get_weights()[i] - start[i]
        # flat: (1 + 2)·0.05·g against (1 + 1)·0.025·g; others: 0.05·g against 0.025·g
        np.testing.assert_allclose(fast[mask], 3.0 * slow[mask], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(fast[~mask], 2.0 * slow[~mask], rtol=1e-4, atol=1e-7)


def test_gradient_accumulation_counts_optimizer_steps(float64):
    # Two micro-batches per step: the reference steps on their mean gradient.
    x, y = regression_data()
    config = dict(kappa=1.0, flat_fraction=0.5, interval=2)
    model = dense_model()
    params = [w.copy() for w in model.get_weights()]
    inner = keras.optimizers.SGD(0.05, gradient_accumulation_steps=2)
    model.compile(optimizer=ire_keras.IRE(inner, **config), loss="mse")
    fit(model, x, y, 6, batch_size=len(x) // 2)
    expected, state = reference_trajectory(KerasSGD(0.05), ire_core.IREConfig(**config), x, y,
                                           params, 6, batches=2)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=FIT_RTOL)
    assert int(numpy(model.optimizer.iterations)) == 6
    assert int(numpy(model.optimizer.refresh_count)) == state.refreshes == 3


def test_mixed_float16_wraps_ire_in_loss_scaling(mixed_float16):
    x, y = regression_data()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(3)])
    model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.05), kappa=1.0, interval=2),
                  loss="mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    ire = ire_keras.find_ire(model.optimizer)
    assert int(numpy(ire.iterations)) == 4
    assert int(numpy(ire.refresh_count)) == 2
    assert float(numpy(ire.mask_flat_fraction)) == pytest.approx(0.6, abs=0.02)


def test_non_finite_steps_leave_curvature_untouched():
    weights = [keras.Variable(np.ones((2, 3)), dtype="float32"), keras.Variable(np.ones(3), dtype="float32")]
    ire = ire_keras.IRE(keras.optimizers.SGD(0.1), kappa=1.0, flat_fraction=0.5, interval=1,
                        ema=0.5)
    ire.apply([keras.ops.ones((2, 3)) * 0.5, keras.ops.ones(3) * 2.0], weights)
    averages = [numpy(a).copy() for a in ire.curvature_averages]
    masks = [numpy(m).copy() for m in ire.flat_masks]
    # Skipped by loss scaling: IRE never sees the step.
    scaled = keras.optimizers.LossScaleOptimizer(ire)
    nan_grads = [keras.ops.full((2, 3), np.nan), keras.ops.ones(3)]
    if BACKEND == "jax":  # Keras's loss scaling runs statelessly on JAX
        scaled.build(weights)
        _, values = scaled.stateless_apply([v.value for v in scaled.variables], nan_grads,
                                           [w.value for w in weights])
        for variable, value in zip(scaled.variables, values):
            variable.assign(value)
    else:
        scaled.apply(nan_grads, weights)
    assert int(numpy(ire.iterations)) == 1
    # Seen by IRE: a NaN estimate never enters the state or turns a weight flat.
    ire.apply([keras.ops.full((2, 3), np.nan), keras.ops.full((3,), np.inf)], weights)
    for a, b in zip(ire.curvature_averages, averages):
        np.testing.assert_array_equal(numpy(a), b)
    for a, b in zip(ire.flat_masks, masks):
        np.testing.assert_array_equal(numpy(a), b)


def test_explicit_curvature_and_callable_estimator():
    weights = [keras.Variable([1.0, 1.0, 1.0, 1.0])]
    ire = ire_keras.IRE(keras.optimizers.SGD(0.1), kappa=1.0, flat_fraction=0.5,
                        estimator="exact", interval=1)
    ire.apply([keras.ops.ones(4)], weights, curvature=[keras.ops.convert_to_tensor([4.0, 1.0, 3.0, 2.0])])
    np.testing.assert_allclose(numpy(weights[0]), [0.9, 0.8, 0.9, 0.8])
    assert float(numpy(ire.mask_threshold)) == 2.0

    def diagonal(values):
        return [keras.ops.abs(values[0])]
    weights = [keras.Variable([1.0, -3.0, 0.5, 2.0])]
    ire = ire_keras.IRE(keras.optimizers.SGD(0.1), kappa=1.0, flat_fraction=0.5,
                        estimator=diagonal, interval=1)
    ire.apply([keras.ops.ones(4)], weights)
    np.testing.assert_array_equal(numpy(ire.flat_masks[0]), [True, False, True, False])


def test_frozen_weights_are_skipped():
    a, b = keras.Variable([1.0, 2.0]), keras.Variable([3.0])
    ire = ire_keras.IRE(keras.optimizers.SGD(0.1), kappa=1.0, flat_fraction=0.5, interval=1)
    with pytest.warns(UserWarning, match="Gradients do not exist"):  # the inner optimizer's
        ire.apply([keras.ops.convert_to_tensor([1.0, 3.0]), None], [a, b])
    np.testing.assert_allclose(numpy(a), [0.8, 1.7])
    np.testing.assert_array_equal(numpy(b), [3.0])
    assert int(numpy(ire.mask_flat_count)) == 1


@pytest.mark.skipif(BACKEND != "jax", reason="stateless_apply is the JAX path")
def test_stateless_apply_under_jit():
    import jax

    weights = [keras.Variable(np.ones((3,)), dtype="float32")]
    ire = ire_keras.IRE(keras.optimizers.Adam(0.1), kappa=1.0, flat_fraction=0.34, interval=2)
    ire.build(weights)

    @jax.jit
    def step(optimizer_values, grads, weight_values):
        return ire.stateless_apply(optimizer_values, grads, weight_values)

    optimizer_values = [v.value for v in ire.variables]
    weight_values = [w.value for w in weights]
    for _ in range(3):
        weight_values, optimizer_values = step(
            optimizer_values, [jax.numpy.array([1.0, 2.0, 3.0])], weight_values)
    refreshes = dict(zip([v.path for v in ire.variables], optimizer_values))
    assert int(refreshes[ire.refresh_count.path]) == 2
    assert numpy(weights[0]).tolist() == [1.0, 1.0, 1.0]  # stateless: untouched


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(kappa=-1.0), ValueError, "kappa"),
        (dict(flat_fraction=1.5), ValueError, "flat_fraction"),
        (dict(interval=0), ValueError, "interval"),
        (dict(ema=1.0), ValueError, "ema"),
        (dict(estimator="newton"), ValueError, "estimator"),
        (dict(num_probes=0), ValueError, "num_probes"),
        (dict(seed=-3), ValueError, "seed"),
        (dict(peak_learning_rate=0.0), ValueError, "peak_learning_rate"),
        (dict(learning_rate=0.1), ValueError, "inner_optimizer"),
        (dict(gradient_accumulation_steps=2), ValueError, "gradient_accumulation_steps"),
        (dict(momentum=0.875), ValueError, "momentum"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        ire_keras.IRE(keras.optimizers.SGD(0.1), **kwargs)


def test_inner_optimizer_must_be_a_keras_optimizer():
    with pytest.raises(TypeError, match="inner_optimizer"):
        ire_keras.IRE("adam")


def test_loss_based_estimator_without_train_step_is_explained():
    x, y = regression_data()
    model = dense_model()
    model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.1), estimator="hutchinson"),
                  loss="mse")
    with pytest.raises(ValueError, match="IRETrainStep"):
        fit(model, x, y, 1)
