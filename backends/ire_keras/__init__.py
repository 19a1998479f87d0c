"""ire_keras: IRE (Implicit Regularization Enhancement) for Keras 3.

:class:`IRE` wraps any Keras optimizer and multiplies its step by (1 + κ) on
the flattest fraction γ of all weights of the model. It works with plain
``model.compile``/``model.fit`` on the TensorFlow, JAX and torch backends;
:class:`IRETrainStep` adds the ``fisher`` and ``hutchinson`` estimators and
SAM-IRE to ``fit``.

Example:
  >>> import keras, ire_keras
  >>> optimizer = ire_keras.IRE(keras.optimizers.AdamW(1e-3), kappa=2.0, flat_fraction=0.6)
  >>> optimizer.interval, optimizer.estimator
  (10, 'gradient')

Reference: Mingze Wang et al., "Improving Generalization and Convergence by
Enhancing Implicit Regularization", NeurIPS 2024.
"""

from . import autodiff, estimators
from .callbacks import MaskMonitor
from .optimizer import IRE
from .selection import exact_threshold
from .train_step import IRETrainStep, find_ire

__all__ = [
    "IRE",
    "IRETrainStep",
    "MaskMonitor",
    "autodiff",
    "estimators",
    "exact_threshold",
    "find_ire",
]
