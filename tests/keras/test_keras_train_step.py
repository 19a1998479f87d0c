"""Estimators that need the loss (Fisher, Hutchinson), SAM-IRE and the
IRETrainStep mixin that feeds them to IRE during fit."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, numpy
from keras_helpers import KerasSGD, dense_model, mse_grads, regression_data

import ire_core
import ire_keras
from ire_core.reference import ReferenceIRE
from ire_keras import autodiff, estimators

# Keras's float64 ops are exact on TensorFlow; on JAX and torch some of them
# (keras.ops.matmul on torch, for one) differ by ~1e-7 relative.
FIT_RTOL = 1e-10 if BACKEND == "tensorflow" else 1e-5


class Net(ire_keras.IRETrainStep, keras.Sequential):
    pass


def test_value_and_grad_and_hessian_vector_product(float64):
    def loss(w):
        return keras.ops.sum(w[0] ** 3) + keras.ops.sum(w[0]) * keras.ops.sum(w[1] ** 2)

    w = [keras.ops.convert_to_tensor([1.0, 2.0]), keras.ops.convert_to_tensor([3.0])]
    value, grads = autodiff.value_and_grad(loss, w)
    assert float(numpy(value)) == pytest.approx(9.0 + 3.0 * 9.0)
    np.testing.assert_allclose(numpy(grads[0]), [3 + 9, 12 + 9])
    np.testing.assert_allclose(numpy(grads[1]), [2 * 3 * 3])
    # H = [[6, 0, 6], [0, 12, 6], [6, 6, 6]] for (w0, w1, v)
    hv = autodiff.hessian_vector_product(loss, w, [keras.ops.ones((2,)), keras.ops.ones((1,))])
    np.testing.assert_allclose(numpy(hv[0]), [12.0, 18.0])
    np.testing.assert_allclose(numpy(hv[1]), [18.0])


def test_hutchinson_is_exact_for_a_diagonal_hessian(float64):
    h = np.array([0.5, 4.0, 2.0, 0.1])

    def loss(w):
        return 0.5 * keras.ops.sum(keras.ops.convert_to_tensor(h) * w[0] ** 2)

    w = [keras.ops.convert_to_tensor(np.ones(4))]
    probes = estimators.rademacher_probes(w, num_probes=3, seed=keras.random.SeedGenerator(1))
    assert {float(v) for p in probes for v in numpy(p[0])} <= {-1.0, 1.0}
    np.testing.assert_allclose(numpy(estimators.hutchinson_estimate(loss, w, probes)[0]), h)


def test_fisher_estimate_matches_numpy_with_explicit_draws(float64):
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(6, 3)), rng.normal(size=(3, 4)), rng.normal(size=(4,))
    uniforms = rng.random(6)

    def logits_fn(params):
        return keras.ops.matmul(keras.ops.convert_to_tensor(x), params[0]) + params[1]

    got = estimators.fisher_estimate(logits_fn, [keras.ops.convert_to_tensor(w),
                                                 keras.ops.convert_to_tensor(b)],
                                     keras.ops.convert_to_tensor(uniforms))
    logits = x @ w + b
    labels = ire_core.sample_labels(logits, uniforms)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    dlogits = (probs - np.eye(4)[labels]) / 6
    expected = ire_core.squared([x.T @ dlogits, dlogits.sum(0)])
    for a, e in zip(got, expected):
        np.testing.assert_allclose(numpy(a), e, rtol=FIT_RTOL)


def test_fisher_from_probabilities_equals_from_logits(float64):
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(5, 3)), rng.normal(size=(3, 4))
    uniforms = keras.ops.convert_to_tensor(rng.random(5))
    params = [keras.ops.convert_to_tensor(w)]

    def logits_fn(p):
        return keras.ops.matmul(keras.ops.convert_to_tensor(x), p[0])

    from_logits = estimators.fisher_estimate(logits_fn, params, uniforms)
    from_probs = estimators.fisher_estimate(lambda p: keras.ops.softmax(logits_fn(p)), params,
                                            uniforms, from_logits=False)
    np.testing.assert_allclose(numpy(from_probs[0]), numpy(from_logits[0]),
                               rtol=max(FIT_RTOL, 1e-8), atol=1e-10)


def test_fisher_on_sequence_logits_averages_over_every_position(float64):
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(3, 5, 2)), rng.normal(size=(2, 4))
    uniforms = rng.random((3, 5))
    params = [keras.ops.convert_to_tensor(w)]

    def token_logits(p):  # (batch, tokens, classes)
        return keras.ops.matmul(keras.ops.convert_to_tensor(x), p[0])

    def row_logits(p):  # the same logits, one row per token
        return keras.ops.reshape(token_logits(p), (15, 4))

    per_token = estimators.fisher_estimate(token_logits, params, keras.ops.convert_to_tensor(uniforms))
    per_row = estimators.fisher_estimate(
        row_logits, params, keras.ops.convert_to_tensor(uniforms.reshape(15))
    )
    np.testing.assert_allclose(numpy(per_token[0]), numpy(per_row[0]), rtol=1e-12)
    assert tuple(keras.ops.shape(estimators.label_uniforms((3, 5), keras.random.SeedGenerator(0)))) == (3, 5)


def test_sam_ire_fit_matches_reference(float64):
    config = dict(kappa=1.0, flat_fraction=0.4, interval=2, rho=0.05)
    x, y = regression_data()
    model = Net([keras.Input((4,)), keras.layers.Dense(3)])
    model.set_weights(dense_model().get_weights())
    params = [w.copy() for w in model.get_weights()]
    model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.05), **config), loss="mse")
    model.fit(x, y, batch_size=len(x), epochs=6, shuffle=False, verbose=0)
    reference = ReferenceIRE(KerasSGD(0.05), ire_core.IREConfig(**config))
    state = reference.init(params)
    for _ in range(6):
        params, state = reference.sam_step(params, lambda p: mse_grads(p, x, y), state)
    for got, want in zip(model.get_weights(), params):  # SAM's norm adds rounding
        np.testing.assert_allclose(got, want, rtol=max(FIT_RTOL, 1e-8))
    assert int(numpy(model.optimizer.refresh_count)) == state.refreshes == 3


def test_hutchinson_in_fit_finds_the_flat_weights(float64):
    # A linear model without bias on orthogonal inputs has a diagonal
    # Hessian, diag(2·a_i²/n): Hutchinson is exact, so the mask is known.
    a = np.array([3.0, 0.5, 2.0, 0.1, 1.0])
    x = np.diag(a)
    y = np.ones((5, 1))
    model = Net([keras.Input((5,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.01), kappa=1.0,
                                          flat_fraction=0.4, estimator="hutchinson",
                                          num_probes=2, interval=2),
                  loss="mse")
    history = model.fit(x, y, batch_size=5, epochs=3, shuffle=False, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    np.testing.assert_array_equal(numpy(model.optimizer.flat_masks[0])[:, 0],
                                  [False, True, False, True, False])
    assert int(numpy(model.optimizer.refresh_count)) == 2
    assert int(numpy(model.optimizer.iterations)) == 3


@pytest.mark.parametrize("rho", [0.0, 0.1])
def test_fisher_in_fit_trains_a_classifier(rho):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")
    model = Net([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"),
                 keras.layers.Dense(3, activation="softmax")])
    optimizer = ire_keras.IRE(keras.optimizers.Adam(0.02), kappa=1.0, flat_fraction=0.5,
                              estimator="fisher", interval=3, rho=rho, seed=5)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    assert model._ire_from_logits() is False
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert int(numpy(optimizer.refresh_count)) == 4
    assert float(numpy(optimizer.mask_flat_fraction)) == pytest.approx(0.5, abs=0.01)
    assert np.isfinite(float(numpy(optimizer.mask_threshold)))


@pytest.mark.parametrize("estimator", ["gradient", "fisher", "hutchinson"])
def test_token_model_refreshes_in_fit(estimator):
    # Embedding -> Dense on (batch, seq) tokens: on TensorFlow the table's
    # gradient is a tf.IndexedSlices of unknown shape inside tf.function.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, size=(8, 6)).astype("int32")
    y = rng.integers(0, 11, size=(8, 6)).astype("int32")
    model = Net([keras.Input((6,), dtype="int32"), keras.layers.Embedding(11, 4),
                 keras.layers.Dense(11)])
    optimizer = ire_keras.IRE(keras.optimizers.AdamW(0.01), kappa=1.0, flat_fraction=0.5,
                              interval=1, estimator=estimator, seed=3)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert int(numpy(optimizer.refresh_count)) == 2
    assert int(numpy(optimizer.mask_flat_count)) == ire_core.flat_count(0.5, 11 * 4 + 4 * 11 + 11)


def test_gradient_estimate_squares_the_summed_gradient_of_repeated_rows():
    # The table gradient has row 0 twice: ĥ is (1 + 3)² and (2 + 4)², not 1² + 3².
    def loss(w):
        rows = keras.ops.take(w[0], keras.ops.convert_to_tensor([0, 0]), axis=0)
        return keras.ops.sum(rows * keras.ops.convert_to_tensor([[1.0, 2.0], [3.0, 4.0]]))

    _, grads = autodiff.value_and_grad(loss, [keras.ops.zeros((3, 2))])
    assert tuple(grads[0].shape) == (3, 2)
    np.testing.assert_allclose(numpy(estimators.gradient_estimate(grads)[0]),
                               [[16.0, 36.0], [0.0, 0.0], [0.0, 0.0]])


def test_mixin_with_the_gradient_estimator_is_keras_own_step():
    x, y = regression_data()
    plain = dense_model()
    mixed = Net([keras.Input((4,)), keras.layers.Dense(3)])
    mixed.set_weights(plain.get_weights())
    for model in (plain, mixed):
        model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.05), kappa=1.0,
                                              flat_fraction=0.5, interval=2), loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(plain.get_weights(), mixed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_mask_monitor_logs_statistics():
    x, y = regression_data()
    model = dense_model()
    model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.05), flat_fraction=0.4,
                                          interval=2), loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0,
                        callbacks=[ire_keras.MaskMonitor()])
    assert history.history["ire_flat_fraction"] == [pytest.approx(0.4)] * 2
    assert history.history["ire_refreshes"] == [1, 2]
    assert all(np.isfinite(history.history["ire_threshold"]))
