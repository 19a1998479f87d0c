"""The five conformance problems, their data, and their exact NumPy derivatives.

Each problem of :mod:`conformance.protocol` is built from a seed by
:func:`build_problem`. Its mathematics lives in a :class:`NumpyModel`
(obtained with :func:`numpy_model`): loss, gradient, Hessian-vector product
and exact Hessian diagonal, plus logits and the gradient on given labels for
the classifiers. Every derivative is analytic (for the tanh MLP, a
hand-written forward-over-reverse R-operator), so the NumPy reference is
exact up to rounding; ``tests/conformance`` checks them against finite
differences.

Example:
  >>> import numpy as np
  >>> from conformance.problems import build_problem, numpy_model
  >>> problem = build_problem("manifold", seed=0)
  >>> [p.shape for p in problem.params]
  [(1,), (4,)]
  >>> model = numpy_model(problem)
  >>> round(model.loss([np.zeros(1), np.ones(4)]), 6)   # ½·(1 + 0²)·‖v‖²
  2.0
"""

from __future__ import annotations

import abc

import numpy as np

from .protocol import Problem

__all__ = [
    "PROBLEM_NAMES",
    "Classifier",
    "DenseQuadratic",
    "DiagQuadratic",
    "Logistic",
    "Manifold",
    "Mlp",
    "NumpyModel",
    "build_problem",
    "numpy_model",
]

PROBLEM_NAMES = ("diag_quadratic", "dense_quadratic", "logistic", "mlp", "manifold")
"""The names of the problems, in the order of :mod:`conformance.protocol`."""


