"""The NumPy reference optimizer: timing, schedules, EMA, SAM, NaN policy."""

import math

import numpy as np
import pytest

from ire_core import IREConfig, sam_perturbation
from ire_core.reference import (
    SGD,
    Adam,
    AdamW,
    ReferenceIRE,
    fisher_estimate,
    hutchinson_estimate,
)

H = np.array([0.1, 0.2, 3.0, 4.0])


def grads_of(params):
    return [H * params[0]]


def test_refreshes_on_start_step_and_every_interval_after():
    seen = []
    config = IREConfig(kappa=1.0, flat_fraction=0.5, interval=4, start_step=3, estimator="exact")
    opt = ReferenceIRE(SGD(0.1), config)
    params, state = [np.ones(4)], opt.init([np.ones(4)])
    for t in range(15):
        params, state = opt.step(
            params, grads_of(params), state, curvature=lambda t=t: seen.append(t) or [H]
        )
    assert seen == [3, 7, 11]
    assert state.refreshes == 3 and state.step == 15


def test_named_estimator_without_curvature_is_an_error():
    opt = ReferenceIRE(SGD(0.1), IREConfig(estimator="hutchinson", interval=1))
    with pytest.raises(ValueError, match="hutchinson"):
        opt.step([np.ones(4)], grads_of([np.ones(4)]), opt.init([np.ones(4)]))


def test_gradient_estimator_uses_squared_gradients():
    opt = ReferenceIRE(SGD(0.1), IREConfig(kappa=1.0, flat_fraction=0.25, interval=1))
    grads = [np.array([3.0, -0.5, 2.0, 1.0])]
    _, state = opt.step([np.ones(4)], grads, opt.init([np.ones(4)]))
    assert state.mask[0].tolist() == [False, True, False, False]


def test_kappa_schedule_and_kappa_following_the_lr():
    config = IREConfig(kappa=lambda t: 1.0 + t, flat_fraction=1.0, interval=1)
    opt = ReferenceIRE(SGD(0.1), config)
    params, state = [np.ones(1)], opt.init([np.ones(1)])
    steps = []
    for _ in range(3):
        new, state = opt.step(params, [np.ones(1)], state)
        steps.append(float(params[0][0] - new[0][0]))
        params = new
    np.testing.assert_allclose(steps, [0.1 * 2, 0.1 * 3, 0.1 * 4])

    follow = ReferenceIRE(SGD(0.2), IREConfig(kappa=2.0, flat_fraction=1.0, kappa_follows_lr=True))
    new, _ = follow.step([np.ones(1)], [np.ones(1)], follow.init([np.ones(1)]), lr=0.1)
    # κ_t = 2 · 0.1 / 0.2 = 1, so the step is 0.1 · (1 + 1).
    assert float(1 - new[0][0]) == pytest.approx(0.2)


def test_flat_fraction_schedule():
    config = IREConfig(kappa=1.0, flat_fraction=lambda t: 0.25 if t < 2 else 0.75, interval=2)
    opt = ReferenceIRE(SGD(0.0), config)
    params, state = [np.ones(4)], opt.init([np.ones(4)])
    counts = []
    for _ in range(4):
        params, state = opt.step(params, grads_of(params), state, curvature=[H])
        counts.append(int(state.mask[0].sum()))
    assert counts == [1, 1, 3, 3]


def test_schedule_returning_a_bad_value_is_an_error():
    opt = ReferenceIRE(SGD(0.1), IREConfig(kappa=lambda t: -1.0, interval=1))
    with pytest.raises(ValueError, match="kappa schedule value"):
        opt.step([np.ones(4)], grads_of([np.ones(4)]), opt.init([np.ones(4)]))


def test_ema_averages_curvature_between_refreshes():
    config = IREConfig(kappa=1.0, flat_fraction=0.5, interval=1, ema=0.5)
    opt = ReferenceIRE(SGD(0.0), config)
    params, state = [np.zeros(2)], opt.init([np.zeros(2)])
    params, state = opt.step(params, [np.zeros(2)], state, curvature=[np.array([1.0, 4.0])])
    assert state.mask[0].tolist() == [True, False]
    params, state = opt.step(params, [np.zeros(2)], state, curvature=[np.array([5.0, 0.0])])
    # The first estimate starts the average; then 0.5·[1, 4] + 0.5·[5, 0] = [3, 2].
    np.testing.assert_allclose(state.curvature[0], [3.0, 2.0])
    assert state.mask[0].tolist() == [False, True]


