"""The refresh of :class:`ire_keras.IRE`'s flat mask: the curvature estimate,
its moving average, and the mask and τ chosen from them.

The rule is ``ire_core``'s (docs/algorithm.md, The flat rule; Estimators;
Refresh timing); this module picks, for the active backend, the estimate to
rank, the exact threshold (:func:`threshold_fn`) and, for the ``"gradient"``
estimate of a large model where τ is searched, a ranking of |g| that never
holds ĥ = g² in full. :func:`refresh_if_due` runs one refresh inside the
optimizer's step and writes the optimizer's mask, average and monitors.

Example:
  >>> import keras
  >>> from ire_keras import _xp, refresh
  >>> values = _xp.to_core([keras.ops.convert_to_tensor([5.0, 1.0]),
  ...                       keras.ops.convert_to_tensor([3.0])])
  >>> tau = refresh.threshold_fn()(values, 2)
  >>> float(keras.ops.convert_to_numpy(_xp.from_core(tau)))
  3.0
"""

from __future__ import annotations

import math

import keras
from keras import ops

import ire_core

from . import _inner_hooks, _xp, selection

__all__ = ["SQUARES_MIN_SIZE", "gradient_values", "refresh_if_due", "threshold_fn"]

#: The smallest model (in coordinates) whose ``"gradient"`` refresh, where τ
#: is searched, ranks |g| instead of g² (as ``ire_jax``): below it, g² in
#: full is a small temporary and ranking it as it is keeps the step simpler.
SQUARES_MIN_SIZE = 1 << 21


def threshold_fn():
    """The exact threshold ``(values, k) -> τ`` for the active backend.

    All return the same τ, the exact k-th smallest value; each is the one
    that ranks without a full sort on its backend:

    * TensorFlow and JAX: :func:`ire_keras.selection.exact_threshold`, the
      bit-pattern search (or histograms), which runs inside a compiled step;
    * torch: :func:`ire_torch.selection.exact_threshold`, imported only on
      that backend. Keras on torch hands ``ire_core`` plain torch tensors
      (:func:`ire_keras._xp.native`), so the values reach it as they are;
    * any other backend: :func:`ire_core.exact_threshold`.
    """
    backend = keras.backend.backend()
    if backend in ("tensorflow", "jax"):
        return selection.exact_threshold
    if backend == "torch":
        import ire_torch.selection

        return ire_torch.selection.exact_threshold
    return ire_core.exact_threshold


def gradient_values(inner, grads, weights):
    """The gradients the inner optimizer's step uses (accumulated, unscaled),
    dense, in at least float32: what the ``"gradient"`` estimate squares.

    Args:
      inner: the inner ``keras.optimizers.Optimizer``.
      grads: one gradient per weight (none ``None``).
      weights: the weights, for their shapes and accumulated gradients.

    Returns:
      One backend tensor per weight.
    """
    grads = [_xp.dense(g, w.shape) for g, w in zip(grads, weights)]
    if inner.gradient_accumulation_steps:
        # The step uses the mean of the accumulated micro-batch gradients.
        steps = inner.gradient_accumulation_steps
        accumulated = [_inner_hooks.accumulated_gradient(inner, w) for w in weights]
        grads = [(g + ops.cast(_xp.read(a), g.dtype)) / steps for g, a in zip(grads, accumulated)]
    if inner.loss_scale_factor is not None:
        grads = [g / inner.loss_scale_factor for g in grads]
    return [ops.cast(g, keras.backend.result_type("float32", g.dtype)) for g in grads]


