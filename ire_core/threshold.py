"""Finding τ, the k-th smallest curvature value over the whole model.

A threshold function has the signature ``(values, k) -> τ``: ``values`` is a
list of per-tensor arrays of non-negative numbers (+inf for non-finite
estimates), ``k`` the 1-indexed rank (a Python int, or a 0-d integer array
under ``jax.jit``). :func:`select_flat_mask` takes any of them.

* :func:`exact_threshold` (default): the exact k-th smallest. On NumPy it uses
  ``partition``; on torch a window bracketed by a sample, searched the same
  way down to a small ``kthvalue`` (exact, with a full ``kthvalue`` as
  fallback), and no concatenation of large tensors (off the CPU, a sort of
  the concatenation, up to 2^26 values); elsewhere, and for a traced k, a
  sort.
  (``ire_jax`` and ``ire_keras`` bring their own exact thresholds, a
  jit-friendly search over the values' bit patterns, and use them by
  default.)
* :class:`SampledThreshold`: the k-th smallest of a fixed-size, evenly
  spread sample (the sampled quantile). It reads only the sample, so its cost
  does not grow with the model; the flat count deviates from k by about
  ``sqrt(γ·(1−γ)/sample)·N`` (0.2 % of N with the default sample).
* :class:`HistogramThreshold`: a few passes of log-scale histograms whose
  counts can be summed across processes, for sharded or very large models. It
  needs no gather of the values, and its τ is within one final bin (relative
  width ~1e-9 with the defaults) of the exact one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from array_api_compat import device, is_jax_namespace, is_numpy_namespace, is_torch_namespace

from ._xp import count_dtype, is_scalar, namespace

# Torch: fewer values than this are ranked by one kthvalue over them all.
_WINDOW_MIN_SIZE = 1 << 16
# Torch off the CPU: up to this many values are ranked by one sort.
_DEVICE_SORT_MAX_SIZE = 1 << 26
# The sample that brackets the k-th value holds at most _WINDOW_SAMPLE values
# and at most one in _WINDOW_SAMPLE_RATIO; the bracket reaches _WINDOW_SIGMAS
# standard deviations of a sampled rank to either side.
_WINDOW_SAMPLE = 1 << 16
_WINDOW_SAMPLE_RATIO = 32
_WINDOW_SIGMAS = 4.0
# Tensors smaller than this are ranked together, as one concatenated piece.
_PIECE_MIN_SIZE = 1 << 16
# Window members are looked for a word of bools at a time: 8 bools per int64.
_WORD = 8
_WORD_OF_TRUES = int.from_bytes(b"\x01" * _WORD, "little")


def _flatten(xp, values):
    return xp.concat([xp.reshape(v, (-1,)) for v in values])


def _infinity(xp, like):
    return xp.asarray(xp.inf, dtype=like.dtype, device=device(like))


def exact_threshold(values: Sequence, k):
    """τ = the k-th smallest of all ``values`` (1-indexed; +inf for k <= 0).

    Example:
      >>> import numpy as np
      >>> float(exact_threshold([np.array([5.0, 1.0]), np.array([3.0])], 2))
      3.0
    """
    xp = namespace(*values)
    if is_torch_namespace(xp) and is_scalar(k):
        return _torch_kth_smallest(xp, [xp.reshape(v, (-1,)) for v in values], k)
    flat = _flatten(xp, values)
    n = flat.shape[0]
    if not is_scalar(k):
        ordered = xp.sort(flat)
        tau = ordered[xp.clip(k - 1, 0, max(n - 1, 0))]
        return xp.where(k > 0, tau, _infinity(xp, flat))
    if k <= 0 or n == 0:
        return _infinity(xp, flat)
    k = min(k, n)
    if is_numpy_namespace(xp):
        return xp.partition(flat, k - 1)[k - 1]
    return xp.sort(flat)[k - 1]


def _torch_kth_smallest(xp, values: list, k: int):
    """Exact k-th smallest of 1-d torch tensors, without concatenating them.

    A sample spread over all tensors brackets the k-th value between two of
    its order statistics, ``lower <= upper`` (found by this same search).
    Two comparisons per tensor count the values below the bracket and mark
    those inside it; the marked values (1–2 % of them) are gathered
    word by word (:func:`_members`) and searched again, down to a small
    ``kthvalue``. A bracket whose ends are equal needs no window: its values
    are only counted. A bracket that misses (rare; it only costs time) falls
    back to ``kthvalue`` over everything. Tensors smaller than
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
        return _infinity(xp, values[0])
    k = min(k, n)
    if values[0].device.type != "cpu" and n <= _DEVICE_SORT_MAX_SIZE:
        # A copy: an element of the sorted values would keep all of them alive.
        return xp.sort(xp.concat(values))[k - 1].clone()
    whole = _one_tensor(values)
    if whole is not None:
        values = [whole]
    if n < _WINDOW_MIN_SIZE:
        return xp.concat(values).kthvalue(k).values
    pieces = _pieces(xp, values)
    lower, upper = _bracket(xp, pieces, n, k)
    if lower is None and upper is None:
        return xp.concat(values).kthvalue(k).values
    tied = lower is not None and upper is not None and bool(lower == upper)
    # One mask buffer per closed end of the bracket, reused by every piece.
    largest, where = max(v.numel() for v in pieces), device(pieces[0])
    unders = xp.empty((largest,), dtype=xp.bool, device=where) if lower is not None else None
    at_mosts = xp.empty((largest,), dtype=xp.bool, device=where) if upper is not None else None
    below, inside, window = 0, 0, []
    for v in pieces:
        size = v.numel()
        under = xp.less(v, lower, out=unders[:size]) if lower is not None else None
        at_most = xp.less_equal(v, upper, out=at_mosts[:size]) if upper is not None else None
        if under is not None:
            below = below + xp.count_nonzero(under)
        if tied:  # the window holds copies of one value: count them
            inside = inside + xp.count_nonzero(at_most) - xp.count_nonzero(under)
        else:
            window.append(_members(xp, v, under, at_most))
    rank = k - int(below)
    if tied:
        if 1 <= rank <= int(inside):
            return lower
    else:
        window = xp.concat(window)
        if 1 <= rank <= window.numel():
            if 2 * window.numel() > n:  # a bracket that hardly narrowed
                return window.kthvalue(rank).values
            return _torch_kth_smallest(xp, [window], rank)
    return xp.concat(values).kthvalue(k).values


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


