"""Global flat-mask selection (docs/algorithm.md, The flat rule).

From per-coordinate curvature values ĥ over all tensors of the model::

    N = number of coordinates,  k = ⌊γ·N⌋,  τ = k-th smallest ĥ,
    flat_i = ĥ_i <= τ  (ties at τ are all flat),  k = 0 → nothing flat.

Non-finite ĥ_i are never flat; if no value is finite the previous mask is
kept. The rule is written with array operations only (no branching on array
values), so it runs traced under ``jax.jit``; for a Python-number γ and
arrays that can be read eagerly, the same rule is taken with host decisions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from array_api_compat import device, is_lazy_array

from ._xp import count_dtype, count_true, is_scalar, namespace, ranking_dtype
from .threshold import exact_threshold


class FlatMask(NamedTuple):
    """Result of a flat-mask selection.

    Attributes:
      mask: one boolean array per curvature tensor, True where flat.
      threshold: τ, the k-th smallest curvature (+inf when k = 0 or nothing
        is finite).
      flat_count: the number of coordinates marked flat.
    """

    mask: list
    threshold: object
    flat_count: object


class MaskStats(NamedTuple):
    """Monitoring view of a mask: the one report type of every backend.

    :func:`mask_statistics` fills the first four fields; a backend's
    ``mask_stats`` adds what it records of the refresh that chose the mask
    (``None`` where it records nothing).

    Attributes:
      flat_count: coordinates marked flat.
      total: coordinates in the model.
      flat_fraction: ``flat_count / total``.
      per_tensor: flat fraction of each tensor, in the order given.
      threshold: τ of the refresh that chose the mask (+inf when nothing is
        flat), or ``None``.
      step: the 0-based optimizer step of that refresh, or ``None``.
      shapes: the shape of each tensor, in the order of ``per_tensor``, or
        ``None``.
    """

    flat_count: object
    total: int
    flat_fraction: object
    per_tensor: list
    threshold: object = None
    step: object = None
    shapes: list | None = None


def flat_count(flat_fraction, total: int):
    """k = ⌊γ·N⌋, robust to γ·N landing a hair below an integer.

    ``0.29 * 100`` is ``28.999999999999996`` in binary floating point; the
    product is nudged up by two units in the last place before flooring, so
    k is the count a person computing γ·N by hand expects.

    Args:
      flat_fraction: γ in [0, 1], a Python number or a 0-d float array.
      total: N, the number of coordinates.

    Returns:
      A Python int, or a 0-d integer array when γ is an array.

    Example:
      >>> flat_count(0.29, 100), flat_count(0.6, 7), flat_count(0.0, 5)
      (29, 4, 0)
    """
    if is_scalar(flat_fraction):
        return min(total, math.floor(flat_fraction * total * (1.0 + 4.4e-16)))
    xp = namespace(flat_fraction)
    eps = xp.finfo(flat_fraction.dtype).eps
    k = xp.clip(xp.floor(flat_fraction * total * (1.0 + 2.0 * eps)), 0, total)
    return xp.astype(k, count_dtype(xp, total))


def selection_values(curvatures: Sequence) -> tuple[list, list]:
    """ĥ prepared for ranking: ``|ĥ|`` in the ranking dtype, non-finite
    values replaced by +inf. Returns ``(values, finite)`` per tensor."""
    xp = namespace(*curvatures)
    dtype = ranking_dtype(xp, [h.dtype for h in curvatures])
    values, finite = [], []
    for h in curvatures:
        h = xp.astype(h, dtype, copy=False)
        ok = xp.isfinite(h)
        values.append(xp.where(ok, xp.abs(h), xp.inf))
        finite.append(ok)
    return values, finite


def select_flat_mask(
    curvatures: Sequence,
    flat_fraction,
    previous: Sequence | None = None,
    threshold_fn: Callable = exact_threshold,
) -> FlatMask:
    """Marks the flattest fraction γ of all coordinates of the model.

    Args:
      curvatures: per-tensor curvature estimates ĥ (any sign; ``|·|`` is taken).
      flat_fraction: γ in [0, 1] (Python number or 0-d array).
      previous: the mask in force, kept when no estimate is finite. ``None``
        means "nothing flat".
      threshold_fn: ``(values, k) -> τ``; :func:`exact_threshold` by default.

    Returns:
      A :class:`FlatMask`.

    Example:
      >>> import numpy as np
      >>> h = [np.array([3.0, 1.0]), np.array([[2.0, np.nan], [0.5, 4.0]])]
      >>> result = select_flat_mask(h, flat_fraction=0.5)
      >>> [m.tolist() for m in result.mask], float(result.threshold)
      ([[False, True], [[True, False], [True, False]]], 2.0)
    """
    if not curvatures:
        raise ValueError("curvatures must hold at least one tensor, got an empty sequence")
    xp = namespace(*curvatures)
    total = sum(math.prod(h.shape) for h in curvatures)
    k = flat_count(flat_fraction, total)
    if is_scalar(k) and not is_lazy_array(curvatures[0]):
        mask, tau = _select_eagerly(xp, curvatures, k, previous, threshold_fn)
    else:
        if previous is None:
            previous = [xp.zeros_like(h, dtype=xp.bool) for h in curvatures]
        mask, tau = _select_traceably(xp, curvatures, k, previous, threshold_fn)
    return FlatMask(mask, tau, _total_count(xp, mask, total))


def _select_traceably(xp, curvatures, k, previous, threshold_fn):
    """Array operations only: runs under ``jax.jit`` with a traced γ.

    A value is finite exactly when it is below +inf after
    :func:`selection_values`, so finiteness is read from the values
    themselves: one ``min`` per tensor, and no bool array per tensor to keep
    (XLA's CPU backend would write each out in full before reducing it).
    """
    values, _ = selection_values(curvatures)
    tau = threshold_fn(values, k)
    minima = [xp.min(v) for v in values if math.prod(v.shape) > 0]
    any_finite = xp.min(xp.stack(minima)) < math.inf if minima else xp.asarray(False)
    found = FlatThreshold(tau, any_finite)
    return [_flat_where(xp, v, found, k, prev) for v, prev in zip(values, previous)], tau


class FlatThreshold(NamedTuple):
    """What a selection found: τ, and whether any curvature value of the
    model was finite (when none is, the mask in force is kept).

    Attributes:
      threshold: τ, the k-th smallest curvature.
      any_finite: a bool, or a 0-d bool array.
    """

    threshold: object
    any_finite: object


def mask_at_threshold(curvature, found: FlatThreshold, k, previous):
    """One tensor's part of :func:`select_flat_mask`'s rule, elementwise and
    in array operations only: ``|ĥ| <= τ`` on finite values (nothing when
    k = 0), or ``previous`` when no value of the model was finite.

    For a selection that finds τ without ranking ĥ itself (``ire_jax``
    searches ``|g|`` for ĥ = g², never holding g² in full) and then writes the
    mask from ĥ, tensor by tensor.

    Args:
      curvature: ĥ of one tensor (any sign).
      found: τ and whether any value of the model is finite.
      k: the number of coordinates to mark flat.
      previous: the tensor's mask in force.

    Example:
      >>> import numpy as np
      >>> found = FlatThreshold(threshold=2.0, any_finite=True)
      >>> mask_at_threshold(np.array([-1.0, 3.0, np.nan]), found, 2, False).tolist()
      [True, False, False]
    """
    (value,), _ = selection_values([curvature])
    return _flat_where(namespace(value), value, found, k, previous)


def _flat_where(xp, value, found: FlatThreshold, k, previous):
    """:func:`mask_at_threshold` on a ranking value (:func:`selection_values`)."""
    flat = (value <= found.threshold) & (value < math.inf) & (k > 0)
    return xp.where(found.any_finite, flat, previous)


def _select_eagerly(xp, curvatures, k, previous, threshold_fn):
    """The same rule with host decisions, in fewer passes: values that are
    already magnitudes are ranked as they are, and one reduction per tensor
    tells both that and whether any value is finite. Returns the mask and τ."""
    values, smallest = host_magnitudes(xp, curvatures)
    infinity = xp.asarray(xp.inf, dtype=values[0].dtype, device=device(values[0]))
    if smallest is None or not bool(smallest < infinity):
        if previous is None:
            return [xp.zeros_like(v, dtype=xp.bool) for v in values], infinity
        return list(previous), infinity
    if k <= 0:
        return [xp.zeros_like(v, dtype=xp.bool) for v in values], infinity
    tau = threshold_fn(values, k)
    if bool(tau < infinity):
        return [v <= tau for v in values], tau
    return [v < infinity for v in values], tau


def host_magnitudes(xp, curvatures):
    """|ĥ| in the ranking dtype with NaN as +inf, and the smallest of all
    (``None`` when there are no values), for a selection that decides on the
    host (eager arrays, a Python int k).

    A tensor whose minimum is >= 0 has no NaN and no negative value (squared
    gradients, Fisher estimates): it is ranked as it is, never written to.
    The others are replaced by fresh arrays.
    """
    dtype = ranking_dtype(xp, [h.dtype for h in curvatures])
    values = [xp.astype(h, dtype, copy=False) for h in curvatures]
    sized = [i for i, v in enumerate(values) if math.prod(v.shape) > 0]
    if not sized:
        return values, None
    minima = xp.stack([xp.min(values[i]) for i in sized])  # NaN if any value is NaN
    clean = minima >= 0
    if bool(xp.all(clean)):
        return values, xp.min(minima)
    for i, ok in zip(sized, clean.tolist()):
        if not ok:
            values[i] = _fresh_magnitude(xp, values[i])
    return values, xp.min(xp.stack([xp.min(values[i]) for i in sized]))


def _fresh_magnitude(xp, h):
    magnitude = xp.abs(h)  # a new array, written in place
    magnitude[xp.isnan(magnitude)] = xp.inf
    return magnitude


def _total_count(xp, mask, total):
    dtype = count_dtype(xp, total)
    return xp.sum(xp.stack([count_true(xp, m, dtype) for m in mask]))


def mask_statistics(mask: Sequence) -> MaskStats:
    """Flat count and flat fraction, overall and per tensor.

    Values are arrays of the mask's framework (no host transfer); call
    ``float()`` on them to log.

    Example:
      >>> import numpy as np
      >>> stats = mask_statistics([np.array([True, False]), np.array([True, True])])
      >>> int(stats.flat_count), stats.total, float(stats.flat_fraction)
      (3, 4, 0.75)
    """
    xp = namespace(*mask)
    sizes = [math.prod(m.shape) for m in mask]
    total = sum(sizes)
    counts = [count_true(xp, m, count_dtype(xp, total)) for m in mask]
    count = xp.sum(xp.stack(counts))
    per_tensor = [xp.astype(c, xp.float32) / max(s, 1) for c, s in zip(counts, sizes)]
    return MaskStats(count, total, xp.astype(count, xp.float32) / max(total, 1), per_tensor)
