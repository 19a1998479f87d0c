"""The exact flat-mask threshold in ``keras.ops``: a search over bit patterns.

A sort of every coordinate of the model is the slow way to find τ, the k-th
smallest curvature value (TensorFlow sorts with ``top_k``; XLA's CPU sort is
slow too). Non-negative floats (``+inf`` included) order like their bit
patterns read as integers (``keras.ops.view``), so τ can be searched for in
that integer range: each probe is one counting pass ``#{x <= pivot}``, and the
count both narrows the bracket and says how far the pivot was from rank k.

The first two pivots come from a small sorted sample (its k-th value, and a
bound a few standard errors past it); later ones interpolate between the
bracket's counts, with the Illinois rule against creeping up on rank k from
one side, and halve the bracket when a probe finds no value between it and an
endpoint (ties). Curvature estimates take about 5–15 passes; heavy ties about
as many as a bisection (one per bit). The search ends when a pivot lands next
to rank k, and one reduction then reads τ. The result is exact and ``k`` may
be a tensor. Models of at most :data:`SAMPLE_SIZE` coordinates are sorted,
and on the JAX backend so are models of up to :data:`DEVICE_SORT_SIZE` on a
single accelerator, where a sort is fast and every probe of the search is a
loop iteration whose condition the host reads back (as in ``ire_jax``).

It runs on every Keras backend, inside ``tf.function`` and ``jax.jit``
(``keras.ops.while_loop``); ``IRE`` uses it on TensorFlow and JAX, where
``ire_core``'s own exact threshold would sort. On TensorFlow outside XLA,
where each operation of a counting pass is a kernel of its own, τ is read
from two histograms of the bit patterns instead (:mod:`ire_keras._radix`),
about three times faster than the 7–10 passes of the search.

For the ``"gradient"`` estimate ĥ = g², :func:`exact_threshold_of_squares`
runs the search over |g|, taken tensor by tensor inside each counting pass,
and squares the result: a compiled step holds its refresh branch's
temporaries on every step, taken or not, and g² ranked as it is would be
one of them, in full.

Example:
  >>> import keras
  >>> from ire_keras import exact_threshold
  >>> values = [keras.ops.convert_to_tensor([5.0, 1.0]), keras.ops.convert_to_tensor([3.0])]
  >>> float(keras.ops.convert_to_numpy(exact_threshold(values, 2)))
  3.0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from . import _xp

__all__ = [
    "DEVICE_SORT_SIZE",
    "SAMPLE_SIZE",
    "exact_threshold",
    "exact_threshold_of_squares",
    "is_searched",
    "magnitude",
]

#: The largest model that is sorted outright, and the smallest sample sorted
#: to seed the search (the sample grows to 4 × this with the model: one value
#: in 256).
SAMPLE_SIZE = 4096

#: The largest model sorted outright by JAX on one device that is not the CPU
#: (sharded models are searched: a sort would gather them).
DEVICE_SORT_SIZE = 1 << 26

# After this many probes the search only halves its bracket (at most one more
# probe per bit): a bound on the worst case.
_MAX_INTERPOLATIONS = 24

# Tensors below this size are ranked by the histograms as one concatenated piece.
_PIECE_MIN_SIZE = 1 << 20

_KEY_TYPES = {2: "int16", 4: "int32", 8: "int64"}


def exact_threshold(values: Sequence, k):
    """τ = the k-th smallest of all ``values`` (1-indexed; +inf for k <= 0).

    Args:
      values: tensors of non-negative numbers (+inf allowed, no NaN) of one
        floating dtype, one per weight; backend tensors or the array-API views
        ``ire_core`` hands a ``threshold_fn`` on TensorFlow.
      k: the rank, a Python int or an integer tensor.

    Returns:
      A 0-d tensor of the values' dtype, in the form the values came in.
    """
    wrapped = any(isinstance(v, _xp.KerasArray) for v in values)
    tensors = [ops.reshape(_xp.from_core(v), (-1,)) for v in values]
    k = _xp.from_core(k)
    tau = _exact_threshold(tensors, k)
    return _xp.KerasArray(tau) if wrapped else tau


def exact_threshold_of_squares(grads: Sequence, k):
    """τ = the k-th smallest g² of all ``grads``, without g² in full where
    the values are searched (:func:`is_searched`).

    The ``"gradient"`` estimate ĥ = g² ranks like |g|, and squaring is
    monotone (in floating point too), so τ is the square of the k-th smallest
    |g|. The search reads |g| of each tensor inside each counting pass. Where
    τ is sorted or read from histograms, g² is ranked as it is.

    Args:
      grads: tensors of one floating dtype, one per weight. A NaN ranks as
        +inf, as in the selection rule.
      k: the rank, a Python int or an integer tensor.

    Returns:
      A 0-d tensor of the gradients' dtype: :func:`exact_threshold` of the
      selection values of ``g * g`` (+inf for k <= 0).

    Example:
      >>> import keras
      >>> grads = [keras.ops.convert_to_tensor([-3.0, 1.0]), keras.ops.convert_to_tensor([2.0])]
      >>> float(keras.ops.convert_to_numpy(exact_threshold_of_squares(grads, 2)))
      4.0
    """
    flats = [ops.reshape(g, (-1,)) for g in grads]
    dtypes = {keras.backend.standardize_dtype(f.dtype) for f in flats}
    if len(dtypes) > 1:
        raise ValueError(f"grads must share one dtype, got {sorted(dtypes)}")
    if not is_searched(sum(_size(f) for f in flats)):
        return _exact_threshold([magnitude(f * f) for f in flats], k)
    root = _exact_threshold(flats, k, prepare=magnitude)
    return root * root


def is_searched(n: int) -> bool:
    """Whether :func:`exact_threshold` ranks ``n`` values by counting passes
    (in the current trace): not sorted, nor read from histograms."""
    return n > SAMPLE_SIZE and not _sorts_on_one_accelerator(n) and not _counts_by_histograms()


def magnitude(x):
    """|x| with NaN as +inf: the ranking value of x."""
    return ops.where(ops.isnan(x), ops.convert_to_tensor(math.inf, x.dtype), ops.abs(x))


def _exact_threshold(flats: list, k, prepare=None):
    """The k-th smallest of the ranking values ``prepare(f)`` of ``flats``
    (1-d tensors; the values themselves without ``prepare``). The search
    applies ``prepare`` inside each pass; a sort or the histograms apply it
    to everything first."""
    dtypes = {keras.backend.standardize_dtype(f.dtype) for f in flats} or {"float32"}
    # (keras.backend.result_type would turn a lone float64 into floatx)
    dtype = dtypes.pop() if len(dtypes) == 1 else keras.backend.result_type(*dtypes)
    flats = [ops.cast(f, dtype) for f in flats if _size(f) > 0]
    n = sum(_size(f) for f in flats)
    infinity = ops.convert_to_tensor(math.inf, dtype)
    if n == 0 or (isinstance(k, numbers.Number) and k <= 0):
        return infinity
    counter = "int32" if n < 2**31 else "int64"
    rank = ops.clip(ops.cast(ops.convert_to_tensor(k), counter), 1, n)
    if is_searched(n):
        tau = _kth_smallest(flats, rank, n, dtype, counter, prepare or (lambda f: f))
    else:
        flats = [prepare(f) for f in flats] if prepare else flats
        if n <= SAMPLE_SIZE or _sorts_on_one_accelerator(n):
            tau = _as_value(ops.take(_sorted_keys(flats), rank - 1), dtype)
        else:
            from . import _radix

            tau = _radix.kth_smallest(_pieces(flats), rank, counter)
    if isinstance(k, numbers.Number):
        return tau
    return ops.where(ops.convert_to_tensor(k) > 0, tau, infinity)


def _sorts_on_one_accelerator(n: int) -> bool:
    if n > DEVICE_SORT_SIZE or keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() != "cpu" and jax.device_count() == 1


def _counts_by_histograms() -> bool:
    """TensorFlow outside XLA reads τ from histograms (:mod:`ire_keras._radix`).
    Under XLA (``jit_compile=True``) the search runs: XLA compiles each
    histogram pass for seconds."""
    return keras.backend.backend() == "tensorflow" and not _xp.in_xla()


def _pieces(flats: list) -> list:
    """``flats`` with the tensors below :data:`_PIECE_MIN_SIZE` values
    concatenated into one: each piece costs the histograms a few kernels,
    which on TensorFlow without XLA take longer than copying a small tensor
    (on a 3.3M-parameter transformer of 67 weights, 23 ms in 67 pieces,
    8 ms in one)."""
    small = [f for f in flats if _size(f) < _PIECE_MIN_SIZE]
    if len(small) < 2:
        return flats
    return [f for f in flats if _size(f) >= _PIECE_MIN_SIZE] + [ops.concatenate(small)]


def _size(tensor) -> int:
    return int(np.prod(tensor.shape))


def _key_type(dtype) -> str:
    return _KEY_TYPES[np.dtype(keras.backend.standardize_dtype(dtype)).itemsize]


def _as_key(value):
    return ops.view(value, _key_type(value.dtype))


def _as_value(key, dtype):
    return ops.view(key, dtype)


def _sorted_keys(flats: list):
    """The bit patterns of ``flats``, sorted (integers sort faster than floats)."""
    return ops.sort(_as_key(ops.concatenate(flats) if len(flats) > 1 else flats[0]))


def _sample(flats: list, n: int, prepare):
    """The sorted bit patterns of a sample, evenly strided in every tensor."""
    wanted = min(4 * SAMPLE_SIZE, max(SAMPLE_SIZE, n // 256))
    picked = []
    for flat in flats:
        size = _size(flat)
        share = max(1, round(wanted * size / n))
        picked.append(prepare(flat[:: max(1, size // share)]))
    return _sorted_keys(picked)


def _kth_smallest(flats: list, k, n: int, dtype: str, counter: str, prepare):
    """Exact k-th smallest (1 <= k <= n, a tensor) of the values >= 0
    ``prepare(f)`` of ``flats``, taken inside every pass.

    The loop carries ``(lo, lo_count, lo_weight, hi, hi_count, hi_weight,
    probes, moved_hi, in_gap)`` with ``count(lo) < k <= count(hi)`` over bit
    patterns; the weights are the residuals ``count - (k - ½)`` the
    interpolation uses (halved for an endpoint kept twice in a row).
    """
    key_type = _key_type(dtype)
    target = ops.cast(k, "float32") - 0.5

    def count(key):
        pivot = _as_value(key, dtype)
        partial = [_xp.count_true(ops.less_equal(prepare(f), pivot), counter) for f in flats]
        return ops.cast(_add_all(partial), counter)  # sums widen under JAX x64

    drawn = _sample(flats, n, prepare)
    m = _size(drawn)
    q = ops.cast(k, "float32") / n
    spread = 3.0 * ops.sqrt(q * (1.0 - q) / m) + 2.0 / m

    def sampled_key(fraction):
        index = ops.clip(ops.cast(ops.round(fraction * m), "int32"), 0, m - 1)
        return ops.take(drawn, index)

    def as_float(count_):
        return ops.cast(count_, "float32")

    def propose(lo, lo_weight, hi, hi_count, hi_weight, probes, in_gap):
        width = hi - lo
        share = -lo_weight / (hi_weight - lo_weight)
        offset = ops.cast(ops.maximum(share * ops.cast(width, "float32"), 1.0), key_type)
        interpolated = lo + ops.clip(offset, 1, width - 1)
        # The second probe knows on which side of the sample's estimate rank k lies.
        beyond = sampled_key(ops.where(hi_count < n, q - spread, q + spread))
        halve = ops.logical_or(in_gap, probes >= _MAX_INTERPOLATIONS)
        pivot = ops.where(
            probes == 0,
            sampled_key(q - 0.5 / m),
            ops.where(probes == 1, beyond, ops.where(halve, lo + width // 2, interpolated)),
        )
        return ops.clip(pivot, lo + 1, hi - 1)

    def searching(lo, lo_count, lo_weight, hi, hi_count, hi_weight, probes, moved_hi, in_gap):
        return ops.logical_and(
            ops.logical_and(lo_count < k - 1, hi_count > k), hi - lo > 1
        )

    def probe(lo, lo_count, lo_weight, hi, hi_count, hi_weight, probes, moved_hi, in_gap):
        pivot = propose(lo, lo_weight, hi, hi_count, hi_weight, probes, in_gap)
        c = count(pivot)
        now_hi = c >= k
        residual = as_float(c) - target
        again = ops.logical_and(probes >= 2, ops.equal(now_hi, moved_hi))
        kept_lo = ops.where(again, 0.5 * lo_weight, as_float(lo_count) - target)
        kept_hi = ops.where(again, 0.5 * hi_weight, as_float(hi_count) - target)
        return (
            ops.where(now_hi, lo, pivot),
            ops.where(now_hi, lo_count, c),
            ops.where(now_hi, kept_lo, residual),
            ops.where(now_hi, pivot, hi),
            ops.where(now_hi, c, hi_count),
            ops.where(now_hi, residual, kept_hi),
            probes + 1,
            now_hi,
            ops.logical_and(probes >= 2, ops.logical_or(c == lo_count, c == hi_count)),
        )

    start = (
        ops.convert_to_tensor(-1, key_type),
        ops.convert_to_tensor(0, counter),
        -target,
        _as_key(ops.convert_to_tensor(math.inf, dtype)),
        ops.convert_to_tensor(n, counter),
        n - target,
        ops.convert_to_tensor(0, "int32"),
        ops.convert_to_tensor(False),
        ops.convert_to_tensor(False),
    )
    lo, _, _, hi, hi_count, _, _, _, _ = ops.while_loop(searching, probe, start)

    def largest_up_to_hi():  # exactly k values are <= hi
        bound = _as_value(hi, dtype)
        zero = ops.zeros((), dtype)
        return _extreme(
            ops.max, [ops.max(ops.where(v <= bound, v, zero)) for v in map(prepare, flats)]
        )

    def smallest_above_lo():  # exactly k - 1 values are <= lo (lo = -1: none)
        none_below = lo < 0
        # (not ops.maximum: on torch it returns int32 for two int64 operands)
        bound = _as_value(ops.where(none_below, ops.zeros((), key_type), lo), dtype)
        infinity = ops.convert_to_tensor(math.inf, dtype)
        return _extreme(
            ops.min,
            [
                ops.min(ops.where(ops.logical_or(v > bound, none_below), v, infinity))
                for v in map(prepare, flats)
            ],
        )

    return ops.cond(
        hi - lo <= 1,
        lambda: _as_value(hi, dtype),
        lambda: ops.cond(hi_count == k, largest_up_to_hi, smallest_above_lo),
    )


def _add_all(counts: list):
    total = counts[0]
    for c in counts[1:]:
        total = total + c
    return total


def _extreme(reduce, partial: list):
    return partial[0] if len(partial) == 1 else reduce(ops.stack(partial))
