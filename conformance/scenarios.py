"""The table of conformance scenarios.

Every scenario is one row of :data:`CASES`, plain data: a problem from
:mod:`conformance.problems`, a base optimizer, a curvature estimator, the IRE
hyperparameters, a dtype, a number of steps and the seeds (see
:mod:`conformance.protocol`); every driver runs the same rows. Together they
cover every problem, every base (SAM plain and adaptive), every estimator
(Hutchinson with one and two probes), warm-up, refresh intervals of 1 and
more, the curvature moving average, κ and γ given as functions of the step,
the κ = 0 and γ = 0 identities and float32 as well as float64.

Schedules are module-level functions that only do arithmetic on the step, so
they work on Python ints, traced JAX integers and TensorFlow tensors alike,
and a scenario can be looked up by name in another process.

Example:
  >>> from conformance.scenarios import SCENARIOS, describe
  >>> scenario = SCENARIOS["logistic_adamw_fisher"]
  >>> scenario.base, scenario.estimator, scenario.problem.is_classifier
  ('adamw', 'fisher', True)
  >>> describe(SCENARIOS["diag_quadratic_sgd_exact"])
  'diag_quadratic, sgd lr=0.1, exact, κ=1, γ=0.5, K=1, float64, 40 steps'
"""

from __future__ import annotations

import dataclasses
import math

from ire_core import IREConfig, is_refresh_step

from .problems import build_problem
from .protocol import BASES, Scenario

__all__ = [
    "BASES",
    "CASES",
    "Case",
    "SCENARIOS",
    "describe",
    "flat_count_margin",
    "get_scenario",
    "refresh_steps",
    "decaying_kappa",
    "rising_flat_fraction",
    "rising_kappa",
]

def rising_kappa(step):
    """κ_t = 0.5 + 0.05·t (arithmetic only: works on traced steps).

    Example:
      >>> rising_kappa(10)
      1.0
    """
    return 0.5 + 0.05 * step


def decaying_kappa(step):
    """κ_t = 3 / (1 + 0.1·t), a κ that decays like a learning rate.

    Example:
      >>> decaying_kappa(20)
      1.0
    """
    return 3.0 / (1.0 + 0.1 * step)


