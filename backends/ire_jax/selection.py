"""The exact flat-mask threshold for JAX: τ, the k-th smallest value, jit-friendly.

Small models, and models on a single accelerator, are sorted. Everything else
runs the search over bit patterns of :mod:`ire_core.bit_search` (exact; ``k``
may be traced; no concatenation or sort of the whole model), with JAX's
control flow and its counting passes: the comparison's bools are counted
four at a time, and on the CPU every pass runs over cache-sized slices
(:mod:`ire_jax._reduce`), so XLA's CPU backend does not write the whole
comparison out before summing it.

For the ``"gradient"`` estimate ĥ = g², :func:`exact_threshold_of_squares`
runs the same search over |g|, taken slice by slice from the gradients
themselves, and squares the result: g² is never held in full.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from ire_core import bit_search

from ._reduce import packed_count_true, reduce_in_chunks

__all__ = [
    "DEVICE_SORT_SIZE",
    "SAMPLE_SIZE",
    "exact_threshold",
    "exact_threshold_of_squares",
    "smallest_magnitude",
]

# Size cut-offs, in values over the whole model; why, one line each.
#: Sorted outright up to this: the search would sort a sample as large.
SAMPLE_SIZE = bit_search.SAMPLE_SIZE
#: Sorted up to this on one device other than the CPU: each probe is a host round trip.
DEVICE_SORT_SIZE = 1 << 26
# (ire_jax._reduce.CHUNK: values per slice of a CPU counting pass, so a slice stays in cache.)


class _JaxOps:
    """:class:`ire_core.bit_search.SearchOps` for JAX: ``lax`` control flow,
    packed counting, and on the CPU passes in slices."""

    while_loop = staticmethod(lax.while_loop)
    bitcast = staticmethod(lax.bitcast_convert_type)
    count_true = staticmethod(packed_count_true)

    @staticmethod
    def cond(pred, true_fn, false_fn):
        return lax.cond(pred, true_fn, false_fn)

    @staticmethod
    def reduce(flat, part, combine):
        return reduce_in_chunks(flat, part, combine)


_OPS = _JaxOps()


def exact_threshold(values: Sequence[jax.Array], k) -> jax.Array:
    """τ = the k-th smallest of all ``values`` (1-indexed; +inf for k <= 0).

    Args:
      values: arrays of non-negative numbers (+inf allowed, no NaN), one per
        tensor, of one floating dtype.
      k: the rank, a Python int or a traced integer.

    Returns:
      A 0-d array of the values' dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> float(exact_threshold([jnp.array([5.0, 1.0]), jnp.array([3.0])], 2))
      3.0
    """
    flats = [jnp.reshape(v, (-1,)) for v in values]
    dtype = jnp.result_type(*flats) if flats else jnp.float32
    return bit_search.threshold(jnp, [f.astype(dtype) for f in flats], k, _rank)


def exact_threshold_of_squares(grads: Sequence[jax.Array], k) -> jax.Array:
    """τ = the k-th smallest g² of all ``grads``, with g² never written out.

    Squaring is monotone, so τ is the square of the k-th smallest |g|: the
    search of :func:`exact_threshold` runs over the gradients themselves,
    taking |g| of each slice as it reads it.

    Args:
      grads: arrays of one floating dtype, one per tensor. A NaN ranks as
        +inf, as in the selection rule.
      k: the rank, a Python int or a traced integer.

    Returns:
      A 0-d array of the gradients' dtype: ``exact_threshold`` of the
      selection values of ``g * g`` (+inf for k <= 0).

    Raises:
      ValueError: when the gradients' dtypes differ.

    Example:
      >>> import jax.numpy as jnp
      >>> float(exact_threshold_of_squares([jnp.array([-3.0, 1.0]), jnp.array([2.0])], 2))
      4.0
    """
    flats = [jnp.reshape(g, (-1,)) for g in grads]
    n = sum(f.shape[0] for f in flats)
    return bit_search.threshold_of_squares(
        jnp, flats, k, _rank, searched=not _sorts_outright(n), magnitude=_magnitude
    )


def smallest_magnitude(x) -> jax.Array:
    """The smallest |x| of an array (NaN as +inf; +inf when empty), taken
    slice by slice: |x| is not written out.

    Example:
      >>> import jax.numpy as jnp
      >>> float(smallest_magnitude(jnp.array([jnp.nan, -2.0, 3.0])))
      2.0
    """
    flat = jnp.reshape(x, (-1,))
    if flat.shape[0] == 0:
        return jnp.asarray(jnp.inf, x.dtype)
    return reduce_in_chunks(flat, lambda part: jnp.min(_magnitude(part)), jnp.minimum)


def _magnitude(x):
    """|x| with NaN as +inf: the ranking value of x."""
    return jnp.where(jnp.isnan(x), jnp.inf, jnp.abs(x))


def _rank(flats: list, k, n: int, prepare):
    """The k-th smallest ``prepare``'d value: a sort, or the search."""
    if _sorts_outright(n):
        return bit_search.kth_sorted(jnp, _OPS, [prepare(f) for f in flats], k)
    return bit_search.kth_smallest(jnp, _OPS, flats, k, prepare)


def _sorts_outright(n: int) -> bool:
    """Whether ``n`` values are sorted rather than searched (a sharded model
    is searched: a sort would gather it)."""
    if n <= SAMPLE_SIZE:
        return True
    return (n <= DEVICE_SORT_SIZE and jax.default_backend() != "cpu"
            and jax.device_count() == 1)
