"""ire_core: the framework-independent math of IRE.

IRE (Implicit Regularization Enhancement) wraps a base optimizer and
multiplies its update by (1 + κ) on the flattest fraction γ of all
coordinates of the model. This package holds everything that is the same in
every framework, written over the Python array API: it runs on NumPy, torch
and JAX arrays and imports none of those frameworks itself.

Example:
  >>> import numpy as np
  >>> import ire_core
  >>> config = ire_core.IREConfig(kappa=1.0, flat_fraction=0.5)
  >>> curvature = [np.array([0.1, 5.0, 0.2, 7.0])]
  >>> mask = ire_core.select_flat_mask(curvature, config.flat_fraction).mask
  >>> ire_core.amplify_update(np.ones(4), mask[0], config.kappa).tolist()
  [2.0, 1.0, 2.0, 1.0]

Reference: Mingze Wang et al., "Improving Generalization and Convergence by
Enhancing Implicit Regularization", NeurIPS 2024.
"""

from .combine import amplify_displacement, amplify_update, amplify_updates
from .config import ESTIMATORS, IREConfig
from .curvature import blend, hutchinson, sample_labels, squared
from .mask import (
    FlatMask,
    FlatThreshold,
    MaskStats,
    flat_count,
    mask_at_threshold,
    mask_statistics,
    select_flat_mask,
    selection_values,
)
from .sam import global_norm, sam_perturbation
from .schedules import flat_fraction_at, kappa_at, value_at
from .threshold import HistogramThreshold, SampledThreshold, exact_threshold
from .timing import is_active, is_refresh_step

__version__ = "0.1.0"

__all__ = [
    "ESTIMATORS",
    "FlatMask",
    "FlatThreshold",
    "HistogramThreshold",
    "IREConfig",
    "MaskStats",
    "SampledThreshold",
    "amplify_displacement",
    "amplify_update",
    "amplify_updates",
    "blend",
    "exact_threshold",
    "flat_count",
    "flat_fraction_at",
    "global_norm",
    "hutchinson",
    "is_active",
    "is_refresh_step",
    "kappa_at",
    "mask_at_threshold",
    "mask_statistics",
    "sam_perturbation",
    "sample_labels",
    "select_flat_mask",
    "selection_values",
    "squared",
    "value_at",
]
