"""The k-th smallest of TensorFlow tensors, read digit by digit from histograms.

Non-negative floats order like their bit patterns read as unsigned integers,
so the k-th smallest value's bit pattern can be read 16 bits at a time: a
histogram of the first 16 bits of every pattern (``tf.raw_ops.DenseBincount``)
tells in which bucket the k-th value lies and how many values lie in the
buckets below; a histogram of the next 16 bits of the patterns in that
bucket does the same within it, and so on. float32 takes two passes over the
values, float64 four, float16 and bfloat16 one; the answer is exact, ties
and +inf included, with no sort, sample or concatenation of the tensors.

On TensorFlow without XLA every operation is a kernel of its own, so the
bit-pattern search of :mod:`ire_keras.threshold` pays three or four kernels
for each of its 7–10 counting passes; two histogram passes of five kernels
in all find τ about three times faster (on 5.3M float32 values on 2 CPU
cores, 9 ms against 28–36 ms). ``DenseBincount`` skips entries at or past
its size, which is how a pass counts only the bucket it refines.

Example:
  >>> import tensorflow as tf
  >>> from ire_keras import _radix
  >>> values = [tf.constant([5.0, 1.0]), tf.constant([3.0, 3.0, 0.5])]
  >>> float(_radix.kth_smallest(values, tf.constant(3), "int32"))
  3.0
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["kth_smallest"]

_DIGIT_BITS = 16
_BUCKETS = 1 << _DIGIT_BITS
_ROW = 256

_UNSIGNED = {16: tf.uint16, 32: tf.uint32, 64: tf.uint64}


def kth_smallest(flats: list, k, counter: str):
    """The k-th smallest of the values in ``flats`` (1 <= k <= their number).

    Args:
      flats: non-empty tensors of one floating dtype, values >= 0 (``-0.0``
        counts as 0, +inf is allowed; no NaN).
      k: the rank, a 0-d integer tensor of dtype ``counter``.
      counter: ``"int32"`` or ``"int64"``, wide enough to count every value.

    Returns:
      A 0-d tensor of the values' dtype.
    """
    dtype = flats[0].dtype
    bits = dtype.size * 8
    unsigned = _UNSIGNED[bits]
    patterns = [tf.bitcast(tf.reshape(f, [-1]), unsigned) for f in flats]
    # Bincount takes int32 or int64 positions; the patterns are read unsigned.
    position_type = tf.int64 if bits == 64 else tf.int32
    counter = tf.as_dtype(counter)
    k = tf.cast(k, counter)
    no_weights = tf.zeros([0], counter)

    def histogram(positions):
        counts = [
            tf.raw_ops.DenseBincount(input=p, size=_BUCKETS, weights=no_weights)
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
    sign_bucket = _BUCKETS // 2
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
            # their next 16 bits; every other one lands at or past 2^16 and
            # is skipped by the histogram.
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
    number of values before that bucket.

    The running totals are taken in rows of 256 buckets, first over the
    rows' sums and then within the row that holds rank k: XLA computes a
    cumulative sum as a sliding window, in time quadratic in its length."""
    rows = tf.reshape(counts, (-1, _ROW))
    row, below = _first_reaching(tf.reduce_sum(rows, axis=1), k, below)
    column, below = _first_reaching(rows[row], k, below)
    return row * _ROW + column, below


def _first_reaching(counts, k, below):
    """``(index, below')`` of the first entry of the 1-d ``counts`` whose
    running total after ``below`` reaches ``k``."""
    totals = below + tf.cumsum(counts)
    index = tf.minimum(tf.reduce_sum(tf.cast(totals < k, tf.int32)), tf.shape(counts)[0] - 1)
    return index, totals[index] - counts[index]
