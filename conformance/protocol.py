"""The contract between scenarios and backend drivers.

A *problem* (:mod:`conformance.problems`) is a loss with its data and initial
parameters, and its mathematics written once over the array API. A
*scenario* is a problem plus a base optimizer, an estimator, IRE
hyperparameters, a dtype and a number of steps (the table of
:mod:`conformance.scenarios`). A *driver* runs a scenario on one backend and
returns a :class:`Trajectory`; the suite compares every driver with the NumPy
reference driver. Every loss is full-batch and deterministic.

Estimators (``Scenario.estimator``), all fed identical draws:

* ``gradient``: ĥ = g ⊙ g of the training gradient.
* ``exact``: ĥ = the problem's exact Hessian diagonal
  (``Model.hessian_diagonal``), supplied to the backend as a user callable
  evaluated on the backend's own arrays (this exercises the user-callable
  estimator path).
* ``hutchinson``: ĥ = mean_j z_j ⊙ (H z_j) with the probes
  ``draws.probes(step)``; H z computed by the backend's own autodiff.
* ``fisher``: labels ŷ = ``ire_core.sample_labels(logits, draws.uniforms(step))``
  (the backend may call that function on its own arrays), ĥ = (∇ L(ŷ))² with
  L the mean cross-entropy on ŷ, by the backend's own autodiff. Classifier
  problems only.

Bases (``Scenario.base``, a key of :data:`BASES`) have torch.optim's
definitions. ``sam`` steps plain SGD with the SAM gradient, radius
``config.rho``, adaptive if ``config.adaptive``; for SAM the ``gradient``
estimator uses the gradient at θ, not at θ + e.

Steps are 0-based: step t maps parameters ``params[t]`` to ``params[t + 1]``;
refreshes happen on the steps where ``ire_core.is_refresh_step`` is true, and
``draws.probes(t)`` / ``draws.uniforms(t)`` are the draws of the refresh at t.

Example:
  >>> from conformance.protocol import BASES
  >>> BASES["nesterov"]
  Base(name='nesterov', family='sgd', momentum=0.9, nesterov=True, sam=False)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ire_core import IREConfig
from ire_core.draws import label_uniforms, rademacher_probes

from .problems import Problem

__all__ = ["BASES", "Base", "Draws", "Driver", "Problem", "Scenario", "Trajectory", "walk"]


@dataclasses.dataclass(frozen=True)
class Base:
    """A base optimizer with torch.optim's definition.

    Attributes:
      name: the key of :data:`BASES`.
      family: ``"sgd"`` (torch.optim.SGD, dampening 0) or ``"adamw"``
        (torch.optim.AdamW with :attr:`BETAS`, :attr:`EPS`,
        :attr:`WEIGHT_DECAY`).
      momentum: SGD's momentum.
      nesterov: SGD's Nesterov flag.
      sam: stepped with the SAM gradient.
    """

    name: str
    family: str
    momentum: float = 0.0
    nesterov: bool = False
    sam: bool = False

    BETAS = (0.9, 0.999)
    EPS = 1e-8
    WEIGHT_DECAY = 0.01


BASES = {
    base.name: base
    for base in (
        Base("sgd", "sgd"),
        Base("momentum", "sgd", momentum=0.9),
        Base("nesterov", "sgd", momentum=0.9, nesterov=True),
        Base("adamw", "adamw"),
        Base("sam", "sgd", sam=True),
    )
}
"""The base optimizers a scenario may name."""


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
    base: str  # a key of BASES
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

    @property
    def base_optimizer(self) -> Base:
        """The :class:`Base` named by :attr:`base`."""
        if self.base not in BASES:
            raise ValueError(f"base must be one of {tuple(BASES)}, got {self.base!r}")
        return BASES[self.base]


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


def walk(scenario: Scenario, initial: list, step: Callable) -> Trajectory:
    """The trajectory of a driver that advances one step at a time.

    Args:
      scenario: the scenario being run.
      initial: the initial parameters (any arrays NumPy can read).
      step: ``t -> (loss, params, mask)``: performs step t and returns the
        loss before it, the parameters after it and the flat mask chosen on
        it (``None`` when step t does not refresh).

    Example:
      >>> import numpy as np
      >>> from conformance.scenarios import SCENARIOS
      >>> scenario = SCENARIOS["manifold_sgd_exact"]
      >>> trajectory = walk(scenario, [np.ones(1)], lambda t: (1.0, [np.ones(1)], None))
      >>> len(trajectory.params), trajectory.masks
      (41, {})
    """
    trajectory = Trajectory([_float64(initial)], {}, [])
    for t in range(scenario.steps):
        loss, params, mask = step(t)
        trajectory.losses.append(float(loss))
        if mask is not None:
            trajectory.masks[t] = [np.array(m, dtype=bool) for m in mask]
        trajectory.params.append(_float64(params))
    return trajectory


def _float64(params) -> list:
    return [np.array(p, dtype=np.float64, copy=True) for p in params]


class Driver(Protocol):
    """One backend. ``available()`` returns ``None`` when the backend can run,
    else the reason it cannot (shown as the skip reason)."""

    name: str

    def available(self) -> str | None: ...

    def run(self, scenario: Scenario) -> Trajectory: ...
