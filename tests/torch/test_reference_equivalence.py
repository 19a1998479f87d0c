"""ire_torch walks the NumPy reference trajectory (float64, 100 steps).

The problems and their exact NumPy derivatives come from
``conformance.problems``; the torch side is ``ire_torch``'s public API fed the
same probes and label uniforms (``probes_fn``, ``label_uniforms_fn``), through
the torch conformance driver.
"""

from __future__ import annotations

import numpy as np
import pytest

from conformance.drivers.reference_driver import ReferenceDriver
from conformance.drivers.torch_driver import TorchDriver
from conformance.problems import build_problem
from conformance.protocol import Scenario
from ire_core import IREConfig

STEPS = 100
TOLERANCE = 1e-10

BASES = {"sgd": 0.3, "momentum": 0.05, "adamw": 0.01, "sam": 0.3}
ESTIMATORS = ("gradient", "fisher", "hutchinson", "exact")


def _scenario(base, estimator, problem="mlp", steps=STEPS, **config):
    settings = dict(kappa=1.5, flat_fraction=0.5, interval=3, start_step=2)
    if estimator == "hutchinson":
        settings["num_probes"] = 2
    if base == "sam":
        settings["rho"] = 0.05
    settings.update(config)
    return Scenario(
        name=f"{problem}_{base}_{estimator}",
        problem=build_problem(problem, seed=1),
        base=base,
        estimator=estimator,
        config=IREConfig(estimator=estimator, **settings),
        lr=BASES[base],
        steps=steps,
        seed=3,
    )


def _assert_same_trajectory(scenario):
    reference = ReferenceDriver().run(scenario)
    got = TorchDriver().run(scenario)
    assert sorted(got.masks) == sorted(reference.masks)
    assert len(reference.masks) > 10
    for step, masks in reference.masks.items():
        for want, have in zip(masks, got.masks[step]):
            np.testing.assert_array_equal(have, want, err_msg=f"mask of step {step}")
    worst = max(
        float(np.max(np.abs(a - b)))
        for want, have in zip(reference.params, got.params)
        for a, b in zip(want, have)
    )
    assert worst <= TOLERANCE, worst
    np.testing.assert_allclose(got.losses, reference.losses, rtol=0, atol=TOLERANCE)
    # IRE really acted: coordinates were flat while it was active.
    assert any(m.any() for masks in got.masks.values() for m in masks)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("base", list(BASES))
def test_matches_reference_over_100_steps(base, estimator):
    _assert_same_trajectory(_scenario(base, estimator))


@pytest.mark.parametrize(
    "base, estimator, config",
    [
        ("momentum", "hutchinson", dict(ema=0.9, interval=1)),
        ("adamw", "fisher", dict(ema=0.5, interval=5, start_step=0)),
        ("sam", "exact", dict(adaptive=True, rho=0.2, kappa=lambda t: 3.0 / (1 + 0.1 * t))),
        ("sgd", "gradient", dict(flat_fraction=lambda t: 0.2 + 0.005 * t, interval=7)),
    ],
    ids=["ema-every-step", "ema-fisher", "asam-kappa-schedule", "gamma-schedule"],
)
def test_matches_reference_with_moving_average_schedules_and_asam(base, estimator, config):
    _assert_same_trajectory(_scenario(base, estimator, **config))


def test_matches_reference_on_softmax_regression_with_fisher():
    _assert_same_trajectory(_scenario("adamw", "fisher", problem="logistic"))
