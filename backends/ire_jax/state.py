"""The state of an IRE transformation and what can be read from it."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import ire_core

__all__ = ["IREState", "mask_stats", "refresh_due"]


class IREState(NamedTuple):
    """State of :func:`ire_jax.ire` and :func:`ire_jax.sam_ire`.

    A pytree of arrays: it jit-compiles, shards like the parameters and
    saves/restores leaf by leaf.

    Attributes:
      count: optimizer steps taken (0-based index of the next step), int32.
      inner_state: the state of the wrapped optimizer, untouched by IRE.
      mask: the flat mask in force, a bool pytree shaped like the parameters
        (all False before the first refresh).
      curvature: the curvature moving average, shaped like the parameters, or
        ``None`` when ``ema == 0``.
      threshold: τ chosen at the last refresh (+inf before the first).
      flat_count: number of flat coordinates in ``mask``.
      refreshes: number of refreshes so far, int32.
      key: PRNG key (raw ``uint32[2]``) the estimators' draws are split from;
        it advances on refresh steps.
      interval: refresh period K in force (int32; injectable).
      start_step: first step on which IRE is active (int32; injectable).
    """

    count: jax.Array
    inner_state: optax.OptState
    mask: Any
    curvature: Any
    threshold: jax.Array
    flat_count: jax.Array
    refreshes: jax.Array
    key: jax.Array
    interval: jax.Array
    start_step: jax.Array


def refresh_due(state: IREState) -> jax.Array:
    """True (a bool array) when the next ``update`` refreshes the mask.

    Use it to compute an expensive curvature estimate only when it is used,
    e.g. ``jax.lax.cond(ire_jax.refresh_due(state), estimate, zeros, params)``.

    Example:
      >>> import jax.numpy as jnp, optax, ire_jax
      >>> tx = ire_jax.ire(optax.sgd(0.1), interval=3)
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> bool(ire_jax.refresh_due(state))
      True
    """
    return ire_core.is_refresh_step(state.count, state.interval, state.start_step)


def needs_refresh(state: IREState) -> jax.Array:
    """Deprecated alias of :func:`refresh_due`."""
    warnings.warn(
        "ire_jax.needs_refresh is deprecated: use ire_jax.refresh_due(state)",
        DeprecationWarning,
        stacklevel=2,
    )
    return refresh_due(state)


def mask_stats(state: IREState) -> ire_core.MaskStats:
    """The :class:`ire_core.MaskStats` of the mask in force: flat count and
    flat fraction overall and per parameter tensor (in
    ``jax.tree_util.tree_leaves`` order), τ of the last refresh
    (``state.threshold``) and the tensors' shapes. Values are arrays (no
    host transfer); ``step`` is ``None``: the state does not record the
    step of the refresh.

    Example:
      >>> import jax.numpy as jnp, optax, ire_jax
      >>> tx = ire_jax.ire(optax.sgd(0.1), flat_fraction=0.5)
      >>> params = {"w": jnp.array([1.0, 2.0, 3.0, 4.0])}
      >>> state = tx.init(params)
      >>> _, state = tx.update({"w": jnp.array([0.1, 5.0, 0.2, 7.0])}, state, params)
      >>> stats = ire_jax.mask_stats(state)
      >>> float(stats.flat_fraction), round(float(stats.threshold), 6), stats.shapes
      (0.5, 0.04, [(4,)])
    """
    leaves = jax.tree_util.tree_leaves(state.mask)
    if not leaves:
        return ire_core.MaskStats(jnp.zeros((), jnp.int32), 0, jnp.zeros((), jnp.float32), [],
                                  threshold=state.threshold, shapes=[])
    stats = ire_core.mask_statistics(leaves)
    return stats._replace(threshold=state.threshold, shapes=[tuple(m.shape) for m in leaves])
