"""ire_jax against the NumPy reference (ire_core.reference), float64.

Every base optimizer with every estimator, 100 steps, agreement to 1e-10.
The same draws (ire_core.draws) are fed to both sides: to ire_jax through
``probes=`` / ``label_uniforms=``, to the reference inside its curvature.
The reference's curvature uses dense Hessians, not HVPs, so the two sides
share no autodiff code path.

Base optimizer definitions: optax.sgd(momentum=μ) keeps ``trace = g + μ·trace``
from a zero trace and steps with the trace (Nesterov: ``g + μ·trace``), which
is torch.optim.SGD's buffer with dampening 0 (torch's first buffer is g
itself, and g + μ·0 = g). optax.adamw divides by ``sqrt(v̂) + eps`` with
bias-corrected v̂ and adds ``weight_decay·θ`` to the update before scaling by
−lr, which is torch.optim.AdamW's ``θ(1 − lr·wd) − lr·m̂/(sqrt(v̂) + eps)``
(same eps placement, same decoupled decay); only the rounding order differs.
optax.adamw's default weight decay is 1e-4 and torch's 1e-2, so it is given
explicitly.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax_problems import hessian_diagonal, hutchinson_by_hessian, logits, loss, mlp_problem

import ire_jax
from ire_core import IREConfig, sample_labels
from ire_core.draws import label_uniforms, rademacher_probes
from ire_core.reference import SGD, AdamW, ReferenceIRE

STEPS = 100
LR = 0.05
SEED = 3

BASES = {
    "sgd": (lambda: optax.sgd(LR), lambda: SGD(lr=LR)),
    "momentum": (lambda: optax.sgd(LR, momentum=0.9), lambda: SGD(lr=LR, momentum=0.9)),
    "nesterov": (
        lambda: optax.sgd(LR, momentum=0.9, nesterov=True),
        lambda: SGD(lr=LR, momentum=0.9, nesterov=True),
    ),
    "adamw": (
        lambda: optax.adamw(LR, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01),
        lambda: AdamW(lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
    ),
    "sam": (lambda: optax.sgd(LR), lambda: SGD(lr=LR)),
}
ESTIMATORS = ("gradient", "exact", "hutchinson", "fisher")


def _config(estimator: str, base: str) -> IREConfig:
    return IREConfig(
        kappa=2.0,
        flat_fraction=0.4,
        interval=3,
        ema=0.5 if estimator in ("hutchinson", "exact") else 0.0,
        start_step=2,
        estimator=estimator,
        num_probes=2,
        rho=0.05 if base == "sam" else 0.0,
        adaptive=False,
    )


_grad = jax.jit(jax.grad(loss))
_logits = jax.jit(logits)
_hessian_diagonal = jax.jit(lambda params, x, y: hessian_diagonal(lambda p: loss(p, x, y), params))
_hutchinson = jax.jit(
    lambda params, x, y, probes: hutchinson_by_hessian(lambda p: loss(p, x, y), params, probes)
)


def _reference_curvature(estimator, params, x, y, draws_step):
    if estimator == "exact":
        return [np.asarray(h) for h in _hessian_diagonal(params, x, y)]
    if estimator == "hutchinson":
        probes = rademacher_probes(SEED, draws_step, [p.shape for p in params], 2)
        return [np.asarray(h) for h in _hutchinson(params, x, y, probes)]
    if estimator == "fisher":
        uniforms = label_uniforms(SEED, draws_step, (x.shape[0],))
        labels = sample_labels(np.asarray(_logits(params, x)), uniforms)
        return [np.asarray(g) ** 2 for g in _grad(params, x, labels)]
    return None


def _run_reference(base: str, estimator: str, params0, x, y):
    config = _config(estimator, base)
    opt = ReferenceIRE(BASES[base][1](), config)
    params = [np.array(p) for p in params0]
    state = opt.init(params)
    grad_fn = _grad
    trajectory = [params]
    for t in range(STEPS):

        def curvature(t=t, params=params):
            return _reference_curvature(estimator, params, x, y, t)

        feed = None if estimator == "gradient" else curvature
        if base == "sam":
            params, state = opt.sam_step(
                params, lambda p: [np.asarray(g) for g in grad_fn(p, x, y)], state, curvature=feed
            )
        else:
            grads = [np.asarray(g) for g in grad_fn(params, x, y)]
            params, state = opt.step(params, grads, state, curvature=feed)
        trajectory.append(params)
    return trajectory


def _transformation(base: str, estimator: str):
    config = _config(estimator, base)
    kwargs = dict(
        config.keywords("estimator", "kappa_follows_lr", "rho", "adaptive", "sam_eps"),
        estimator=estimator,
    )
    if base == "sam":
        return ire_jax.sam_ire(BASES[base][0](), rho=config.rho, **kwargs)
    return ire_jax.ire(BASES[base][0](), **kwargs)


def _run_jax(base: str, estimator: str, params0, x, y, jit: bool = True, steps: int = STEPS):
    tx = _transformation(base, estimator)
    params = [jnp.asarray(p) for p in params0]
    state = tx.init(params)

    def step(params, state, probes, uniforms):
        loss_fn = functools.partial(loss, x=x, y=y)
        grads = jax.grad(loss_fn)(params)
        feed = {}
        if base == "sam" or estimator == "hutchinson":
            feed["loss_fn"] = loss_fn
        if estimator == "exact":
            feed["curvature_fn"] = lambda p, key: [jnp.asarray(d) for d in _exact_jax(loss_fn, p)]
        if estimator == "hutchinson":
            feed["probes"] = probes
        if estimator == "fisher":
            feed["logits_fn"] = functools.partial(logits, x=x)
            feed["label_uniforms"] = uniforms
        updates, state = tx.update(grads, state, params, **feed)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step) if jit else step
    trajectory = [[np.asarray(p) for p in params]]
    for t in range(steps):
        probes = rademacher_probes(SEED, t, [p.shape for p in params0], 2)
        uniforms = label_uniforms(SEED, t, (x.shape[0],))
        params, state = step(params, state, probes, uniforms)
        trajectory.append([np.asarray(p) for p in params])
    return trajectory, state


def _exact_jax(loss_fn, params):
    from jax.flatten_util import ravel_pytree

    flat, unravel = ravel_pytree(params)
    return unravel(jnp.diag(jax.hessian(lambda v: loss_fn(unravel(v)))(flat)))


def _max_error(a, b) -> float:
    return max(float(np.max(np.abs(p - q))) for pa, pb in zip(a, b) for p, q in zip(pa, pb))


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("base", sorted(BASES))
def test_matches_reference(base, estimator):
    params0, x, y = mlp_problem()
    expected = _run_reference(base, estimator, params0, x, y)
    got, state = _run_jax(base, estimator, params0, x, y)
    assert int(state.refreshes) == len(range(2, STEPS, 3))
    assert _max_error(got, expected) <= 1e-10
    # IRE did something: the trajectory differs from the plain base optimizer.
    assert _max_error(expected, _plain_trajectory(base)) > 1e-3


@functools.cache
def _plain_trajectory(base):
    params0, x, y = mlp_problem()
    return _run_plain(base, params0, x, y)


def _run_plain(base, params0, x, y):
    opt = ReferenceIRE(BASES[base][1](), IREConfig(kappa=0.0, rho=0.05 if base == "sam" else 0.0))
    params = [np.array(p) for p in params0]
    state = opt.init(params)
    grad_fn = _grad
    out = [params]
    for _ in range(STEPS):
        if base == "sam":
            params, state = opt.sam_step(
                params, lambda p: [np.asarray(g) for g in grad_fn(p, x, y)], state
            )
        else:
            grads = [np.asarray(g) for g in grad_fn(params, x, y)]
            params, state = opt.step(params, grads, state)
        out.append(params)
    return out


@pytest.mark.parametrize("base,estimator", [("adamw", "hutchinson"), ("sam", "fisher")])
def test_jit_and_eager_identical(base, estimator):
    params0, x, y = mlp_problem(seed=1)
    # Eager JAX dispatches op by op: a few steps, one refresh (t = 2).
    jitted, _ = _run_jax(base, estimator, params0, x, y, jit=True, steps=4)
    eager, state = _run_jax(base, estimator, params0, x, y, jit=False, steps=4)
    assert int(state.refreshes) == 1
    assert _max_error(jitted, eager) <= 1e-12
