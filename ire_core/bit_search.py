"""The exact k-th smallest by a search over bit patterns, for any array library.

Non-negative floats (``+inf`` included) order like their bit patterns read as
signed integers of the same width, so τ, the k-th smallest value, can be
searched for in that integer range. Each probe is one counting pass
``#{x <= pivot}`` over the values; the count both narrows the bracket
``count(lo) < k <= count(hi)`` and tells how far the pivot was from rank k.

* The first two pivots come from a small sorted sample: the sample's k-th
  value, then a bound a few standard errors past it on the side where rank k
  lies.
* Later pivots interpolate between the bracket's counts. An endpoint kept
  twice in a row has its weight halved (the Illinois rule), so the pivots do
  not creep up on rank k from one side.
* A probe that finds no value between itself and an endpoint (ties) halves
  the bracket instead, and so does every probe after
  :data:`MAX_INTERPOLATIONS`: the worst case is one pass per bit.
* The search ends when a pivot lands next to rank k; one last reduction then
  reads τ itself.

The result is exact; ``k`` may be a traced array; nothing of the size of the
input is concatenated, sorted or, with ``prepare``, written out.

The algorithm is written once, over an array namespace ``xp`` and a
:class:`SearchOps` adapter that each backend supplies for what the array API
lacks: compiled control flow, bit casts, and the counting and reducing passes
it runs its own way. :data:`NUMPY_OPS` runs it eagerly on NumPy. Of ``xp`` it
uses ``asarray``, ``astype``, ``zeros``, ``finfo``, ``where``, ``clip``,
``round``, ``sqrt``, ``maximum``, ``minimum``, ``max``, ``min``, ``add``,
``equal``, ``logical_and``, ``logical_or``, ``stack``, ``concat``, ``take``,
``sort`` and the dtypes ``float32``, ``int16``, ``int32``, ``int64``, with
the arrays' operators (arithmetic, comparisons, basic slicing).

Example:
  >>> import numpy as np
  >>> from ire_core import bit_search
  >>> values = [np.array([5.0, 1.0, 4.0]), np.array([3.0, 2.0])]
  >>> rank = bit_search.searcher(np, bit_search.NUMPY_OPS)
  >>> float(bit_search.threshold(np, values, 3, rank))
  3.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = [
    "MAX_INTERPOLATIONS",
    "NUMPY_OPS",
    "SAMPLE_SIZE",
    "NumpyOps",
    "SearchOps",
    "counter_dtype",
    "kth_smallest",
    "kth_sorted",
    "searcher",
    "sorted_keys",
    "threshold",
    "threshold_of_squares",
]

#: The smallest sample sorted to seed the search (it grows to four times this
#: with the input: one value in 256). An input this small is better sorted whole.
SAMPLE_SIZE = 4096

#: After this many probes the search only halves its bracket (at most one
#: more probe per bit): a bound on the worst case.
MAX_INTERPOLATIONS = 24

# The sample's share of the input and its growth cap (see SAMPLE_SIZE).
_SAMPLE_STRIDE = 256
_SAMPLE_GROWTH = 4


def _identity(x):
    return x


class SearchOps(Protocol):
    """What a backend supplies for the search beyond its array namespace.

    ``state`` below is a tuple of 0-d arrays (a ``NamedTuple``); ``flat`` a
    1-d array.
    """

    def while_loop(self, cond: Callable, body: Callable, state: tuple) -> tuple:
        """Apply ``body(state) -> state`` while ``cond(state)`` holds; the
        final state, of the type ``state`` came in."""

    def cond(self, pred, true_fn: Callable, false_fn: Callable):
        """``true_fn()`` if the 0-d bool ``pred`` holds, else ``false_fn()``."""

    def bitcast(self, x, dtype):
        """``x`` reinterpreted bit for bit as ``dtype`` of the same width."""

    def count_true(self, mask, dtype):
        """The number of True entries of a 1-d bool array, 0-d of ``dtype``."""

    def reduce(self, flat, part: Callable, combine: Callable):
        """``part(flat)`` (a 1-d array to a 0-d one), possibly computed slice by
        slice and the slices' results joined by the associative ``combine``."""


