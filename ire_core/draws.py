"""Explicit random draws on the host, from a seed and a step.

Backends draw natively in production (``torch.Generator``, JAX keys). For
cross-backend comparisons the same draws are made here once and fed to every
backend, so each ``(seed, step)`` names exactly one set of values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_PROBES, _LABELS = 0, 1


def rademacher_probes(
    seed: int, step: int, shapes: Sequence[tuple], num_probes: int = 1, dtype=np.float64
) -> list[list[np.ndarray]]:
    """Hutchinson probes z ∈ {−1, +1}: ``probes[j][i]`` has ``shapes[i]``.

    Example:
      >>> probes = rademacher_probes(seed=0, step=10, shapes=[(2,), (1, 3)], num_probes=2)
      >>> len(probes), probes[1][1].shape, sorted(set(probes[0][0].tolist())) <= [-1.0, 1.0]
      (2, (1, 3), True)
    """
    rng = np.random.default_rng((seed, step, _PROBES))
    return [
        [rng.integers(0, 2, size=shape).astype(dtype) * 2 - 1 for shape in shapes]
        for _ in range(num_probes)
    ]


def label_uniforms(seed: int, step: int, shape: tuple, dtype=np.float64) -> np.ndarray:
    """Uniform draws in [0, 1) for sampling labels (see
    :func:`ire_core.curvature.sample_labels`).

    Example:
      >>> u = label_uniforms(seed=0, step=3, shape=(4,))
      >>> u.shape, bool(((0 <= u) & (u < 1)).all())
      ((4,), True)
    """
    return np.random.default_rng((seed, step, _LABELS)).random(shape).astype(dtype)
