"""Small differentiable problems shared by the JAX tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


def mlp_problem(seed: int = 0, features: int = 3, hidden: int = 4, classes: int = 3, n: int = 8):
    """A tanh MLP classifier: (params as a list of float64 arrays, x, y)."""
    rng = np.random.default_rng(seed)
    params = [
        rng.normal(size=(features, hidden)) * 0.8,
        rng.normal(size=(hidden,)) * 0.1,
        rng.normal(size=(hidden, classes)) * 0.8,
        rng.normal(size=(classes,)) * 0.1,
    ]
    x = rng.normal(size=(n, features))
    y = rng.integers(0, classes, size=n)
    return params, x, y


def logits(params, x):
    w1, b1, w2, b2 = params
    return jnp.tanh(x @ w1 + b1) @ w2 + b2


def loss(params, x, y):
    log_probs = jax.nn.log_softmax(logits(params, x), axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, jnp.asarray(y)[:, None], axis=-1))


def hessian_diagonal(loss_fn, params) -> list:
    """The exact Hessian diagonal by a dense ``jax.hessian`` (small problems)."""
    flat, unravel = ravel_pytree([jnp.asarray(p) for p in params])
    h = jax.hessian(lambda v: loss_fn(unravel(v)))(flat)
    return unravel(jnp.diag(h))


def hutchinson_by_hessian(loss_fn, params, probes) -> list:
    """mean_j z_j ⊙ (H z_j) with H the dense Hessian (independent of HVPs)."""
    flat, unravel = ravel_pytree([jnp.asarray(p) for p in params])
    h = jax.hessian(lambda v: loss_fn(unravel(v)))(flat)
    total = 0
    for z in probes:
        zf, _ = ravel_pytree([jnp.asarray(a) for a in z])
        total = total + zf * (h @ zf)
    return unravel(total / len(probes))
