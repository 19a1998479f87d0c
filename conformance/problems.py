"""The five conformance problems, written once over the Python array API.

A :class:`Problem` (built from a seed by :func:`build_problem`) holds its
initial parameters and data as float64 NumPy arrays, and the :class:`Model`
class of its mathematics: loss, gradient, Hessian-vector product and exact
Hessian diagonal, plus logits and the gradient on given labels for the
classifiers. Every method computes with the namespace of its arrays
(``array_api_compat.array_namespace``), so the NumPy reference and each
backend driver evaluate the same functions on their own arrays, in their own
dtype; a driver whose tensors are not an array-API namespace passes one
explicitly. Every derivative is analytic (for the tanh MLP a hand-written
forward-over-reverse R-operator and a closed-form diagonal), so the NumPy
reference is exact up to rounding; ``tests/conformance`` checks them against
finite differences and the backends' autodiff.

Example:
  >>> import numpy as np
  >>> from conformance.problems import build_problem, numpy_model
  >>> problem = build_problem("manifold", seed=0)
  >>> [p.shape for p in problem.params]
  [(1,), (4,)]
  >>> model = numpy_model(problem)
  >>> float(model.loss([np.zeros(1), np.ones(4)]))   # ½·(1 + 0²)·‖v‖²
  2.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from array_api_compat import array_namespace

from ._classifiers import Classifier, Logistic, Mlp
from ._model import Model

__all__ = [
    "PROBLEM_NAMES",
    "Classifier",
    "DenseQuadratic",
    "DiagQuadratic",
    "Logistic",
    "Manifold",
    "Mlp",
    "Model",
    "Problem",
    "build_problem",
    "numpy_model",
]

PROBLEM_NAMES = ("diag_quadratic", "dense_quadratic", "logistic", "mlp", "manifold")
"""The names of the problems, in the order of :mod:`conformance.protocol`."""


class DiagQuadratic(Model):
    """L = ½ Σ h_i θ_i²; params ``[theta (d,)]``, data ``h (d,)``."""

    def loss(self, params):
        xp = self.namespace(params)
        (theta,) = params
        return 0.5 * xp.sum(self.data["h"] * theta * theta)

    def grad(self, params):
        (theta,) = params
        return [self.data["h"] * theta]

    def hvp(self, params, vectors):
        return [self.data["h"] * vectors[0]]

    def hessian_diagonal(self, params):
        xp = self.namespace(params)
        return [self.data["h"] + xp.zeros_like(params[0])]


class DenseQuadratic(Model):
    """L = ½ θᵀAθ − bᵀθ; params ``[theta (d,)]``, data ``A (d, d)`` symmetric
    positive definite, ``b (d,)``."""

    def loss(self, params):
        xp = self.namespace(params)
        (theta,) = params
        a, b = self.data["A"], self.data["b"]
        return xp.matmul(xp.matmul(0.5 * theta, a), theta) - xp.matmul(b, theta)

    def grad(self, params):
        xp = self.namespace(params)
        (theta,) = params
        return [xp.matmul(self.data["A"], theta) - self.data["b"]]

    def hvp(self, params, vectors):
        xp = self.namespace(params)
        return [xp.matmul(self.data["A"], vectors[0])]

    def hessian_diagonal(self, params):
        xp = self.namespace(params)
        a = self.data["A"]
        # A ⊙ I summed over a row is the diagonal exactly (one term plus zeros).
        return [xp.sum(a * xp.eye(a.shape[0], dtype=a.dtype), axis=1)]


class Manifold(Model):
    """L(u, v) = ½ (1 + u²) ‖v‖²; params ``[u (1,), v (d,)]``, no data
    (docs/algorithm.md, SAM coupling, the toy manifold: u is the flat
    direction)."""

    def loss(self, params):
        xp = self.namespace(params)
        u, v = params
        return 0.5 * (1 + u[0] * u[0]) * xp.sum(v * v)

    def grad(self, params):
        xp = self.namespace(params)
        u, v = params
        return [u * xp.sum(v * v), (1 + u[0] * u[0]) * v]

    def hvp(self, params, vectors):
        xp = self.namespace(params)
        u, v = params
        du, dv = vectors
        # H = [[‖v‖², 2u vᵀ], [2u v, (1 + u²) I]]
        hu = xp.sum(v * v) * du + 2 * u * xp.sum(v * dv)
        hv = 2 * u[0] * v * du[0] + (1 + u[0] * u[0]) * dv
        return [hu, hv]

    def hessian_diagonal(self, params):
        xp = self.namespace(params)
        u, v = params
        return [xp.zeros_like(u) + xp.sum(v * v), xp.zeros_like(v) + (1 + u[0] * u[0])]


_MODELS = {
    "diag_quadratic": DiagQuadratic,
    "dense_quadratic": DenseQuadratic,
    "logistic": Logistic,
    "mlp": Mlp,
    "manifold": Manifold,
}


@dataclasses.dataclass(frozen=True)
class Problem:
    """A loss, its data and its initial parameters (NumPy, float64).

    Attributes:
      name: one of :data:`PROBLEM_NAMES`.
      params: the initial parameters, one ``np.ndarray`` each.
      data: name -> ``np.ndarray`` (float data float64, labels int64).
      model: the :class:`Model` subclass of the problem's mathematics.
    """

    name: str
    params: tuple
    data: dict
    model: type

    @property
    def is_classifier(self) -> bool:
        """Whether the problem has logits (the ``fisher`` estimator needs them)."""
        return issubclass(self.model, Classifier)

    def bind(self, asarray: Callable | None = None, xp=None) -> Model:
        """The problem's :class:`Model` over ``asarray(value)`` of every data array.

        Args:
          asarray: NumPy array -> the caller's array (in the caller's dtype);
            ``None`` keeps the NumPy arrays.
          xp: the namespace to compute with; ``None`` takes the namespace of
            the parameters of each call.

        Example:
          >>> import torch
          >>> problem = build_problem("logistic", seed=0)
          >>> model = problem.bind(torch.from_numpy)
          >>> model.logits([torch.from_numpy(p) for p in problem.params]).shape
          torch.Size([32, 3])
        """
        convert = asarray or (lambda value: value)
        return self.model({key: convert(value) for key, value in self.data.items()}, xp)

    def exact_diagonal(self, params: list) -> list:
        """The exact Hessian diagonal at NumPy ``params``, in their dtype."""
        dtype = np.result_type(*params)
        return numpy_model(self, dtype).hessian_diagonal(params)


def numpy_model(problem: Problem, dtype=np.float64) -> Model:
    """The :class:`Model` of ``problem`` on NumPy arrays, computing in ``dtype``.

    Example:
      >>> from conformance.problems import build_problem, numpy_model
      >>> problem = build_problem("logistic", seed=0)
      >>> numpy_model(problem).logits(list(problem.params)).shape
      (32, 3)
    """
    dtype = np.dtype(dtype)

    def asarray(value):
        return value.astype(dtype) if np.issubdtype(value.dtype, np.floating) else value

    return problem.bind(asarray, xp=array_namespace(np.zeros(0, dtype)))


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
    return Problem(
        name=name,
        params=tuple(np.asarray(p, dtype=np.float64) for p in params),
        data=data,
        model=_MODELS[name],
    )
