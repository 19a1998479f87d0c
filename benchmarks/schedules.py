"""The learning-rate schedule shared by every run of a comparison.

Linear warm-up from 0 to the peak, then cosine decay to ``floor · peak``.
IRE's own schedules (κ, γ, κ following the learning rate) come from
:mod:`ire_core.schedules`; this module only shapes the base learning rate.

Example:
  >>> [round(warmup_cosine(t, total=10, warmup=2), 3) for t in (0, 1, 2, 6, 10)]
  [0.5, 1.0, 1.0, 0.55, 0.1]
"""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    """The learning-rate multiplier of 0-based optimizer step ``step``.

    Args:
      step: the step about to be taken (0-based).
      total: number of steps of the run.
      warmup: linear warm-up steps; the multiplier is ``(step + 1) / warmup``
        during them.
      floor: the multiplier at the end of the cosine decay.

    Raises:
      ValueError: on a negative ``warmup``, ``warmup > total`` or a ``floor``
        outside [0, 1].
    """
    if not 0 <= warmup <= total:
        raise ValueError(f"warmup must be in [0, total={total}], got {warmup!r}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor!r}")
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
