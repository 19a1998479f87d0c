"""The exact k-th smallest of torch tensors by a window bracketed by a
sample, and the flat mask written during that search.

:func:`~ire_core.threshold.exact_threshold` ranks torch tensors with
:func:`torch_kth_smallest`; :func:`~ire_core.mask.select_flat_mask` takes
τ and the mask together from :func:`torch_flat_mask`, and the mask of any
other threshold from :func:`torch_mask_at_most`. On the CPU, float32 values
of up to ``_HISTOGRAM_MAX_SIZE`` are ranked from two histograms of their bit
patterns instead (:mod:`ire_core._radix`), and the mask written after.
"""

from __future__ import annotations

import math

from array_api_compat import device

from . import _radix
from ._members import member_positions
from ._xp import coprime_step, infinity_like, namespace

# Torch: fewer values than this are ranked by one kthvalue over them all.
_WINDOW_MIN_SIZE = 1 << 16
# Torch on the CPU: float32 values from _WINDOW_MIN_SIZE up to (not including)
# this many are ranked by histograms, in a fixed handful of operations; on
# more values the windowed search is faster (bincount runs on one core).
_HISTOGRAM_MAX_SIZE = 1 << 21
# After the histograms the mask is written a slice of this many values at a
# time: a small scratch buffer, reused, is not paged in afresh on every call.
_HISTOGRAM_PASS_SIZE = 1 << 16
# Torch off the CPU: up to this many values are ranked by one sort.
_DEVICE_SORT_MAX_SIZE = 1 << 26
# The sample that brackets the k-th value holds at most _WINDOW_SAMPLE values
# and at most one in _WINDOW_SAMPLE_RATIO; the bracket reaches _WINDOW_SIGMAS
# standard deviations of a sampled rank to either side (missing the k-th
# value about 3 times in 1000), and twice as far on a second try.
_WINDOW_SAMPLE = 1 << 16
_WINDOW_SAMPLE_RATIO = 32
_WINDOW_SIGMAS = 3.0
# Tensors smaller than this are ranked together, as one concatenated piece.
_PIECE_MIN_SIZE = 1 << 16
# The search's passes run over slices of at most this many values, so that
# its scratch buffers stay in the cache between passes (and at most 2^24, so
# that a float32 sum of 0/1 entries counts them exactly).
_PASS_SIZE = 1 << 20