def refresh_if_due(optimizer, due, *, grads, weights, masks, averages, curvature, before, step):
    """Refreshes ``optimizer``'s flat mask where ``due``, in the step's graph.

    On a refresh, ĥ is the supplied ``curvature``, the optimizer's callable
    estimator at the weights, or g² of ``grads``; with ``ema > 0`` it is
    blended into ``averages`` (the first estimate starts them); the mask is
    :func:`ire_core.select_flat_mask` of the result at γ of ``step``, with
    :func:`threshold_fn`. The masks, averages, ``mask_threshold``,
    ``mask_flat_fraction``, ``mask_flat_count`` and ``refresh_count`` of
    ``optimizer`` are written; without a refresh they keep their values.

    Args:
      optimizer: the :class:`ire_keras.IRE` whose state is refreshed.
      due: a boolean tensor, :attr:`ire_keras.IRE.refresh_due`.
      grads: the gradients of ``weights`` (none ``None``).
      weights: the weights stepped this step.
      masks: the mask variable of each weight.
      averages: the curvature average variable of each weight (empty
        unless ``ema > 0``).
      curvature: ĥ of each weight, or ``None``.
      before: the weights' values before the step, or ``None`` (then read
        from ``weights``).
      step: the optimizer step, a 0-d tensor.
    """
    config = optimizer.ire_config

    def estimate():
        if curvature is not None:
            return list(curvature)
        if callable(config.estimator):
            return list(config.estimator(before or [_xp.read(v) for v in weights]))
        if config.estimator != "gradient":
            raise ValueError(
                f"estimator={config.estimator!r} needs a curvature estimate: "
                "train with ire_keras.IRETrainStep, or pass curvature=... to apply()"
            )
        values = gradient_values(optimizer.inner_optimizer, grads, weights)
        return [_xp.from_core(h) for h in ire_core.squared(_xp.to_core(values))]

    def select(gamma, previous):
        """(mask, τ, average) of this refresh, in ire_core's form."""
        if _ranks_squares(config, curvature, weights):
            values = gradient_values(optimizer.inner_optimizer, grads, weights)
            if len({keras.backend.standardize_dtype(v.dtype) for v in values}) == 1:
                mask, tau = _select_from_squares(values, gamma, previous)
                return mask, tau, []
        raw = _xp.to_core([_xp.dense(h, w.shape) for h, w in zip(estimate(), weights)])
        state, ranked = [], raw  # ranked as it is: |·| and NaN → +inf are the rule's
        if averages:
            # The first estimate starts the average; later ones blend in.
            first, first_ranked = ire_core.blend(None, raw, config.ema)
            later, later_ranked = ire_core.blend(
                _xp.to_core([_xp.read(a) for a in averages]), raw, config.ema
            )
            started = _xp.read(optimizer.refresh_count) > 0
            state = _xp.to_core(
                [ops.where(started, _xp.from_core(b), _xp.from_core(a)) for a, b in zip(first, later)]
            )
            ranked = _xp.to_core(
                [ops.where(started, _xp.from_core(b), _xp.from_core(a))
                 for a, b in zip(first_ranked, later_ranked)]
            )
        chosen = ire_core.select_flat_mask(
            ranked, gamma, previous=previous, threshold_fn=threshold_fn()
        )
        return chosen.mask, chosen.threshold, state

    def refreshed():
        gamma = _scheduled(config.flat_fraction, step)
        mask, tau, state = select(gamma, _xp.to_core([_xp.read(m) for m in masks]))
        stats = ire_core.mask_statistics(mask)
        return (
            [ops.cast(_xp.from_core(m), "bool") for m in mask],
            [ops.cast(_xp.from_core(s), a.dtype) for s, a in zip(state, averages)],
            ops.cast(_xp.from_core(tau), "float32"),
            ops.cast(_xp.from_core(stats.flat_fraction), "float32"),
            ops.cast(_xp.from_core(stats.flat_count), optimizer.mask_flat_count.dtype),
            ops.convert_to_tensor(1, optimizer.refresh_count.dtype),
        )

    def store(new_masks, new_averages, threshold, fraction, count, refreshed_now):
        for variable, value in zip(masks + averages, list(new_masks) + list(new_averages)):
            optimizer.assign(variable, value)
        optimizer.assign(optimizer.mask_threshold, threshold)
        optimizer.assign(optimizer.mask_flat_fraction, fraction)
        optimizer.assign(optimizer.mask_flat_count, count)
        optimizer.assign_add(optimizer.refresh_count, refreshed_now)

    if keras.backend.backend() == "jax":
        # Stateless: the branches return values, assigned after the cond.
        def kept():
            return (
                [_xp.read(m) for m in masks],
                [_xp.read(a) for a in averages],
                _xp.read(optimizer.mask_threshold),
                _xp.read(optimizer.mask_flat_fraction),
                _xp.read(optimizer.mask_flat_count),
                ops.convert_to_tensor(0, optimizer.refresh_count.dtype),
            )

        store(*ops.cond(due, refreshed, kept))
    else:
        # The refresh writes the state inside its branch, so a step without
        # one neither copies the masks nor rewrites the monitors.
        def refresh_and_store():
            store(*refreshed())
            return ops.convert_to_tensor(True)

        ops.cond(due, refresh_and_store, lambda: ops.convert_to_tensor(False))


def _ranks_squares(config, curvature, weights) -> bool:
    """Whether this refresh ranks ĥ = g² of a large model's gradients by
    searching over g (:func:`_select_from_squares`): the ``"gradient"``
    estimator, no curvature supplied, no average, and the exact threshold
    searching in counting passes (under XLA, on JAX)."""
    n = sum(math.prod(w.shape) for w in weights)
    return (
        curvature is None
        and isinstance(config.estimator, str) and config.estimator == "gradient"
        and config.ema == 0
        and threshold_fn() is selection.exact_threshold
        and n >= SQUARES_MIN_SIZE
        and selection.is_searched(n)
    )


def _select_from_squares(grads, gamma, previous):
    """(mask, τ) of ĥ = g² in ire_core's form, with g² never held in full:
    τ from :func:`selection.exact_threshold_of_squares`, then the rule of
    :func:`ire_core.select_flat_mask` tensor by tensor
    (:func:`ire_core.mask_at_threshold`), as in ``ire_jax``. A compiled step
    holds the temporaries of its refresh branch on every step."""
    total = sum(math.prod(g.shape) for g in grads)
    k = ire_core.flat_count(gamma, total)
    tau = selection.exact_threshold_of_squares(grads, _xp.from_core(k))
    any_finite = ops.cond(  # τ < +inf is a finite value; else look for one
        tau < math.inf,
        lambda: ops.convert_to_tensor(True),
        lambda: ops.min(ops.stack([ops.min(selection.magnitude(g)) for g in grads])) < math.inf,
    )
    found = ire_core.FlatThreshold(*_xp.to_core([tau, any_finite]))
    squares = ire_core.squared(_xp.to_core(grads))
    mask = [ire_core.mask_at_threshold(h, found, k, m) for h, m in zip(squares, previous)]
    return mask, found.threshold


def _scheduled(schedule, step):
    """γ at ``step``: the number itself, or the schedule's value at the float
    step in ``ire_core``'s form."""
    if callable(schedule):
        value = schedule(ops.cast(step, keras.backend.floatx()))
        return _xp.to_core([ops.cast(value, keras.backend.floatx())])[0]
    return schedule