class NumpyOps:
    """:class:`SearchOps` for NumPy: a Python loop and ``if``, run eagerly."""

    def while_loop(self, cond, body, state):
        while cond(state):
            state = body(state)
        return state

    def cond(self, pred, true_fn, false_fn):
        return true_fn() if pred else false_fn()

    def bitcast(self, x, dtype):
        return np.asarray(x).view(dtype)[()]

    def count_true(self, mask, dtype):
        return np.sum(mask, dtype=dtype)

    def reduce(self, flat, part, combine):
        return part(flat)


NUMPY_OPS = NumpyOps()


def _is_number(k) -> bool:
    return isinstance(k, numbers.Number)


def _size(flat) -> int:
    return int(flat.shape[0])


def counter_dtype(xp, n: int):
    """The integer dtype that counts up to ``n`` values."""
    return xp.int32 if n < 2**31 else xp.int64


def _key_dtype(xp, dtype):
    return {16: xp.int16, 32: xp.int32, 64: xp.int64}[xp.finfo(dtype).bits]


def threshold(xp, flats: Sequence, k, rank: Callable, prepare: Callable | None = None):
    """τ = the k-th smallest of ``prepare(flats)`` (1-indexed; +inf for k <= 0).

    The frame of every exact threshold built on this module: empty arrays
    dropped, ``k`` clipped to ``[1, n]`` in a counting dtype, +inf where
    ``k <= 0``. How τ is found is ``rank``'s choice.

    Args:
      xp: the array namespace of ``flats``.
      flats: 1-d arrays of one floating dtype (``float32`` when there are
        none); their ``prepare`` values are >= 0 (+inf allowed, no NaN).
      k: the rank, a Python int or a 0-d integer array.
      rank: ``(flats, k, n, prepare) -> τ`` for non-empty ``flats`` of ``n``
        values in all and a 0-d ``k`` with ``1 <= k <= n`` of
        :func:`counter_dtype`; :func:`searcher` gives the bare search.
      prepare: an elementwise map to the ranking values, or ``None`` for the
        values themselves.

    Returns:
      A 0-d array of the flats' dtype.
    """
    dtype = flats[0].dtype if flats else xp.float32
    flats = [f for f in flats if _size(f) > 0]
    n = sum(_size(f) for f in flats)
    infinity = xp.asarray(math.inf, dtype=dtype)
    if n == 0 or (_is_number(k) and k <= 0):
        return infinity
    counter = counter_dtype(xp, n)
    if _is_number(k):
        at = xp.asarray(min(int(k), n), dtype=counter)
    else:
        at = xp.clip(xp.astype(xp.asarray(k), counter), 1, n)
    tau = rank(flats, at, n, prepare or _identity)
    return tau if _is_number(k) else xp.where(xp.asarray(k) > 0, tau, infinity)


def threshold_of_squares(xp, flats: Sequence, k, rank: Callable, *, searched: bool,
                         magnitude: Callable):
    """τ = the k-th smallest ``magnitude(g * g)`` of the 1-d ``flats`` g.

    The ``"gradient"`` estimate ĥ = g² ranks like |g| and squaring is
    monotone (in floating point too), so where the values are ``searched``
    τ is the square of the k-th smallest ``magnitude(g)``, read inside each
    pass: g² is never held in full. Otherwise ``rank`` gets the squares.

    Args:
      xp, k, rank: as in :func:`threshold`.
      flats: 1-d arrays of one floating dtype.
      searched: whether ``rank`` counts ``prepare``'d values pass by pass.
      magnitude: |x| with NaN as +inf, elementwise.

    Raises:
      ValueError: when the flats' dtypes differ.
    """
    names = sorted({getattr(f.dtype, "name", None) or str(f.dtype) for f in flats})
    if len(names) > 1:
        raise ValueError(f"grads must share one dtype, got {names}")
    if not searched:
        return threshold(xp, [magnitude(f * f) for f in flats], k, rank)
    root = threshold(xp, flats, k, rank, prepare=magnitude)
    return root * root


