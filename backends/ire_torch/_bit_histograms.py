"""The exact k-th smallest of float32 tensors read from two histograms of
their bit patterns, and the positions of the few True entries of a long bool
mask: the helpers of :mod:`ire_torch.selection`.

Non-negative floats order like their bit patterns read as integers, so the
k-th smallest value's pattern can be read 16 bits at a time. A histogram of
the upper 16 bits of every pattern (``torch.bincount``) tells in which bucket
the k-th value lies and how many values lie in the buckets below it; a
histogram of the lower 16 bits of that bucket's patterns finishes τ. The
answer is exact, ties and +inf included, and −0.0 counts as 0 (the sign bit
is cleared before counting).

Example:
  >>> import torch
  >>> values = [torch.tensor([5.0, 1.0]), torch.tensor([3.0, 3.0, 0.5])]
  >>> kth_smallest(values, 3, bucket_kthvalue_max_size=4096).item()
  3.0
"""

from __future__ import annotations

import sys

import array_api_compat.torch as xp
from array_api_compat import device

__all__ = ["kth_smallest", "member_positions"]

_DIGIT_BITS = 16
_LOW_DIGIT = (1 << _DIGIT_BITS) - 1
# The upper digit with the sign bit cleared: 15 bits.
_UPPER_BUCKETS = 1 << (_DIGIT_BITS - 1)
_SIGN_CLEARED = _UPPER_BUCKETS - 1
# Where the upper half of a float32 lies among its two int16 halves.
_UPPER_HALF = 1 if sys.byteorder == "little" else 0
# Members are looked for a word of bools at a time: 8 bools per int64.
_WORD = 8


def kth_smallest(pieces: list, k: int, bucket_kthvalue_max_size: int):
    """The k-th smallest of the values in ``pieces`` (1 <= k <= their number).

    Args:
      pieces: non-empty 1-d float32 tensors, values >= 0 (``-0.0`` counts as
        0, +inf is allowed; no NaN).
      k: the rank, a Python int.
      bucket_kthvalue_max_size: a bucket of at most this many values is
        ranked by one ``kthvalue`` instead of a second histogram.

    Returns:
      A 0-d float32 tensor on the pieces' device.
    """
    pieces = [v if v.is_contiguous() else v.contiguous() for v in pieces]
    uppers = [_upper_digits(v) for v in pieces]
    counts = xp.bincount(uppers[0], minlength=_UPPER_BUCKETS)
    for digits in uppers[1:]:
        counts += xp.bincount(digits, minlength=_UPPER_BUCKETS)
    bucket, below = _digit_of_rank(counts, k)
    # The bucket's values, a few among many, by the positions of its members.
    members = xp.concat([
        v.index_select(0, member_positions(digits == bucket))
        for v, digits in zip(pieces, uppers)
    ])
    if members.numel() <= bucket_kthvalue_max_size:
        return members.kthvalue(k - below).values
    patterns = members.view(xp.int32) & _LOW_DIGIT
    low, _ = _digit_of_rank(xp.bincount(patterns, minlength=1 << _DIGIT_BITS), k - below)
    pattern = (bucket << _DIGIT_BITS) | low
    return xp.asarray(pattern, dtype=xp.int32, device=device(pieces[0])).view(xp.float32)


def _upper_digits(v):
    """The upper 16 bits of each float32 of the contiguous ``v``, sign bit
    cleared, as a new int16 tensor."""
    return v.view(xp.int16)[_UPPER_HALF::2] & _SIGN_CLEARED


def _digit_of_rank(counts, k: int) -> tuple[int, int]:
    """The digit whose bucket holds the k-th smallest, given each digit's
    count, and how many values lie in the buckets below it."""
    cumulative = counts.cumsum(0)
    digit = int(xp.searchsorted(cumulative, k))
    return digit, (int(cumulative[digit - 1]) if digit > 0 else 0)


def member_positions(window):
    """The positions, in increasing order, of the True entries of the 1-d
    bool mask ``window`` (a few members among many), which starts its storage.

    ``torch.nonzero`` scans one bool per entry, which is slow when only a few
    are set. The mask is read as int64 words of ``_WORD`` bools instead: the
    words that hold a member are found among ``_WORD`` times fewer entries,
    and only their bools are scanned. A tail of fewer than ``_WORD`` bools is
    scanned directly, and so is a window that fills most words.

    Example:
      >>> import torch
      >>> window = torch.zeros(20, dtype=torch.bool)
      >>> window[[3, 17, 19]] = True
      >>> member_positions(window).tolist()
      [3, 17, 19]
    """
    n = window.numel()
    whole = n - n % _WORD
    words = window[:whole].view(xp.int64)
    rows = xp.nonzero(words)[0]
    if 2 * rows.shape[0] > words.shape[0]:  # a wide window: scan every bool
        positions = xp.nonzero(window[:whole])[0]
    else:
        hits = xp.nonzero(words.index_select(0, rows).view(xp.bool))[0]
        shift = _WORD.bit_length() - 1
        positions = (rows.index_select(0, hits >> shift) << shift) | (hits & (_WORD - 1))
    if whole == n:
        return positions
    return xp.concat([positions, whole + xp.nonzero(window[whole:])[0]])
