"""IRE inside the inner optimizer's own writes to the weights (TensorFlow).

The generic step keeps a copy of every weight, lets the inner optimizer move
it, and rescales the displacement afterwards. On TensorFlow without XLA every
one of those operations is a separate pass over the model. Keras' built-in
optimizers write a weight's step through ``optimizer.assign_add`` or
``assign_sub``, and decoupled weight decay through ``_apply_weight_decay``.
For them, :func:`amplified_writes` scales each such write by 1 + κ on the flat
coordinates instead: no copy of the weights, fewer extra passes, and
coordinates outside the mask written exactly as the base writes them. A
larger weight's writes are one XLA-compiled pass (:data:`COMPILED_MIN_SIZE`).
Replacing those methods is the work of :mod:`ire_keras._inner_hooks`, which
also decides whether the installed Keras allows it.

On JAX the generic step needs no hook: XLA fuses the rescaling into the
update. On torch, Keras runs its own ``torch._foreach`` kernels,
which these methods do not see.

Example:
  >>> import keras
  >>> from ire_keras import fused
  >>> on_tf = keras.backend.backend() == "tensorflow"
  >>> fused.supports_fused_step(keras.optimizers.AdamW(), [keras.Variable([1.0])]) == on_tf
  True
"""

from __future__ import annotations

import contextlib
import math
import warnings
import weakref

import keras
from keras import ops

from . import _inner_hooks, _xp

__all__ = ["COMPILED_MIN_SIZE", "amplified_writes", "supports_fused_step"]

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


def supports_fused_step(inner, variables) -> bool:
    """Whether :func:`amplified_writes` applies to ``inner`` stepping
    ``variables``: a built-in optimizer of exactly one of the supported
    classes, on TensorFlow outside a ``tf.distribute`` strategy, without weight
    EMA, no variable with a constraint or ``overwrite_with_gradient`` (those
    are written outside ``assign_add``/``assign_sub``), and write methods
    :func:`ire_keras._inner_hooks.hooks_supported` accepts."""
    if keras.backend.backend() != "tensorflow":
        return False
    if type(inner) not in _FUSED_OPTIMIZERS or inner.use_ema:
        return False
    if not _inner_hooks.hooks_supported(inner):
        return False
    if any(getattr(v, "constraint", None) is not None for v in variables):
        return False
    if any(getattr(v, "overwrite_with_gradient", False) for v in variables):
        return False
    import tensorflow as tf

    return not tf.distribute.has_strategy()


def fused_supported(inner, variables) -> bool:
    """Deprecated alias of :func:`supports_fused_step`."""
    warnings.warn(
        "ire_keras.fused.fused_supported is deprecated: use ire_keras.fused.supports_fused_step",
        DeprecationWarning,
        stacklevel=2,
    )
    return supports_fused_step(inner, variables)


# On TensorFlow without XLA, the amplified write of a weight of at least this
# many coordinates is compiled (see :func:`amplified_writes`); on smaller ones
# the compiled call's own overhead outweighs the kernels it saves.
COMPILED_MIN_SIZE = 1 << 16

