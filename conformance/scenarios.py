"""The registry of conformance scenarios.

Every scenario is defined once, backend-neutrally: a problem from
:mod:`conformance.problems`, a base optimizer, a curvature estimator, the IRE
hyperparameters, a dtype and a number of steps (see
:mod:`conformance.protocol`). Together they cover every problem, every base
(SAM plain and adaptive), every estimator (Hutchinson with one and two
probes), warm-up, refresh intervals of 1 and more, the curvature moving
average, κ and γ given as functions of the step, the κ = 0 and γ = 0 identities
and float32 as well as float64.

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

import math

from ire_core import IREConfig, is_refresh_step

from .problems import build_problem
from .protocol import Scenario

__all__ = [
    "BASES",
    "SCENARIOS",
    "describe",
    "flat_count_margin",
    "get_scenario",
    "refresh_steps",
    "decaying_kappa",
    "rising_flat_fraction",
    "rising_kappa",
]

BASES = ("sgd", "momentum", "nesterov", "adamw", "sam")
"""The base optimizers a scenario may name (see :mod:`conformance.protocol`)."""


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


def _scenario(name, problem, base, estimator, lr, steps=40, dtype="float64", seed=0, **config):
    return name, Scenario(
        name=name,
        problem=build_problem(problem, seed=0),
        base=base,
        estimator=estimator,
        config=IREConfig(estimator=estimator, **config),
        lr=lr,
        steps=steps,
        seed=seed,
        dtype=dtype,
    )


SCENARIOS: dict[str, Scenario] = dict(
    [
        # Diagonal quadratic: the spec's invariant 3, and the identities.
        _scenario("diag_quadratic_sgd_exact", "diag_quadratic", "sgd", "exact", 0.1,
                  kappa=1.0, flat_fraction=0.5, interval=1),
        _scenario("diag_quadratic_momentum_hutchinson", "diag_quadratic", "momentum",
                  "hutchinson", 0.02, kappa=2.0, flat_fraction=0.375, interval=1),
        _scenario("diag_quadratic_sgd_gradient_kappa0", "diag_quadratic", "sgd", "gradient",
                  0.1, kappa=0.0, flat_fraction=0.5, interval=3),
        _scenario("diag_quadratic_adamw_exact_f32", "diag_quadratic", "adamw", "exact", 0.05,
                  dtype="float32", kappa=1.5, flat_fraction=0.5, interval=5, start_step=5),
        # Ill-conditioned dense quadratic.
        _scenario("dense_quadratic_sgd_gradient", "dense_quadratic", "sgd", "gradient", 0.1,
                  kappa=1.0, flat_fraction=0.5, interval=5, start_step=10),
        _scenario("dense_quadratic_nesterov_hutchinson2", "dense_quadratic", "nesterov",
                  "hutchinson", 0.03, kappa=1.0, flat_fraction=0.625, interval=4, ema=0.5,
                  num_probes=2),
        _scenario("dense_quadratic_adamw_exact_kappa_schedule", "dense_quadratic", "adamw",
                  "exact", 0.05, kappa=rising_kappa, flat_fraction=0.5, interval=10),
        _scenario("dense_quadratic_sam_gradient", "dense_quadratic", "sam", "gradient", 0.1,
                  kappa=1.0, flat_fraction=0.5, interval=2, rho=0.05),
        _scenario("dense_quadratic_momentum_exact_gamma0", "dense_quadratic", "momentum",
                  "exact", 0.03, kappa=2.0, flat_fraction=0.0, interval=1),
        # Softmax regression.
        _scenario("logistic_sgd_fisher", "logistic", "sgd", "fisher", 0.5,
                  kappa=1.0, flat_fraction=0.5, interval=5),
        _scenario("logistic_adamw_fisher", "logistic", "adamw", "fisher", 0.05,
                  kappa=2.0, flat_fraction=0.6, interval=1, start_step=3),
        # Draw seed 0 makes the first probe constant across classes, a direction
        # in which the softmax cross-entropy is flat (H z = 0): the estimate would
        # be rounding noise. Seed 1 draws informative probes.
        _scenario("logistic_momentum_hutchinson", "logistic", "momentum", "hutchinson", 0.2,
                  seed=1, kappa=1.0, flat_fraction=0.5, interval=3, ema=0.9),
        _scenario("logistic_sam_fisher", "logistic", "sam", "fisher", 0.5,
                  kappa=1.0, flat_fraction=0.4, interval=4, rho=0.05),
        _scenario("logistic_adamw_gradient_gamma_schedule", "logistic", "adamw", "gradient",
                  0.05, kappa=1.0, flat_fraction=rising_flat_fraction, interval=5),
        _scenario("logistic_nesterov_exact_f32", "logistic", "nesterov", "exact", 0.2,
                  dtype="float32", kappa=1.0, flat_fraction=0.5, interval=5),
        # Two-layer tanh MLP classifier.
        _scenario("mlp_sgd_exact", "mlp", "sgd", "exact", 0.5,
                  kappa=1.0, flat_fraction=0.5, interval=10),
        _scenario("mlp_adamw_fisher", "mlp", "adamw", "fisher", 0.02,
                  kappa=2.0, flat_fraction=0.6, interval=5, start_step=5, ema=0.5),
        _scenario("mlp_momentum_hutchinson2", "mlp", "momentum", "hutchinson", 0.1,
                  kappa=1.0, flat_fraction=0.5, interval=5, num_probes=2),
        _scenario("mlp_sam_gradient_adaptive", "mlp", "sam", "gradient", 0.3,
                  kappa=1.0, flat_fraction=0.5, interval=5, rho=0.5, adaptive=True),
        _scenario("mlp_sgd_fisher_f32", "mlp", "sgd", "fisher", 0.3, steps=30,
                  dtype="float32", kappa=1.0, flat_fraction=0.5, interval=10),
        # IRE_SPEC's toy manifold: u is the flat direction.
        _scenario("manifold_sgd_exact", "manifold", "sgd", "exact", 0.2,
                  kappa=2.0, flat_fraction=0.2, interval=1),
        _scenario("manifold_sam_hutchinson", "manifold", "sam", "hutchinson", 0.2,
                  kappa=2.0, flat_fraction=0.2, interval=5, rho=0.1),
        _scenario("manifold_sam_exact_adaptive_kappa_decay", "manifold", "sam", "exact", 0.2,
                  kappa=decaying_kappa, flat_fraction=0.2, interval=2, rho=0.2, adaptive=True,
                  start_step=4),
        _scenario("manifold_nesterov_gradient", "manifold", "nesterov", "gradient", 0.05,
                  kappa=1.0, flat_fraction=0.4, interval=5, ema=0.5),
    ]
)
"""Every scenario, by name (``{problem}_{base}_{estimator}[_{variant}]``)."""


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
