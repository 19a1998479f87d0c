"""The SAM ascent step e (docs/algorithm.md, SAM coupling).

Plain SAM: e = ρ·g / (‖g‖ + eps). Adaptive SAM (ASAM) with T = |θ|:
e = ρ·T²g / (‖T g‖ + eps). Norms run over the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._xp import namespace


def global_norm(arrays: Sequence):
    """√(Σ x²) over all elements of all ``arrays`` (a 0-d array)."""
    xp = namespace(*arrays)
    return xp.sqrt(xp.sum(xp.stack([xp.sum(a * a) for a in arrays])))


def sam_perturbation(
    grads: Sequence, params: Sequence, rho, adaptive: bool = False, eps: float = 1e-12
) -> list:
    """The perturbation e added to the parameters before SAM's second pass.

    Args:
      grads: g = ∇L(θ), one array per parameter tensor.
      params: θ (only read when ``adaptive``).
      rho: the radius ρ >= 0.
      adaptive: ASAM's scaling by ``T = |θ|``.
      eps: keeps the division finite when the gradient vanishes.

    Returns:
      One array per tensor; ‖e‖ = ρ (plain SAM) up to ``eps``.

    Example:
      >>> import numpy as np
      >>> [e.round(6).tolist() for e in sam_perturbation([np.array([3.0, 4.0])], [np.zeros(2)], 0.5)]
      [[0.3, 0.4]]
    """
    if adaptive:
        scaled = [g * (p * p) for g, p in zip(grads, params)]
        norm = global_norm([g * abs(p) for g, p in zip(grads, params)])
        return [rho * s / (norm + eps) for s in scaled]
    norm = global_norm(grads)
    return [rho * g / (norm + eps) for g in grads]
