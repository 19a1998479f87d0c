"""SAM-IRE: sharpness-aware minimisation with IRE on top.

SAM takes the base step with g̃ = ∇L(θ + e), e = ρ·g/‖g‖ (ASAM:
e = ρ·T²g/‖Tg‖, T = |θ|); IRE then amplifies that step on the flat mask.
The perturbation is ``ire_core.sam_perturbation``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

import ire_core

from ._hyperparams import resolve
from .transform import _transformation

__all__ = ["SamGradients", "sam_gradients", "sam_ire"]


class SamGradients(NamedTuple):
    """Result of :func:`sam_gradients`.

    Attributes:
      grads: g = ∇L(θ).
      sam_grads: g̃ = ∇L(θ + e), the gradient SAM steps with.
    """

    grads: Any
    sam_grads: Any


def _perturbed_grads(loss_fn: Callable, params, grads, rho, adaptive: bool, eps):
    leaves, treedef = jax.tree_util.tree_flatten(params)
    e = ire_core.sam_perturbation(jax.tree_util.tree_leaves(grads), leaves, rho, adaptive, eps)
    shifted = jax.tree_util.tree_unflatten(
        treedef, [(p + d).astype(p.dtype) for p, d in zip(leaves, e)]
    )
    return jax.grad(loss_fn)(shifted)


def sam_gradients(
    loss_fn: Callable, params, rho: float, adaptive: bool = False, eps: float = 1e-12
) -> SamGradients:
    """Both gradients of one SAM step: at θ and at θ + e.

    Use it to compose SAM with :func:`ire_jax.ire` by hand:
    ``tx.update(sam.sam_grads, state, params, curvature_grads=sam.grads)``.

    Args:
      loss_fn: ``params -> scalar`` on the current batch.
      params: θ.
      rho: SAM radius ρ.
      adaptive: adaptive SAM (ASAM).
      eps: added to the perturbation's norm.

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda p: 0.5 * jnp.sum(p ** 2)
      >>> [round(g, 6) for g in sam_gradients(loss, jnp.array([3.0, 4.0]), rho=0.5).sam_grads.tolist()]
      [3.3, 4.4]
    """
    grads = jax.grad(loss_fn)(params)
    return SamGradients(grads, _perturbed_grads(loss_fn, params, grads, rho, adaptive, eps))


def sam_ire(
    inner: optax.GradientTransformation,
    rho: float = 0.05,
    adaptive: bool = False,
    sam_eps: float = 1e-12,
    kappa: float | Callable = 2.0,
    flat_fraction: float | Callable = 0.6,
    interval: int = 10,
    ema: float = 0.0,
    start_step: int = 0,
    estimator: str | Callable = "gradient",
    num_probes: int = 1,
    kappa_follows_lr: bool = False,
    peak_lr: float | None = None,
    learning_rate: Any = None,
    seed: int = 0,
    threshold_fn: Callable | None = None,
) -> optax.GradientTransformationExtraArgs:
    """SAM-IRE: the inner optimizer steps with the SAM gradient, IRE amplifies.

    ``update(grads, state, params, loss_fn=...)`` takes the ordinary gradient
    g = ∇L(θ) (which a training step computes anyway, with the loss) and the
    loss ``params -> scalar`` on the same batch; it computes e and
    g̃ = ∇L(θ + e) itself (one more forward/backward pass), feeds g̃ to the
    inner optimizer and applies IRE. The ``gradient`` estimator uses g (at θ),
    ``hutchinson`` uses the same ``loss_fn``. Other arguments are those of
    :func:`ire_jax.ire`.

    Args:
      inner: the base optimizer (SGD in the paper).
      rho: SAM radius ρ >= 0.
      adaptive: adaptive SAM (ASAM) with ``T = |θ|``.
      sam_eps: added to the perturbation's norm.
      kappa, flat_fraction, interval, ema, start_step, estimator: as in
        :func:`ire_jax.ire`.
      num_probes, kappa_follows_lr, peak_lr, learning_rate, seed, threshold_fn: as in
        :func:`ire_jax.ire`.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with an
      :class:`ire_jax.IREState`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, ire_jax
      >>> loss = lambda p: 0.5 * jnp.sum(jnp.array([0.1, 1.0]) * p ** 2)
      >>> tx = ire_jax.sam_ire(optax.sgd(0.1), rho=0.05, kappa=1.0, flat_fraction=0.5)
      >>> params = jnp.array([1.0, 1.0])
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jax.grad(loss)(params), state, params, loss_fn=loss)
      >>> [round(u, 4) for u in updates.tolist()]
      [-0.0201, -0.105]
    """
    hp = resolve(
        kappa=kappa,
        flat_fraction=flat_fraction,
        interval=interval,
        ema=ema,
        start_step=start_step,
        estimator=estimator,
        num_probes=num_probes,
        kappa_follows_lr=kappa_follows_lr,
        peak_lr=peak_lr,
        learning_rate=learning_rate,
        seed=seed,
        rho=rho,
        adaptive=adaptive,
        sam_eps=sam_eps,
        threshold_fn=threshold_fn,
    )

    def prepare(grads, params, extra_args):
        loss_fn = extra_args.get("loss_fn")
        if loss_fn is None:
            raise ValueError(
                "sam_ire needs loss_fn= (a function params -> scalar loss on the "
                "batch of grads) in update(), got loss_fn=None"
            )
        if params is None:
            raise ValueError("sam_ire needs params in update(), got params=None")
        sharp = _perturbed_grads(loss_fn, params, grads, hp.rho, adaptive, hp.sam_eps)
        extra = dict(extra_args)
        extra.setdefault("curvature_grads", grads)
        return sharp, extra

    return _transformation(hp, inner, prepare)
