"""The IRE combination: Δ + κ·(P ⊙ Δ).

Two equivalent forms, for the two ways frameworks apply an optimizer:

* :func:`amplify_update` rescales an update Δ before it is added to the
  parameters (optax, Keras ``apply``).
* :func:`amplify_displacement` corrects parameters the base optimizer has
  already moved in place (torch.optim): θ ← θ' + κ·P ⊙ (θ' − θ).

Both leave coordinates outside the mask bit-for-bit unchanged, and κ = 0
leaves everything unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._xp import as_dtype_of, namespace


def amplify_update(update, mask, kappa):
    """Δ + κ·(P ⊙ Δ) for one tensor.

    Example:
      >>> import numpy as np
      >>> amplify_update(np.array([1.0, 1.0]), np.array([True, False]), 2.0).tolist()
      [3.0, 1.0]
    """
    xp = namespace(update)
    kappa = as_dtype_of(xp, kappa, update)
    return xp.where(mask, update + kappa * update, update)


def amplify_displacement(moved, original, mask, kappa):
    """θ' + κ·P ⊙ (θ' − θ) for one tensor: the amplified step from
    ``original`` θ, given the parameters ``moved`` θ' by the base optimizer.

    Example:
      >>> import numpy as np
      >>> amplify_displacement(np.array([1.5, 1.5]), np.array([1.0, 1.0]),
      ...                      np.array([True, False]), 2.0).tolist()
      [2.5, 1.5]
    """
    xp = namespace(moved, original)
    kappa = as_dtype_of(xp, kappa, moved)
    return xp.where(mask, moved + kappa * (moved - original), moved)


def amplify_updates(updates: Sequence, mask: Sequence, kappa) -> list:
    """:func:`amplify_update` over matching lists of tensors."""
    return [amplify_update(u, m, kappa) for u, m in zip(updates, mask)]