def rising_flat_fraction(step):
    """γ_t = 0.21 + 0.01·t, from about a fifth to a half of the coordinates.

    Example:
      >>> round(rising_flat_fraction(25), 2)
      0.46
    """
    return 0.21 + 0.01 * step


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of :data:`CASES`: a scenario as plain data.

    Attributes:
      name: ``{problem}_{base}_{estimator}[_{variant}]``.
      problem: a name of :data:`conformance.problems.PROBLEM_NAMES`.
      base: a key of :data:`conformance.protocol.BASES`.
      estimator: ``gradient``, ``exact``, ``hutchinson`` or ``fisher``.
      lr: the base optimizer's learning rate.
      ire: the other ``IREConfig`` fields.
      steps: the number of steps.
      dtype: ``"float64"`` or ``"float32"``.
      seed: the seed of the draws (probes, label uniforms).
      problem_seed: the seed the problem is built from.
    """

    name: str
    problem: str
    base: str
    estimator: str
    lr: float
    ire: dict
    steps: int = 40
    dtype: str = "float64"
    seed: int = 0
    problem_seed: int = 0

    def scenario(self) -> Scenario:
        """The :class:`Scenario` of this row."""
        return Scenario(
            name=self.name,
            problem=build_problem(self.problem, seed=self.problem_seed),
            base=self.base,
            estimator=self.estimator,
            config=IREConfig(estimator=self.estimator, **self.ire),
            lr=self.lr,
            steps=self.steps,
            seed=self.seed,
            dtype=self.dtype,
        )


CASES = (
    # Diagonal quadratic: docs/algorithm.md, Invariants 3, and the identities.
    Case("diag_quadratic_sgd_exact", "diag_quadratic", "sgd", "exact", 0.1,
         dict(kappa=1.0, flat_fraction=0.5, interval=1)),
    Case("diag_quadratic_momentum_hutchinson", "diag_quadratic", "momentum", "hutchinson", 0.02,
         dict(kappa=2.0, flat_fraction=0.375, interval=1)),
    Case("diag_quadratic_sgd_gradient_kappa0", "diag_quadratic", "sgd", "gradient", 0.1,
         dict(kappa=0.0, flat_fraction=0.5, interval=3)),
    Case("diag_quadratic_adamw_exact_f32", "diag_quadratic", "adamw", "exact", 0.05,
         dict(kappa=1.5, flat_fraction=0.5, interval=5, start_step=5), dtype="float32"),
    # Ill-conditioned dense quadratic.
    Case("dense_quadratic_sgd_gradient", "dense_quadratic", "sgd", "gradient", 0.1,
         dict(kappa=1.0, flat_fraction=0.5, interval=5, start_step=10)),
    Case("dense_quadratic_nesterov_hutchinson2", "dense_quadratic", "nesterov", "hutchinson", 0.03,
         dict(kappa=1.0, flat_fraction=0.625, interval=4, ema=0.5, num_probes=2)),
    Case("dense_quadratic_adamw_exact_kappa_schedule", "dense_quadratic", "adamw", "exact", 0.05,
         dict(kappa=rising_kappa, flat_fraction=0.5, interval=10)),
    Case("dense_quadratic_sam_gradient", "dense_quadratic", "sam", "gradient", 0.1,
         dict(kappa=1.0, flat_fraction=0.5, interval=2, rho=0.05)),
    Case("dense_quadratic_momentum_exact_gamma0", "dense_quadratic", "momentum", "exact", 0.03,
         dict(kappa=2.0, flat_fraction=0.0, interval=1)),
    # Softmax regression.
    Case("logistic_sgd_fisher", "logistic", "sgd", "fisher", 0.5,
         dict(kappa=1.0, flat_fraction=0.5, interval=5)),
    Case("logistic_adamw_fisher", "logistic", "adamw", "fisher", 0.05,
         dict(kappa=2.0, flat_fraction=0.6, interval=1, start_step=3)),
    # Draw seed 0 makes the first probe constant across classes, a direction
    # in which the softmax cross-entropy is flat (H z = 0): the estimate would
    # be rounding noise. Seed 1 draws informative probes.
    Case("logistic_momentum_hutchinson", "logistic", "momentum", "hutchinson", 0.2,
         dict(kappa=1.0, flat_fraction=0.5, interval=3, ema=0.9), seed=1),
    Case("logistic_sam_fisher", "logistic", "sam", "fisher", 0.5,
         dict(kappa=1.0, flat_fraction=0.4, interval=4, rho=0.05)),
    Case("logistic_adamw_gradient_gamma_schedule", "logistic", "adamw", "gradient", 0.05,
         dict(kappa=1.0, flat_fraction=rising_flat_fraction, interval=5)),
    Case("logistic_nesterov_exact_f32", "logistic", "nesterov", "exact", 0.2,
         dict(kappa=1.0, flat_fraction=0.5, interval=5), dtype="float32"),
    # Two-layer tanh MLP classifier.
    Case("mlp_sgd_exact", "mlp", "sgd", "exact", 0.5,
         dict(kappa=1.0, flat_fraction=0.5, interval=10)),
    Case("mlp_adamw_fisher", "mlp", "adamw", "fisher", 0.02,
         dict(kappa=2.0, flat_fraction=0.6, interval=5, start_step=5, ema=0.5)),
    Case("mlp_momentum_hutchinson2", "mlp", "momentum", "hutchinson", 0.1,
         dict(kappa=1.0, flat_fraction=0.5, interval=5, num_probes=2)),
    Case("mlp_sam_gradient_adaptive", "mlp", "sam", "gradient", 0.3,
         dict(kappa=1.0, flat_fraction=0.5, interval=5, rho=0.5, adaptive=True)),
    Case("mlp_sgd_fisher_f32", "mlp", "sgd", "fisher", 0.3,
         dict(kappa=1.0, flat_fraction=0.5, interval=10), steps=30, dtype="float32"),
    # docs/algorithm.md, SAM coupling, the toy manifold: u is the flat direction.
    Case("manifold_sgd_exact", "manifold", "sgd", "exact", 0.2,
         dict(kappa=2.0, flat_fraction=0.2, interval=1)),
    Case("manifold_sam_hutchinson", "manifold", "sam", "hutchinson", 0.2,
         dict(kappa=2.0, flat_fraction=0.2, interval=5, rho=0.1)),
    Case("manifold_sam_exact_adaptive_kappa_decay", "manifold", "sam", "exact", 0.2,
         dict(kappa=decaying_kappa, flat_fraction=0.2, interval=2, rho=0.2, adaptive=True,
              start_step=4)),
    Case("manifold_nesterov_gradient", "manifold", "nesterov", "gradient", 0.05,
         dict(kappa=1.0, flat_fraction=0.4, interval=5, ema=0.5)),
)
"""Every conformance case, one row each (the table every backend runs)."""

SCENARIOS: dict[str, Scenario] = {case.name: case.scenario() for case in CASES}
"""Every scenario of :data:`CASES`, by name."""


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``.

    Example:
      >>> get_scenario("mlp_sgd_exact").problem.name
      'mlp'
      >>> get_scenario("nope")
      Traceback (most recent call last):
      ...
      KeyError: "name must be a scenario of conformance.scenarios.SCENARIOS, got 'nope'"
    """
    if name not in SCENARIOS:
        raise KeyError(f"name must be a scenario of conformance.scenarios.SCENARIOS, got {name!r}")
    return SCENARIOS[name]


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else f"{value.__name__}(t)"


