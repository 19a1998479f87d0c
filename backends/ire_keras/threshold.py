"""Deprecated alias of :mod:`ire_keras.selection`, kept for one release."""

import warnings

from . import selection as _selection
from .selection import *  # noqa: F403 (the same public names)

__all__ = _selection.__all__

warnings.warn(
    "ire_keras.threshold is deprecated; import from ire_keras.selection instead",
    DeprecationWarning,
    stacklevel=2,
)
