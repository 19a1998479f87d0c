"""IRE inside the inner optimizer's own writes to the weights (TensorFlow).

The generic step keeps a copy of every weight, lets the inner optimizer move
it, and rescales the displacement afterwards. On TensorFlow without XLA every
one of those operations is a separate pass over the model. Keras' built-in
optimizers write a weight's step through ``optimizer.assign_add`` or
``assign_sub``, and decoupled weight decay through ``_apply_weight_decay``.
For them, :func:`amplified_writes` scales each such write by 1 + κ on the flat
coordinates instead: no copy of the weights, about half the extra passes, and
coordinates outside the mask written exactly as the base writes them.

On JAX the generic step costs nothing extra already: XLA fuses the rescaling
into the update. On torch, Keras runs its own ``torch._foreach`` kernels,
which these methods do not see.

Example:
  >>> import keras
  >>> from ire_keras import fused
  >>> on_tf = keras.backend.backend() == "tensorflow"
  >>> fused.fused_supported(keras.optimizers.AdamW(), [keras.Variable([1.0])]) == on_tf
  True
"""

from __future__ import annotations

import contextlib

import keras
from keras import ops

from . import _xp

__all__ = ["amplified_writes", "fused_supported"]

# Built-in optimizers whose update_step writes a weight only through
# self.assign_add / self.assign_sub, once per step.
_FUSED_OPTIMIZERS = (
    keras.optimizers.SGD,
    keras.optimizers.Adam,
    keras.optimizers.AdamW,
    keras.optimizers.Adamax,
    keras.optimizers.Nadam,
    keras.optimizers.Lion,
    keras.optimizers.RMSprop,
    keras.optimizers.Adagrad,
)


def fused_supported(inner, variables) -> bool:
    """Whether :func:`amplified_writes` applies to ``inner`` stepping
    ``variables``: a built-in optimizer of exactly one of the supported
    classes, on TensorFlow outside a ``tf.distribute`` strategy, without weight
    EMA, and no variable with a constraint or ``overwrite_with_gradient``
    (those are written outside ``assign_add``/``assign_sub``)."""
    if keras.backend.backend() != "tensorflow":
        return False
    if type(inner) not in _FUSED_OPTIMIZERS or inner.use_ema:
        return False
    if any(getattr(v, "constraint", None) is not None for v in variables):
        return False
    if any(getattr(v, "overwrite_with_gradient", False) for v in variables):
        return False
    import tensorflow as tf

    return not tf.distribute.has_strategy()


@contextlib.contextmanager
def amplified_writes(inner, weights, masks, kappa):
    """Within this context, ``inner``'s writes of a step to ``weights`` are
    multiplied by 1 + κ on the coordinates of ``masks``.

    Args:
      inner: the inner ``keras.optimizers.Optimizer`` (see
        :func:`fused_supported`).
      weights: the model variables to amplify.
      masks: one boolean mask tensor per weight.
      kappa: κ as a 0-d tensor; 0 leaves every write as it is.
    """
    mask_of = {inner._var_key(w): m for w, m in zip(weights, masks)}
    factors = {}
    assign_add, assign_sub = inner.assign_add, inner.assign_sub

    def factor(key, dtype):
        # Made on a weight's first write of the step and reused by its second
        # (AdamW: the decay, then the update): one at a time, never a copy of
        # the whole model.
        if key not in factors:
            one = ops.cast(1.0, dtype)
            factors[key] = ops.where(mask_of[key], one + ops.cast(kappa, dtype), one)
        return factors[key]

    def amplified(variable, value):
        key = inner._var_key(variable)
        if key not in mask_of:
            return value
        value = ops.cast(_xp.dense(value, variable.shape), variable.dtype)
        return value * factor(key, variable.dtype)

    def decay(variables):
        if inner.weight_decay is None:
            return
        for variable in variables:
            if inner._use_weight_decay(variable):
                rate = ops.cast(inner.learning_rate, variable.dtype)
                decay_rate = ops.cast(inner.weight_decay, variable.dtype)
                inner.assign_sub(variable, variable * decay_rate * rate)

    patches = {
        "assign_add": lambda variable, value: assign_add(variable, amplified(variable, value)),
        "assign_sub": lambda variable, value: assign_sub(variable, amplified(variable, value)),
        "_apply_weight_decay": decay,
    }
    for name, patch in patches.items():
        object.__setattr__(inner, name, patch)
    try:
        yield
    finally:
        for name in patches:
            object.__delattr__(inner, name)
