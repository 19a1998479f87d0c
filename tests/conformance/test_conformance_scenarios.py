"""The scenario registry covers what the suite promises, and every scenario is
well posed: finite, with masks far from ties and γ·N far from integers."""

from __future__ import annotations

import numpy as np
import pytest

from conformance.drivers.reference_driver import ReferenceDriver
from conformance.problems import PROBLEM_NAMES, numpy_model
from conformance.runner import reference_run
from conformance.scenarios import (
    BASES,
    CASES,
    SCENARIOS,
    describe,
    flat_count_margin,
    get_scenario,
    refresh_steps,
    rising_flat_fraction,
    rising_kappa,
)
from ire_core import ESTIMATORS

ALL = list(SCENARIOS.values())


def test_at_least_twenty_scenarios_with_consistent_names():
    assert len(SCENARIOS) >= 20
    for name, scenario in SCENARIOS.items():
        assert scenario.name == name
        assert name.startswith(f"{scenario.problem.name}_{scenario.base}_{scenario.estimator}")
        assert scenario.config.estimator == scenario.estimator


def test_scenarios_are_the_rows_of_the_table():
    assert [case.name for case in CASES] == list(SCENARIOS)
    for case in CASES:
        scenario = SCENARIOS[case.name]
        assert (scenario.problem.name, scenario.base, scenario.estimator, scenario.lr) == (
            case.problem, case.base, case.estimator, case.lr
        )
        assert (scenario.steps, scenario.dtype, scenario.seed) == (case.steps, case.dtype, case.seed)


def test_drivers_name_no_problem():
    # Every driver evaluates the problem's own functions: none branches on a
    # problem's name.
    import pathlib

    import conformance.drivers as drivers

    for path in pathlib.Path(drivers.__file__).parent.glob("*.py"):
        text = path.read_text()
        for name in PROBLEM_NAMES:
            assert f'"{name}"' not in text and f"'{name}'" not in text, (path.name, name)


def test_every_problem_base_and_estimator_is_covered():
    assert {s.problem.name for s in ALL} == set(PROBLEM_NAMES)
    assert {s.base for s in ALL} == set(BASES)
    assert {s.estimator for s in ALL} == set(ESTIMATORS)
    sam = [s for s in ALL if s.base == "sam"]
    assert all(s.config.rho > 0 for s in sam)
    assert {s.config.adaptive for s in sam} == {True, False}
    assert {s.config.num_probes for s in ALL if s.estimator == "hutchinson"} >= {1, 2}
    for problem in PROBLEM_NAMES:
        assert len({s.estimator for s in ALL if s.problem.name == problem}) >= 3, problem


def test_fisher_only_on_classifiers():
    fisher = [s for s in ALL if s.estimator == "fisher"]
    assert {s.problem.name for s in fisher} == {"logistic", "mlp"}


def test_hyperparameter_features_are_covered():
    configs = [s.config for s in ALL]
    assert any(c.start_step > 0 for c in configs)
    assert {1} < {c.interval for c in configs}
    assert any(c.ema > 0 for c in configs)
    assert any(callable(c.kappa) for c in configs)
    assert any(callable(c.flat_fraction) for c in configs)
    assert any(c.kappa == 0 for c in configs if not callable(c.kappa))
    assert any(c.flat_fraction == 0 for c in configs if not callable(c.flat_fraction))
    assert sum(s.dtype == "float32" for s in ALL) >= 2
    assert all(30 <= s.steps <= 60 for s in ALL)


def test_schedules_use_arithmetic_only():
    # They must accept arrays (traced JAX steps, TF tensors) as well as ints.
    steps = np.arange(5, dtype=np.int32)
    np.testing.assert_allclose(rising_kappa(steps), [rising_kappa(int(t)) for t in steps])
    np.testing.assert_allclose(
        rising_flat_fraction(steps), [rising_flat_fraction(int(t)) for t in steps]
    )
    for scenario in ALL:
        for schedule in (scenario.config.kappa, scenario.config.flat_fraction):
            if callable(schedule):
                assert np.all(np.isfinite(schedule(steps)))


