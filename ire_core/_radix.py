"""The exact k-th smallest of float32 torch tensors, read from two histograms
of their bit patterns.

Non-negative floats order like their bit patterns read as integers, so the
k-th smallest value's pattern can be read 16 bits at a time. A histogram of
the upper 16 bits of every pattern (``torch.bincount``) tells in which bucket
the k-th value lies and how many values lie in the buckets below it; a
histogram of the lower 16 bits of that bucket's patterns finishes τ. The
answer is exact, ties and +inf included, and −0.0 counts as 0 (the sign bit
is cleared before counting).

On the CPU this is a fixed handful of operations, where the windowed search
of :mod:`ire_core._window` takes about fifty; up to about 2^21 values those
are most of the cost. ``bincount`` runs on one core, so on more values the
windowed search is the faster one.

Example:
  >>> import array_api_compat.torch as xp
  >>> import torch
  >>> values = [torch.tensor([5.0, 1.0]), torch.tensor([3.0, 3.0, 0.5])]
  >>> kth_smallest(xp, values, 3).item()
  3.0
"""

from __future__ import annotations

import sys

from array_api_compat import device

from ._members import member_positions

__all__ = ["kth_smallest"]

_DIGIT_BITS = 16
_LOW_DIGIT = (1 << _DIGIT_BITS) - 1
# The upper digit with the sign bit cleared: 15 bits.
_UPPER_BUCKETS = 1 << (_DIGIT_BITS - 1)
_SIGN_CLEARED = _UPPER_BUCKETS - 1
# Where the upper half of a float32 lies among its two int16 halves.
_UPPER_HALF = 1 if sys.byteorder == "little" else 0
# A bucket of at most this many values is ranked by one kthvalue, which takes
# less than a second histogram of 2^16 bins.
_RANKED_MEMBERS = 1 << 12


def kth_smallest(xp, pieces: list, k: int):
    """The k-th smallest of the values in ``pieces`` (1 <= k <= their number).

    Args:
      xp: the torch array API namespace.
      pieces: non-empty 1-d float32 torch tensors, values >= 0 (``-0.0``
        counts as 0, +inf is allowed; no NaN).
      k: the rank, a Python int.

    Returns:
      A 0-d float32 tensor on the pieces' device.
    """
    pieces = [v if v.is_contiguous() else v.contiguous() for v in pieces]
    uppers = [_upper_digits(xp, v) for v in pieces]
    counts = xp.bincount(uppers[0], minlength=_UPPER_BUCKETS)
    for digits in uppers[1:]:
        counts += xp.bincount(digits, minlength=_UPPER_BUCKETS)
    bucket, below = _digit_of_rank(xp, counts, k)
    # The bucket's values, a few among many, by the positions of its members.
    members = xp.concat([
        v.index_select(0, member_positions(xp, digits == bucket))
        for v, digits in zip(pieces, uppers)
    ])
    if members.numel() <= _RANKED_MEMBERS:
        return members.kthvalue(k - below).values
    patterns = members.view(xp.int32) & _LOW_DIGIT
    low, _ = _digit_of_rank(xp, xp.bincount(patterns, minlength=1 << _DIGIT_BITS), k - below)
    pattern = (bucket << _DIGIT_BITS) | low
    return xp.asarray(pattern, dtype=xp.int32, device=device(pieces[0])).view(xp.float32)


def _upper_digits(xp, v):
    """The upper 16 bits of each float32 of the contiguous ``v``, sign bit
    cleared, as a new int16 tensor."""
    return v.view(xp.int16)[_UPPER_HALF::2] & _SIGN_CLEARED


def _digit_of_rank(xp, counts, k: int) -> tuple[int, int]:
    """The digit whose bucket holds the k-th smallest, given each digit's
    count, and how many values lie in the buckets below it."""
    cumulative = counts.cumsum(0)
    digit = int(xp.searchsorted(cumulative, k))
    return digit, (int(cumulative[digit - 1]) if digit > 0 else 0)
