"""Gradients and Hessian-vector products with the active backend's autodiff.

Keras has no backend-neutral autodiff, so these two functions are the only
place where each backend's own machinery is called: nested
``tf.GradientTape`` on TensorFlow, ``jax.grad``/``jax.jvp`` on JAX and
``torch.autograd.grad`` on torch. Both take a pure function of a list of
weight tensors, e.g. built from ``model.stateless_call``.

Example:
  >>> import keras
  >>> from ire_keras import autodiff
  >>> loss = lambda w: keras.ops.sum(w[0] ** 3)          # H = diag(6 w)
  >>> w = [keras.ops.convert_to_tensor([1.0, 2.0])]
  >>> hz = autodiff.hessian_vector_product(loss, w, [keras.ops.ones((2,))])
  >>> keras.ops.convert_to_numpy(hz[0]).tolist()
  [6.0, 12.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import ops

from . import _xp

__all__ = ["hessian_vector_product", "value_and_grad"]


def value_and_grad(fn: Callable, values: Sequence, has_aux: bool = False):
    """The value of ``fn(values)`` and its gradient with respect to ``values``.

    Args:
      fn: ``list of tensors -> scalar`` (or ``-> (scalar, aux)`` with
        ``has_aux``).
      values: the point, a list of tensors.
      has_aux: ``fn`` returns ``(value, aux)``; aux is passed through.

    Returns:
      ``(value, grads)``, or ``((value, aux), grads)`` with ``has_aux``.
      The gradients are dense tensors shaped like ``values``; those of
      weights the value does not depend on are zeros.
    """
    backend = keras.backend.backend()
    values = [_xp.read(v) for v in values]
    if backend == "tensorflow":
        return _tf_value_and_grad(fn, values, has_aux)
    if backend == "jax":
        import jax

        return jax.value_and_grad(fn, has_aux=has_aux)(values)
    if backend == "torch":
        return _torch_value_and_grad(fn, values, has_aux)
    raise NotImplementedError(f"no autodiff for the Keras backend {backend!r}")


def hessian_vector_product(fn: Callable, values: Sequence, vectors: Sequence) -> list:
    """H·v: the Hessian of ``fn`` at ``values`` times ``vectors``.

    Args:
      fn: ``list of tensors -> scalar``, twice differentiable.
      values: the point, a list of tensors.
      vectors: the direction, one tensor per value.

    Returns:
      One tensor per value.
    """
    backend = keras.backend.backend()
    values = [_xp.read(v) for v in values]
    vectors = [ops.cast(z, v.dtype) for z, v in zip(vectors, values)]
    if backend == "tensorflow":
        return _tf_hvp(fn, values, vectors)
    if backend == "jax":
        import jax

        return list(jax.jvp(jax.grad(fn), (values,), (vectors,))[1])
    if backend == "torch":
        return _torch_hvp(fn, values, vectors)
    raise NotImplementedError(f"no autodiff for the Keras backend {backend!r}")


def _tf_value_and_grad(fn, values, has_aux):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(values)
        out = fn(values)
        value = out[0] if has_aux else out
    grads = tape.gradient(value, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return out, _dense_like(grads, values)


def _tf_hvp(fn, values, vectors):
    import tensorflow as tf

    zero = tf.UnconnectedGradients.ZERO
    with tf.GradientTape() as outer:
        outer.watch(values)
        with tf.GradientTape() as inner:
            inner.watch(values)
            value = fn(values)
        grads = inner.gradient(value, values, unconnected_gradients=zero)
        dot = tf.add_n([tf.reduce_sum(g * z) for g, z in zip(grads, vectors)])
    return _dense_like(outer.gradient(dot, values, unconnected_gradients=zero), values)


def _dense_like(grads, values):
    """TensorFlow gradients as dense tensors of the values' static shapes
    (the gradient of a gathered table is a ``tf.IndexedSlices``)."""
    return [_xp.dense(g, v.shape) for g, v in zip(grads, values)]


def _torch_leaves(values):
    return [v.detach().clone().requires_grad_(True) for v in values]


def _torch_value_and_grad(fn, values, has_aux):
    import torch

    with torch.enable_grad():
        leaves = _torch_leaves(values)
        out = fn(leaves)
        value = out[0] if has_aux else out
        grads = torch.autograd.grad(value, leaves, allow_unused=True)
    grads = [torch.zeros_like(v) if g is None else g for g, v in zip(grads, leaves)]
    if has_aux:
        return (value.detach(), _detach(out[1])), grads
    return value.detach(), grads


def _detach(tree):
    return keras.tree.map_structure(
        lambda t: t.detach() if hasattr(t, "detach") else t, tree
    )


def _torch_hvp(fn, values, vectors):
    import torch

    with torch.enable_grad():
        leaves = _torch_leaves(values)
        grads = torch.autograd.grad(fn(leaves), leaves, create_graph=True, allow_unused=True)
        dot = sum(
            (g * z).sum() for g, z in zip(grads, vectors) if g is not None and g.requires_grad
        )
        if not torch.is_tensor(dot) or not dot.requires_grad:
            return [torch.zeros_like(v) for v in leaves]
        products = torch.autograd.grad(dot, leaves, allow_unused=True)
    return [torch.zeros_like(v) if p is None else p.detach() for p, v in zip(products, leaves)]
