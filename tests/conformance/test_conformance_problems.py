"""The NumPy derivatives of the conformance problems against finite differences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from conformance.problems import PROBLEM_NAMES, build_problem, numpy_model

EPS = 1e-6


def _shifted(params, direction, step):
    return [p + step * d for p, d in zip(params, direction)]


def _random_like(rng, params):
    return [rng.normal(size=p.shape) for p in params]


def _flatten(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


def _point(problem, rng):
    # A generic point, away from the initial parameters.
    return [p + 0.3 * rng.normal(size=p.shape) for p in problem.params]


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_gradient_matches_central_differences(name):
    rng = np.random.default_rng(1)
    problem = build_problem(name, seed=3)
    model = numpy_model(problem)
    params = _point(problem, rng)
    for _ in range(3):
        direction = _random_like(rng, params)
        numeric = (
            model.loss(_shifted(params, direction, EPS))
            - model.loss(_shifted(params, direction, -EPS))
        ) / (2 * EPS)
        analytic = float(_flatten(model.grad(params)) @ _flatten(direction))
        assert numeric == pytest.approx(analytic, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_hvp_matches_differences_of_gradients(name):
    rng = np.random.default_rng(2)
    problem = build_problem(name, seed=4)
    model = numpy_model(problem)
    params = _point(problem, rng)
    direction = _random_like(rng, params)
    numeric = (
        _flatten(model.grad(_shifted(params, direction, EPS)))
        - _flatten(model.grad(_shifted(params, direction, -EPS)))
    ) / (2 * EPS)
    analytic = _flatten(model.hvp(params, direction))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_hessian_diagonal_matches_second_differences(name):
    rng = np.random.default_rng(3)
    problem = build_problem(name, seed=5)
    model = numpy_model(problem)
    params = _point(problem, rng)
    diagonal = _flatten(problem.exact_diagonal(params))
    size = diagonal.shape[0]
    numeric = np.empty(size)
    step = 1e-4
    for k in range(size):
        basis = np.zeros(size)
        basis[k] = 1.0
        unflat = np.split(basis, np.cumsum([p.size for p in params])[:-1])
        direction = [u.reshape(p.shape) for u, p in zip(unflat, params)]
        numeric[k] = (
            model.loss(_shifted(params, direction, step))
            - 2 * model.loss(params)
            + model.loss(_shifted(params, direction, -step))
        ) / step**2
    np.testing.assert_allclose(diagonal, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["logistic", "mlp"])
def test_label_gradient_matches_differences_on_other_labels(name):
    rng = np.random.default_rng(4)
    problem = build_problem(name, seed=6)
    model = numpy_model(problem)
    params = _point(problem, rng)
    labels = rng.integers(0, 3, size=problem.data["y"].shape[0])
    assert not np.array_equal(labels, problem.data["y"])
    other = numpy_model(dataclasses.replace(problem, data={**problem.data, "y": labels}))
    direction = _random_like(rng, params)
    numeric = (
        other.loss(_shifted(params, direction, EPS)) - other.loss(_shifted(params, direction, -EPS))
    ) / (2 * EPS)
    analytic = float(_flatten(model.label_grad(params, labels)) @ _flatten(direction))
    assert numeric == pytest.approx(analytic, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", ["logistic", "mlp"])
def test_logits_define_the_loss(name):
    problem = build_problem(name, seed=0)
    model = numpy_model(problem)
    params = list(problem.params)
    logits = model.logits(params)
    y = problem.data["y"]
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=1, keepdims=True))
    assert float(model.loss(params)) == pytest.approx(-np.mean(log_probs[np.arange(len(y)), y]))


def test_problems_are_a_pure_function_of_the_seed():
    first, again, other = (build_problem("mlp", s) for s in (7, 7, 8))
    for a, b in zip(first.params, again.params):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.data["x"], again.data["x"])
    assert not np.array_equal(first.data["x"], other.data["x"])


def test_problem_shapes_and_conditioning():
    dense = build_problem("dense_quadratic", seed=0)
    eigenvalues = np.linalg.eigvalsh(dense.data["A"])
    assert eigenvalues.min() > 0
    assert eigenvalues.max() / eigenvalues.min() == pytest.approx(1e3, rel=1e-6)
    np.testing.assert_array_equal(dense.data["A"], dense.data["A"].T)
    manifold = build_problem("manifold", seed=0)
    assert manifold.params[0][0] != 0
    assert [p.shape for p in build_problem("mlp", 0).params] == [(4, 8), (8,), (8, 3), (3,)]
    assert [p.shape for p in build_problem("logistic", 0).params] == [(5, 3), (3,)]
    for name in ("logistic", "mlp"):
        assert len(np.unique(build_problem(name, 0).data["y"])) == 3


def test_float32_model_computes_in_float32():
    problem = build_problem("mlp", seed=0)
    model = numpy_model(problem, dtype=np.float32)
    params = [p.astype(np.float32) for p in problem.params]
    assert all(g.dtype == np.float32 for g in model.grad(params))
    assert all(h.dtype == np.float32 for h in model.hvp(params, params))


def test_unknown_problem_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="'ring'"):
        build_problem("ring")


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_hessian_diagonal_is_the_diagonal_of_the_hvp(name):
    rng = np.random.default_rng(6)
    problem = build_problem(name, seed=7)
    model = numpy_model(problem)
    params = _point(problem, rng)
    diagonal = model.hessian_diagonal(params)
    for i, p in enumerate(params):
        for index in np.ndindex(p.shape):
            basis = [np.zeros_like(q) for q in params]
            basis[i][index] = 1.0
            want = model.hvp(params, basis)[i][index]
            assert diagonal[i][index] == pytest.approx(want, rel=1e-13, abs=1e-15)


@pytest.mark.parametrize("name", PROBLEM_NAMES)
def test_exact_diagonal_follows_the_dtype_of_the_parameters(name):
    problem = build_problem(name, seed=0)
    single = [p.astype(np.float32) for p in problem.params]
    got = problem.exact_diagonal(single)
    want = problem.exact_diagonal(list(problem.params))
    assert all(g.dtype == np.float32 for g in got)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
