"""Consecutive views of one flat buffer, shaped like a list of tensors."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def views_like(buffer: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list:
    """Views of consecutive slices of the 1-d ``buffer``, one per tensor of
    ``tensors`` and of its shape (the buffer holds at least their total size).

    Example:
      >>> import torch
      >>> a, b = views_like(torch.arange(5.0), [torch.zeros(2), torch.zeros(1, 3)])
      >>> a.tolist(), b.tolist()
      ([0.0, 1.0], [[2.0, 3.0, 4.0]])
    """
    views, offset = [], 0
    for t in tensors:
        views.append(buffer[offset : offset + t.numel()].view(t.shape))
        offset += t.numel()
    return views