def _pieces(xp, values: list) -> list:
    """The non-empty tensors of at least ``_PIECE_MIN_SIZE`` values, and the
    smaller ones concatenated into one."""
    large = [v for v in values if v.numel() >= _PIECE_MIN_SIZE]
    small = [v for v in values if 0 < v.numel() < _PIECE_MIN_SIZE]
    return large + ([xp.concat(small)] if len(small) > 1 else small)


def _bracket(xp, pieces: list, total: int, k: int):
    """Two order statistics of a sample, ``lower <= upper``, that hold the
    k-th smallest of ``total`` values between them but for a chance of about
    1e-4 (``_WINDOW_SIGMAS``); ``None`` for a side beyond the sample's
    range."""
    size = min(_WINDOW_SAMPLE, total // _WINDOW_SAMPLE_RATIO)
    sample = xp.concat([_spread_sample(xp, v, round(size * v.numel() / total)) for v in pieces])
    m = sample.numel()
    q = k / total
    margin = _WINDOW_SIGMAS * math.sqrt(q * (1.0 - q) / m) + 2.0 / m
    lo_rank, hi_rank = math.floor((q - margin) * m), math.ceil((q + margin) * m)
    lower = _torch_kth_smallest(xp, [sample], lo_rank) if lo_rank >= 1 else None
    upper = _torch_kth_smallest(xp, [sample], hi_rank) if hi_rank <= m else None
    return lower, upper


def _inside(under, at_most, true):
    """Membership in the window from the masks ``v < lower`` and
    ``v <= upper`` (``None`` for an open side), as bools or as words of
    bools (``true`` is the all-True word), written over one of the masks."""
    if under is None:
        return at_most
    if at_most is None:
        under ^= true
        return under
    at_most ^= under
    return at_most


def _members(xp, v, under, at_most):
    """The values of the 1-d tensor ``v`` inside the window, from the masks
    ``under = v < lower`` and ``at_most = v <= upper`` (``None``: open side),
    which it overwrites.

    Indexing ``v`` with the window's mask would scan ``v.numel()`` bools for
    the few members. The masks are read as int64 words of ``_WORD`` bools
    instead: one pass combines them, the words that hold a member are found
    among ``_WORD`` times fewer entries, and only their bools are scanned for
    the members' positions. A tail of fewer than ``_WORD`` values is indexed
    directly, and so is a window that fills most words.
    """
    n = v.numel()
    whole = n - n % _WORD
    words = _inside(_as_words(xp, under, whole), _as_words(xp, at_most, whole), _WORD_OF_TRUES)
    rows = xp.nonzero(words)[0]
    if 2 * rows.shape[0] > words.shape[0]:  # a wide window: index directly
        members = v[:whole][words.view(xp.bool)]
    else:
        hits = xp.nonzero(words.index_select(0, rows).view(xp.bool))[0]
        shift = _WORD.bit_length() - 1
        positions = (rows.index_select(0, hits >> shift) << shift) | (hits & (_WORD - 1))
        members = v.index_select(0, positions)
    if whole == n:
        return members
    tail = _inside(None if under is None else under[whole:],
                   None if at_most is None else at_most[whole:], True)
    return xp.concat([members, v[whole:][tail]])


def _as_words(xp, mask, whole: int):
    """The first ``whole`` bools of a 1-d mask that starts its storage, as
    int64 words (a view)."""
    return mask[:whole].view(xp.int64) if mask is not None else None


def _spread_sample(xp, v, size: int):
    """``size`` values of the 1-d tensor ``v`` (at least one, at most all),
    at golden-ratio spread positions."""
    n = v.numel()
    m = min(n, max(1, size))
    positions = xp.arange(m, device=device(v)) * _coprime_step(n) % n
    return v.index_select(0, positions)


def _bincount(xp, index, length: int):
    """Counts of each value in ``range(length)`` (``index`` is 1-d)."""
    if is_jax_namespace(xp):
        return xp.bincount(index, length=length)
    if is_numpy_namespace(xp) or is_torch_namespace(xp):
        return xp.bincount(index, minlength=length)
    hits = index[:, None] == xp.arange(length, dtype=index.dtype)[None, :]
    return xp.sum(xp.astype(hits, index.dtype), axis=0)


def _identity_reduce(value, op: str):
    return value


class HistogramThreshold:
    """τ from log-scale histograms: a streaming, mergeable selection.

    Each round counts the values in ``bins`` logarithmic bins spanning the
    current candidates, finds the bin holding the k-th value, and keeps only
    that bin's values as candidates. Counts, minima and maxima go through
    ``reduce`` so that a data-parallel or sharded model can combine them
    across processes (``torch.distributed.all_reduce``, ``jax.lax.psum``, …);
    nothing else crosses processes. The τ returned is the largest value of the
    final bin, so ``values <= τ`` selects at least k coordinates, and more only
    by the values that share the final bin with the k-th.

    Args:
      bins: bins per round.
      rounds: refinement rounds. Each divides the candidates' log-range by
        ``bins``; with the defaults (4096, 3) a final bin spans a relative
        width of about 1e-9 for curvature spread over 60 octaves.
      reduce: ``(array, op) -> array`` with ``op`` one of ``"sum"``,
        ``"min"``, ``"max"``; the identity for a single process.

    Example:
      >>> import numpy as np
      >>> values = [np.random.default_rng(0).lognormal(size=10_000)]
      >>> tau = HistogramThreshold()(values, 6_000)
      >>> int((values[0] <= tau).sum())
      6000
    """

    def __init__(self, bins: int = 4096, rounds: int = 3, reduce: Callable = _identity_reduce):
        if not isinstance(bins, int) or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
        if not isinstance(rounds, int) or rounds < 1:
            raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}")
        self.bins, self.rounds, self.reduce = bins, rounds, reduce

    def __call__(self, values: Sequence, k):
        xp = namespace(*values)
        reduce = self.reduce
        dtype = values[0].dtype
        counter = count_dtype(xp, sum(math.prod(v.shape) for v in values))
        inf = xp.asarray(xp.inf, dtype=dtype, device=device(values[0]))
        values = [xp.reshape(v, (-1,)) for v in values]
        candidates = [(v > 0) & (v < inf) for v in values]
        logs = [xp.log2(xp.where(c, v, xp.ones_like(v))) for v, c in zip(values, candidates)]
        zeros = reduce(_sum_all(xp, [xp.astype(v == 0, counter) for v in values]), "sum")
        below = zeros  # values known to be smaller than every candidate
        finite_total = zeros
        for round_ in range(self.rounds):
            lo = reduce(_min_all(xp, [xp.where(c, g, inf) for g, c in zip(logs, candidates)], inf), "min")
            hi = reduce(_max_all(xp, [xp.where(c, g, -inf) for g, c in zip(logs, candidates)], -inf), "max")
            empty = hi < lo  # no candidates left anywhere
            lo, hi = xp.where(empty, 0.0, lo), xp.where(empty, 0.0, hi)
            width = (hi - lo) / self.bins
            scale = xp.where(width > 0, 1 / xp.where(width > 0, width, 1.0), xp.zeros_like(width))
            bin_of = [
                xp.astype(xp.clip(xp.floor((g - lo) * scale), 0, self.bins - 1), counter)
                for g in logs
            ]
            counts = xp.zeros((self.bins,), dtype=counter, device=device(values[0]))
            for b, c in zip(bin_of, candidates):
                index = xp.where(c, b, self.bins)
                counts = counts + xp.astype(_bincount(xp, index, self.bins + 1)[: self.bins], counter)
            counts = reduce(counts, "sum")
            if round_ == 0:
                finite_total = zeros + xp.sum(counts)
            cumulative = below + xp.cumulative_sum(counts)
            j = xp.argmax(xp.astype(cumulative >= k, xp.int32))
            below = xp.where(j > 0, cumulative[xp.clip(j - 1, 0, self.bins - 1)], below)
            candidates = [c & (b == j) for b, c in zip(bin_of, candidates)]
        tau = reduce(_max_all(xp, [xp.where(c, v, -inf) for v, c in zip(values, candidates)], -inf), "max")
        tau = xp.where(k <= zeros, xp.zeros_like(tau), tau)
        return xp.where((k > 0) & (k <= finite_total), tau, inf)


