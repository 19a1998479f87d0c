"""IRE as a Keras 3 optimizer wrapper.

Reference: Mingze Wang et al., "Improving Generalization and Convergence by
Enhancing Implicit Regularization", NeurIPS 2024 (arXiv 2405.20763).
"""

from __future__ import annotations

import contextlib
import math
import secrets
import warnings

import keras
from keras import ops

import ire_core

from . import _config, _inner_hooks, _xp, fused, refresh

__all__ = ["IRE"]

def _as_written(method):
    """``method`` as it is written, also inside a user's ``tf.function``.

    Keras' own train step keeps TensorFlow's AutoGraph from rewriting what
    it calls; a custom training loop decorated with ``tf.function`` does not.
    The step needs no rewriting (every branch on a tensor is an ``ops.cond``),
    and AutoGraph fails on some of what it calls, with a warning.
    """
    if keras.backend.backend() != "tensorflow":
        return method
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(method)


def _no_grad():
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


@keras.saving.register_keras_serializable(package="ire")
class IRE(keras.optimizers.Optimizer):
    """Implicit Regularization Enhancement around any Keras optimizer.

    The inner optimizer moves the weights θ to θ'. IRE then multiplies that
    step by (1 + κ) on the flat coordinates: θ ← θ' + κ·P ⊙ (θ' − θ), where
    the flat mask P marks the fraction γ (``flat_fraction``) of all
    coordinates of the model with the smallest curvature estimate. The mask
    is refreshed every ``interval`` optimizer steps and held in between; the
    inner optimizer's own state is untouched.

    The ``"gradient"`` estimator (ĥ = g ⊙ g of the training gradient) needs
    nothing beyond ``model.compile``/``model.fit``. The ``"fisher"`` and
    ``"hutchinson"`` estimators and SAM-IRE (``rho > 0``) need an extra pass
    over the loss, which :class:`ire_keras.IRETrainStep` computes during
    ``fit``; custom loops pass the estimate as ``apply(..., curvature=...)``.

    The mask rule, the combination, the curvature average and the schedules
    are ``ire_core``'s (``docs/algorithm.md``, The update rule and The flat
    rule); the refresh runs in ``ire_keras.refresh``. See ``docs/keras.md``.

    Args:
      inner_optimizer: the ``keras.optimizers.Optimizer`` whose steps are
        amplified. Learning rate, weight decay, clipping, loss scaling and
        gradient accumulation are configured on it.
      kappa: κ >= 0, or a function ``step -> κ`` (the step is a tensor).
      flat_fraction: γ in [0, 1], or a function ``step -> γ``.
      interval: refresh the mask every ``interval`` optimizer steps (K).
      ema: decay β in [0, 1) of the curvature moving average (0: none).
      start_step: IRE is inactive before this optimizer step.
      estimator: ``"gradient"``, ``"fisher"``, ``"hutchinson"``, ``"exact"``
        or a callable ``list of weight tensors -> list of curvature tensors``.
      num_probes: Rademacher probes per Hutchinson estimate.
      kappa_follows_lr: scale κ by ``lr_t / peak_learning_rate``.
      peak_learning_rate: the peak learning rate for ``kappa_follows_lr``;
        ``None`` uses the largest learning rate seen so far.
      rho: SAM radius used by :class:`ire_keras.IRETrainStep` (0: no SAM).
      adaptive: adaptive SAM (ASAM) perturbation.
      seed: integer seed of the estimator's random draws (probes, sampled
        labels); ``None`` draws one now, so it is saved with the model.
      name: the optimizer's name.

    Attributes:
      mask_threshold: τ of the last refresh (+inf before the first one).
      mask_flat_fraction: fraction of coordinates marked flat.
      mask_flat_count: number of coordinates marked flat.
      refresh_count: number of refreshes so far.

    Example:
      >>> import keras, numpy as np, ire_keras
      >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
      >>> model.compile(optimizer=ire_keras.IRE(keras.optimizers.SGD(0.1),
      ...                                       kappa=1.0, flat_fraction=0.4),
      ...               loss="mse")
      >>> x = np.random.default_rng(0).normal(size=(8, 4))
      >>> _ = model.fit(x, np.zeros((8, 3)), verbose=0)
      >>> int(model.optimizer.mask_flat_count)        # 0.4 of the 15 weights
      6
    """

    def __init__(
        self,
        inner_optimizer,
        kappa=2.0,
        flat_fraction=0.6,
        interval=10,
        ema=0.0,
        start_step=0,
        estimator="gradient",
        num_probes=1,
        kappa_follows_lr=False,
        peak_learning_rate=None,
        rho=0.0,
        adaptive=False,
        seed=None,
        name=None,
        **kwargs,
    ):
        _config.check_keyword_arguments(kwargs)
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                "inner_optimizer must be a keras.optimizers.Optimizer, got "
                f"{inner_optimizer!r}"
            )
        config = ire_core.IREConfig(
            kappa=kappa,
            flat_fraction=flat_fraction,
            interval=interval,
            ema=ema,
            start_step=start_step,
            estimator=estimator,
            num_probes=num_probes,
            kappa_follows_lr=kappa_follows_lr,
            rho=rho,
            adaptive=adaptive,
        )
        if peak_learning_rate is not None:
            ire_core.config.check_positive(peak_learning_rate, "peak_learning_rate")
        if seed is None:
            seed = secrets.randbelow(2**31)
        elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
        super().__init__(learning_rate=0.0, name=name)
        self.ire_config = config
        self.inner_optimizer = inner_optimizer
        self.peak_learning_rate = peak_learning_rate
        self.seed = seed
        object.__setattr__(self, "_supplied_curvature", None)

    # -- Hyperparameters ----------------------------------------------------

    @property
    def kappa(self):
        return self.ire_config.kappa

    @property
    def flat_fraction(self):
        return self.ire_config.flat_fraction

    @property
    def interval(self):
        return self.ire_config.interval

    @property
    def ema(self):
        return self.ire_config.ema

    @property
    def start_step(self):
        return self.ire_config.start_step

    @property
    def estimator(self):
        return self.ire_config.estimator

    @property
    def num_probes(self):
        return self.ire_config.num_probes

    @property
    def kappa_follows_lr(self):
        return self.ire_config.kappa_follows_lr

    @property
    def rho(self):
        return self.ire_config.rho

    @property
    def adaptive(self):
        return self.ire_config.adaptive

    # -- Forwarding to the inner optimizer ----------------------------------

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if not hasattr(self, "inner_optimizer"):
            return  # base-class construction; the rate lives on the inner one
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    # -- State ----------------------------------------------------------------

    def build(self, var_list):
        """Creates the flat masks, curvature averages and monitors (once)."""
        if self.built:
            return
        masks, averages = [], []
        for variable in var_list:
            prefix = variable.path.replace("/", "_") if hasattr(variable, "path") else "var"
            masks.append(
                self.add_variable(
                    shape=variable.shape, dtype="bool", name=f"{prefix}_flat_mask"
                )
            )
            if self.ire_config.ema > 0:
                averages.append(
                    self.add_variable(
                        shape=variable.shape,
                        dtype=keras.backend.result_type("float32", variable.dtype),
                        name=f"{prefix}_curvature",
                    )
                )
        self._flat_masks = masks
        self._curvature_averages = averages
        self.mask_threshold = self.add_variable(
            (), initializer=keras.initializers.Constant(math.inf), dtype="float32",
            name="mask_threshold",
        )
        self.mask_flat_fraction = self.add_variable((), dtype="float32", name="mask_flat_fraction")
        self.mask_flat_count = self.add_variable((), dtype="int", name="mask_flat_count")
        self.refresh_count = self.add_variable((), dtype="int", name="refresh_count")
        self.observed_peak_lr = self.add_variable((), name="observed_peak_lr")
        self.seed_generator = keras.random.SeedGenerator(self.seed, name=f"{self.name}_seed")
        self._track_variable(self.seed_generator.state)
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        super().build(var_list)

    @property
    def flat_masks(self) -> list:
        """The flat mask in force, one boolean variable per model weight."""
        return list(self._flat_masks)

    @property
    def curvature_averages(self) -> list:
        """The curvature moving averages (empty unless ``ema > 0``)."""
        return list(self._curvature_averages)

    @contextlib.contextmanager
    def supplying_curvature(self, curvature):
        """Within this context, :meth:`apply` uses ``curvature`` as if passed
        as its argument: the way to hand an estimate through a wrapper that
        calls ``apply`` itself, such as ``keras.optimizers.LossScaleOptimizer``.

        Example:
          >>> import keras, ire_keras
          >>> w = keras.Variable([1.0, 2.0])
          >>> opt = ire_keras.IRE(keras.optimizers.SGD(0.1), kappa=1.0,
          ...                     flat_fraction=0.5, estimator="exact")
          >>> with opt.supplying_curvature([keras.ops.convert_to_tensor([5.0, 1.0])]):
          ...     opt.apply([keras.ops.ones((2,))], [w])
          >>> [round(float(v), 6) for v in keras.ops.convert_to_numpy(w)]
          [0.9, 1.8]
        """
        previous = self._supplied_curvature
        # Plain attribute: a transient, not state to track or save.
        object.__setattr__(self, "_supplied_curvature", None if curvature is None else list(curvature))
        try:
            yield
        finally:
            object.__setattr__(self, "_supplied_curvature", previous)

    @property
    def refresh_due(self):
        """Whether the next ``apply`` refreshes the mask, as a boolean tensor.

        Counts optimizer steps: with gradient accumulation on the inner
        optimizer, only the micro-step that updates the weights can refresh.
        Read afresh on each access, so it also works inside a traced step.
        """
        step = _xp.read(self.inner_optimizer.iterations)
        due = ire_core.is_refresh_step(step, self.ire_config.interval, self.ire_config.start_step)
        return ops.logical_and(ops.convert_to_tensor(due), self._is_update_step())

    def is_refresh_step(self):
        """Deprecated alias of :attr:`refresh_due`."""
        warnings.warn(
            "IRE.is_refresh_step() is deprecated: read the IRE.refresh_due property",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.refresh_due

    def _is_update_step(self):
        steps = self.inner_optimizer.gradient_accumulation_steps
        if not steps:
            return ops.convert_to_tensor(True)
        counter = _xp.read(_inner_hooks.micro_step_count(self.inner_optimizer))
        return ops.equal(ops.mod(counter + 1, steps), 0)

    def mask_stats(self):
        """The :class:`ire_core.MaskStats` of the mask in force: flat count
        and flat fraction overall and per weight (in the order the optimizer
        was built with), τ of the last refresh and the weights' shapes, as
        backend tensors; ``step`` is ``None`` (not recorded). ``None`` before
        the optimizer is built.

        Example:
          >>> import keras, ire_keras
          >>> w = keras.Variable([1.0, 2.0, 3.0, 4.0])
          >>> opt = ire_keras.IRE(keras.optimizers.SGD(0.1), flat_fraction=0.5)
          >>> opt.apply([keras.ops.convert_to_tensor([0.1, 5.0, 0.2, 7.0])], [w])
          >>> stats = opt.mask_stats()
          >>> float(stats.flat_fraction), round(float(stats.threshold), 6), stats.shapes
          (0.5, 0.04, [(4,)])
        """
        if not self.built:
            return None
        masks = [_xp.read(m) for m in self._flat_masks]
        shapes = [tuple(m.shape) for m in self._flat_masks]
        threshold = _xp.read(self.mask_threshold)
        if not masks:
            return ire_core.MaskStats(ops.convert_to_tensor(0), 0, ops.convert_to_tensor(0.0), [],
                                      threshold=threshold, shapes=shapes)
        stats = ire_core.mask_statistics(_xp.to_core(masks))
        return ire_core.MaskStats(
            flat_count=_xp.from_core(stats.flat_count),
            total=stats.total,
            flat_fraction=_xp.from_core(stats.flat_fraction),
            per_tensor=[_xp.from_core(f) for f in stats.per_tensor],
            threshold=threshold,
            shapes=shapes,
        )

    # -- The step -------------------------------------------------------------

    def stateless_apply(self, optimizer_variables, grads, trainable_variables, curvature=None):
        """Stateless :meth:`apply` (JAX); ``curvature`` as in :meth:`apply`."""
        if not self.built:
            raise ValueError(
                "To call `stateless_apply`, IRE must be built: call "
                "`optimizer.build(trainable_variables)` first."
            )
        mapping = list(zip(self._trainable_variables, trainable_variables)) + list(
            zip(self.variables, optimizer_variables)
        )
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.apply(grads, curvature=curvature)
        return (
            [scope.get_current_value(v) for v in self._trainable_variables],
            [scope.get_current_value(v) for v in self.variables],
        )

    @_as_written
    def apply(self, grads, trainable_variables=None, curvature=None):
        """Steps the inner optimizer and amplifies its step on flat weights.

        Args:
          grads: one gradient per variable (``None`` for frozen ones).
          trainable_variables: the variables; on the first call they build
            the optimizer. Defaults to the variables it was built with.
          curvature: the raw curvature estimate ĥ, one tensor per variable,
            used on refresh steps (see :attr:`refresh_due`) and ignored
            otherwise. Required for the ``"fisher"``, ``"hutchinson"`` and
            ``"exact"`` estimators; overrides the others when given.
        """
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "When passing grads without trainable_variables, IRE must "
                    "already be built: call `optimizer.build(variables)` first."
                )
            trainable_variables = self._trainable_variables
        else:
            trainable_variables = list(trainable_variables)
            if not self.built:
                with keras.name_scope(self.name, caller=self):
                    self.build(trainable_variables)
                self.built = True
            self._check_variables_are_known(trainable_variables)
        grads = list(grads)
        if curvature is None:
            curvature = self._supplied_curvature
        if len(grads) != len(trainable_variables):
            raise ValueError(
                f"grads must hold one entry per variable: got {len(grads)} grads "
                f"for {len(trainable_variables)} variables"
            )
        if curvature is not None:
            curvature = list(curvature)
            if len(curvature) != len(trainable_variables):
                raise ValueError(
                    f"curvature must hold one tensor per variable: got "
                    f"{len(curvature)} for {len(trainable_variables)} variables"
                )
        with keras.name_scope(self.name, caller=self), _no_grad():
            self._apply(grads, trainable_variables, curvature)

    def _apply(self, grads, variables, curvature):
        inner = self.inner_optimizer
        used = [i for i, g in enumerate(grads) if g is not None]
        if not used:
            inner.apply(grads, variables)
            return
        weights = [variables[i] for i in used]
        slots = [self._get_variable_index(v) for v in weights]
        masks = [self._flat_masks[s] for s in slots]
        averages = [self._curvature_averages[s] for s in slots] if self.ire_config.ema > 0 else []
        step = _xp.read(inner.iterations, copy=True)  # apply() advances it in place on torch
        learning_rate = ops.cast(_xp.read(inner.learning_rate), keras.backend.floatx())
        due = self.refresh_due
        in_update = fused.supports_fused_step(inner, weights)
        # The generic step rescales the displacement from a copy of the weights.
        before = None if in_update else [_xp.read(v, copy=True) for v in weights]
        refresh.refresh_if_due(
            self,
            due,
            grads=[grads[i] for i in used],
            weights=weights,
            masks=masks,
            averages=averages,
            curvature=None if curvature is None else [curvature[i] for i in used],
            before=before,
            step=step,
        )
        new_masks = [_xp.read(m) for m in masks]
        kappa = self._kappa(step, learning_rate)
        active = ops.convert_to_tensor(ire_core.is_active(step, self.ire_config.start_step))
        if in_update:
            kappa = ops.where(active, ops.cast(_xp.from_core(kappa), keras.backend.floatx()), 0.0)
            with fused.amplified_writes(inner, weights, new_masks, kappa):
                inner.apply(grads, variables)
            return

        inner.apply(grads, variables)
        for weight, old, mask in zip(weights, before, new_masks):
            moved = _xp.read(weight)
            amplified = ire_core.amplify_displacement(
                *_xp.to_core([moved, old]),
                _xp.to_core([ops.logical_and(mask, active)])[0],
                kappa,
            )
            self.assign(weight, ops.cast(_xp.from_core(amplified), weight.dtype))

    # -- Pieces of the step ---------------------------------------------------

    def _kappa(self, step, learning_rate):
        config = self.ire_config
        step = ops.cast(step, keras.backend.floatx())  # schedules see a float step
        if not config.kappa_follows_lr:
            kappa = ire_core.kappa_at(config, step)
        else:
            if self.peak_learning_rate is not None:
                peak = ops.convert_to_tensor(self.peak_learning_rate, keras.backend.floatx())
            else:
                peak = ops.maximum(
                    ops.cast(_xp.read(self.observed_peak_lr), learning_rate.dtype), learning_rate
                )
                self.assign(self.observed_peak_lr, peak)
            kappa = ire_core.kappa_at(
                config, step, lr=learning_rate, peak_lr=ops.maximum(peak, 1e-30)
            )
        if isinstance(kappa, (int, float)):
            return float(kappa)
        return _xp.to_core([ops.cast(kappa, keras.backend.floatx())])[0]

    # -- Serialization --------------------------------------------------------

    def get_config(self):
        return _config.to_config(self)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return _config.from_config(cls, config, custom_objects)
