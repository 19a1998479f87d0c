"""Deprecated alias of :mod:`ire_jax.selection`, kept for one release."""

import warnings

from . import selection as _selection
from .selection import *  # noqa: F403 (the same public names)

__all__ = _selection.__all__

warnings.warn(
    "ire_jax.threshold is deprecated; import from ire_jax.selection instead",
    DeprecationWarning,
    stacklevel=2,
)