def torch_kth_smallest(xp, values: list, k: int):
    """Exact k-th smallest of 1-d torch tensors, without concatenating them.

    A sample spread over all tensors brackets the k-th value between two of
    its order statistics, ``lower <= upper`` (found by this same search).
    Two comparisons per slice of at most ``_PASS_SIZE`` values count the
    values below the bracket and mark those inside it; the marked values
    (about 1 % of them) are gathered word by word
    (:func:`~ire_core._members.member_positions`) and searched again, down
    to a small ``kthvalue`` (:func:`_window_search`). Tensors smaller than
    ``_PIECE_MIN_SIZE`` are ranked as one concatenated piece, so that many
    small tensors cost a few operations, not a few each. Every step is a
    tensor operation on the values' device; the host reads a few counts.

    Off the CPU, up to ``_DEVICE_SORT_MAX_SIZE`` values are sorted whole
    instead: a CUDA ``kthvalue`` ranks a slice with one thread block, and
    each count the search reads waits for the device, while one sort keeps
    the device busy and the host free (at 16 bytes per value, briefly).
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
    pieces = [piece for piece, _ in _layout(xp, values)]
    return _search(xp, pieces, n, k)[0]


def torch_flat_mask(values: list, k: int, check: bool = False):
    """``(mask, τ, count)``: the mask ``v <= τ`` of the torch tensors
    ``values`` for τ = their k-th smallest (1 <= k; values >= 0 or +inf, no
    NaN), and the number of True entries (``None`` when not counted).

    Where the values are searched, the mask is one bool buffer whose views
    take the values' shapes. The windowed search writes it itself: the
    comparison ``v < lower`` that counts the values below the window is the
    mask, and the window's members at or below τ are set in it afterwards.
    A selection then brings every value from memory once (each slice's
    passes find it in the cache), and counts nothing again. After
    histograms, one more pass writes it.

    With ``check=True`` the values need not be magnitudes: the answer is
    ``None`` unless they are searched and hold no negative value, no NaN and
    at least one finite value. The windowed search finds that out from its
    sample and from the minimum of every slice it compares, so no pass of
    its own reads the values first; the histograms read the minima first.
    """
    xp = namespace(*values)
    flat = [xp.reshape(v, (-1,)) for v in values]
    n = sum(v.numel() for v in flat)
    if not _searched(flat, n):
        if check:
            return None
        tau = torch_kth_smallest(xp, flat, k)
        mask, count = torch_mask_at_most(values, tau)
        return mask, tau, count
    k = min(k, n)
    buffer = xp.empty((n,), dtype=xp.bool, device=device(values[0]))
    mask = [buffer[:0].view(v.shape) if v.numel() == 0 else None for v in values]
    pieces, outputs, offset = [], [], 0
    for piece, indices in _layout(xp, flat):
        pieces.append(piece)
        outputs.append(buffer[offset : offset + piece.numel()])
        for i in indices:
            size = flat[i].numel()
            mask[i] = buffer[offset : offset + size].view(values[i].shape)
            offset += size
    found = _search(xp, pieces, n, k, outputs, check)
    return None if found is None else (mask, *found)


def torch_mask_at_most(values: list, tau):
    """``(mask, count)``: ``v <= τ`` for each of the torch tensors ``values``,
    and the number of True entries (``None`` when not counted).

    On the CPU each comparison writes 0/1 floats into a scratch buffer, in
    slices of ``_PASS_SIZE``, which are summed to count and copied into the
    bool mask: torch compares into floats and converts them to bools several
    times faster than it compares into bools. Elsewhere: ``v <= τ``.
    """
    if not values or values[0].device.type != "cpu":
        return [v <= tau for v in values], None
    xp = namespace(*values)
    mask = [xp.empty(v.shape, dtype=xp.bool) for v in values]
    count = _write_at_most(xp, [xp.reshape(v, (-1,)) for v in values],
                           [m.view(-1) for m in mask], tau)
    return mask, count


def _write_at_most(xp, values: list, outputs: list, tau, pass_size: int | None = None) -> int:
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
    return _total(xp, counts)


def _searched(values: list, n: int) -> bool:
    """Whether these ``n`` values are searched, by histograms or a window
    (:func:`_search`; else one ``kthvalue``, or off the CPU one sort)."""
    if values[0].device.type != "cpu" and n <= _DEVICE_SORT_MAX_SIZE:
        return False
    return n >= _WINDOW_MIN_SIZE


def _search(xp, pieces: list, n: int, k: int, outputs: list | None = None,
            check: bool = False):
    """:func:`_window_search`'s answer, from histograms of the bit patterns
    where those are the faster way: float32 values on the CPU, fewer than
    ``_HISTOGRAM_MAX_SIZE``, that are magnitudes (the values' minima are
    read first: negative or NaN values are ranked by comparisons, or with
    ``check=True`` answered ``None``). The mask, if asked for, is then
    written by one more pass."""
    first = pieces[0]
    if (first.device.type == "cpu" and first.dtype == xp.float32
            and n < _HISTOGRAM_MAX_SIZE):
        if _magnitudes_only(xp, [xp.min(v) for v in pieces]):
            return _ranked_by_histograms(xp, pieces, k, outputs)
        if check:
            return None
    return _window_search(xp, pieces, n, k, outputs, check)


def _ranked_by_histograms(xp, pieces: list, k: int, outputs: list | None):
    """:func:`_search`'s answer for magnitudes, from :mod:`ire_core._radix`."""
    tau = _radix.kth_smallest(xp, pieces, k)
    if outputs is None:
        return tau, None
    return tau, _write_at_most(xp, pieces, outputs, tau, _HISTOGRAM_PASS_SIZE)


def _layout(xp, values: list) -> list:
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


