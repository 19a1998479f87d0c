"""What the last mask refresh decided, for logging."""

from __future__ import annotations

import dataclasses

__all__ = ["MaskReport"]


@dataclasses.dataclass(frozen=True)
class MaskReport:
    """Statistics of the flat mask chosen at the last refresh.

    Attributes:
      step: the 0-based optimizer step of the refresh.
      threshold: τ, the largest curvature still counted flat (``inf`` when
        nothing is flat).
      flat_count: coordinates marked flat.
      total: coordinates that received curvature.
      flat_fraction: ``flat_count / total``.
      per_tensor: flat fraction of each parameter tensor that received
        curvature, in ``param_groups`` order.
      shapes: the shapes of those tensors, in the same order.

    Example:
      >>> report = MaskReport(10, 0.5, 3, 4, 0.75, [1.0, 0.5], [(2,), (2,)])
      >>> report.flat_fraction
      0.75
    """

    step: int
    threshold: float
    flat_count: int
    total: int
    flat_fraction: float
    per_tensor: list
    shapes: list
