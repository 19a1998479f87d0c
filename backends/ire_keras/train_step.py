"""A ``train_step`` for ``model.fit`` that feeds IRE what the optimizer alone
cannot see: the ``fisher`` and ``hutchinson`` curvature estimates and the
SAM-IRE gradient.

An optimizer only receives gradients. Estimators that need the loss itself
(a Hessian-vector product, labels sampled from the model) and SAM's second
gradient at θ + e are computed here, in one code path for every backend:

1. the ordinary pass: loss, metrics and g = ∇L(θ) on the batch;
2. SAM-IRE (``rho > 0``): e from :func:`ire_core.sam_perturbation`, and the
   gradient g̃ = ∇L(θ + e) that the optimizer steps with;
3. on refresh steps only (``ops.cond``), the curvature estimate on the same
   batch, handed to the optimizer with :meth:`IRE.supplying_curvature`.

The loss is evaluated with ``model.stateless_call``, so the extra passes are
pure functions of the weights; on JAX the whole step runs in a
``keras.StatelessScope`` over the trainer's state. Random draws come from the
optimizer's seed generator, which is saved with the model.

Example:
  >>> import keras, numpy as np, ire_keras
  >>> class Net(ire_keras.IRETrainStep, keras.Sequential):
  ...     pass
  >>> model = Net([keras.Input((4,)), keras.layers.Dense(3)])
  >>> model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.1), kappa=1.0,
  ...                                       estimator="hutchinson", interval=2),
  ...               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  >>> _ = model.fit(np.ones((8, 4)), np.zeros(8), verbose=0, epochs=2)
  >>> int(model.optimizer.refresh_count)
  1
"""

from __future__ import annotations

import keras
from keras import ops

import ire_core

from . import _xp
from .autodiff import value_and_grad
from .estimators import (
    fisher_estimate,
    gradient_estimate,
    hutchinson_estimate,
    label_uniforms,
    rademacher_probes,
)
from .optimizer import IRE, _no_grad

__all__ = ["IRETrainStep", "find_ire"]


def find_ire(optimizer):
    """The :class:`IRE` in ``optimizer`` (itself, or inside wrappers such as
    ``LossScaleOptimizer``), or ``None``."""
    seen = 0
    while optimizer is not None and seen < 8:
        if isinstance(optimizer, IRE):
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
        seen += 1
    return None