def _coprime_step(n: int) -> int:
    """A step near n/φ sharing no factor with n: ``(i·step) mod n`` visits
    every index once and spreads any window of them over the whole tensor."""
    step = max(1, round(n * 0.6180339887498949))
    while math.gcd(step, n) != 1:
        step += 1
    return step


class SampledThreshold:
    """τ from a sample of the values: a sampled-quantile selection.

    ``sample`` positions are spread over all tensors in proportion to their
    sizes; within a tensor they follow a golden-ratio (Weyl) sequence, which
    covers every region of the tensor and never lines up with its rows or
    columns. τ is the ⌈k·m/N⌉-th smallest of the m sampled values, so the
    flat count is k up to the sampling error, about
    ``sqrt(γ·(1−γ)/m)·N`` coordinates (one standard deviation). Models with
    at most ``sample`` coordinates get the exact threshold. The positions
    depend only on the shapes, so every process of a data-parallel job, given
    the same (averaged) curvature, picks the same τ.

    Args:
      sample: the number of values read (m).

    Example:
      >>> import numpy as np
      >>> values = [np.random.default_rng(0).lognormal(size=200_000)]
      >>> tau = SampledThreshold(sample=4096)(values, 120_000)
      >>> abs(int((values[0] <= tau).sum()) - 120_000) < 3_000
      True
    """

    def __init__(self, sample: int = 1 << 16):
        if not isinstance(sample, int) or isinstance(sample, bool) or sample < 1:
            raise ValueError(f"sample must be an integer >= 1, got {sample!r}")
        self.sample = sample
        self._positions: dict = {}

    def _positions_in(self, xp, n: int, m: int, like):
        """The m sampled indices of a tensor of n values, on ``like``'s device
        (computed on the host once per shape and device, then reused)."""
        key = (n, m, str(device(like)))
        if key not in self._positions:
            positions = np.arange(m, dtype=np.int64) * _coprime_step(n) % n
            dtype = count_dtype(xp, n)
            self._positions[key] = xp.asarray(positions.astype(np.int32 if dtype == xp.int32
                                                                else np.int64),
                                              device=device(like))
        return self._positions[key]

    def __call__(self, values: Sequence, k):
        xp = namespace(*values)
        sizes = [math.prod(v.shape) for v in values]
        total = sum(sizes)
        if total <= self.sample:
            return exact_threshold(values, k)
        picked = []
        for v, n in zip(values, sizes):
            m = min(n, max(1, round(self.sample * n / total)))
            positions = self._positions_in(xp, n, m, v)
            picked.append(xp.take(xp.reshape(v, (-1,)), positions))
        drawn = xp.concat(picked)
        m = drawn.shape[0]
        if is_scalar(k):
            rank = min(m, math.ceil(k * m / total)) if k > 0 else 0
            return exact_threshold([drawn], rank)
        rank = xp.astype(xp.ceil(xp.astype(k, xp.float32) * (m / total)), k.dtype)
        return exact_threshold([drawn], xp.clip(rank, 0, m))


def _sum_all(xp, arrays):
    return xp.sum(xp.stack([xp.sum(a) for a in arrays]))


def _min_all(xp, arrays, identity):
    partial = [xp.min(a) for a in arrays if a.shape[0] > 0]
    return xp.min(xp.stack(partial)) if partial else identity


def _max_all(xp, arrays, identity):
    partial = [xp.max(a) for a in arrays if a.shape[0] > 0]
    return xp.max(xp.stack(partial)) if partial else identity
