"""Small differentiable problems shared by the JAX tests.

The tanh MLP's logits and loss are the conformance problem's
(:class:`conformance.problems.Mlp`, written once over the array API), on data
sized for these tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from conformance.problems import Mlp


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
    """tanh(x W1 + b1) W2 + b2 for ``params = [W1, b1, W2, b2]``."""
    return Mlp({"x": x}).logits(list(params))


def loss(params, x, y):
    """The mean cross-entropy of :func:`logits` on the integer labels ``y``."""
    return Mlp({"x": x, "y": jnp.asarray(y)}).loss(list(params))


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
