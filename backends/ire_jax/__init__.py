"""ire_jax: IRE (Implicit Regularization Enhancement) as optax transformations.

IRE wraps any optax optimizer and multiplies its update by (1 + κ) on the
flattest fraction γ of all coordinates of the model, chosen from a diagonal
curvature estimate refreshed every ``interval`` steps. Everything jit-compiles;
the state is a pytree nesting the inner optimizer's state.

Example:
  >>> import jax, jax.numpy as jnp, optax, ire_jax
  >>> loss = lambda p: 0.5 * jnp.sum(jnp.array([0.1, 1.0, 0.2, 2.0]) * p ** 2)
  >>> tx = ire_jax.ire(optax.sgd(0.1), kappa=1.0, flat_fraction=0.5, interval=10)
  >>> params = jnp.ones(4)
  >>> state = tx.init(params)
  >>> updates, state = jax.jit(tx.update)(jax.grad(loss)(params), state, params)
  >>> params = optax.apply_updates(params, updates)
  >>> int(ire_jax.mask_stats(state).flat_count)
  2

Reference: Mingze Wang et al., "Improving Generalization and Convergence by
Enhancing Implicit Regularization", NeurIPS 2024 (arXiv 2405.20763).
"""

from ._hyperparams import STATIC_ARGS
from .estimators import (
    fisher_diagonal,
    gradient_diagonal,
    hutchinson_diagonal,
    hvp,
    rademacher_like,
    softmax_cross_entropy,
)
from .sam import SamGradients, sam_gradients, sam_ire
from .selection import exact_threshold
from .state import IREState, mask_stats, needs_refresh, refresh_due  # noqa: F401 (deprecated)
from .transform import ire

__all__ = [
    "STATIC_ARGS",
    "IREState",
    "SamGradients",
    "exact_threshold",
    "fisher_diagonal",
    "gradient_diagonal",
    "hutchinson_diagonal",
    "hvp",
    "ire",
    "mask_stats",
    "rademacher_like",
    "refresh_due",
    "sam_gradients",
    "sam_ire",
    "softmax_cross_entropy",
]
