"""The invariants of docs/algorithm.md (Invariants) on the NumPy reference; the
invariant "same trajectory on every backend" lives in the conformance suite."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ire_core import IREConfig, amplify_displacement, amplify_update
from ire_core.reference import SGD, AdamW, ReferenceIRE


def quadratic(h):
    """L = ½ Σ h θ²: gradient and exact curvature."""
    return (lambda params: [h * params[0]]), (lambda params: [h.copy()])


def run(opt, params, grad_fn, curvature_fn, steps, lr=None):
    state = opt.init(params)
    trajectory = [params]
    for _ in range(steps):
        params, state = opt.step(
            params, grad_fn(params), state, curvature=lambda p=params: curvature_fn(p), lr=lr
        )
        trajectory.append(params)
    return trajectory, state


H = np.array([0.01, 0.02, 0.05, 1.0, 2.0, 4.0])
THETA0 = [np.ones(6)]


@pytest.mark.parametrize(
    "changes",
    [dict(kappa=0.0), dict(flat_fraction=0.0), dict(start_step=1000)],
    ids=["kappa0", "gamma0", "before_start"],
)
@pytest.mark.parametrize("make_base", [lambda: SGD(0.1, momentum=0.9), lambda: AdamW(0.05)])
def test_invariant1_identical_to_the_base_bit_for_bit(changes, make_base):
    grad, curvature = quadratic(H)
    config = IREConfig(kappa=2.0, flat_fraction=0.5, interval=3).replace(**changes)
    ire, _ = run(ReferenceIRE(make_base(), config), THETA0, grad, curvature, 25)
    base, state = make_base(), None
    params, state = THETA0, base.init(THETA0)
    for step in range(25):
        np.testing.assert_array_equal(ire[step][0], params[0])
        params, state = base.step(params, grad(params), state)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    kappa=st.floats(0, 10),
    gamma=st.floats(0, 1),
)
def test_invariant2_coordinates_outside_the_mask_get_the_base_update(seed, kappa, gamma):
    rng = np.random.default_rng(seed)
    delta = rng.normal(size=50)
    theta = rng.normal(size=50)
    mask = rng.random(50) < gamma
    amplified = amplify_update(delta, mask, kappa)
    np.testing.assert_array_equal(amplified[~mask], delta[~mask])
    moved = theta + delta
    displaced = amplify_displacement(moved, theta, mask, kappa)
    np.testing.assert_array_equal(displaced[~mask], moved[~mask])
    np.testing.assert_allclose(displaced[mask] - theta[mask], (1 + kappa) * delta[mask], atol=1e-12)


@pytest.mark.parametrize("kappa", [0.5, 1.0, 3.0])
def test_invariant3_flat_coordinates_descend_with_lr_times_one_plus_kappa(kappa):
    lr, steps = 0.1, 40
    grad, curvature = quadratic(H)
    config = IREConfig(kappa=kappa, flat_fraction=0.5, interval=1)
    trajectory, state = run(ReferenceIRE(SGD(lr), config), THETA0, grad, curvature, steps)
    flat = H <= np.sort(H)[2]
    assert state.mask[0].tolist() == flat.tolist()
    expected = np.where(flat, (1 - lr * (1 + kappa) * H) ** steps, (1 - lr * H) ** steps)
    np.testing.assert_allclose(trajectory[-1][0], expected, rtol=1e-12)


@pytest.mark.parametrize("gamma", [0.0, 0.2, 0.5, 0.7, 1.0])
def test_invariant4_flat_count_is_the_number_at_or_below_tau(gamma):
    grad, curvature = quadratic(H)
    config = IREConfig(kappa=1.0, flat_fraction=gamma, interval=1)
    _, state = run(ReferenceIRE(SGD(0.1), config), THETA0, grad, curvature, 1)
    assert int(state.mask[0].sum()) == int(np.floor(gamma * H.size + 1e-9))
