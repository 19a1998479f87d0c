"""The exact flat-mask threshold in ``keras.ops``: τ, the k-th smallest value.

τ is found one of three ways, chosen per model size and backend:

* small models, and models on a single JAX accelerator, are sorted;
* on TensorFlow outside XLA, τ's bit pattern is read 16 bits at a time from
  histograms (``tf.raw_ops.DenseBincount``): each operation there is a kernel
  of its own, and the histograms need fewer passes over the values than the
  search;
* everywhere else (XLA, JAX on the CPU, sharded JAX) the search over bit
  patterns of :mod:`ire_core.bit_search` runs, with ``keras.ops`` control
  flow, inside ``tf.function`` and ``jax.jit``.

Each is exact, ties and +inf included, and ``k`` may be a tensor. ``IRE``
uses this threshold on TensorFlow and JAX, where ``ire_core``'s own exact
threshold would sort.

For the ``"gradient"`` estimate ĥ = g², :func:`exact_threshold_of_squares`
runs the search over |g|, taken tensor by tensor inside each counting pass,
and squares the result: g² ranked as it is would be a temporary of the
compiled step's refresh branch, held in full on every step.

Example:
  >>> import keras
  >>> from ire_keras import exact_threshold
  >>> values = [keras.ops.convert_to_tensor([5.0, 1.0]), keras.ops.convert_to_tensor([3.0])]
  >>> float(keras.ops.convert_to_numpy(exact_threshold(values, 2)))
  3.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from ire_core import bit_search

from . import _xp

__all__ = [
    "DEVICE_SORT_SIZE",
    "SAMPLE_SIZE",
    "exact_threshold",
    "exact_threshold_of_squares",
    "is_searched",
    "magnitude",
]

# Size cut-offs, in values over the whole model, and the histograms' shape; why, one line each.
#: Sorted outright up to this: the search would sort a sample as large.
SAMPLE_SIZE = bit_search.SAMPLE_SIZE
#: Sorted up to this by JAX on one device other than the CPU: each probe is a host round trip.
DEVICE_SORT_SIZE = 1 << 26
# Smaller tensors are one concatenated piece for the histograms: a piece costs kernels.
_HISTOGRAM_PIECE_MIN_SIZE = 1 << 20
# Bits read per histogram pass: one pass for 16-bit floats, two for float32, four for float64.
_DIGIT_BITS = 16
# Running totals are taken in rows of this many buckets: XLA's cumsum is quadratic in length.
_ROW = 256

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
    flats = [ops.reshape(_xp.from_core(v), (-1,)) for v in values]
    dtypes = {keras.backend.standardize_dtype(f.dtype) for f in flats} or {"float32"}
    # (keras.backend.result_type would turn a lone float64 into floatx)
    dtype = dtypes.pop() if len(dtypes) == 1 else keras.backend.result_type(*dtypes)
    flats = [ops.cast(f, dtype) for f in flats]
    tau = bit_search.threshold(_XP, flats, _xp.from_core(k), _rank)
    return _xp.KerasArray(tau) if wrapped else tau


def exact_threshold_of_squares(grads: Sequence, k):
    """τ = the k-th smallest g² of all ``grads``, without g² in full where
    the values are searched (:func:`is_searched`).

    Squaring is monotone, so τ is the square of the k-th smallest |g|, and
    the search reads |g| of each tensor inside each counting pass. Where τ is
    sorted or read from histograms, g² is ranked as it is.

    Args:
      grads: tensors of one floating dtype, one per weight. A NaN ranks as
        +inf, as in the selection rule.
      k: the rank, a Python int or an integer tensor.

    Returns:
      A 0-d tensor of the gradients' dtype: :func:`exact_threshold` of the
      selection values of ``g * g`` (+inf for k <= 0).

    Raises:
      ValueError: when the gradients' dtypes differ.

    Example:
      >>> import keras
      >>> grads = [keras.ops.convert_to_tensor([-3.0, 1.0]), keras.ops.convert_to_tensor([2.0])]
      >>> float(keras.ops.convert_to_numpy(exact_threshold_of_squares(grads, 2)))
      4.0
    """
    flats = [ops.reshape(g, (-1,)) for g in grads]
    searched = is_searched(sum(_size(f) for f in flats))
    return bit_search.threshold_of_squares(
        _XP, flats, k, _rank, searched=searched, magnitude=magnitude
    )


def is_searched(n: int) -> bool:
    """Whether :func:`exact_threshold` ranks ``n`` values by counting passes
    (in the current trace): not sorted, nor read from histograms.

    Example:
      >>> is_searched(SAMPLE_SIZE)
      False
    """
    return n > SAMPLE_SIZE and not _sorts_on_one_accelerator(n) and not _counts_by_histograms()


def magnitude(x):
    """|x| with NaN as +inf: the ranking value of x.

    Example:
      >>> import keras
      >>> x = keras.ops.convert_to_tensor([-2.0, float("nan")])
      >>> keras.ops.convert_to_numpy(magnitude(x)).tolist()
      [2.0, inf]
    """
    return ops.where(ops.isnan(x), ops.convert_to_tensor(math.inf, x.dtype), ops.abs(x))


def _standard(dtype) -> str:
    return keras.backend.standardize_dtype(dtype)


class _Namespace:
    """``keras.ops`` under the array-API names :mod:`ire_core.bit_search`
    uses, on the backend's own tensors (used as the class itself)."""

    float32, int16, int32, int64 = "float32", "int16", "int32", "int64"
    add, clip, equal, take, where = ops.add, ops.clip, ops.equal, ops.take, ops.where
    logical_and, logical_or = ops.logical_and, ops.logical_or
    max, maximum, min, minimum = ops.max, ops.maximum, ops.min, ops.minimum
    round, sort, sqrt, stack = ops.round, ops.sort, ops.sqrt, ops.stack
    concat = ops.concatenate

    @staticmethod
    def asarray(value, dtype=None):
        return ops.convert_to_tensor(value, None if dtype is None else _standard(dtype))

    @staticmethod
    def astype(x, dtype):
        return ops.cast(x, _standard(dtype))

    @staticmethod
    def zeros(shape, dtype):
        return ops.zeros(shape, _standard(dtype))

    @staticmethod
    def finfo(dtype):
        return np.finfo(_standard(dtype))


