"""When IRE is active and when the flat mask is refreshed.

``step`` is the 0-based index of the optimizer step being taken (the number of
steps already completed). It may be a Python int or a 0-d integer array
(inside ``jax.jit``): only arithmetic and comparisons are used.
"""

from __future__ import annotations


def is_active(step, start_step: int):
    """True when IRE amplifies the update of step ``step``.

    Example:
      >>> is_active(4, start_step=5), is_active(5, start_step=5)
      (False, True)
    """
    return step >= start_step


def is_refresh_step(step, interval: int, start_step: int):
    """True on the steps where the curvature and the mask are refreshed:
    ``start_step``, ``start_step + interval``, ``start_step + 2·interval``, …

    The first active step is always a refresh step, so a mask exists whenever
    IRE is active.

    Example:
      >>> [t for t in range(12) if is_refresh_step(t, interval=4, start_step=2)]
      [2, 6, 10]
    """
    return (step >= start_step) & ((step - start_step) % interval == 0)
