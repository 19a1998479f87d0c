"""The exact flat-mask threshold for JAX: a search over bit patterns.

XLA's CPU sort is slow, and a sort is more than the k-th smallest value needs.
Non-negative floats (``+inf`` included) order like their bit patterns read as
integers, so τ can be searched for in that integer range: each probe is one
counting pass ``#{x <= pivot}`` over the values, and the count both narrows
the bracket and tells how far the pivot was from rank k. The comparison's
bools are counted four at a time, and on the CPU every pass runs over
cache-sized slices (``ire_jax._reduce``): XLA's CPU backend would otherwise
write the whole comparison out as int32 before summing it.

The first two pivots come from a small sorted sample (the sample's k-th value
and a bound a few standard errors past it); later pivots interpolate between
the bracket's counts, falling back to halving the bracket whenever a probe
failed to halve the number of values inside it. On curvature estimates this
takes about 5–15 passes where a plain bisection takes 32, and the worst case
(heavy ties) stays close to the bisection. The search ends when a pivot lands
next to rank k; one last reduction then reads τ itself. The result is exact,
``k`` may be traced, and no concatenation or sort of the whole model is made.
Models with at most :data:`SAMPLE_SIZE` coordinates are simply sorted, and
so are models of up to :data:`DEVICE_SORT_SIZE` on a single accelerator: a
GPU sorts millions of values in well under a millisecond, while every probe
of the search is a loop iteration whose condition the host reads back.

For the ``"gradient"`` estimate ĥ = g², :func:`exact_threshold_of_squares`
runs the same search over |g|, taken slice by slice from the gradients
themselves, and squares the result: g² is never held in full.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._reduce import packed_count_true, reduce_in_chunks

__all__ = ["DEVICE_SORT_SIZE", "SAMPLE_SIZE", "exact_threshold", "exact_threshold_of_squares"]

#: The largest model that is sorted outright, and the smallest sample sorted
#: to seed the search (the sample grows to 4 × this with the model: one value
#: in 256).
SAMPLE_SIZE = 4096

#: The largest model sorted outright when JAX runs on one device that is not
#: the CPU (the sort holds about 8 bytes per value while it runs). Sharded
#: models are searched: a sort would gather them.
DEVICE_SORT_SIZE = 1 << 26

# After this many probes the search only halves its bracket (at most one
# more probe per bit): a bound on the worst case.
_MAX_INTERPOLATIONS = 24

_KEY_TYPES = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}


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
    flats = [f.astype(dtype) for f in flats if f.shape[0] > 0]
    n = sum(f.shape[0] for f in flats)
    infinity = jnp.asarray(jnp.inf, dtype=dtype)
    if n == 0:
        return infinity
    rank = jnp.clip(jnp.asarray(k), 1, n)
    if _sorts_outright(n):
        tau = _as_value(_sorted_keys(flats)[rank - 1], dtype)
    else:
        tau = _kth_smallest(flats, rank, n)
    return jnp.where(jnp.asarray(k) > 0, tau, infinity)


def exact_threshold_of_squares(grads: Sequence[jax.Array], k) -> jax.Array:
    """τ = the k-th smallest g² of all ``grads``, with g² never written out.

    The ``"gradient"`` estimate ĥ = g² ranks like |g|, and squaring is
    monotone, so τ is the square of the k-th smallest |g|: the search of
    :func:`exact_threshold` runs over the gradients themselves, taking |g| of
    each slice as it reads it. A step whose refresh branch holds g² in full
    holds a second copy of the model in temporaries on every step, taken or
    not (and XLA's CPU backend allocates a step's temporaries afresh each
    call once they pass 32 MiB).

    Args:
      grads: arrays of one floating dtype, one per tensor. A NaN ranks as
        +inf, as in the selection rule.
      k: the rank, a Python int or a traced integer.

    Returns:
      A 0-d array of the gradients' dtype: ``exact_threshold`` of the
      selection values of ``g * g`` (+inf for k <= 0).

    Example:
      >>> import jax.numpy as jnp
      >>> float(exact_threshold_of_squares([jnp.array([-3.0, 1.0]), jnp.array([2.0])], 2))
      4.0
    """
    flats = [jnp.reshape(g, (-1,)) for g in grads]
    if len({f.dtype for f in flats}) > 1:
        raise ValueError(
            f"grads must share one dtype, got {sorted({str(f.dtype) for f in flats})}"
        )
    n = sum(f.shape[0] for f in flats)
    if _sorts_outright(n):
        return exact_threshold([_magnitude(f * f) for f in flats], k)
    flats = [f for f in flats if f.shape[0] > 0]
    dtype = flats[0].dtype
    rank = jnp.clip(jnp.asarray(k), 1, n)
    root = _kth_smallest(flats, rank, n, prepare=_magnitude)
    return jnp.where(jnp.asarray(k) > 0, root * root, jnp.asarray(jnp.inf, dtype))


def _magnitude(x):
    """|x| with NaN as +inf: the ranking value of x."""
    return jnp.where(jnp.isnan(x), jnp.inf, jnp.abs(x))


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


def _sorts_outright(n: int) -> bool:
    if n <= SAMPLE_SIZE:
        return True
    return (n <= DEVICE_SORT_SIZE and jax.default_backend() != "cpu"
            and jax.device_count() == 1)


def _key_type(dtype):
    return _KEY_TYPES[jnp.dtype(dtype).itemsize]


def _as_key(value):
    return lax.bitcast_convert_type(value, _key_type(value.dtype))


def _as_value(key, dtype):
    return lax.bitcast_convert_type(key, dtype)


def _sorted_keys(flats: list) -> jax.Array:
    """The bit patterns of all values, sorted (an integer sort is several
    times faster than a floating-point one on CPU)."""
    return lax.sort(_as_key(jnp.concatenate(flats)))


def _sample(flats: list, n: int, prepare) -> jax.Array:
    """The sorted bit patterns of a sample of the (prepared) values, evenly
    strided in every tensor."""
    wanted = min(4 * SAMPLE_SIZE, max(SAMPLE_SIZE, n // 256))
    picked = []
    for flat in flats:
        size = flat.shape[0]
        share = max(1, round(wanted * size / n))
        picked.append(prepare(flat[:: max(1, size // share)]))
    return _sorted_keys(picked)


class _Bracket(NamedTuple):
    """The search state: ``count(lo) < k <= count(hi)`` on bit patterns.

    ``lo_weight`` and ``hi_weight`` are the residuals ``count - (k - ½)`` the
    interpolation uses; the one of an endpoint kept twice in a row is halved
    (the Illinois rule), so the pivots do not creep up on rank k from one side.
    """

    lo: jax.Array
    lo_count: jax.Array
    lo_weight: jax.Array
    hi: jax.Array
    hi_count: jax.Array
    hi_weight: jax.Array
    probes: jax.Array
    moved_hi: jax.Array  # which endpoint the last probe moved
    in_gap: jax.Array  # the last probe found no value between it and an endpoint


def _kth_smallest(flats: list, k, n: int, prepare=None) -> jax.Array:
    """Exact k-th smallest (1 <= k <= n, traced) of values >= 0 in ``flats``,
    or of ``prepare`` of them (elementwise, applied to each slice as it is
    read: the prepared values are never written out)."""
    prepare = prepare or (lambda x: x)
    dtype = flats[0].dtype
    key_type = _key_type(dtype)
    counter = jnp.int32 if n < 2**31 else jnp.int64
    k = k.astype(counter)
    target = k.astype(jnp.float32) - 0.5

    def count(key):
        pivot = _as_value(key, dtype)
        return sum(
            reduce_in_chunks(f, lambda x: packed_count_true(prepare(x) <= pivot, counter), jnp.add)
            for f in flats
        )

    drawn = _sample(flats, n, prepare)
    m = drawn.shape[0]
    q = k.astype(jnp.float32) / n
    spread = 3.0 * jnp.sqrt(q * (1.0 - q) / m) + 2.0 / m

    def sampled_key(fraction):
        return drawn[jnp.clip(jnp.round(fraction * m).astype(jnp.int32), 0, m - 1)]

    def propose(b: _Bracket):
        width = b.hi - b.lo
        share = -b.lo_weight / (b.hi_weight - b.lo_weight)
        offset = jnp.clip(share * width.astype(jnp.float32), 1.0, None).astype(key_type)
        interpolated = b.lo + jnp.clip(offset, 1, width - 1)
        # The second probe knows on which side of the sample's estimate rank k lies.
        beyond = sampled_key(jnp.where(b.hi_count < n, q - spread, q + spread))
        halve = b.in_gap | (b.probes >= _MAX_INTERPOLATIONS)
        pivot = jnp.where(
            b.probes == 0,
            sampled_key(q - 0.5 / m),
            jnp.where(
                b.probes == 1, beyond, jnp.where(halve, b.lo + width // 2, interpolated)
            ),
        )
        return jnp.clip(pivot, b.lo + 1, b.hi - 1)

    def searching(b: _Bracket):
        return (b.lo_count < k - 1) & (b.hi_count > k) & (b.hi - b.lo > 1)

    def probe(b: _Bracket) -> _Bracket:
        pivot = propose(b)
        c = count(pivot)
        moved_hi = c >= k
        residual = c.astype(jnp.float32) - target
        again = (b.probes >= 2) & (moved_hi == b.moved_hi)
        kept_lo = jnp.where(again, 0.5 * b.lo_weight, b.lo_count.astype(jnp.float32) - target)
        kept_hi = jnp.where(again, 0.5 * b.hi_weight, b.hi_count.astype(jnp.float32) - target)
        return _Bracket(
            lo=jnp.where(moved_hi, b.lo, pivot),
            lo_count=jnp.where(moved_hi, b.lo_count, c),
            lo_weight=jnp.where(moved_hi, kept_lo, residual),
            hi=jnp.where(moved_hi, pivot, b.hi),
            hi_count=jnp.where(moved_hi, c, b.hi_count),
            hi_weight=jnp.where(moved_hi, residual, kept_hi),
            probes=b.probes + 1,
            moved_hi=moved_hi,
            in_gap=(b.probes >= 2) & ((c == b.lo_count) | (c == b.hi_count)),
        )

    start = _Bracket(
        lo=jnp.asarray(-1, key_type),
        lo_count=jnp.asarray(0, counter),
        lo_weight=-target,
        hi=_as_key(jnp.asarray(jnp.inf, dtype)),
        hi_count=jnp.asarray(n, counter),
        hi_weight=n - target,
        probes=jnp.asarray(0, jnp.int32),
        moved_hi=jnp.asarray(False),
        in_gap=jnp.asarray(False),
    )
    b = lax.while_loop(searching, probe, start)

    def largest_up_to_hi():  # exactly k values are <= hi
        bound = _as_value(b.hi, dtype)

        def largest(x):
            x = prepare(x)
            return jnp.max(jnp.where(x <= bound, x, 0))

        return jnp.max(jnp.stack([reduce_in_chunks(f, largest, jnp.maximum) for f in flats]))

    def smallest_above_lo():  # exactly k - 1 values are <= lo (lo = -1: none)
        bound = _as_value(jnp.maximum(b.lo, 0), dtype)

        def smallest(x):
            x = prepare(x)
            return jnp.min(jnp.where((x > bound) | (b.lo < 0), x, math.inf))

        return jnp.min(jnp.stack([reduce_in_chunks(f, smallest, jnp.minimum) for f in flats]))

    return lax.cond(
        b.hi - b.lo <= 1,
        lambda: _as_value(b.hi, dtype),
        lambda: lax.cond(b.hi_count == k, largest_up_to_hi, smallest_above_lo),
    )
