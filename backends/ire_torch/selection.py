"""The flat-mask selection on torch tensors: τ, the exact k-th smallest
curvature value over the whole model, and the mask ``|ĥ| <= τ``.

:func:`select_flat_mask` has the contract of :func:`ire_core.select_flat_mask`
(docs/algorithm.md, The flat rule) and returns the same :class:`ire_core.FlatMask`;
:func:`exact_threshold` returns what :func:`ire_core.exact_threshold` returns.
Both decide on the host and rank without concatenating large tensors:

* fewer than ``_WINDOW_MIN_SIZE`` values: one ``kthvalue`` (off the CPU, up
  to ``_DEVICE_SORT_MAX_SIZE`` values: one sort);
* float32 magnitudes on the CPU, fewer than ``_HISTOGRAM_MAX_SIZE``: two
  histograms of their bit patterns (:mod:`ire_torch._bit_histograms`);
* otherwise a windowed search: a sample brackets the k-th value, comparisons
  over slices count the values below the bracket and pick those inside it,
  and the same search ranks those, down to a small ``kthvalue``.

For the exact threshold, the search writes the mask itself and checks the
values as it goes, so a selection reads every value from memory once.

Example:
  >>> import torch
  >>> h = [torch.tensor([3.0, 1.0]), torch.tensor([[2.0, float("nan")], [0.5, 4.0]])]
  >>> result = select_flat_mask(h, flat_fraction=0.5)
  >>> [m.tolist() for m in result.mask], result.threshold.item()
  ([[False, True], [[True, False], [True, False]]], 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import array_api_compat.torch as xp
from array_api_compat import device

import ire_core
from ire_core import FlatMask, flat_count
from ire_core._xp import (
    coprime_step,
    count_dtype,
    count_true,
    infinity_like,
    is_scalar,
    ranking_dtype,
)
from ire_core.mask import host_magnitudes

from . import _bit_histograms

__all__ = ["exact_threshold", "select_flat_mask"]

# -- size cut-offs (numbers of values) ----------------------------------------------
# Fewer values than this: one kthvalue over them all is cheaper than any search.
_WINDOW_MIN_SIZE = 1 << 16
# CPU float32 below this: histograms (a fixed few operations); above, bincount's one core loses.
_HISTOGRAM_MAX_SIZE = 1 << 21
# After histograms the mask is written in slices this long (a small scratch buffer, reused).
_HISTOGRAM_PASS_SIZE = 1 << 16
# A histogram bucket of at most this many values: one kthvalue, cheaper than a second histogram.
_BUCKET_KTHVALUE_MAX_SIZE = 1 << 12
# Off the CPU, up to this: one sort (each count a search reads would wait for the device).
_DEVICE_SORT_MAX_SIZE = 1 << 26
# The sample that brackets the k-th value holds at most this many values,
_WINDOW_SAMPLE = 1 << 16
# and at most one value in this many.
_WINDOW_SAMPLE_RATIO = 32
# The bracket's half-width, in standard deviations of a sampled rank (a miss: ~3e-3).
_WINDOW_SIGMAS = 3.0
# Tensors smaller than this are ranked together, as one concatenated piece.
_PIECE_MIN_SIZE = 1 << 16
# Passes run over slices this long: scratch stays in cache; float32 counts exact (<= 2^24).
_PASS_SIZE = 1 << 20


def exact_threshold(values: Sequence, k):
    """τ = the k-th smallest of all ``values`` (1-indexed; +inf for k <= 0).

    The same answer as :func:`ire_core.exact_threshold`, found by the searches
    of this module for a Python int ``k`` (a tensor ``k`` is handed to the
    core's). For an int ``k`` the result holds only itself, never a view of
    a larger buffer.

    Args:
      values: torch tensors of non-negative numbers (+inf allowed).
      k: the rank, a Python int or a 0-d integer tensor.

    Returns:
      A 0-d tensor of the values' dtype, on their device.

    Example:
      >>> import torch
      >>> exact_threshold([torch.tensor([5.0, 1.0]), torch.tensor([3.0])], 2).item()
      3.0
    """
    if not is_scalar(k):
        return ire_core.exact_threshold(values, k)
    return _kth_smallest([xp.reshape(v, (-1,)) for v in values], k)


def select_flat_mask(
    curvatures: Sequence,
    flat_fraction,
    previous: Sequence | None = None,
    threshold_fn: Callable = exact_threshold,
) -> FlatMask:
    """Marks the flattest fraction γ of all coordinates of the model.

    The contract and result of :func:`ire_core.select_flat_mask`, on torch
    tensors. With a 0-d tensor γ the core's array-only rule runs; with a
    Python number γ the decisions are taken on the host, and the exact
    threshold's search writes the mask.

    Args:
      curvatures: per-tensor curvature estimates ĥ (any sign; |·| is taken).
      flat_fraction: γ in [0, 1] (Python number or 0-d tensor).
      previous: the mask in force, kept when no estimate is finite. ``None``
        means "nothing flat".
      threshold_fn: ``(values, k) -> τ``; :func:`exact_threshold` by default.

    Returns:
      An :class:`ire_core.FlatMask`.

    Example:
      >>> import torch
      >>> result = select_flat_mask([torch.tensor([0.3, -2.0, 0.1, 5.0])], 0.5)
      >>> result.mask[0].tolist(), int(result.flat_count)
      ([True, False, True, False], 2)
    """
    if not curvatures:
        raise ValueError("curvatures must hold at least one tensor, got an empty sequence")
    total = sum(math.prod(h.shape) for h in curvatures)
    k = flat_count(flat_fraction, total)
    if not is_scalar(k):
        return ire_core.select_flat_mask(curvatures, flat_fraction, previous, threshold_fn)
    mask, tau, count = _select_eagerly(curvatures, k, previous, threshold_fn)
    dtype = count_dtype(xp, total)
    if count is None:
        return FlatMask(mask, tau, xp.sum(xp.stack([count_true(xp, m, dtype) for m in mask])))
    return FlatMask(mask, tau, xp.asarray(count, dtype=dtype, device=device(tau)))


def _select_eagerly(curvatures, k: int, previous, threshold_fn):
    """``(mask, τ, count)`` by the flat rule, with host decisions: values
    that are already magnitudes are ranked as they are, one reduction per
    tensor tells both that and whether any value is finite, and the exact
    threshold's search writes the mask and checks the values as it goes
    (:func:`_flat_mask`). ``count`` is ``None`` where not counted."""
    exact = threshold_fn is exact_threshold or threshold_fn is ire_core.exact_threshold
    if exact and k > 0:
        # Searched values are checked by the search itself, without a pass of their own.
        dtype = ranking_dtype(xp, [h.dtype for h in curvatures])
        found = _flat_mask([xp.astype(h, dtype, copy=False) for h in curvatures], k, check=True)
        if found is not None and bool(found[1] < math.inf):
            return found
    values, smallest = host_magnitudes(xp, curvatures)
    infinity = xp.asarray(xp.inf, dtype=values[0].dtype, device=device(values[0]))
    if smallest is None or not bool(smallest < infinity):
        if previous is None:
            return [xp.zeros_like(v, dtype=xp.bool) for v in values], infinity, None
        return list(previous), infinity, None
    if k <= 0:
        return [xp.zeros_like(v, dtype=xp.bool) for v in values], infinity, None
    if exact:
        mask, tau, count = _flat_mask(values, k)
    else:
        tau = threshold_fn(values, k)
        mask, count = _mask_at_most(values, tau)
    if bool(tau < infinity):
        return mask, tau, count
    return [v < infinity for v in values], tau, None


def _kth_smallest(values: list, k: int):
    """Exact k-th smallest of 1-d tensors, without concatenating large ones.

    Every step is a tensor operation on the values' device; the host reads a
    few counts. Values that are not searched (:func:`_searched`) are ranked
    by one ``kthvalue`` or, off the CPU, one sort.
    """
    n = sum(v.numel() for v in values)
    if k <= 0 or n == 0:
        return infinity_like(xp, values[0])
    k = min(k, n)
    if not _searched(values, n):
        if values[0].device.type == "cpu":
            return xp.concat(values).kthvalue(k).values
        # A copy: an element of the sorted values would keep all of them alive.
        return xp.sort(xp.concat(values))[k - 1].clone()
    pieces = [piece for piece, _ in _layout(values)]
    return _search(pieces, n, k)[0]


def _flat_mask(values: list, k: int, check: bool = False):
    """``(mask, τ, count)``: the mask ``v <= τ`` of the tensors ``values``
    for τ = their k-th smallest (1 <= k; values >= 0 or +inf, no NaN), and
    the number of True entries (``None`` when not counted).

    Where the values are searched, the mask is one bool buffer whose views
    take the values' shapes. The windowed search writes it itself: the
    comparison ``v < lower`` that counts the values below the window is the
    mask, and the window's members at or below τ are set in it afterwards.
    After histograms, one more pass writes it.

    With ``check=True`` the values need not be magnitudes: the answer is
    ``None`` unless they are searched and hold no negative value, no NaN and
    at least one finite value. The windowed search finds that out from its
    sample and from the minimum of every slice it compares, so no pass of
    its own reads the values first; the histograms read the minima first.
    """
    flat = [xp.reshape(v, (-1,)) for v in values]
    n = sum(v.numel() for v in flat)
    if not _searched(flat, n):
        if check:
            return None
        tau = _kth_smallest(flat, k)
        mask, count = _mask_at_most(values, tau)
        return mask, tau, count
    k = min(k, n)
    buffer = xp.empty((n,), dtype=xp.bool, device=device(values[0]))
    mask = [buffer[:0].view(v.shape) if v.numel() == 0 else None for v in values]
    pieces, outputs, offset = [], [], 0
    for piece, indices in _layout(flat):
        pieces.append(piece)
        outputs.append(buffer[offset : offset + piece.numel()])
        for i in indices:
            size = flat[i].numel()
            mask[i] = buffer[offset : offset + size].view(values[i].shape)
            offset += size
    found = _search(pieces, n, k, outputs, check)
    return None if found is None else (mask, *found)


def _mask_at_most(values: list, tau):
    """``(mask, count)``: ``v <= τ`` for each of the tensors ``values``, and
    the number of True entries (``None`` when not counted).

    On the CPU each comparison writes 0/1 floats into a scratch buffer, in
    slices of ``_PASS_SIZE``, which are summed to count and copied into the
    bool mask: torch's comparison writing floats, then a conversion to bools,
    costs less than its comparison writing bools. Elsewhere: ``v <= τ``.
    """
    if not values or values[0].device.type != "cpu":
        return [v <= tau for v in values], None
    mask = [xp.empty(v.shape, dtype=xp.bool) for v in values]
    count = _write_at_most([xp.reshape(v, (-1,)) for v in values], [m.view(-1) for m in mask], tau)
    return mask, count


def _write_at_most(values: list, outputs: list, tau, pass_size: int | None = None) -> int:
    """Writes ``v <= τ`` for the 1-d ``values`` into the 1-d bool ``outputs``
    through a float scratch buffer, a slice of at most ``pass_size``
    (``_PASS_SIZE`` unless given) at a time, and returns the number of True
    entries."""
    if not values:
        return 0
    pass_size = pass_size or _PASS_SIZE
    largest = max(v.numel() for v in values)
    scratch = xp.empty((min(pass_size, largest),), dtype=xp.float32, device=device(values[0]))
    counts = []
    for v, output in zip(values, outputs):
        for part, out in zip(xp.split(v, pass_size), xp.split(output, pass_size)):
            at_most = xp.less_equal(part, tau, out=scratch[: part.numel()])
            counts.append(xp.sum(at_most))
            out.copy_(at_most)
    return _total(counts)


def _searched(values: list, n: int) -> bool:
    """Whether these ``n`` values are searched, by histograms or a window
    (:func:`_search`; else one ``kthvalue``, or off the CPU one sort)."""
    if values[0].device.type != "cpu" and n <= _DEVICE_SORT_MAX_SIZE:
        return False
    return n >= _WINDOW_MIN_SIZE


def _search(pieces: list, n: int, k: int, outputs: list | None = None, check: bool = False):
    """:func:`_window_search`'s answer, from histograms of the bit patterns
    where those take fewer passes: float32 values on the CPU, fewer than
    ``_HISTOGRAM_MAX_SIZE``, that are magnitudes (the values' minima are
    read first: negative or NaN values are ranked by comparisons, or with
    ``check=True`` answered ``None``). The mask, if asked for, is then
    written by one more pass."""
    first = pieces[0]
    if first.device.type == "cpu" and first.dtype == xp.float32 and n < _HISTOGRAM_MAX_SIZE:
        if _magnitudes_only([xp.min(v) for v in pieces]):
            return _ranked_by_histograms(pieces, k, outputs)
        if check:
            return None
    return _window_search(pieces, n, k, outputs, check)


def _ranked_by_histograms(pieces: list, k: int, outputs: list | None):
    """:func:`_search`'s answer for magnitudes, from :mod:`ire_torch._bit_histograms`."""
    tau = _bit_histograms.kth_smallest(pieces, k, _BUCKET_KTHVALUE_MAX_SIZE)
    if outputs is None:
        return tau, None
    return tau, _write_at_most(pieces, outputs, tau, _HISTOGRAM_PASS_SIZE)


def _layout(values: list) -> list:
    """The pieces the search ranks, each with the indices of the ``values``
    lying end to end in it: all of them as one tensor when they share one
    storage that way (:func:`_one_tensor`); else each tensor of at least
    ``_PIECE_MIN_SIZE`` values, and the smaller ones concatenated into one."""
    whole = _one_tensor(values)
    if whole is not None:
        return [(whole, [i for i, v in enumerate(values) if v.numel() > 0])]
    large = [(v, [i]) for i, v in enumerate(values) if v.numel() >= _PIECE_MIN_SIZE]
    small = [i for i, v in enumerate(values) if 0 < v.numel() < _PIECE_MIN_SIZE]
    if len(small) > 1:
        return large + [(xp.concat([values[i] for i in small]), small)]
    return large + [(values[i], [i]) for i in small]


def _window_search(pieces: list, n: int, k: int, outputs: list | None = None,
                   check: bool = False, sigmas: float | None = None):
    """``(τ, count)``: the k-th smallest of the 1-d ``pieces`` (``n`` values
    in all, 1 <= k <= n), and, when ``outputs`` (one bool tensor per piece)
    is given, ``v <= τ`` written into them and its number of True entries
    (else ``None``). With ``check=True``: ``None`` where the values turn out
    not to be magnitudes with a finite one among them (:func:`_flat_mask`).

    The comparisons write 0/1 floats into scratch buffers, which are summed
    to count and copied into bool masks (see :func:`_mask_at_most`). A
    bracket whose ends are equal needs no window: its values are only
    counted. A bracket that misses (it only costs time) is drawn again twice
    as wide (``sigmas``), and one that misses again falls back to
    ``kthvalue`` over everything.
    """
    first_try = sigmas is None
    sample = _sample(pieces, n)
    if check and not _magnitudes_only([sample]):
        return None
    lower, upper = _bracket(sample, n, k, _WINDOW_SIGMAS if first_try else sigmas)
    if lower is None and upper is None:
        return None if check else _by_kthvalue(pieces, k, outputs)

    def missed():
        if first_try:
            return _window_search(pieces, n, k, outputs, sigmas=2 * _WINDOW_SIGMAS)
        return _by_kthvalue(pieces, k, outputs)

    pieces = [part for v in pieces for part in xp.split(v, _PASS_SIZE)]
    if outputs is not None:
        outputs = [part for output in outputs for part in xp.split(output, _PASS_SIZE)]
    tied = lower is not None and upper is not None and bool(lower == upper)
    largest, where = max(v.numel() for v in pieces), device(pieces[0])
    unders, at_mosts = (xp.empty((largest,), dtype=xp.float32, device=where) for _ in range(2))
    window_mask = None if tied else xp.empty((largest,), dtype=xp.bool, device=where)
    below, inside, positions, members, minima = [], [], [], [], []
    for i, v in enumerate(pieces):
        size = v.numel()
        if check:  # read first, so that the comparisons find the slice in the cache
            minima.append(xp.min(v))
        under = None if lower is None else xp.less(v, lower, out=unders[:size])
        at_most = None if upper is None else xp.less_equal(v, upper, out=at_mosts[:size])
        if under is not None:
            below.append(xp.sum(under))
        if outputs is not None:  # the mask: v < lower, or v <= upper when tied
            if tied:
                outputs[i].copy_(at_most)
            elif under is not None:
                outputs[i].copy_(under)
            else:
                outputs[i].zero_()
        if tied:  # the window holds copies of one value: count them
            inside.append(xp.sum(at_most) - below[-1])
            continue
        if under is None:
            inside_window = at_most
        elif at_most is None:
            inside_window = under.neg_().add_(1)
        else:
            inside_window = at_most.sub_(under)
        positions.append(_bit_histograms.member_positions(window_mask[:size].copy_(inside_window)))
        members.append(v.index_select(0, positions[-1]))
    if check and not _magnitudes_only(minima):
        return None
    below = _total(below)
    rank = k - below
    if tied:
        inside = _total(inside)
        if 1 <= rank <= inside:
            return lower, (below + inside if outputs is not None else None)
        return missed()
    window = xp.concat(members)
    if not 1 <= rank <= window.numel():
        return missed()
    if 2 * window.numel() > n:  # a bracket that hardly narrowed
        tau = window.kthvalue(rank).values
    else:
        tau = _kth_smallest([window], rank)
    if outputs is None:
        return tau, None
    flat = window <= tau
    # The members are >= lower, so their entries in the mask still read False.
    for output, at, flags in zip(outputs, positions, xp.split(flat, [p.numel() for p in positions])):
        output.index_put_((at,), flags)
    return tau, below + int(xp.count_nonzero(flat))


def _total(counts: list) -> int:
    """The sum of 0-d float32 counts, each exact (of at most ``_PASS_SIZE``
    0/1 entries), as a Python int."""
    if not counts:
        return 0
    return int(xp.sum(xp.astype(xp.stack(counts), xp.int64)))


def _by_kthvalue(pieces: list, k: int, outputs: list | None):
    """:func:`_window_search`'s answer from one ``kthvalue`` over everything."""
    tau = xp.concat(pieces).kthvalue(k).values
    return tau, (None if outputs is None else _write_at_most(pieces, outputs, tau))


def _one_tensor(values: list):
    """The 1-d tensors ``values`` as one tensor, without a copy, when they
    lie end to end in one storage (as the views of the one buffer that
    :mod:`ire_torch.estimators` writes squared gradients into); else ``None``."""
    sized = [v for v in values if v.numel() > 0]
    if len(sized) < 2:
        return None
    first = sized[0]
    start = offset = first.storage_offset()
    pointer = first.untyped_storage().data_ptr()
    for v in sized:
        if (v.untyped_storage().data_ptr() != pointer or v.storage_offset() != offset
                or v.dtype != first.dtype or v.stride() != (1,)):
            return None
        offset += v.numel()
    return first.as_strided((offset - start,), (1,), start)


def _magnitudes_only(minima: list) -> bool:
    """Whether the smallest of ``minima`` (0-d tensors) is >= 0 and finite:
    then the values they are the minima of hold no NaN, no negative value,
    and a finite one."""
    smallest = xp.min(xp.stack(minima))
    return bool((smallest >= 0) & (smallest < math.inf))


def _sample(pieces: list, total: int):
    """The values that bracket the k-th smallest: ``_WINDOW_SAMPLE`` of the
    ``total`` (at most one in ``_WINDOW_SAMPLE_RATIO``), spread over the
    pieces in proportion to their sizes."""
    size = min(_WINDOW_SAMPLE, total // _WINDOW_SAMPLE_RATIO)
    return xp.concat([_spread_sample(v, round(size * v.numel() / total)) for v in pieces])


def _bracket(sample, total: int, k: int, sigmas: float):
    """Two order statistics of a ``sample`` of ``total`` values,
    ``lower <= upper``, that hold the k-th smallest of all between them but
    for a chance of about 3e-3 at 3 ``sigmas``; ``None`` for a side
    beyond the sample's range."""
    m = sample.numel()
    q = k / total
    margin = sigmas * math.sqrt(q * (1.0 - q) / m) + 2.0 / m
    lo_rank, hi_rank = math.floor((q - margin) * m), math.ceil((q + margin) * m)
    if lo_rank < 1:
        return None, (_kth_smallest([sample], hi_rank) if hi_rank <= m else None)
    lower = _kth_smallest([sample], lo_rank)
    if hi_rank > m:
        return lower, None
    # The upper end from the values above the lower one: a second selection
    # over about 1 - q of the sample, not all of it.
    above = sample[sample > lower]
    rank = hi_rank - (m - above.numel())
    return lower, (lower if rank <= 0 else _kth_smallest([above], rank))


def _spread_sample(v, size: int):
    """``size`` values of the 1-d tensor ``v`` (at least one, at most all),
    at golden-ratio spread positions."""
    n = v.numel()
    m = min(n, max(1, size))
    return v.index_select(0, xp.arange(m, device=device(v)) * coprime_step(n) % n)
