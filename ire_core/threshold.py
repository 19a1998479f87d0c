"""Finding τ, the k-th smallest curvature value over the whole model.

A threshold function has the signature ``(values, k) -> τ``: ``values`` is a
list of per-tensor arrays of non-negative numbers (+inf for non-finite
estimates), ``k`` the 1-indexed rank (a Python int, or a 0-d integer array
under ``jax.jit``). :func:`select_flat_mask` takes any of them
(docs/algorithm.md, Thresholds).

* :func:`exact_threshold` (default): the exact k-th smallest, the reference:
  a ``partition`` where the namespace has one and the values can be read
  eagerly, a sort otherwise. Backends pass their own fast exact
  ``threshold_fn``, with the same answer.
* :class:`SampledThreshold`: the k-th smallest of a fixed-size, evenly
  spread sample (the sampled quantile). It reads only the sample, so its cost
  does not grow with the model; the flat count deviates from k by about
  ``sqrt(γ·(1−γ)/sample)·N`` coordinates (one standard deviation).
* :class:`HistogramThreshold`: a few passes of log-scale histograms whose
  counts can be summed across processes, for sharded or very large models. It
  needs no gather of the values, and its τ is within one final bin of the
  exact one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from array_api_compat import device, is_lazy_array

from ._xp import coprime_step, count_dtype, infinity_like, is_scalar, namespace


def _flatten(xp, values):
    return xp.concat([xp.reshape(v, (-1,)) for v in values])


def exact_threshold(values: Sequence, k):
    """τ = the k-th smallest of all ``values`` (1-indexed; +inf for k <= 0).

    Example:
      >>> import numpy as np
      >>> float(exact_threshold([np.array([5.0, 1.0]), np.array([3.0])], 2))
      3.0
    """
    xp = namespace(*values)
    flat = _flatten(xp, values)
    n = flat.shape[0]
    if not is_scalar(k):
        ordered = xp.sort(flat)
        tau = ordered[xp.clip(k - 1, 0, max(n - 1, 0))]
        return xp.where(k > 0, tau, infinity_like(xp, flat))
    if k <= 0 or n == 0:
        return infinity_like(xp, flat)
    k = min(k, n)
    if hasattr(xp, "partition") and not is_lazy_array(flat):
        return xp.partition(flat, k - 1)[k - 1]
    return xp.sort(flat)[k - 1]


def _bincount(xp, index, length: int):
    """Counts of each value in ``range(length)`` (``index`` is 1-d): the
    namespace's ``bincount`` where it has one, given the length statically
    where it takes one (as ``jax.jit`` needs), else one comparison per value."""
    bincount = getattr(xp, "bincount", None)
    if bincount is None:
        hits = index[:, None] == xp.arange(length, dtype=index.dtype)[None, :]
        return xp.sum(xp.astype(hits, index.dtype), axis=0)
    try:
        return bincount(index, minlength=length, length=length)
    except TypeError:  # a bincount without a static length (NumPy's, torch's)
        return bincount(index, minlength=length)


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
      rank_fn: ``(values, k) -> τ``, the exact threshold that ranks the
        sample (and a model of at most ``sample`` values); ``None`` is
        :func:`exact_threshold`. A backend passes its own fast exact
        threshold here.

    Example:
      >>> import numpy as np
      >>> values = [np.random.default_rng(0).lognormal(size=200_000)]
      >>> tau = SampledThreshold(sample=4096)(values, 120_000)
      >>> abs(int((values[0] <= tau).sum()) - 120_000) < 3_000
      True
    """

    def __init__(self, sample: int = 1 << 16, rank_fn: Callable | None = None):
        if not isinstance(sample, int) or isinstance(sample, bool) or sample < 1:
            raise ValueError(f"sample must be an integer >= 1, got {sample!r}")
        if rank_fn is not None and not callable(rank_fn):
            raise ValueError(f"rank_fn must be a callable (values, k) -> τ or None, got {rank_fn!r}")
        self.sample = sample
        self.rank_fn = rank_fn
        self._positions: dict = {}

    def _positions_in(self, xp, n: int, m: int, like):
        """The m sampled indices of a tensor of n values, on ``like``'s device
        (computed on the host once per shape and device, then reused)."""
        key = (n, m, str(device(like)))
        if key not in self._positions:
            positions = np.arange(m, dtype=np.int64) * coprime_step(n) % n
            dtype = count_dtype(xp, n)
            self._positions[key] = xp.asarray(positions.astype(np.int32 if dtype == xp.int32
                                                                else np.int64),
                                              device=device(like))
        return self._positions[key]

    def __call__(self, values: Sequence, k):
        xp = namespace(*values)
        sizes = [math.prod(v.shape) for v in values]
        total = sum(sizes)
        rank = exact_threshold if self.rank_fn is None else self.rank_fn
        if total <= self.sample:
            return rank(values, k)
        picked = []
        for v, n in zip(values, sizes):
            m = min(n, max(1, round(self.sample * n / total)))
            positions = self._positions_in(xp, n, m, v)
            picked.append(xp.take(xp.reshape(v, (-1,)), positions))
        drawn = xp.concat(picked)
        m = drawn.shape[0]
        if is_scalar(k):
            return rank([drawn], min(m, math.ceil(k * m / total)) if k > 0 else 0)
        sampled_k = xp.astype(xp.ceil(xp.astype(k, xp.float32) * (m / total)), k.dtype)
        return rank([drawn], xp.clip(sampled_k, 0, m))


def with_exact_rank(threshold_fn: Callable, rank_fn: Callable) -> Callable:
    """``threshold_fn``, with ``rank_fn`` ranking its sample where it names no
    ranking of its own.

    A :class:`SampledThreshold` built without ``rank_fn`` ranks its sample
    with the reference :func:`exact_threshold`; a backend hands it its own
    fast exact threshold here, with the same answer. Any other
    ``threshold_fn`` is returned as it is.

    Example:
      >>> sampled = with_exact_rank(SampledThreshold(sample=64), exact_threshold)
      >>> sampled.rank_fn is exact_threshold, with_exact_rank(max, exact_threshold) is max
      (True, True)
    """
    if isinstance(threshold_fn, SampledThreshold) and threshold_fn.rank_fn is None:
        return SampledThreshold(threshold_fn.sample, rank_fn=rank_fn)
    return threshold_fn


def _sum_all(xp, arrays):
    return xp.sum(xp.stack([xp.sum(a) for a in arrays]))


def _min_all(xp, arrays, identity):
    partial = [xp.min(a) for a in arrays if a.shape[0] > 0]
    return xp.min(xp.stack(partial)) if partial else identity


def _max_all(xp, arrays, identity):
    partial = [xp.max(a) for a in arrays if a.shape[0] > 0]
    return xp.max(xp.stack(partial)) if partial else identity
