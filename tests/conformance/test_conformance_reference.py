"""The NumPy reference driver obeys the invariants of docs/algorithm.md
(Invariants) on the scenarios, so that it can serve as the truth every
backend is compared with."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from conformance.drivers.reference_driver import ReferenceDriver, reference_base, selection_margin
from conformance.problems import numpy_model
from conformance.runner import reference_run
from conformance.scenarios import SCENARIOS, get_scenario
from ire_core import flat_count, flat_fraction_at, sample_labels

ALL = list(SCENARIOS.values())


def _base_trajectory(scenario):
    """The base optimizer alone on the scenario's problem (no IRE)."""
    model = numpy_model(scenario.problem)
    base = reference_base(scenario.base, scenario.lr)
    params = list(scenario.problem.params)
    state = base.init(params)
    out = [params]
    for _ in range(scenario.steps):
        params, state = base.step(params, model.grad(params), state)
        out.append(params)
    return out


def test_flat_coordinates_move_with_the_amplified_learning_rate():
    scenario = get_scenario("diag_quadratic_sgd_exact")
    h = scenario.problem.data["h"]
    kappa, lr = scenario.config.kappa, scenario.lr
    flat = h <= np.sort(h)[3]  # γ = 0.5 of 8 coordinates: the 4 smallest curvatures
    trajectory = reference_run(scenario).trajectory
    for t in range(scenario.steps):
        (theta,), (after,) = trajectory.params[t], trajectory.params[t + 1]
        expected = theta - lr * np.where(flat, 1 + kappa, 1.0) * h * theta
        np.testing.assert_allclose(after, expected, rtol=1e-14, atol=0)
        np.testing.assert_array_equal(trajectory.masks[t][0], flat)


@pytest.mark.parametrize(
    "name", ["diag_quadratic_sgd_gradient_kappa0", "dense_quadratic_momentum_exact_gamma0"]
)
def test_identities_equal_the_base_optimizer_bit_for_bit(name):
    scenario = get_scenario(name)
    trajectory = reference_run(scenario).trajectory
    for got, want in zip(trajectory.params, _base_trajectory(scenario)):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_warm_up_steps_equal_the_base_optimizer_then_diverge():
    scenario = get_scenario("dense_quadratic_sgd_gradient")
    start = scenario.config.start_step
    assert start > 0
    trajectory = reference_run(scenario).trajectory
    base = _base_trajectory(scenario)
    for t in range(start + 1):
        np.testing.assert_array_equal(trajectory.params[t][0], base[t][0])
    assert not np.array_equal(trajectory.params[start + 1][0], base[start + 1][0])
    assert min(trajectory.masks) == start


@pytest.mark.parametrize("scenario", ALL, ids=lambda s: s.name)
def test_flat_count_is_floor_of_gamma_n(scenario):
    # No scenario has ties across the threshold, so #flat = ⌊γ_t·N⌋.
    trajectory = reference_run(scenario).trajectory
    total = sum(p.size for p in scenario.problem.params)
    for t, mask in trajectory.masks.items():
        count = sum(int(np.sum(m)) for m in mask)
        assert count == flat_count(flat_fraction_at(scenario.config, t), total)


@pytest.mark.parametrize("scenario", ALL, ids=lambda s: s.name)
def test_losses_are_taken_before_each_step(scenario):
    trajectory = reference_run(scenario).trajectory
    model = numpy_model(scenario.problem)
    for t in (0, scenario.steps // 2, scenario.steps - 1):
        assert trajectory.losses[t] == model.loss(trajectory.params[t])


def test_ire_speeds_up_the_drift_along_the_manifold():
    scenario = get_scenario("manifold_sgd_exact")
    without = dataclasses.replace(
        scenario, name="manifold_sgd_exact_plain", config=scenario.config.replace(kappa=0.0)
    )
    u0 = scenario.problem.params[0][0]
    drift = u0 - reference_run(scenario).trajectory.params[-1][0][0]
    plain = u0 - ReferenceDriver().run(without).params[-1][0][0]
    assert plain > 0
    # u is the flat coordinate: its drift is amplified by about 1 + κ = 3.
    assert 2.5 < drift / plain <= 3.0 + 1e-12


def test_refreshes_use_the_draws_of_their_own_step():
    scenario = get_scenario("logistic_sgd_fisher")
    run = reference_run(scenario)
    model = numpy_model(scenario.problem)
    t = sorted(run.selections)[2]
    params = run.trajectory.params[t]
    labels = sample_labels(model.logits(params), scenario.draws.uniforms(t))
    expected = [g * g for g in model.label_grad(params, labels)]
    for got, want in zip(run.selections[t], expected):
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)

    scenario = get_scenario("mlp_momentum_hutchinson2")
    run = reference_run(scenario)
    model = numpy_model(scenario.problem)
    t = sorted(run.selections)[1]
    params = run.trajectory.params[t]
    probes = scenario.draws.probes(t)
    assert len(probes) == 2
    products = [model.hvp(params, z) for z in probes]
    expected = [
        np.abs(sum(z[i] * hz[i] for z, hz in zip(probes, products)) / 2)
        for i in range(len(params))
    ]
    for got, want in zip(run.selections[t], expected):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_sam_gradient_estimator_uses_the_gradient_at_theta():
    scenario = get_scenario("dense_quadratic_sam_gradient")
    run = reference_run(scenario)
    model = numpy_model(scenario.problem)
    params = run.trajectory.params[0]
    np.testing.assert_array_equal(run.selections[0][0], model.grad(params)[0] ** 2)


def test_moving_average_blends_the_estimates():
    scenario = get_scenario("manifold_nesterov_gradient")
    run = reference_run(scenario)
    model = numpy_model(scenario.problem)
    first, second = sorted(run.selections)[:2]
    beta = scenario.config.ema
    new = [g * g for g in model.grad(run.trajectory.params[second])]
    for got, old, fresh in zip(run.selections[second], run.selections[first], new):
        np.testing.assert_allclose(got, beta * old + (1 - beta) * fresh, rtol=1e-14)


def test_selection_margin():
    values = [np.array([1.0, 2.0]), np.array([4.0])]
    assert selection_margin(values, [np.array([True, True]), np.array([False])]) == 1.0
    assert math.isinf(selection_margin(values, [np.zeros(2, bool), np.zeros(1, bool)]))
    assert math.isinf(selection_margin(values, [np.ones(2, bool), np.ones(1, bool)]))


def test_reference_driver_validates_its_arguments():
    with pytest.raises(ValueError, match="'int8'"):
        ReferenceDriver(dtype="int8")
    with pytest.raises(ValueError, match="'lion'"):
        reference_base("lion", 0.1)
    bad = dataclasses.replace(get_scenario("manifold_sgd_exact"), estimator="fisher",
                              config=get_scenario("manifold_sgd_exact").config.replace(
                                  estimator="fisher"))
    with pytest.raises(ValueError, match="'manifold'"):
        ReferenceDriver().run(bad)