class _KerasOps:
    """:class:`ire_core.bit_search.SearchOps` in ``keras.ops``: packed
    counting (:func:`ire_keras._xp.count_true`), each tensor in one piece."""

    cond = staticmethod(ops.cond)
    count_true = staticmethod(_xp.count_true)

    @staticmethod
    def while_loop(cond, body, state):
        kind = type(state)  # keras.ops loops take and give plain tuples
        final = ops.while_loop(
            lambda *s: cond(kind(*s)), lambda *s: tuple(body(kind(*s))), tuple(state)
        )
        return kind(*final)

    @staticmethod
    def bitcast(x, dtype):
        return ops.view(x, _standard(dtype))

    @staticmethod
    def reduce(flat, part, combine):
        return part(flat)


_XP = _Namespace
_OPS = _KerasOps()


def _rank(flats: list, k, n: int, prepare):
    """The k-th smallest ``prepare``'d value: the search (which applies
    ``prepare`` inside each pass), a sort, or the histograms."""
    if is_searched(n):
        return bit_search.kth_smallest(_XP, _OPS, flats, k, prepare)
    flats = [prepare(f) for f in flats]
    if n <= SAMPLE_SIZE or _sorts_on_one_accelerator(n):
        return bit_search.kth_sorted(_XP, _OPS, flats, k)
    return _kth_by_histograms(_pieces(flats), k)


def _sorts_on_one_accelerator(n: int) -> bool:
    """Whether JAX sorts ``n`` values on its one accelerator (a sharded model
    is searched: a sort would gather it)."""
    if n > DEVICE_SORT_SIZE or keras.backend.backend() != "jax":
        return False
    import jax

    return jax.default_backend() != "cpu" and jax.device_count() == 1


def _counts_by_histograms() -> bool:
    """TensorFlow outside XLA reads τ from histograms. Under XLA
    (``jit_compile=True``) the search runs: XLA compiles each histogram pass
    slowly."""
    return keras.backend.backend() == "tensorflow" and not _xp.in_xla()


def _pieces(flats: list) -> list:
    """``flats`` with the tensors below :data:`_HISTOGRAM_PIECE_MIN_SIZE`
    values concatenated into one."""
    small = [f for f in flats if _size(f) < _HISTOGRAM_PIECE_MIN_SIZE]
    if len(small) < 2:
        return flats
    return [f for f in flats if _size(f) >= _HISTOGRAM_PIECE_MIN_SIZE] + [ops.concatenate(small)]


def _size(tensor) -> int:
    return int(np.prod(tensor.shape))


