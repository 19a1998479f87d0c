"""How ``ire_core`` runs on the tensors of the active Keras backend.

``ire_core`` is written over the Python array API. The JAX and torch backends
hand it their native arrays, which ``array_api_compat`` understands directly.
TensorFlow tensors are not an array-API namespace, so on that backend values
are wrapped in :class:`KerasArray`, a thin view that implements the handful
of array-API operations ``ire_core`` uses with ``keras.ops``. Either way the
mask rule, the IRE combination and the curvature average are ``ire_core``'s
own code; nothing here re-implements them.

Example:
  >>> import keras, ire_core
  >>> from ire_keras import _xp
  >>> h = _xp.to_core([keras.ops.convert_to_tensor([3.0, 1.0, 2.0])])
  >>> mask = ire_core.select_flat_mask(h, 0.5).mask
  >>> keras.ops.convert_to_numpy(_xp.from_core(mask[0])).tolist()
  [False, True, False]
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

__all__ = [
    "KerasArray",
    "KerasNamespace",
    "count_true",
    "dense",
    "from_core",
    "in_xla",
    "native",
    "read",
    "tf_variable",
    "to_core",
]


def read(value, copy: bool = False):
    """The current value of a variable (or a tensor) as a backend tensor.

    On TensorFlow ``convert_to_tensor`` hands variables back unchanged, so
    the value is read explicitly; ``copy`` protects a torch snapshot from
    the in-place updates of torch optimizers.
    """
    if isinstance(value, keras.Variable):
        value = value.value
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return value if isinstance(value, tf.Tensor) else tf.identity(value)
    value = ops.convert_to_tensor(value)
    if copy and keras.backend.backend() == "torch":
        value = value.clone()
    return value


def dense(value, shape=None):
    """``value`` as a dense backend tensor, optionally of a known static shape.

    On TensorFlow the gradient of a gathered weight (an ``Embedding`` table)
    is a ``tf.IndexedSlices`` whose rows may repeat and whose shape can be
    unknown inside ``tf.function``. It is summed into a dense tensor here, so
    squaring it squares the gradient rather than each of its rows.

    Args:
      value: a tensor, a variable or a ``tf.IndexedSlices``.
      shape: the static shape to give the result (a weight's shape), or
        ``None`` to keep the one it has.

    Returns:
      A dense backend tensor.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(value, tf.IndexedSlices):
            value = tf.convert_to_tensor(value)
    value = read(value)
    if shape is not None and tuple(value.shape) != tuple(shape):
        value = ops.reshape(value, tuple(shape))
    return value


def count_true(mask, dtype: str = "int32"):
    """The number of True entries of a bool tensor, as a 0-d tensor of ``dtype``.

    Summing a mask widens it to ``dtype`` in memory first. On TensorFlow and
    JAX the mask is read as uint32 words of four bools instead, and the set
    bits of each word are counted, so the pass writes a quarter as many
    values. A mask whose last axis is not a multiple of four, or whose shape
    is not known, is summed plainly.

    Example:
      >>> import keras
      >>> from ire_keras import _xp
      >>> mask = keras.ops.arange(10) % 3 == 0
      >>> int(keras.ops.convert_to_numpy(_xp.count_true(mask)))
      4
    """
    backend = keras.backend.backend()
    shape = tuple(mask.shape)
    if not shape or None in shape or shape[-1] % 4:
        return ops.sum(ops.cast(mask, dtype))
    if backend == "jax":
        from jax import lax

        grouped = ops.reshape(ops.cast(mask, "uint8"), (*shape[:-1], -1, 4))
        words = lax.bitcast_convert_type(grouped, "uint32")
        return ops.sum(ops.cast(lax.population_count(words), dtype))
    if backend == "tensorflow":
        import tensorflow as tf

        words = tf.bitcast(tf.reshape(tf.cast(mask, tf.uint8), (-1, 4)), tf.uint32)
        return tf.reduce_sum(tf.cast(tf.raw_ops.PopulationCount(x=words), dtype))
    return ops.sum(ops.cast(mask, dtype))


def tf_variable(variable):
    """The ``tf.Variable`` behind a Keras variable (TensorFlow backend)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def in_xla() -> bool:
    """Whether the TensorFlow graph being built is compiled by XLA (inside a
    ``tf.function(jit_compile=True)``, as Keras' ``jit_compile=True`` step);
    ``False`` on the other backends and where TensorFlow lacks the helper."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    try:
        from tensorflow.python.ops import control_flow_util

        return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
    except (ImportError, AttributeError):  # a TensorFlow without this helper
        return False


def native() -> bool:
    """True when ``ire_core`` can take the backend's tensors as they are."""
    return keras.backend.backend() in ("jax", "torch", "numpy")


def to_core(values):
    """``values`` (a list of backend tensors) in a form ``ire_core`` accepts."""
    if native():
        return [ops.convert_to_tensor(v) for v in values]
    return [KerasArray(v) for v in values]


def from_core(value):
    """The backend tensor behind a value returned by ``ire_core``."""
    return value.value if isinstance(value, KerasArray) else value


def _unwrap(value):
    return value.value if isinstance(value, KerasArray) else value


def _wrap(value):
    return KerasArray(value)


class KerasArray:
    """A backend tensor seen through the array API, via ``keras.ops``.

    Only the operations ``ire_core`` needs are provided; arithmetic with
    Python numbers keeps the tensor's dtype, as the array API requires.
    """

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = ops.convert_to_tensor(value)

    def __array_namespace__(self, api_version=None):
        return NAMESPACE

    @property
    def shape(self) -> tuple:
        """The static shape; a dimension unknown until run time is ``None``."""
        return tuple(None if d is None else int(d) for d in self.value.shape)

    @property
    def dtype(self) -> str:
        return keras.backend.standardize_dtype(self.value.dtype)

    @property
    def device(self):
        return None  # placement is the backend's business

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __bool__(self):
        raise TypeError(
            "the truth value of a tensor is not defined here; use "
            "keras.ops.where / keras.ops.cond instead of Python branching"
        )

    def _binary(self, other, fn, reverse=False):
        other_value = _unwrap(other)
        if isinstance(other_value, numbers.Number) and not isinstance(other_value, bool):
            other_value = ops.convert_to_tensor(other_value, dtype=self.dtype)
        if reverse:
            return _wrap(fn(other_value, self.value))
        return _wrap(fn(self.value, other_value))

    def __add__(self, other):
        return self._binary(other, ops.add)

    def __radd__(self, other):
        return self._binary(other, ops.add, reverse=True)

    def __sub__(self, other):
        return self._binary(other, ops.subtract)

    def __rsub__(self, other):
        return self._binary(other, ops.subtract, reverse=True)

    def __mul__(self, other):
        return self._binary(other, ops.multiply)

    def __rmul__(self, other):
        return self._binary(other, ops.multiply, reverse=True)

    def __truediv__(self, other):
        return self._binary(other, ops.divide)

    def __rtruediv__(self, other):
        return self._binary(other, ops.divide, reverse=True)

    def __neg__(self):
        return _wrap(ops.negative(self.value))

    def __abs__(self):
        return _wrap(ops.abs(self.value))

    def __lt__(self, other):
        return self._binary(other, ops.less)

    def __le__(self, other):
        return self._binary(other, ops.less_equal)

    def __gt__(self, other):
        return self._binary(other, ops.greater)

    def __ge__(self, other):
        return self._binary(other, ops.greater_equal)

    def __and__(self, other):
        return _wrap(ops.logical_and(self.value, _unwrap(other)))

    def __rand__(self, other):
        return _wrap(ops.logical_and(_unwrap(other), self.value))

    def __or__(self, other):
        return _wrap(ops.logical_or(self.value, _unwrap(other)))

    def __getitem__(self, key):
        if isinstance(key, KerasArray):
            return _wrap(ops.take(self.value, key.value))
        if isinstance(key, tuple) and key and key[0] is Ellipsis:
            value = self.value
            for item in key[1:]:
                if item is not None:
                    raise IndexError(f"unsupported index {key!r}")
                value = ops.expand_dims(value, -1)
            return _wrap(value)
        return _wrap(self.value[key])

    def __repr__(self):
        return f"KerasArray({self.value!r})"


class KerasNamespace:
    """The subset of the array API that ``ire_core`` uses, over ``keras.ops``."""

    bool = "bool"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float32 = "float32"
    float64 = "float64"
    int32 = "int32"
    int64 = "int64"
    inf = math.inf

    @staticmethod
    def asarray(value, dtype=None, device=None, copy=None):
        return _wrap(ops.convert_to_tensor(_unwrap(value), dtype=dtype))

    @staticmethod
    def astype(x, dtype, copy=True):
        return _wrap(ops.cast(_unwrap(x), dtype))

    @staticmethod
    def result_type(*dtypes):
        return keras.backend.result_type(*dtypes)

    @staticmethod
    def finfo(dtype):
        return np.finfo(np.dtype(dtype))

    @staticmethod
    def isfinite(x):
        return _wrap(ops.isfinite(_unwrap(x)))

    @staticmethod
    def where(condition, x, y):
        x, y = _unwrap(x), _unwrap(y)
        return _wrap(ops.where(_unwrap(condition), x, y))

    @staticmethod
    def abs(x):
        return _wrap(ops.abs(_unwrap(x)))

    @staticmethod
    def floor(x):
        return _wrap(ops.floor(_unwrap(x)))

    @staticmethod
    def sqrt(x):
        return _wrap(ops.sqrt(_unwrap(x)))

    @staticmethod
    def exp(x):
        return _wrap(ops.exp(_unwrap(x)))

    @staticmethod
    def clip(x, min=None, max=None):
        x = _unwrap(x)
        low = -math.inf if min is None else min
        high = math.inf if max is None else max
        dtype = keras.backend.standardize_dtype(x.dtype)
        low = ops.convert_to_tensor(low, dtype=dtype) if isinstance(low, numbers.Number) else _unwrap(low)
        high = ops.convert_to_tensor(high, dtype=dtype) if isinstance(high, numbers.Number) else _unwrap(high)
        return _wrap(ops.clip(x, low, high))

    @staticmethod
    def concat(arrays, axis=0):
        return _wrap(ops.concatenate([_unwrap(a) for a in arrays], axis=axis))

    @staticmethod
    def stack(arrays, axis=0):
        return _wrap(ops.stack([_unwrap(a) for a in arrays], axis=axis))

    @staticmethod
    def reshape(x, shape):
        return _wrap(ops.reshape(_unwrap(x), shape))

    @staticmethod
    def sort(x, axis=-1):
        return _wrap(ops.sort(_unwrap(x), axis=axis))

    @staticmethod
    def any(x, axis=None):
        return _wrap(ops.any(_unwrap(x), axis=axis))

    @staticmethod
    def all(x, axis=None):
        return _wrap(ops.all(_unwrap(x), axis=axis))

    @staticmethod
    def sum(x, axis=None, keepdims=False, dtype=None):
        x = _unwrap(x)
        if dtype is not None:
            x = ops.cast(x, dtype)
        return _wrap(ops.sum(x, axis=axis, keepdims=keepdims))

    @staticmethod
    def count_nonzero(x):
        x = _unwrap(x)
        dims = tuple(x.shape)
        large = None not in dims and math.prod(dims) >= 2**31
        return _wrap(count_true(x, "int64" if large else "int32"))

    @staticmethod
    def max(x, axis=None, keepdims=False):
        return _wrap(ops.max(_unwrap(x), axis=axis, keepdims=keepdims))

    @staticmethod
    def min(x, axis=None, keepdims=False):
        return _wrap(ops.min(_unwrap(x), axis=axis, keepdims=keepdims))

    @staticmethod
    def ones_like(x, dtype=None, device=None):
        return _wrap(ops.ones_like(_unwrap(x), dtype=dtype))

    @staticmethod
    def cumulative_sum(x, axis=None):
        return _wrap(ops.cumsum(_unwrap(x), axis=axis))

    @staticmethod
    def zeros(shape, dtype=None, device=None):
        return _wrap(ops.zeros(shape, dtype=dtype or keras.backend.floatx()))

    @staticmethod
    def zeros_like(x, dtype=None, device=None):
        return _wrap(ops.zeros_like(_unwrap(x), dtype=dtype))


NAMESPACE = KerasNamespace()
NAMESPACE.__name__ = "ire_keras.keras_ops"