# The compiled write of each weight, by inner optimizer and weight: a
# tf.function traces again for other variables (and warns when it does so
# often), and a step that runs eagerly calls the same ones every time.
_compiled_writes = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def amplified_writes(inner, weights, masks, kappa):
    """Within this context, ``inner``'s writes of a step to ``weights`` are
    multiplied by 1 + κ on the coordinates of ``masks``.

    The factor of a weight is made once its step's value exists (a control
    dependency), and the decoupled weight decay of an amplified weight is
    written right before that step, with the same factor. TensorFlow's
    executor runs an operation as soon as its inputs are ready, and a factor
    needs only its mask: made at the decay, every factor of the model would
    be alive at once, each waiting for its weight's step, so the step's
    peak memory would grow by a copy of the model. The weight gets the same
    writes in the same order: decay, then step.

    On TensorFlow outside XLA, a weight of at least
    :data:`COMPILED_MIN_SIZE` coordinates is written by a small XLA-compiled
    function instead, ``θ ← (θ − f·d) ∓ f·s`` for the decay d and the step s
    (d still computed as the inner optimizer computes it): one pass over the
    weight where the graph takes five (the factor, two products, two
    writes). Where f = 1 the result is bit for bit the inner optimizer's
    two writes; on flat coordinates XLA may fuse a product into its
    subtraction, within rounding of the graph's result.

    Args:
      inner: the inner ``keras.optimizers.Optimizer`` (see
        :func:`supports_fused_step`).
      weights: the model variables to amplify.
      masks: one boolean mask tensor per weight.
      kappa: κ as a 0-d tensor; 0 leaves every write as it is.
    """
    import tensorflow as tf

    mask_of = {_inner_hooks.var_key(inner, w): m for w, m in zip(weights, masks)}
    # 1 and 1 + κ per dtype, made before any step: they wait for none.
    scales = {}
    for dtype in {keras.backend.standardize_dtype(w.dtype) for w in weights}:
        one = ops.cast(1.0, dtype)
        scales[dtype] = (one, one + ops.cast(kappa, dtype))
    decayed = {}
    assign_add, assign_sub = inner.assign_add, inner.assign_sub  # the class's own
    compiled = not _xp.in_xla()

    def decay_value(variable):
        rate = ops.cast(inner.learning_rate, variable.dtype)
        decay_rate = ops.cast(inner.weight_decay, variable.dtype)
        return variable * decay_rate * rate

    def scales_of(variable):
        return scales[keras.backend.standardize_dtype(variable.dtype)]

    def factor(variable):
        """1 + κ on the weight's flat coordinates, 1 elsewhere."""
        one, scale = scales_of(variable)
        return ops.where(mask_of[_inner_hooks.var_key(inner, variable)], scale, one)

    def write(assign, variable, value):
        key = _inner_hooks.var_key(inner, variable)
        if key not in mask_of:
            return assign(variable, value)
        value = ops.cast(_xp.dense(value, variable.shape), variable.dtype)
        with tf.control_dependencies([value]):
            decay = decay_value(decayed.pop(key)) if key in decayed else None
            if compiled and math.prod(variable.shape) >= COMPILED_MIN_SIZE:
                return _compiled_write(inner, key)(
                    _xp.tf_variable(variable), mask_of[key], *scales_of(variable), decay, value,
                    assign is assign_sub)
            amplify = factor(variable)
            if decay is not None:
                assign_sub(variable, decay * amplify)
        return assign(variable, value * amplify)

    def decay(variables):
        if inner.weight_decay is None:
            return
        for variable in variables:
            if not _inner_hooks.uses_weight_decay(inner, variable):
                continue
            key = _inner_hooks.var_key(inner, variable)
            if key in mask_of:
                decayed[key] = variable  # written with the weight's step
            else:
                assign_sub(variable, decay_value(variable))

    with _inner_hooks.hooked(
        inner,
        assign_add=lambda variable, value: write(assign_add, variable, value),
        assign_sub=lambda variable, value: write(assign_sub, variable, value),
        apply_weight_decay=decay,
    ):
        yield
        for variable in list(decayed.values()):  # a weight whose step wrote nothing
            assign_sub(variable, decay_value(variable) * factor(variable))


def _compiled_write(inner, key):
    """The compiled :func:`_write_amplified` of the weight ``key`` of ``inner``."""
    writes = _compiled_writes.setdefault(inner, {})
    if key not in writes:
        import tensorflow as tf

        writes[key] = tf.function(_write_amplified, jit_compile=True, autograph=False)
    return writes[key]


def _write_amplified(variable, mask, one, scale, decay, step, subtract: bool):
    """``θ ← (θ − f·d) ∓ f·s``, f = 1 + κ (``scale``) on the mask and 1
    elsewhere, no decay for ``d = None``: compiled by XLA, one pass over θ."""
    import tensorflow as tf

    factor = tf.where(mask, scale, one)
    weight = variable.read_value()
    if decay is not None:
        weight = weight - decay * factor
    variable.assign(weight - step * factor if subtract else weight + step * factor)
