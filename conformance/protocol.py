"""The contract between scenarios and backend drivers.

A *problem* is a loss defined mathematically below, with its data and initial
parameters as NumPy arrays. A *scenario* is a problem plus a base optimizer,
an estimator, IRE hyperparameters, a dtype and a number of steps. A *driver*
runs a scenario on one backend and returns a :class:`Trajectory`; the suite
compares every driver with the NumPy reference driver.

Problems (``Problem.name``; ``data`` keys; parameter list order):

* ``diag_quadratic``: params ``[theta (d,)]``, data ``h (d,)``;
  L = ½ Σ h_i θ_i².
* ``dense_quadratic``: params ``[theta (d,)]``, data ``A (d, d)`` symmetric
  positive definite, ``b (d,)``; L = ½ θᵀAθ − bᵀθ.
* ``logistic``: softmax regression, params ``[W (f, c), b (c,)]``, data
  ``x (n, f)``, ``y (n,)`` int labels; logits = x W + b; L = mean
  cross-entropy(logits, y).
* ``mlp``: params ``[W1 (f, m), b1 (m,), W2 (m, c), b2 (c,)]``, data ``x``,
  ``y`` as above; logits = tanh(x W1 + b1) W2 + b2; L = mean cross-entropy.
* ``manifold``: params ``[u (1,), v (d,)]``; L = ½ (1 + u²) ‖v‖²
  (IRE_SPEC's toy manifold).

``logistic`` and ``mlp`` are classifiers: their logits feed the ``fisher``
estimator. Every loss is full-batch and deterministic.

Estimators (``Scenario.estimator``), all fed identical draws:

* ``gradient``: ĥ = g ⊙ g of the training gradient.
* ``exact``: ĥ = the exact Hessian diagonal, supplied to the backend as a
  user callable returning the values of :meth:`Problem.exact_diagonal`
  (this exercises the user-callable estimator path).
* ``hutchinson``: ĥ = mean_j z_j ⊙ (H z_j) with the probes
  ``draws.probes(step)``; H z computed by the backend's own autodiff.
* ``fisher``: labels ŷ = ``ire_core.sample_labels(logits, draws.uniforms(step))``
  (the backend may call that function on its own arrays), ĥ = (∇ L(ŷ))² with
  L the mean cross-entropy on ŷ, by the backend's own autodiff.

Bases (``Scenario.base``), torch.optim's definitions:
``sgd`` (lr), ``momentum`` (lr, momentum 0.9), ``nesterov`` (lr, momentum 0.9,
nesterov), ``adamw`` (lr, betas (0.9, 0.999), eps 1e-8, weight decay 0.01),
``sam`` (plain SGD stepped with the SAM gradient, radius ``config.rho``,
adaptive if ``config.adaptive``). For SAM the ``gradient`` estimator uses the
gradient at θ, not at θ + e.

Steps are 0-based: step t maps parameters ``params[t]`` to ``params[t + 1]``;
refreshes happen on the steps where ``ire_core.is_refresh_step`` is true, and
``draws.probes(t)`` / ``draws.uniforms(t)`` are the draws of the refresh at t.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ire_core import IREConfig
from ire_core.draws import label_uniforms, rademacher_probes


@dataclasses.dataclass(frozen=True)
class Problem:
    """A loss, its data and its initial parameters (NumPy, float64)."""

    name: str
    params: tuple  # initial parameters, np.ndarray each
    data: dict  # name -> np.ndarray
    exact_diagonal: Callable[[list], list]  # params -> exact Hessian diagonal

    @property
    def is_classifier(self) -> bool:
        return self.name in ("logistic", "mlp")


@dataclasses.dataclass(frozen=True)
class Draws:
    """The random draws of a scenario, a pure function of (seed, step)."""

    seed: int
    shapes: tuple  # parameter shapes
    num_probes: int
    batch: int  # number of examples (label draws per refresh); 0 if none

    def probes(self, step: int) -> list[list[np.ndarray]]:
        return rademacher_probes(self.seed, step, self.shapes, self.num_probes)

    def uniforms(self, step: int) -> np.ndarray:
        return label_uniforms(self.seed, step, (self.batch,))


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One conformance case."""

    name: str
    problem: Problem
    base: str  # sgd | momentum | nesterov | adamw | sam
    estimator: str  # gradient | exact | hutchinson | fisher
    config: IREConfig
    lr: float
    steps: int
    seed: int = 0
    dtype: str = "float64"  # or "float32"

    @property
    def draws(self) -> Draws:
        batch = self.problem.data["x"].shape[0] if "x" in self.problem.data else 0
        shapes = tuple(p.shape for p in self.problem.params)
        return Draws(self.seed, shapes, self.config.num_probes, batch)


@dataclasses.dataclass
class Trajectory:
    """What a driver returns.

    Attributes:
      params: ``steps + 1`` entries; entry t is the list of parameters before
        step t (entry 0 the initial ones), as float64 NumPy arrays.
      masks: refresh step -> the flat mask chosen there (bool NumPy arrays).
      losses: loss before each step (``steps`` floats).
    """

    params: list
    masks: dict
    losses: list


class Driver(Protocol):
    """One backend. ``available()`` returns ``None`` when the backend can run,
    else the reason it cannot (shown as the skip reason)."""

    name: str

    def available(self) -> str | None: ...

    def run(self, scenario: Scenario) -> Trajectory: ...
