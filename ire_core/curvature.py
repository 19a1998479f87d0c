"""Diagonal curvature estimates from autodiff pieces, and their average.

The adapters compute the expensive parts natively (gradients with sampled
labels, Hessian-vector products); these functions turn them into ĥ the same
way on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._xp import namespace


def squared(grads: Sequence) -> list:
    """ĥ = g ⊙ g: the ``gradient`` proxy, and the ``fisher`` estimate when
    ``grads`` is the gradient of the loss on labels sampled from the model.

    Example:
      >>> import numpy as np
      >>> [h.tolist() for h in squared([np.array([-2.0, 3.0])])]
      [[4.0, 9.0]]
    """
    return [g * g for g in grads]


def hutchinson(probes: Sequence[Sequence], products: Sequence[Sequence]) -> list:
    """ĥ = mean over probes of z ⊙ (H z) (signed; ``|·|`` is taken at selection).

    Args:
      probes: ``probes[j][i]`` is probe j (Rademacher ±1) for tensor i.
      products: ``products[j][i]`` is (H z_j) for tensor i.

    Example:
      >>> import numpy as np
      >>> z = [[np.array([1.0, -1.0])], [np.array([-1.0, -1.0])]]
      >>> hz = [[np.array([2.0, -4.0])], [np.array([-2.0, -4.0])]]
      >>> [h.tolist() for h in hutchinson(z, hz)]
      [[2.0, 4.0]]
    """
    if not probes:
        raise ValueError("hutchinson needs at least one probe, got none")
    n = len(probes)
    total = [z * hz for z, hz in zip(probes[0], products[0])]
    for z_j, hz_j in zip(probes[1:], products[1:]):
        total = [t + z * hz for t, z, hz in zip(total, z_j, hz_j)]
    return [t / n for t in total]


def sample_labels(logits, uniforms):
    """Labels ŷ ~ softmax(logits), drawn by inverting the CDF at ``uniforms``.

    Every backend given the same uniforms draws the same labels, which is what
    makes the ``fisher`` estimator comparable across frameworks.

    Args:
      logits: ``(..., classes)`` array.
      uniforms: ``(...)`` array of draws in [0, 1).

    Returns:
      Integer labels of shape ``(...)``.

    Example:
      >>> import numpy as np
      >>> sample_labels(np.log(np.array([[0.2, 0.5, 0.3]] * 3)), np.array([0.1, 0.5, 0.9])).tolist()
      [0, 1, 2]
    """
    xp = namespace(logits, uniforms)
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    weights = xp.exp(shifted)
    cdf = xp.cumulative_sum(weights, axis=-1) / xp.sum(weights, axis=-1, keepdims=True)
    below = xp.astype(cdf < xp.astype(uniforms, cdf.dtype)[..., None], xp.int32)
    return xp.clip(xp.sum(below, axis=-1), 0, logits.shape[-1] - 1)


def blend(previous: Sequence | None, estimate: Sequence, beta) -> tuple[list, list]:
    """Folds a new estimate into the curvature moving average.

    ``state = β·previous + (1 − β)·|estimate|`` where the estimate is finite;
    where it is not, the state keeps its previous value (a NaN never enters
    the state) and the value used for this refresh's selection is +inf (never
    flat). With β = 0 (or no previous state) the state is ``|estimate|``.

    Returns:
      ``(state, selection)``: the new moving average, and the values to rank.

    Example:
      >>> import numpy as np
      >>> state, sel = blend([np.array([1.0, 1.0])], [np.array([3.0, np.nan])], 0.5)
      >>> state[0].tolist(), sel[0].tolist()
      ([2.0, 1.0], [2.0, inf])
    """
    xp = namespace(*estimate)
    state, selection = [], []
    for i, h in enumerate(estimate):
        finite = xp.isfinite(h)
        magnitude = xp.abs(h)
        if previous is None:
            new = xp.where(finite, magnitude, 0.0)
            state.append(new)
            selection.append(xp.where(finite, magnitude, xp.inf))
            continue
        old = xp.astype(previous[i], magnitude.dtype, copy=False)
        mixed = magnitude if _is_zero(beta) else beta * old + (1 - beta) * magnitude
        new = xp.where(finite, mixed, old)
        state.append(new)
        selection.append(xp.where(finite, new, xp.inf))
    return state, selection


def _is_zero(beta) -> bool:
    return isinstance(beta, (int, float)) and beta == 0