def describe(scenario: Scenario) -> str:
    """A one-line human description of ``scenario``'s settings."""
    config = scenario.config
    base = f"{scenario.base} lr={scenario.lr:g}"
    if scenario.base == "sam":
        base += f" {'ASAM' if config.adaptive else 'SAM'} ρ={config.rho:g}"
    estimator = scenario.estimator
    if estimator == "hutchinson":
        estimator += f"×{config.num_probes}"
    parts = [
        scenario.problem.name,
        base,
        estimator,
        f"κ={_number(config.kappa)}",
        f"γ={_number(config.flat_fraction)}",
        f"K={config.interval}",
    ]
    if config.start_step:
        parts.append(f"start={config.start_step}")
    if config.ema:
        parts.append(f"ema={config.ema:g}")
    parts += [scenario.dtype, f"{scenario.steps} steps"]
    return ", ".join(parts)


def refresh_steps(scenario: Scenario) -> list[int]:
    """The steps on which ``scenario`` refreshes its mask (from ``ire_core``)."""
    config = scenario.config
    return [
        t for t in range(scenario.steps)
        if is_refresh_step(t, config.interval, config.start_step)
    ]


def flat_count_margin(scenario: Scenario) -> float:
    """How far γ_t·N stays from an integer over the refresh steps where it is
    not an integer (1.0 when every γ_t·N is exact).

    A γ schedule whose γ_t·N lands within rounding of an integer could give
    k = ⌊γ_t·N⌋ differently in float32 and float64; scenarios keep this
    margin large.
    """
    total = sum(math.prod(p.shape) for p in scenario.problem.params)
    margin = 1.0
    for t in refresh_steps(scenario):
        gamma = scenario.config.flat_fraction
        product = (gamma(t) if callable(gamma) else gamma) * total
        distance = abs(product - round(product))
        if distance > 1e-12:
            margin = min(margin, distance)
    return margin
