"""The problems' array-API functions on every backend's arrays.

Each driver evaluates the functions of ``conformance.problems`` on its own
arrays and differentiates the loss with its own autodiff; here every backend
must agree with the NumPy evaluation of the same functions: the loss, the
logits and the analytic Hessian diagonal, and its autodiff gradient and
Hessian-vector product must equal the analytic ones.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.problems import PROBLEM_NAMES, build_problem, numpy_model

TOLERANCE = 1e-12


def _point(problem, seed=11):
    rng = np.random.default_rng(seed)
    params = [p + 0.3 * rng.normal(size=p.shape) for p in problem.params]
    vectors = [rng.normal(size=p.shape) for p in problem.params]
    return params, vectors


def _close(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=TOLERANCE, atol=TOLERANCE)


def _check_forward(problem, model, params, to_numpy):
    reference = numpy_model(problem)
    numpy_params = [to_numpy(p) for p in params]
    assert float(to_numpy(model.loss(params))) == pytest.approx(
        float(reference.loss(numpy_params)), rel=TOLERANCE
    )
    _close([to_numpy(h) for h in model.hessian_diagonal(params)],
           reference.hessian_diagonal(numpy_params))
    if problem.is_classifier:
        _close([to_numpy(model.logits(params))], [reference.logits(numpy_params)])


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_torch_autodiff_equals_the_analytic_derivatives(name):
    torch = pytest.importorskip("torch")
    from conformance.drivers.torch_driver import TorchDriver

    problem = build_problem(name, seed=2)
    model = TorchDriver.model(problem, torch.float64)
    values, vectors = _point(problem)
    params = [torch.tensor(p, requires_grad=True) for p in values]
    _check_forward(problem, model, params, lambda t: t.detach().numpy())
    grads = torch.autograd.grad(model.loss(params), params, create_graph=True)
    hvp = torch.autograd.grad(grads, params, [torch.tensor(v) for v in vectors])
    reference = numpy_model(problem)
    _close([g.detach().numpy() for g in grads], reference.grad(values))
    _close([h.numpy() for h in hvp], reference.hvp(values, vectors))


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_jax_autodiff_equals_the_analytic_derivatives(name):
    pytest.importorskip("jax")
    import jax
    import jax.numpy as jnp

    from conformance.drivers.jax_driver import JaxDriver  # enables float64

    problem = build_problem(name, seed=2)
    model = JaxDriver.model(problem, jnp.float64)
    values, vectors = _point(problem)
    params = [jnp.asarray(p) for p in values]
    _check_forward(problem, model, params, np.asarray)
    grads, hvp = jax.jvp(jax.grad(model.loss), (params,), ([jnp.asarray(v) for v in vectors],))
    reference = numpy_model(problem)
    _close(grads, reference.grad(values))
    _close(hvp, reference.hvp(values, vectors))


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_tensorflow_autodiff_equals_the_analytic_derivatives(name):
    tf = pytest.importorskip("tensorflow")
    from conformance.drivers.keras_worker import _TensorFlowNumpy

    problem = build_problem(name, seed=2)

    def asarray(value):
        return tf.constant(value, tf.float64 if value.dtype.kind == "f" else tf.int32)

    model = problem.bind(asarray, xp=_TensorFlowNumpy())
    values, vectors = _point(problem)
    params = [tf.constant(p) for p in values]
    _check_forward(problem, model, params, lambda t: t.numpy())
    with tf.GradientTape() as outer:
        outer.watch(params)
        with tf.GradientTape() as inner:
            inner.watch(params)
            loss = model.loss(params)
        grads = inner.gradient(loss, params)
    hvp = outer.gradient(grads, params, output_gradients=[tf.constant(v) for v in vectors])
    reference = numpy_model(problem)
    _close([g.numpy() for g in grads], reference.grad(values))
    _close([h.numpy() for h in hvp], reference.hvp(values, vectors))