def _kth_by_histograms(flats: list, k):
    """The k-th smallest of the values in TensorFlow ``flats``, read digit by
    digit from histograms of their bit patterns.

    Non-negative floats order like their bit patterns read as unsigned
    integers. A histogram of the first :data:`_DIGIT_BITS` bits of every
    pattern tells in which bucket the k-th value lies and how many values lie
    in the buckets below; a histogram of the next bits of the patterns in
    that bucket does the same within it, and so on. ``DenseBincount`` skips
    entries at or past its size, which is how a pass counts only the bucket
    it refines. No sort, sample or loop.

    Args:
      flats: non-empty 1-d tensors of one floating dtype, values >= 0
        (``-0.0`` counts as 0, +inf is allowed; no NaN).
      k: the rank, ``1 <= k <=`` their number, a 0-d integer tensor wide
        enough to count every value.

    Returns:
      A 0-d tensor of the values' dtype.

    Example:
      >>> import keras
      >>> if keras.backend.backend() == "tensorflow":
      ...     import tensorflow as tf
      ...     values = [tf.constant([5.0, 1.0]), tf.constant([3.0, 3.0, 0.5])]
      ...     print(float(_kth_by_histograms(values, tf.constant(3))))
      ... else:
      ...     print(3.0)
      3.0
    """
    import tensorflow as tf

    dtype = flats[0].dtype
    bits = dtype.size * 8
    unsigned = {16: tf.uint16, 32: tf.uint32, 64: tf.uint64}[bits]
    patterns = [tf.bitcast(tf.reshape(f, [-1]), unsigned) for f in flats]
    # Bincount takes int32 or int64 positions; the patterns are read unsigned.
    position_type = tf.int64 if bits == 64 else tf.int32
    counter = k.dtype
    buckets = 1 << _DIGIT_BITS
    no_weights = tf.zeros([0], counter)

    def histogram(positions):
        counts = [
            tf.raw_ops.DenseBincount(input=p, size=buckets, weights=no_weights)
            for p in positions
        ]
        return tf.add_n(counts) if len(counts) > 1 else counts[0]

    def first_digits(p):
        if bits == _DIGIT_BITS:
            return tf.cast(p, position_type)
        high = tf.bitwise.right_shift(p, tf.constant(bits - _DIGIT_BITS, unsigned))
        return tf.bitcast(high, position_type)

    # The first digit holds the sign bit: -0.0 lands in the bucket just past
    # +inf's, and is counted with +0.0 instead.
    counts = histogram([first_digits(p) for p in patterns])
    sign_bucket = buckets // 2
    counts = tf.concat(
        [counts[:1] + counts[sign_bucket : sign_bucket + 1], counts[1:sign_bucket]], 0
    )
    digit, below = _bucket_of_rank(counts, k, tf.zeros((), counter))
    prefix = tf.cast(digit, unsigned)
    keep = tf.constant((1 << (bits - 1)) - 1, unsigned)  # every bit but the sign
    for done in range(_DIGIT_BITS, bits, _DIGIT_BITS):
        shift = bits - done - _DIGIT_BITS
        base = tf.bitwise.left_shift(prefix, tf.constant(shift + _DIGIT_BITS, unsigned))

        def next_digits(p, base=base, shift=shift):
            # Patterns with this prefix (and -0.0 while the prefix is 0) keep
            # their next bits; every other one lands at or past the histogram's
            # size and is skipped.
            inside = tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(p, base), keep)
            if shift:
                inside = tf.bitwise.right_shift(inside, tf.constant(shift, unsigned))
            return tf.bitcast(inside, position_type)

        digit, below = _bucket_of_rank(histogram([next_digits(p) for p in patterns]), k, below)
        prefix = tf.bitwise.bitwise_or(
            tf.bitwise.left_shift(prefix, tf.constant(_DIGIT_BITS, unsigned)),
            tf.cast(digit, unsigned),
        )
    return tf.bitcast(prefix, dtype)


def _bucket_of_rank(counts, k, below):
    """``(bucket, below')``: the first bucket of ``counts`` whose running
    total, after ``below`` values before them all, reaches ``k``, and the
    number of values before that bucket (running totals by rows of
    :data:`_ROW`: first over the rows' sums, then within the row)."""
    import tensorflow as tf

    rows = tf.reshape(counts, (-1, _ROW))
    row, below = _first_reaching(tf.reduce_sum(rows, axis=1), k, below)
    column, below = _first_reaching(rows[row], k, below)
    return row * _ROW + column, below


def _first_reaching(counts, k, below):
    """``(index, below')`` of the first entry of the 1-d ``counts`` whose
    running total after ``below`` reaches ``k``."""
    import tensorflow as tf

    totals = below + tf.cumsum(counts)
    index = tf.minimum(tf.reduce_sum(tf.cast(totals < k, tf.int32)), tf.shape(counts)[0] - 1)
    return index, totals[index] - counts[index]
