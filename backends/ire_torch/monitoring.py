"""What the last mask refresh decided, for logging.

The report is :class:`ire_core.MaskStats`, the type every backend's
``mask_stats`` returns; ``MaskReport`` is a deprecated alias of it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

import ire_core
from ire_core import MaskStats

__all__ = ["MaskStats", "refresh_report"]


def refresh_report(step: int, threshold, params: Sequence[torch.Tensor],
                   masks: Sequence[torch.Tensor]) -> MaskStats:
    """The :class:`ire_core.MaskStats` of one refresh, in Python numbers.

    Args:
      step: the 0-based optimizer step of the refresh.
      threshold: τ chosen at it (+inf when nothing is flat).
      params: the parameters that received curvature, in ``param_groups``
        order.
      masks: their boolean flat masks, in the same order.

    Returns:
      ``MaskStats`` with every field filled; reading the counts synchronizes
      with the device.

    Example:
      >>> import torch
      >>> params = [torch.zeros(2), torch.zeros(2)]
      >>> masks = [torch.tensor([True, True]), torch.tensor([True, False])]
      >>> report = refresh_report(10, 0.5, params, masks)
      >>> report.step, report.flat_count, report.total, report.flat_fraction
      (10, 3, 4, 0.75)
      >>> report.per_tensor, report.shapes
      ([1.0, 0.5], [(2,), (2,)])
    """
    stats = ire_core.mask_statistics(list(masks))
    return MaskStats(
        flat_count=int(stats.flat_count),
        total=int(stats.total),
        flat_fraction=float(stats.flat_fraction),
        per_tensor=[float(f) for f in stats.per_tensor],
        threshold=float(threshold),
        step=int(step),
        shapes=[tuple(p.shape) for p in params],
    )


_MASK_REPORT_DEPRECATED = (
    "ire_torch.MaskReport is deprecated: mask_stats() returns ire_core.MaskStats "
    "(also ire_torch.MaskStats), whose positional order differs; pass its fields by name"
)


def __getattr__(name: str):
    if name == "MaskReport":
        warnings.warn(_MASK_REPORT_DEPRECATED, DeprecationWarning, stacklevel=2)
        return MaskStats
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
