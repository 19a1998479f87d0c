"""ire_keras: IRE (Implicit Regularization Enhancement) for Keras 3.

Example:
  >>> import keras, ire_keras
  >>> optimizer = ire_keras.IRE(keras.optimizers.AdamW(1e-3), kappa=2.0, flat_fraction=0.6)
  >>> optimizer.interval
  10
"""

from .optimizer import IRE

__all__ = ["IRE"]