def _window_search(xp, pieces: list, n: int, k: int, outputs: list | None = None,
                   check: bool = False, sigmas: float | None = None):
    """``(τ, count)``: the k-th smallest of the 1-d ``pieces`` (``n`` values
    in all, 1 <= k <= n), and, when ``outputs`` (one bool tensor per piece)
    is given, ``v <= τ`` written into them and its number of True entries
    (else ``None``). With ``check=True``: ``None`` where the values turn out
    not to be magnitudes with a finite one among them (:func:`torch_flat_mask`).

    The comparisons write 0/1 floats into scratch buffers, which are summed
    to count and copied into bool masks: on the CPU, torch compares into a
    float tensor and converts it to bools several times faster than it
    compares into bools. A bracket whose ends are equal needs no window: its
    values are only counted. A bracket that misses (about 3 times in 1000;
    it only costs time) is drawn again twice as wide (``sigmas``), and one
    that misses again falls back to ``kthvalue`` over everything.
    """
    first_try = sigmas is None
    sample = _sample(xp, pieces, n)
    if check and not _magnitudes_only(xp, [sample]):
        return None
    lower, upper = _bracket(xp, sample, n, k, _WINDOW_SIGMAS if first_try else sigmas)
    if lower is None and upper is None:
        return None if check else _by_kthvalue(xp, pieces, k, outputs)

    def missed():
        if first_try:
            return _window_search(xp, pieces, n, k, outputs, sigmas=2 * _WINDOW_SIGMAS)
        return _by_kthvalue(xp, pieces, k, outputs)

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
        positions.append(member_positions(xp, window_mask[:size].copy_(inside_window)))
        members.append(v.index_select(0, positions[-1]))
    if check and not _magnitudes_only(xp, minima):
        return None
    below = _total(xp, below)
    rank = k - below
    if tied:
        inside = _total(xp, inside)
        if 1 <= rank <= inside:
            return lower, (below + inside if outputs is not None else None)
        return missed()
    window = xp.concat(members)
    if not 1 <= rank <= window.numel():
        return missed()
    if 2 * window.numel() > n:  # a bracket that hardly narrowed
        tau = window.kthvalue(rank).values
    else:
        tau = torch_kth_smallest(xp, [window], rank)
    if outputs is None:
        return tau, None
    flat = window <= tau
    # The members are >= lower, so their entries in the mask still read False.
    for output, at, flags in zip(outputs, positions, xp.split(flat, [p.numel() for p in positions])):
        output.index_put_((at,), flags)
    return tau, below + int(xp.count_nonzero(flat))


def _total(xp, counts: list) -> int:
    """The sum of 0-d float32 counts, each exact (of at most ``_PASS_SIZE``
    0/1 entries), as a Python int."""
    if not counts:
        return 0
    return int(xp.sum(xp.astype(xp.stack(counts), xp.int64)))


def _by_kthvalue(xp, pieces: list, k: int, outputs: list | None):
    """:func:`_window_search`'s answer from one ``kthvalue`` over everything."""
    tau = xp.concat(pieces).kthvalue(k).values
    return tau, (None if outputs is None else _write_at_most(xp, pieces, outputs, tau))


def _one_tensor(values: list):
    """The 1-d torch tensors ``values`` as one tensor, without a copy, when
    they lie end to end in one storage (as the views of one buffer that
    ``ire_torch`` writes squared gradients into); else ``None``."""
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


def _magnitudes_only(xp, minima: list) -> bool:
    """Whether the smallest of ``minima`` (0-d tensors) is >= 0 and finite:
    then the values they are the minima of hold no NaN, no negative value,
    and a finite one."""
    smallest = xp.min(xp.stack(minima))
    return bool((smallest >= 0) & (smallest < math.inf))


def _sample(xp, pieces: list, total: int):
    """The values that bracket the k-th smallest: ``_WINDOW_SAMPLE`` of the
    ``total`` (at most one in ``_WINDOW_SAMPLE_RATIO``), spread over the
    pieces in proportion to their sizes."""
    size = min(_WINDOW_SAMPLE, total // _WINDOW_SAMPLE_RATIO)
    return xp.concat([_spread_sample(xp, v, round(size * v.numel() / total)) for v in pieces])


def _bracket(xp, sample, total: int, k: int, sigmas: float):
    """Two order statistics of a ``sample`` of ``total`` values,
    ``lower <= upper``, that hold the k-th smallest of all between them but
    for a chance of about 3e-3 at 3 ``sigmas``; ``None`` for a side
    beyond the sample's range."""
    m = sample.numel()
    q = k / total
    margin = sigmas * math.sqrt(q * (1.0 - q) / m) + 2.0 / m
    lo_rank, hi_rank = math.floor((q - margin) * m), math.ceil((q + margin) * m)
    if lo_rank < 1:
        return None, (torch_kth_smallest(xp, [sample], hi_rank) if hi_rank <= m else None)
    lower = torch_kth_smallest(xp, [sample], lo_rank)
    if hi_rank > m:
        return lower, None
    # The upper end from the values above the lower one: a second selection
    # over about 1 - q of the sample, not all of it.
    above = sample[sample > lower]
    rank = hi_rank - (m - above.numel())
    return lower, (lower if rank <= 0 else torch_kth_smallest(xp, [above], rank))


def _spread_sample(xp, v, size: int):
    """``size`` values of the 1-d tensor ``v`` (at least one, at most all),
    at golden-ratio spread positions."""
    n = v.numel()
    m = min(n, max(1, size))
    return v.index_select(0, xp.arange(m, device=device(v)) * coprime_step(n) % n)