@pytest.mark.parametrize("scenario", ALL, ids=lambda s: s.name)
def test_flat_count_is_far_from_rounding(scenario):
    assert flat_count_margin(scenario) >= 0.05
    gamma = scenario.config.flat_fraction
    for t in refresh_steps(scenario):
        value = gamma(t) if callable(gamma) else gamma
        assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("scenario", ALL, ids=lambda s: s.name)
def test_reference_run_is_finite_and_decreases_the_loss(scenario):
    run = reference_run(scenario)
    trajectory = run.trajectory
    assert len(trajectory.params) == scenario.steps + 1
    assert all(np.all(np.isfinite(p)) for params in trajectory.params for p in params)
    assert np.all(np.isfinite(trajectory.losses))
    assert trajectory.losses[-1] < trajectory.losses[0]
    assert sorted(trajectory.masks) == refresh_steps(scenario)


@pytest.mark.parametrize("scenario", ALL, ids=lambda s: s.name)
def test_masks_are_decided_with_a_margin(scenario):
    # A coordinate within rounding of the threshold could be flat on one
    # backend and sharp on another; every refresh keeps a clear gap.
    margins = reference_run(scenario).margins
    floor = 1e-6 if scenario.dtype == "float64" else 1e-3
    assert min(margins.values()) >= floor


@pytest.mark.parametrize("scenario", ALL, ids=lambda s: s.name)
def test_estimates_are_not_rounding_noise(scenario):
    # Every problem is scaled so curvature is of order one; an estimate that
    # is tiny everywhere (e.g. a probe in the Hessian's null space) is made
    # of rounding errors, which backends do not share.
    for t, selection in reference_run(scenario).selections.items():
        largest = max(float(np.max(np.where(np.isfinite(s), s, 0))) for s in selection)
        assert largest >= 1e-8, f"refresh at step {t}: largest curvature {largest:.3g}"


@pytest.mark.parametrize(
    "scenario", [s for s in ALL if s.estimator == "fisher"], ids=lambda s: s.name
)
def test_fisher_label_draws_are_far_from_class_boundaries(scenario):
    # A uniform within rounding of a softmax CDF boundary could sample another
    # label on another backend.
    model = numpy_model(scenario.problem)
    trajectory = reference_run(scenario).trajectory
    floor = 1e-9 if scenario.dtype == "float64" else 1e-5
    for t in trajectory.masks:
        logits = model.logits(trajectory.params[t])
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        cdf = np.cumsum(probs, axis=1) / probs.sum(axis=1, keepdims=True)
        uniforms = scenario.draws.uniforms(t)
        assert np.min(np.abs(cdf[:, :-1] - uniforms[:, None])) >= floor


@pytest.mark.parametrize(
    "scenario", [s for s in ALL if s.dtype == "float32"], ids=lambda s: s.name
)
def test_float32_scenarios_survive_float32_rounding(scenario):
    reference = reference_run(scenario).trajectory
    single = ReferenceDriver(dtype="scenario").run(scenario)
    assert single.params[1][0].dtype == np.float64  # the protocol's output dtype
    for got, want in zip(single.params, reference.params):
        scale = max(np.max(np.abs(w)) for w in want)
        for g, w in zip(got, want):
            assert np.max(np.abs(g - w)) <= 1e-5 * scale
    for t, mask in reference.masks.items():
        for g, w in zip(single.masks[t], mask):
            np.testing.assert_array_equal(g, w)


def test_ire_is_active_and_amplifies_in_every_scenario_but_the_identities():
    for scenario in ALL:
        masks = reference_run(scenario).trajectory.masks
        flat = sum(int(np.sum(m)) for mask in masks.values() for m in mask)
        gamma = scenario.config.flat_fraction
        if not callable(gamma) and gamma == 0:
            assert flat == 0, scenario.name
        else:
            assert flat > 0, scenario.name


def test_describe_and_lookup():
    scenario = get_scenario("mlp_sam_gradient_adaptive")
    assert "ASAM ρ=0.5" in describe(scenario)
    assert "κ=rising_kappa(t)" in describe(get_scenario("dense_quadratic_adamw_exact_kappa_schedule"))
    assert "hutchinson×2" in describe(get_scenario("mlp_momentum_hutchinson2"))
    with pytest.raises(KeyError, match="'missing'"):
        get_scenario("missing")
