"""Argument checks shared by the ``ire_torch`` modules."""

from __future__ import annotations

import numbers

import torch

__all__ = ["as_scalar_loss", "check_optimizer"]


def as_scalar_loss(value, name: str):
    """Returns ``value`` if it is a loss a closure may return, else raises.

    A loss is ``None``, a Python number, or a tensor with exactly one element.

    Example:
      >>> import torch
      >>> float(as_scalar_loss(torch.tensor([2.0]), "closure"))
      2.0
      >>> as_scalar_loss(torch.ones(3), "closure")
      Traceback (most recent call last):
      ...
      ValueError: closure must return a scalar loss (a one-element tensor, a number or None), got a tensor of shape (3,)
    """
    if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return value
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"{name} must return a scalar loss (a one-element tensor, a number or "
                f"None), got a tensor of shape {tuple(value.shape)}"
            )
        return value
    raise ValueError(
        f"{name} must return a scalar loss (a one-element tensor, a number or None), "
        f"got {type(value).__name__}"
    )


def check_optimizer(value, name: str) -> None:
    """Raises ``TypeError`` unless ``value`` is a ``torch.optim.Optimizer``."""
    if not isinstance(value, torch.optim.Optimizer):
        raise TypeError(
            f"{name} must be a torch.optim.Optimizer instance, got {type(value).__name__}"
        )