class NumpyModel(abc.ABC):
    """The exact mathematics of one problem on NumPy parameter lists.

    Args:
      data: the problem's data arrays (``Problem.data``).
      dtype: the floating dtype computations run in; float data is cast to it.
    """

    def __init__(self, data: dict, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        self.data = {
            key: value.astype(self.dtype) if np.issubdtype(value.dtype, np.floating) else value
            for key, value in data.items()
        }

    @abc.abstractmethod
    def loss(self, params: list) -> float:
        """The loss at ``params``."""

    @abc.abstractmethod
    def grad(self, params: list) -> list:
        """∇L(params), one array per parameter."""

    @abc.abstractmethod
    def hvp(self, params: list, vectors: list) -> list:
        """H(params)·vectors, the exact Hessian-vector product."""

    def hessian_diagonal(self, params: list) -> list:
        """The exact diagonal of the Hessian at ``params``.

        The default takes one Hessian-vector product per coordinate with the
        unit vectors, which is exact (not a difference quotient).
        """
        diagonal = [np.zeros_like(p) for p in params]
        for i, p in enumerate(params):
            for index in np.ndindex(p.shape):
                basis = [np.zeros_like(q) for q in params]
                basis[i][index] = 1
                diagonal[i][index] = self.hvp(params, basis)[i][index]
        return diagonal


class DiagQuadratic(NumpyModel):
    """L = ½ Σ h_i θ_i²; params ``[theta]``, data ``h``."""

    def loss(self, params):
        (theta,) = params
        return float(0.5 * np.sum(self.data["h"] * theta * theta))

    def grad(self, params):
        (theta,) = params
        return [self.data["h"] * theta]

    def hvp(self, params, vectors):
        return [self.data["h"] * vectors[0]]

    def hessian_diagonal(self, params):
        return [np.array(self.data["h"], copy=True)]


class DenseQuadratic(NumpyModel):
    """L = ½ θᵀAθ − bᵀθ; params ``[theta]``, data ``A`` (SPD), ``b``."""

    def loss(self, params):
        (theta,) = params
        a, b = self.data["A"], self.data["b"]
        return float(0.5 * theta @ a @ theta - b @ theta)

    def grad(self, params):
        (theta,) = params
        return [self.data["A"] @ theta - self.data["b"]]

    def hvp(self, params, vectors):
        return [self.data["A"] @ vectors[0]]

    def hessian_diagonal(self, params):
        return [np.array(np.diagonal(self.data["A"]), copy=True)]


class Manifold(NumpyModel):
    """L(u, v) = ½ (1 + u²) ‖v‖²; params ``[u (1,), v (d,)]``, no data."""

    def loss(self, params):
        u, v = params
        return float(0.5 * (1 + u[0] ** 2) * np.sum(v * v))

    def grad(self, params):
        u, v = params
        return [u * np.sum(v * v), (1 + u[0] ** 2) * v]

    def hvp(self, params, vectors):
        u, v = params
        du, dv = vectors
        # H = [[‖v‖², 2u vᵀ], [2u v, (1 + u²) I]]
        hu = np.sum(v * v) * du + 2 * u * np.sum(v * dv)
        hv = 2 * u[0] * v * du[0] + (1 + u[0] ** 2) * dv
        return [hu, hv]

    def hessian_diagonal(self, params):
        u, v = params
        return [np.full_like(u, np.sum(v * v)), np.full_like(v, 1 + u[0] ** 2)]


def _softmax(logits):
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / np.sum(weights, axis=1, keepdims=True)


def _mean_cross_entropy(logits, labels) -> float:
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    log_z = np.log(np.sum(np.exp(shifted), axis=1))
    picked = shifted[np.arange(labels.shape[0]), labels]
    return float(np.mean(log_z - picked))


def _softmax_jvp(probs, tangent):
    """The directional derivative of softmax: p ⊙ (ṫ − ⟨p, ṫ⟩)."""
    return probs * (tangent - np.sum(probs * tangent, axis=1, keepdims=True))


class Classifier(NumpyModel):
    """A classifier trained with the mean cross-entropy on ``data["y"]``.

    Subclasses give :meth:`logits` and the gradient and Hessian-vector product
    of the mean cross-entropy on arbitrary labels.
    """

    @abc.abstractmethod
    def logits(self, params: list) -> np.ndarray:
        """The logits ``(n, classes)`` on ``data["x"]``."""

    @abc.abstractmethod
    def label_grad(self, params: list, labels) -> list:
        """∇ of the mean cross-entropy on ``labels`` (the Fisher estimator's
        gradient with sampled labels)."""

    @abc.abstractmethod
    def label_hvp(self, params: list, vectors: list, labels) -> list:
        """H·vectors of the mean cross-entropy on ``labels``."""

    def _residual(self, probs, labels):
        """∂L/∂logits = (softmax − onehot) / n."""
        residual = np.array(probs, copy=True)
        residual[np.arange(labels.shape[0]), np.asarray(labels)] -= 1
        return residual / labels.shape[0]

    def loss(self, params):
        return _mean_cross_entropy(self.logits(params), self.data["y"])

    def grad(self, params):
        return self.label_grad(params, self.data["y"])

    def hvp(self, params, vectors):
        return self.label_hvp(params, vectors, self.data["y"])


class Logistic(Classifier):
    """Softmax regression: logits = x W + b; params ``[W (f, c), b (c,)]``."""

    def logits(self, params):
        w, b = params
        return self.data["x"] @ w + b

    def label_grad(self, params, labels):
        residual = self._residual(_softmax(self.logits(params)), labels)
        return [self.data["x"].T @ residual, np.sum(residual, axis=0)]

    def label_hvp(self, params, vectors, labels):
        # The cross-entropy Hessian does not depend on the labels.
        x = self.data["x"]
        probs = _softmax(self.logits(params))
        d_residual = _softmax_jvp(probs, x @ vectors[0] + vectors[1]) / x.shape[0]
        return [x.T @ d_residual, np.sum(d_residual, axis=0)]

    def hessian_diagonal(self, params):
        x = self.data["x"]
        probs = _softmax(self.logits(params))
        variance = probs * (1 - probs) / x.shape[0]
        return [(x * x).T @ variance, np.sum(variance, axis=0)]


class Mlp(Classifier):
    """logits = tanh(x W1 + b1) W2 + b2; params ``[W1, b1, W2, b2]``."""

    def _hidden(self, params):
        w1, b1 = params[0], params[1]
        return np.tanh(self.data["x"] @ w1 + b1)

    def logits(self, params):
        return self._hidden(params) @ params[2] + params[3]

    def label_grad(self, params, labels):
        x, w2 = self.data["x"], params[2]
        hidden = self._hidden(params)
        residual = self._residual(_softmax(hidden @ w2 + params[3]), labels)
        d_pre = (residual @ w2.T) * (1 - hidden * hidden)
        return [x.T @ d_pre, np.sum(d_pre, axis=0), hidden.T @ residual, np.sum(residual, axis=0)]

    def label_hvp(self, params, vectors, labels):
        # Forward-over-reverse: the R-operator R{·} = d/dε (·)(params + ε·vectors)
        # applied to every intermediate of label_grad.
        x, w2 = self.data["x"], params[2]
        v1, c1, v2, c2 = vectors
        hidden = self._hidden(params)
        slope = 1 - hidden * hidden  # tanh'
        probs = _softmax(hidden @ w2 + params[3])
        residual = self._residual(probs, labels)
        r_hidden = slope * (x @ v1 + c1)
        r_logits = r_hidden @ w2 + hidden @ v2 + c2
        r_residual = _softmax_jvp(probs, r_logits) / x.shape[0]
        d_hidden = residual @ w2.T
        r_d_hidden = r_residual @ w2.T + residual @ v2.T
        r_d_pre = r_d_hidden * slope - 2 * d_hidden * hidden * r_hidden
        return [
            x.T @ r_d_pre,
            np.sum(r_d_pre, axis=0),
            r_hidden.T @ residual + hidden.T @ r_residual,
            np.sum(r_residual, axis=0),
        ]


_MODELS = {
    "diag_quadratic": DiagQuadratic,
    "dense_quadratic": DenseQuadratic,
    "logistic": Logistic,
    "mlp": Mlp,
    "manifold": Manifold,
}


def numpy_model(problem: Problem, dtype=np.float64) -> NumpyModel:
    """The :class:`NumpyModel` of ``problem``, computing in ``dtype``.

    Example:
      >>> from conformance.problems import build_problem, numpy_model
      >>> problem = build_problem("logistic", seed=0)
      >>> numpy_model(problem).logits(list(problem.params)).shape
      (32, 3)
    """
    if problem.name not in _MODELS:
        raise ValueError(f"problem.name must be one of {PROBLEM_NAMES}, got {problem.name!r}")
    return _MODELS[problem.name](problem.data, dtype)


def _diag_quadratic(rng, d=8):
    h = rng.permutation(np.geomspace(0.02, 8.0, d))
    return [rng.normal(size=d)], {"h": h}


def _dense_quadratic(rng, d=8, condition=1e3):
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    eigenvalues = np.geomspace(4.0 / condition, 4.0, d)
    a = (basis * eigenvalues) @ basis.T
    a = 0.5 * (a + a.T)
    minimizer = rng.normal(size=d)
    return [rng.normal(size=d)], {"A": a, "b": a @ minimizer}


def _classification_data(rng, n, f, c):
    x = rng.normal(size=(n, f))
    teacher = rng.normal(size=(f, c))
    noisy = x @ teacher + 0.5 * rng.normal(size=(n, c))
    return x, np.argmax(noisy, axis=1).astype(np.int64)


def _logistic(rng, n=32, f=5, c=3):
    x, y = _classification_data(rng, n, f, c)
    params = [0.3 * rng.normal(size=(f, c)), 0.1 * rng.normal(size=c)]
    return params, {"x": x, "y": y}


def _mlp(rng, n=32, f=4, m=8, c=3):
    x, y = _classification_data(rng, n, f, c)
    params = [
        rng.normal(size=(f, m)) / np.sqrt(f),
        0.1 * rng.normal(size=m),
        rng.normal(size=(m, c)) / np.sqrt(m),
        0.1 * rng.normal(size=c),
    ]
    return params, {"x": x, "y": y}


def _manifold(rng, d=4):
    return [np.array([1.5]), rng.normal(size=d)], {}


_BUILDERS = {
    "diag_quadratic": _diag_quadratic,
    "dense_quadratic": _dense_quadratic,
    "logistic": _logistic,
    "mlp": _mlp,
    "manifold": _manifold,
}


def build_problem(name: str, seed: int = 0) -> Problem:
    """Builds problem ``name`` with data and initial parameters drawn from
    ``seed`` (float64 NumPy arrays; sizes are small, for fast conformance runs).

    Sizes: ``diag_quadratic`` d = 8 (curvatures from 0.02 to 8);
    ``dense_quadratic`` d = 8, condition number 1e3; ``logistic`` n = 32,
    f = 5, c = 3; ``mlp`` f = 4, m = 8, c = 3, n = 32; ``manifold`` d = 4 with
    u₀ = 1.5.

    Example:
      >>> build_problem("dense_quadratic", seed=1).data["A"].shape
      (8, 8)
      >>> build_problem("ring", seed=1)
      Traceback (most recent call last):
      ...
      ValueError: name must be one of ('diag_quadratic', 'dense_quadratic', 'logistic', 'mlp', 'manifold'), got 'ring'
    """
    if name not in _BUILDERS:
        raise ValueError(f"name must be one of {PROBLEM_NAMES}, got {name!r}")
    rng = np.random.default_rng(seed)
    params, data = _BUILDERS[name](rng)
    model = _MODELS[name](data)
    return Problem(
        name=name,
        params=tuple(np.asarray(p, dtype=np.float64) for p in params),
        data=data,
        exact_diagonal=model.hessian_diagonal,
    )