def test_nan_estimate_never_enters_the_state_and_is_never_flat():
    config = IREConfig(kappa=1.0, flat_fraction=0.5, interval=1, ema=0.9)
    opt = ReferenceIRE(SGD(0.0), config)
    params, state = [np.zeros(2)], opt.init([np.zeros(2)])
    params, state = opt.step(params, [np.zeros(2)], state, curvature=[np.array([1.0, 2.0])])
    params, state = opt.step(params, [np.zeros(2)], state, curvature=[np.array([np.nan, 2.0])])
    assert np.isfinite(state.curvature[0]).all()
    assert state.mask[0].tolist() == [False, True]
    params, state = opt.step(params, [np.zeros(2)], state, curvature=[np.full(2, np.nan)])
    assert state.mask[0].tolist() == [False, True]


def test_sam_step_steps_the_base_with_the_gradient_at_the_perturbed_point():
    rho = 0.05
    config = IREConfig(kappa=0.0, rho=rho, interval=1)
    opt = ReferenceIRE(SGD(0.1), config)
    theta = [np.array([1.0, -2.0, 0.5, 1.5])]
    new, _ = opt.sam_step(theta, grads_of, opt.init(theta))
    e = sam_perturbation(grads_of(theta), theta, rho)
    expected = theta[0] - 0.1 * grads_of([theta[0] + e[0]])[0]
    np.testing.assert_allclose(new[0], expected, rtol=1e-15)
    assert np.linalg.norm(e[0]) == pytest.approx(rho)


def test_adaptive_sam_perturbation_scales_by_parameter_magnitude():
    g, theta = [np.array([1.0, 1.0])], [np.array([2.0, 0.0])]
    e = sam_perturbation(g, theta, 0.1, adaptive=True)[0]
    assert e[1] == 0.0 and e[0] == pytest.approx(0.1 * 4 / 2)


def test_sam_gradient_estimator_uses_the_gradient_at_theta():
    config = IREConfig(kappa=1.0, flat_fraction=0.25, interval=1, rho=0.5)
    opt = ReferenceIRE(SGD(0.1), config)
    theta = [np.array([1.0, 1.0, 1.0, 1.0])]
    _, state = opt.sam_step(theta, grads_of, opt.init(theta))
    assert state.mask[0].tolist() == [True, False, False, False]


def test_hutchinson_on_a_diagonal_hessian_is_exact_for_any_probe():
    probes = [[np.array([1.0, -1.0, 1.0, -1.0])], [np.array([-1.0, -1.0, 1.0, 1.0])]]
    estimate = hutchinson_estimate(lambda p, z: [H * z[0]], [np.ones(4)], probes)
    np.testing.assert_allclose(estimate[0], H)


def test_fisher_estimate_squares_the_gradient_on_sampled_labels():
    logits = np.log(np.array([[0.5, 0.5], [0.1, 0.9]]))
    seen = {}

    def label_grad(params, labels):
        seen["labels"] = labels.tolist()
        return [np.array([1.0, -2.0]) * (1 + labels.sum())]

    estimate = fisher_estimate(lambda p: logits, label_grad, None, np.array([0.7, 0.05]))
    assert seen["labels"] == [1, 0]
    np.testing.assert_allclose(estimate[0], [4.0, 16.0])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SGD(lr=-1.0), "lr"),
        (lambda: SGD(0.1, nesterov=True), "nesterov"),
        (lambda: Adam(betas=(1.0, 0.9)), "betas"),
        (lambda: AdamW(eps=-1.0), "eps"),
    ],
)
def test_reference_bases_validate(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_threshold_is_recorded():
    opt = ReferenceIRE(SGD(0.1), IREConfig(kappa=1.0, flat_fraction=0.5, interval=1))
    assert math.isinf(opt.init([np.ones(4)]).threshold)
    _, state = opt.step([np.ones(4)], grads_of([np.ones(4)]), opt.init([np.ones(4)]))
    assert state.threshold == pytest.approx(0.2**2)
