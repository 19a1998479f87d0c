"""Applying the IRE combination to parameters the base optimizer moved.

The generic path: the parameters to amplify are copied before the base step
(:func:`snapshot`), the base optimizer steps in place, and
:func:`apply_amplification` replaces each moved θ' by
``ire_core.amplify_displacement(θ', θ, P, κ)`` = θ' + κ·P ⊙ (θ' − θ), in place.
The copy is transient: it lives only during :meth:`IRE.step`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

import ire_core

__all__ = ["apply_amplification", "snapshot"]


def snapshot(params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Detached copies of ``params`` (θ before the base step).

    Example:
      >>> import torch
      >>> p = torch.ones(2, requires_grad=True)
      >>> copy = snapshot([p])[0]
      >>> copy.requires_grad, copy.data_ptr() != p.data_ptr()
      (False, True)
    """
    return [p.detach().clone() for p in params]


@torch.no_grad()
def apply_amplification(
    params: Sequence[torch.Tensor],
    originals: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    kappas: Sequence,
) -> None:
    """θ ← θ + κ·P ⊙ (θ − θ₀) in place, per tensor, from ``ire_core``.

    Args:
      params: the parameters after the base step (θ'), modified in place.
      originals: the parameters before it (θ₀).
      masks: boolean flat masks P, one per parameter.
      kappas: κ for each parameter (Python numbers or 0-d tensors).

    Example:
      >>> import torch
      >>> p, before = torch.tensor([1.5, 1.5]), torch.tensor([1.0, 1.0])
      >>> apply_amplification([p], [before], [torch.tensor([True, False])], [2.0])
      >>> p.tolist()
      [2.5, 1.5]
    """
    for p, original, mask, kappa in zip(params, originals, masks, kappas):
        p.copy_(ire_core.amplify_displacement(p.detach(), original, mask, kappa))
