"""The positions of the few True entries of a long bool mask (torch).

``torch.nonzero`` scans one bool per entry, which is slow when only a few of
them are set (the members of a search's window, the values of one histogram
bucket). Reading the mask as int64 words of eight bools finds the words that
hold a member among eight times fewer entries first.

Example:
  >>> import array_api_compat.torch as xp
  >>> import torch
  >>> window = torch.zeros(20, dtype=torch.bool)
  >>> window[[3, 17, 19]] = True
  >>> member_positions(xp, window).tolist()
  [3, 17, 19]
"""

from __future__ import annotations

__all__ = ["member_positions"]

# Members are looked for a word of bools at a time: 8 bools per int64.
_WORD = 8


def member_positions(xp, window):
    """The positions, in increasing order, of the True entries of the 1-d
    bool mask ``window`` (a few members among many), which starts its storage.

    Scanning one bool per value for the few members is slow. The mask is
    read as int64 words of ``_WORD`` bools instead: the words that hold a
    member are found among ``_WORD`` times fewer entries, and only their
    bools are scanned. A tail of fewer than ``_WORD`` bools is scanned
    directly, and so is a window that fills most words.
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
