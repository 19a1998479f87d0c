"""Summaries of training curves: steps to reach a target, mean ± std.

Example:
  >>> steps_to_target([0, 10, 20], [3.0, 2.0, 1.0], target=1.5)
  15.0
  >>> mean_std([1.0, 2.0, 3.0])
  (2.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["format_mean_std", "mean_std", "steps_to_target"]


def steps_to_target(steps: Sequence[float], losses: Sequence[float], target: float) -> float:
    """The first step at which a loss curve reaches ``target``.

    The curve is read as piecewise linear between its evaluation points, so
    the answer is finer than the evaluation interval.

    Args:
      steps: increasing steps at which ``losses`` were measured.
      losses: the loss at each of ``steps``.
      target: the loss to reach.

    Returns:
      The (interpolated) step, or ``math.inf`` if the curve never reaches it.

    Raises:
      ValueError: if the two sequences differ in length or are empty.
    """
    if len(steps) != len(losses) or not steps:
        raise ValueError(
            f"steps and losses must be non-empty and of equal length, got "
            f"{len(steps)} and {len(losses)}"
        )
    if losses[0] <= target:
        return float(steps[0])
    for i in range(1, len(steps)):
        if losses[i] <= target:
            s0, s1, l0, l1 = steps[i - 1], steps[i], losses[i - 1], losses[i]
            return float(s0 + (s1 - s0) * (l0 - target) / (l0 - l1))
    return math.inf


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value).

    Raises:
      ValueError: on an empty sequence.
    """
    if not values:
        raise ValueError("mean_std needs at least one value, got none")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def format_mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``"mean ± std"`` with ``digits`` decimals.

    Example:
      >>> format_mean_std([0.5, 0.7], digits=2)
      '0.60 ± 0.14'
    """
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
