"""A slow, obviously correct NumPy implementation of IRE and its bases.

Every backend is compared against it step by step. It is functional: states
are plain values, nothing is modified in place.

Example:
  >>> import numpy as np
  >>> from ire_core import IREConfig
  >>> from ire_core.reference import SGD, ReferenceIRE
  >>> opt = ReferenceIRE(SGD(lr=0.1), IREConfig(kappa=1.0, flat_fraction=0.5, interval=1))
  >>> params = [np.array([1.0, 1.0])]
  >>> state = opt.init(params)
  >>> grads = [np.array([0.1, 1.0])]           # L = ½(0.1·a² + b²) at (1, 1)
  >>> params, state = opt.step(params, grads, state, curvature=[np.array([0.1, 1.0])])
  >>> params[0].tolist()                       # a moved twice as far as b
  [0.98, 0.9]
"""

from .bases import SGD, Adam, AdamW
from .estimators import fisher_estimate, hutchinson_estimate
from .optimizer import IREState, ReferenceIRE

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "IREState",
    "ReferenceIRE",
    "fisher_estimate",
    "hutchinson_estimate",
]
