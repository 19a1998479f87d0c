"""Every use ire_keras makes of the inner optimizer's internals, in one place.

Keras has no public hook into an optimizer's writes. The fused step
(:mod:`ire_keras.fused`) makes a built-in optimizer write IRE's amplified
step itself by replacing, on the inner optimizer instance and for one step,
the methods through which ``keras.optimizers.Optimizer.apply`` writes the
weights:

* ``assign_add(variable, value)`` and ``assign_sub(variable, value)``, which
  Keras documents for optimizer authors ("use it instead of
  ``variable.assign_add``");
* ``_apply_weight_decay(variables)``, private, with the private
  ``_use_weight_decay(variable)`` and ``_var_key(variable)`` it relies on.

:func:`hooks_supported` is the guard: the installed Keras lies in
:data:`KNOWN_KERAS`, the range whose base optimizer writes through those
methods, and the optimizer's class has each of them with the expected
parameters, not already replaced on the instance. Where it says ``False``,
:func:`ire_keras.fused.supports_fused_step` is ``False`` and IRE takes the
generic step (copy, inner step, rescale), which needs none of this. A test
(``tests/keras/test_keras_inner_hooks.py``) fails when the installed Keras
does not pass the guard.

The gradient-accumulation readers (:func:`micro_step_count`,
:func:`accumulated_gradient`) read the two private fields that hold what the
public API does not expose: the micro-batch counter and the running sums.

Example:
  >>> import keras
  >>> from ire_keras import _inner_hooks
  >>> _inner_hooks.hooks_supported(keras.optimizers.SGD(0.1))
  True
  >>> _inner_hooks.hooks_supported(object())
  False
"""

from __future__ import annotations

import contextlib
import functools
import inspect

import keras

__all__ = [
    "HOOKED",
    "KNOWN_KERAS",
    "accumulated_gradient",
    "hooked",
    "hooks_supported",
    "micro_step_count",
    "uses_weight_decay",
    "var_key",
]

KNOWN_KERAS = ((3, 12), (4, 0))
"""[lowest, first excluded) (major, minor) Keras versions whose base optimizer
writes weights through the hooked methods."""

HOOKED = ("assign_add", "assign_sub", "_apply_weight_decay")
"""The methods :func:`hooked` replaces on the inner optimizer instance."""

# Each method the fused step calls or replaces, and its parameters after self.
_EXPECTED = {
    "assign_add": ("variable", "value"),
    "assign_sub": ("variable", "value"),
    "_apply_weight_decay": ("variables",),
    "_use_weight_decay": ("variable",),
    "_var_key": ("variable",),
}


def keras_version() -> tuple[int, int]:
    """(major, minor) of the installed Keras."""
    major, minor = keras.__version__.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def _in_known_range(version: tuple[int, int]) -> bool:
    low, high = KNOWN_KERAS
    return low <= version < high


@functools.cache
def _class_has_methods(cls: type) -> bool:
    """Whether ``cls`` has every method of ``_EXPECTED`` with its parameters."""
    for name, parameters in _EXPECTED.items():
        method = getattr(cls, name, None)
        if not callable(method):
            return False
        try:
            signature = inspect.signature(method)
        except (TypeError, ValueError):
            return False
        names = tuple(signature.parameters)
        if names[:1] != ("self",) or names[1:] != parameters:
            return False
    return True


def hooks_supported(inner) -> bool:
    """Whether :func:`hooked` may replace ``inner``'s write methods.

    True when the installed Keras is in :data:`KNOWN_KERAS`, ``inner``'s
    class defines every method the fused step calls or replaces with the
    parameters it expects, and none of :data:`HOOKED` is already replaced on
    the instance (by another wrapper, or a step still in progress).
    """
    if not _in_known_range(keras_version()):
        return False
    if not _class_has_methods(type(inner)):
        return False
    own = vars(inner) if hasattr(inner, "__dict__") else {}
    return not any(name in own for name in HOOKED)


@contextlib.contextmanager
def hooked(inner, *, assign_add, assign_sub, apply_weight_decay):
    """Within this context, ``inner.assign_add``, ``inner.assign_sub`` and
    ``inner._apply_weight_decay`` are the given functions (same parameters,
    without ``self``); the class's own methods are back on exit, also when
    the step raises. Read ``inner.assign_add`` / ``assign_sub`` before
    entering to keep the class's own writes at hand.
    """
    patches = {
        "assign_add": assign_add,
        "assign_sub": assign_sub,
        "_apply_weight_decay": apply_weight_decay,
    }
    for name, patch in patches.items():
        object.__setattr__(inner, name, patch)
    try:
        yield
    finally:
        for name in patches:
            object.__delattr__(inner, name)


def var_key(inner, variable):
    """The key ``inner`` files ``variable`` under (``_var_key``)."""
    return inner._var_key(variable)


def uses_weight_decay(inner, variable) -> bool:
    """Whether ``inner`` decays ``variable`` (``_use_weight_decay``)."""
    return inner._use_weight_decay(variable)


def micro_step_count(inner):
    """The micro-batch counter of an optimizer with gradient accumulation
    (``iterations`` counts only the steps that update the weights)."""
    return inner._iterations


def accumulated_gradient(inner, variable):
    """The running sum of ``variable``'s micro-batch gradients, not yet
    applied, of an optimizer with gradient accumulation."""
    return inner._accumulated_gradients[inner._get_variable_index(variable)]