class IRETrainStep:
    """Mixin for ``keras.Model`` subclasses: IRE's extra passes in ``fit``.

    Put it before the model class: ``class Net(IRETrainStep, keras.Model)``
    (or ``keras.Sequential``, or a functional ``keras.Model``). With an IRE
    optimizer using ``estimator="fisher"`` or ``"hutchinson"``, or ``rho >
    0``, ``train_step`` computes the estimate and the SAM gradient; with any
    other optimizer it is Keras's own ``train_step``.

    Attributes:
      fisher_from_logits: whether the model outputs logits (``True``) or
        probabilities (``False``) for the ``fisher`` estimator; ``None``
        (default) reads ``from_logits`` off the compiled loss, and assumes
        logits when the loss does not say.
    """

    fisher_from_logits = None

    # -- Entry points, one per trainer flavour --------------------------------

    def train_step(self, *args):
        ire = find_ire(getattr(self, "optimizer", None))
        if ire is None or not _needs_extra_pass(ire):
            return super().train_step(*args)
        if keras.backend.backend() == "jax":
            state, data = args
            return self._ire_stateless_train_step(state, data)
        (data,) = args
        return self._ire_train_step(data, ire)

    def _ire_stateless_train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metrics_vars = state
        groups = (
            self.trainable_variables,
            self.non_trainable_variables,
            self.optimizer.variables,
            self.metrics_variables,
        )
        mapping = []
        for variables, values in zip(groups, state):
            mapping.extend(zip(variables, values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self._ire_train_step(data, find_ire(self.optimizer))
        new_state = tuple(
            [scope.get_current_value(v) for v in variables] for variables in groups
        )
        return logs, new_state

    # -- The step ----------------------------------------------------------------

    def _ire_train_step(self, data, ire):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        weights = list(self.trainable_variables)
        if not self.optimizer.built:
            with keras.name_scope(self.optimizer.name, caller=self.optimizer):
                self.optimizer.build(weights)
        values = [_xp.read(v) for v in weights]
        frozen = [_xp.read(v) for v in self.non_trainable_variables]

        def forward(trainable):
            outputs, _, losses = self.stateless_call(
                trainable, frozen, x, training=True, return_losses=True
            )
            return outputs, losses

        def loss_at(trainable):
            outputs, losses = forward(trainable)
            return self._ire_loss(trainable, frozen, x, y, outputs, sample_weight, losses), outputs

        def scaled_loss_at(trainable):
            loss, outputs = loss_at(trainable)
            return self.optimizer.scale_loss(loss), (loss, outputs)

        (_, (loss, y_pred)), grads = value_and_grad(scaled_loss_at, values, has_aux=True)
        scale = self.optimizer.scale_loss(ops.ones((), dtype="float32"))
        unscaled = [ops.cast(g, "float32") / ops.cast(scale, "float32") for g in grads]

        # Draws are made outside the refresh branch: a branch may not advance
        # a stateful generator under JAX's tracing.
        config = ire.ire_config
        if config.estimator == "hutchinson":
            draws = rademacher_probes(values, config.num_probes, ire.seed_generator)
        elif config.estimator == "fisher":
            draws = label_uniforms(ops.shape(y_pred)[:-1], ire.seed_generator)
        else:
            draws = None

        step_grads = grads
        if config.rho > 0:
            perturbation = ire_core.sam_perturbation(
                _xp.to_core(unscaled),
                _xp.to_core([ops.cast(v, "float32") for v in values]),
                config.rho,
                config.adaptive,
                config.sam_eps,
            )
            shifted = [
                v + ops.cast(_xp.from_core(e), v.dtype) for v, e in zip(values, perturbation)
            ]
            _, step_grads = value_and_grad(lambda w: scaled_loss_at(w)[0], shifted)

        def estimate():
            if config.estimator == "hutchinson":
                return hutchinson_estimate(lambda w: loss_at(w)[0], values, draws)
            if config.estimator == "fisher":
                return fisher_estimate(
                    lambda w: forward(w)[0],
                    values,
                    draws,
                    from_logits=self._ire_from_logits(),
                    logits=y_pred,
                )
            if callable(config.estimator):
                return [ops.cast(h, "float32") for h in config.estimator(values)]
            if config.estimator == "exact":
                raise ValueError(
                    "estimator='exact' has no estimate during fit: pass a callable "
                    "estimator returning the exact diagonal instead"
                )
            return gradient_estimate(unscaled)

        def skipped():
            return [ops.zeros(tuple(v.shape), dtype="float32") for v in values]

        if config.estimator in ("hutchinson", "fisher") or config.rho > 0:
            curvature = ops.cond(
                ire.refresh_due,
                lambda: [ops.cast(h, "float32") for h in estimate()],
                skipped,
            )
        else:
            curvature = None
        with ire.supplying_curvature(curvature), _no_grad():
            self.optimizer.apply(step_grads, weights)

        self._loss_tracker.update_state(loss, sample_weight=ops.shape(_first(x))[0])
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    # -- Pieces ------------------------------------------------------------------

    def _ire_loss(self, trainable, frozen, x, y, y_pred, sample_weight, losses):
        metrics_values = [_xp.read(v) for v in self.metrics_variables]
        if losses:
            self._losses_override.clear()
            self._losses_override = losses
        loss, _ = self.stateless_compute_loss(
            trainable, frozen, metrics_values, x=x, y=y, y_pred=y_pred,
            sample_weight=sample_weight, training=True,
        )
        if losses:
            self._losses_override.clear()
        return loss

    def _ire_from_logits(self):
        if self.fisher_from_logits is not None:
            return bool(self.fisher_from_logits)
        loss = getattr(self, "loss", None)
        if isinstance(loss, str):
            return False  # Keras's string losses take probabilities
        return bool(getattr(loss, "from_logits", True))


def _needs_extra_pass(ire) -> bool:
    config = ire.ire_config
    return config.estimator in ("fisher", "hutchinson") or config.rho > 0


def _first(x):
    return next(t for t in keras.tree.flatten(x) if t is not None)
