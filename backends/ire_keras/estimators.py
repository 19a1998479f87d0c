"""Curvature estimates ĥ for IRE from a loss, with explicit or seeded draws.

Each estimator takes its random draws as an argument, so the same draws can
be fed to every backend (this is how the conformance suite compares them);
:func:`rademacher_probes` and :func:`label_uniforms` make the draws from a
``keras.random.SeedGenerator`` (the IRE optimizer owns one, saved with it).
The arithmetic turning autodiff results into ĥ is ``ire_core``'s.

Example:
  >>> import keras
  >>> from ire_keras import estimators
  >>> loss = lambda w: 0.5 * keras.ops.sum(keras.ops.convert_to_tensor([1.0, 4.0]) * w[0] ** 2)
  >>> w = [keras.ops.zeros((2,))]
  >>> probes = estimators.rademacher_probes(w, num_probes=1, seed=keras.random.SeedGenerator(0))
  >>> h = estimators.hutchinson_estimate(loss, w, probes)
  >>> keras.ops.convert_to_numpy(h[0]).tolist()
  [1.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import ops

import ire_core

from . import _xp
from .autodiff import hessian_vector_product, value_and_grad

__all__ = [
    "fisher_estimate",
    "gradient_estimate",
    "hutchinson_estimate",
    "label_uniforms",
    "rademacher_probes",
    "sample_labels",
]


def rademacher_probes(values: Sequence, num_probes: int, seed) -> list[list]:
    """``num_probes`` Rademacher (±1) probes shaped like ``values``.

    Args:
      values: tensors (or variables) giving shapes and dtypes.
      num_probes: how many probes.
      seed: an int or a ``keras.random.SeedGenerator``.

    Returns:
      ``probes[j][i]``: probe j for tensor i.
    """
    ire_core.config.check_positive_int(num_probes, "num_probes")
    probes = []
    for _ in range(num_probes):
        probe = []
        for v in values:
            bits = keras.random.randint(tuple(v.shape), 0, 2, seed=seed)
            probe.append(ops.cast(bits * 2 - 1, _float_dtype(v.dtype)))
        probes.append(probe)
    return probes


def label_uniforms(shape, seed, dtype: str = "float32"):
    """Uniform draws in [0, 1) for sampling Fisher labels: one per row of
    logits, ``shape`` being the logits' shape without the class axis (an int
    for plain ``(batch, classes)`` logits)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return keras.random.uniform(shape, seed=seed, dtype=dtype)


def sample_labels(logits, uniforms):
    """ŷ ~ softmax(logits) by inverting the CDF at ``uniforms``
    (:func:`ire_core.sample_labels` on the backend's tensors)."""
    logits = ops.convert_to_tensor(logits)
    uniforms = ops.cast(uniforms, logits.dtype)
    labels = ire_core.sample_labels(*_xp.to_core([logits, uniforms]))
    return ops.cast(_xp.from_core(labels), "int32")


def gradient_estimate(grads: Sequence) -> list:
    """ĥ = g ⊙ g of the given gradients (:func:`ire_core.squared`); a
    TensorFlow ``tf.IndexedSlices`` gradient is summed into a dense one first."""
    grads = [_xp.dense(g) for g in grads]
    return [_xp.from_core(h) for h in ire_core.squared(_xp.to_core(grads))]


def hutchinson_estimate(loss_fn: Callable, values: Sequence, probes: Sequence) -> list:
    """ĥ = mean over probes of z ⊙ (H z), H the Hessian of ``loss_fn``.

    Args:
      loss_fn: ``list of tensors -> scalar``, twice differentiable.
      values: where the Hessian is taken.
      probes: ``probes[j][i]``, e.g. from :func:`rademacher_probes`.
    """
    probes = [[ops.convert_to_tensor(z) for z in probe] for probe in probes]
    products = [hessian_vector_product(loss_fn, values, z) for z in probes]
    estimate = ire_core.hutchinson(
        [_xp.to_core(z) for z in probes], [_xp.to_core(hz) for hz in products]
    )
    return [_xp.from_core(h) for h in estimate]


def fisher_estimate(
    logits_fn: Callable, values: Sequence, uniforms, from_logits: bool = True, logits=None
) -> list:
    """Sampled-label Fisher: ĥ = (∇ CE(logits, ŷ))², ŷ ~ softmax(logits).

    Args:
      logits_fn: ``list of tensors -> (..., classes)`` model outputs, e.g.
        ``(batch, classes)`` or ``(batch, tokens, classes)``.
      values: where the estimate is taken.
      uniforms: draws in [0, 1) shaped like the outputs without the class
        axis (see :func:`label_uniforms`).
      from_logits: ``False`` when the outputs are probabilities.
      logits: the outputs at ``values`` if already computed (saves a pass).
    """
    outputs = logits_fn(values) if logits is None else logits
    outputs = ops.stop_gradient(ops.convert_to_tensor(outputs))
    log_probs = outputs if from_logits else ops.log(ops.maximum(outputs, 1e-30))
    labels = sample_labels(
        ops.cast(log_probs, keras.backend.result_type("float32", log_probs.dtype)), uniforms
    )

    classes = ops.shape(outputs)[-1]

    def sampled_loss(weights):
        predicted = logits_fn(weights)
        if from_logits:
            log_p = ops.log_softmax(predicted, axis=-1)
        else:
            log_p = ops.log(predicted)
        chosen = ops.one_hot(labels, classes, dtype=log_p.dtype)
        # sum / n: keras.ops.mean is not float64-exact on every backend
        return -ops.sum(log_p * chosen) / ops.cast(ops.size(labels), log_p.dtype)

    _, grads = value_and_grad(sampled_loss, values)
    return gradient_estimate(grads)


def _float_dtype(dtype):
    dtype = keras.backend.standardize_dtype(dtype)
    return dtype if "float" in dtype else keras.backend.floatx()
