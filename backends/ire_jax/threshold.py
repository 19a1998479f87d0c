"""The exact flat-mask threshold for JAX: a bisection over bit patterns.

XLA's CPU sort is slow, and a sort is more than the k-th smallest value needs.
Non-negative floats order like their bit patterns read as integers, so a
bisection over those integers finds the smallest value v with
``#{x <= v} >= k`` in one counting pass per bit. Every pass is a reduction
that XLA fuses, ``k`` may be traced, and the result is exact: this is the
default ``threshold_fn`` of :func:`ire_jax.ire` and :func:`ire_jax.sam_ire`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["exact_threshold"]


def exact_threshold(values: Sequence[jax.Array], k) -> jax.Array:
    """τ = the k-th smallest of all ``values`` (1-indexed; +inf for k <= 0).

    Args:
      values: arrays of non-negative numbers (+inf allowed), one per tensor.
      k: the rank, a Python int or a traced integer.

    Returns:
      A 0-d array of the values' dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> float(exact_threshold([jnp.array([5.0, 1.0]), jnp.array([3.0])], 2))
      3.0
    """
    flat = jnp.concatenate([jnp.reshape(v, (-1,)) for v in values])
    n = flat.shape[0]
    infinity = jnp.asarray(jnp.inf, dtype=flat.dtype)
    if n == 0:
        return infinity
    tau = _kth_smallest(flat, jnp.clip(k, 1, n))
    return jnp.where(k > 0, tau, infinity)


def _kth_smallest(flat: jax.Array, k) -> jax.Array:
    """Exact k-th smallest (1 <= k <= n) of a 1-d array of values >= 0."""
    bits = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[flat.dtype.itemsize]
    keys = lax.bitcast_convert_type(flat, bits)

    def halve(_, bounds):
        lo, hi = bounds  # #{keys <= lo} < k <= #{keys <= hi}
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(keys <= mid) >= k
        return jnp.where(enough, lo, mid), jnp.where(enough, mid, hi)

    start = (jnp.asarray(-1, dtype=bits), jnp.max(keys))
    _, hi = lax.fori_loop(0, 8 * flat.dtype.itemsize, halve, start)
    return lax.bitcast_convert_type(hi, flat.dtype)