def searcher(xp, ops: SearchOps) -> Callable:
    """The ``rank`` for :func:`threshold` that always runs :func:`kth_smallest`."""

    def rank(flats, k, n, prepare):
        return kth_smallest(xp, ops, flats, k, prepare)

    return rank


def sorted_keys(xp, ops: SearchOps, flats: Sequence):
    """The bit patterns of all values in the 1-d ``flats``, sorted (an integer
    sort compares more cheaply than a floating-point one, and orders the same)."""
    joined = xp.concat(list(flats)) if len(flats) > 1 else flats[0]
    return xp.sort(ops.bitcast(joined, _key_dtype(xp, joined.dtype)))


def kth_sorted(xp, ops: SearchOps, flats: Sequence, k):
    """The k-th smallest (``1 <= k <= n``, a 0-d integer array) of values >= 0
    in the non-empty 1-d ``flats``, by one sort of their bit patterns."""
    return ops.bitcast(xp.take(sorted_keys(xp, ops, flats), k - 1), flats[0].dtype)


def _sample(xp, ops, flats: Sequence, n: int, prepare):
    """The sorted bit patterns of a sample of the ``prepare``'d values,
    evenly strided in every array."""
    wanted = min(_SAMPLE_GROWTH * SAMPLE_SIZE, max(SAMPLE_SIZE, n // _SAMPLE_STRIDE))
    picked = []
    for flat in flats:
        size = _size(flat)
        share = max(1, round(wanted * size / n))
        picked.append(prepare(flat[:: max(1, size // share)]))
    return sorted_keys(xp, ops, picked)


class _Bracket(NamedTuple):
    """The search state: ``count(lo) < k <= count(hi)`` on bit patterns.

    ``lo_weight`` and ``hi_weight`` are the residuals ``count - (k - ½)`` the
    interpolation uses; the one of an endpoint kept twice in a row is halved.
    """

    lo: Any
    lo_count: Any
    lo_weight: Any
    hi: Any
    hi_count: Any
    hi_weight: Any
    probes: Any
    moved_hi: Any  # which endpoint the last probe moved
    in_gap: Any  # the last probe found no value between it and an endpoint


def kth_smallest(xp, ops: SearchOps, flats: Sequence, k, prepare: Callable | None = None):
    """The exact k-th smallest of the values >= 0 ``prepare(flats)``, searched.

    Args:
      xp: the array namespace of ``flats``.
      ops: the backend's :class:`SearchOps`.
      flats: non-empty 1-d arrays of one floating dtype.
      k: the rank, ``1 <= k <= n`` (``n`` the number of values), a 0-d
        integer array (traced where ``ops`` compiles) or a Python int.
      prepare: an elementwise map applied to each slice as a pass reads it
        (its values are never written out), or ``None``. Its results are >= 0
        (+inf allowed, no NaN) and of the flats' dtype.

    Returns:
      A 0-d array of the flats' dtype.

    Example:
      >>> import numpy as np
      >>> values = [np.array([-5.0, 1.0]), np.array([-3.0, 2.0])]
      >>> float(kth_smallest(np, NUMPY_OPS, values, 3, prepare=np.abs))
      3.0
    """
    prepare = prepare or _identity
    dtype = flats[0].dtype
    key_type = _key_dtype(xp, dtype)
    n = sum(_size(f) for f in flats)
    counter = counter_dtype(xp, n)
    k = xp.astype(xp.asarray(k), counter)
    target = xp.astype(k, xp.float32) - 0.5

    def count(key):
        pivot = ops.bitcast(key, dtype)
        parts = [
            ops.reduce(f, lambda x: ops.count_true(prepare(x) <= pivot, counter), xp.add)
            for f in flats
        ]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return xp.astype(total, counter)

    drawn = _sample(xp, ops, flats, n, prepare)
    m = _size(drawn)
    q = xp.astype(k, xp.float32) / n
    spread = 3.0 * xp.sqrt(q * (1.0 - q) / m) + 2.0 / m

    def sampled_key(fraction):
        return xp.take(drawn, xp.clip(xp.astype(xp.round(fraction * m), xp.int32), 0, m - 1))

    def propose(b: _Bracket):
        width = b.hi - b.lo
        share = -b.lo_weight / (b.hi_weight - b.lo_weight)
        offset = xp.astype(xp.maximum(share * xp.astype(width, xp.float32), 1.0), key_type)
        interpolated = b.lo + xp.clip(offset, 1, width - 1)
        # The second probe knows on which side of the sample's estimate rank k lies.
        beyond = sampled_key(xp.where(b.hi_count < n, q - spread, q + spread))
        halve = xp.logical_or(b.in_gap, b.probes >= MAX_INTERPOLATIONS)
        pivot = xp.where(
            b.probes == 0,
            sampled_key(q - 0.5 / m),
            xp.where(b.probes == 1, beyond, xp.where(halve, b.lo + width // 2, interpolated)),
        )
        return xp.clip(pivot, b.lo + 1, b.hi - 1)

    def searching(b: _Bracket):
        return xp.logical_and(
            xp.logical_and(b.lo_count < k - 1, b.hi_count > k), b.hi - b.lo > 1
        )

    def probe(b: _Bracket) -> _Bracket:
        pivot = propose(b)
        c = count(pivot)
        moved_hi = c >= k
        residual = xp.astype(c, xp.float32) - target
        again = xp.logical_and(b.probes >= 2, xp.equal(moved_hi, b.moved_hi))
        kept_lo = xp.where(again, 0.5 * b.lo_weight, xp.astype(b.lo_count, xp.float32) - target)
        kept_hi = xp.where(again, 0.5 * b.hi_weight, xp.astype(b.hi_count, xp.float32) - target)
        return _Bracket(
            lo=xp.where(moved_hi, b.lo, pivot),
            lo_count=xp.where(moved_hi, b.lo_count, c),
            lo_weight=xp.where(moved_hi, kept_lo, residual),
            hi=xp.where(moved_hi, pivot, b.hi),
            hi_count=xp.where(moved_hi, c, b.hi_count),
            hi_weight=xp.where(moved_hi, residual, kept_hi),
            probes=b.probes + 1,
            moved_hi=moved_hi,
            in_gap=xp.logical_and(
                b.probes >= 2, xp.logical_or(c == b.lo_count, c == b.hi_count)
            ),
        )

    start = _Bracket(
        lo=xp.asarray(-1, dtype=key_type),
        lo_count=xp.asarray(0, dtype=counter),
        lo_weight=-target,
        hi=ops.bitcast(xp.asarray(math.inf, dtype=dtype), key_type),
        hi_count=xp.asarray(n, dtype=counter),
        hi_weight=n - target,
        probes=xp.asarray(0, dtype=xp.int32),
        moved_hi=xp.asarray(False),
        in_gap=xp.asarray(False),
    )
    b = ops.while_loop(searching, probe, start)

    def extreme(reduce, combine, part):
        parts = [ops.reduce(f, lambda x: reduce(part(prepare(x))), combine) for f in flats]
        return parts[0] if len(parts) == 1 else reduce(xp.stack(parts))

    def largest_up_to_hi():  # exactly k values are <= hi
        bound = ops.bitcast(b.hi, dtype)
        zero = xp.zeros((), dtype=dtype)
        return extreme(xp.max, xp.maximum, lambda v: xp.where(v <= bound, v, zero))

    def smallest_above_lo():  # exactly k - 1 values are <= lo (lo = -1: none)
        none_below = b.lo < 0
        # (a where, not a maximum: Keras's torch maximum narrows two int64 operands)
        bound = ops.bitcast(xp.where(none_below, xp.zeros((), dtype=key_type), b.lo), dtype)
        infinity = xp.asarray(math.inf, dtype=dtype)
        return extreme(
            xp.min, xp.minimum,
            lambda v: xp.where(xp.logical_or(v > bound, none_below), v, infinity),
        )

    return ops.cond(
        b.hi - b.lo <= 1,
        lambda: ops.bitcast(b.hi, dtype),
        lambda: ops.cond(b.hi_count == k, largest_up_to_hi, smallest_above_lo),
    )
