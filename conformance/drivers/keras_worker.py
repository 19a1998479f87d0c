"""Runs conformance scenarios through ``ire_keras`` on one Keras backend.

Keras picks its backend when it is imported, so :mod:`.keras_driver` starts
this module in a subprocess per backend::

    KERAS_BACKEND=jax python -m conformance.drivers.keras_worker OUT.npz NAME...

It looks the scenarios up by name in :data:`conformance.scenarios.SCENARIOS`
and writes every trajectory (or the error that stopped it) to ``OUT.npz``
(see :func:`write_results` for the layout).

The problem's loss, logits and exact Hessian diagonal are the array-API
functions of :mod:`conformance.problems` evaluated on the backend's native
tensors (gradients and Hessian-vector products by
:mod:`ire_keras.autodiff`); on TensorFlow they compute with
``tf.experimental.numpy``. The scenario's base is a small Keras optimizer
with torch.optim's definition (Keras's own SGD and AdamW differ: momentum
sign convention, ε placement, hyperparameters cast through float32), wrapped
in :class:`ire_keras.IRE`. The scenario's draws
are fed explicitly: probes to :func:`ire_keras.estimators.hutchinson_estimate`,
uniforms to :func:`ire_keras.estimators.fisher_estimate`, and the result to
``IRE.apply(..., curvature=...)``. Steps run compiled: ``tf.function`` on
TensorFlow, ``jax.jit`` over a ``keras.StatelessScope`` on JAX, eagerly on
torch.
"""

from __future__ import annotations

import sys
import traceback

import numpy as np

__all__ = ["main", "run_scenario", "write_results"]


def _keras():
    import keras

    return keras


# -- The problems' namespace ---------------------------------------------------


class _TensorFlowNumpy:
    """``tf.experimental.numpy`` plus ``matrix_transpose``, the one
    array-API function the problems use that it lacks.

    TensorFlow tensors have no array-API namespace, and ``ire_keras``'s
    ``KerasNamespace`` covers only what ``ire_core`` needs (no ``matmul``,
    ``tanh`` or ``log``), so the problems compute with TensorFlow's own
    NumPy API on the native tensors, which its autodiff differentiates.
    """

    def __getattr__(self, name):
        import tensorflow.experimental.numpy as tnp

        return getattr(tnp, name)

    @staticmethod
    def matrix_transpose(x):
        import tensorflow as tf

        return tf.linalg.matrix_transpose(x)


def _namespace():
    """The namespace the problems compute in: that of the backend's native
    tensors on JAX and torch (``None``: found from the arrays), TensorFlow's
    NumPy API on TensorFlow."""
    return _TensorFlowNumpy() if _keras().backend.backend() == "tensorflow" else None


# -- Bases with torch.optim's definitions ---------------------------------------


def _torch_bases():
    keras = _keras()
    ops = keras.ops

    class TorchSGD(keras.optimizers.Optimizer):
        """torch.optim.SGD (no dampening): b ← μb + g; θ ← θ − η(g + μb if
        Nesterov else b)."""

        def __init__(self, learning_rate, momentum=0.0, nesterov=False, **kwargs):
            super().__init__(learning_rate=learning_rate, **kwargs)
            self.momentum, self.nesterov = momentum, nesterov

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self.buffers = [self.add_variable_from_reference(v, "buffer") for v in variables]

        def update_step(self, gradient, variable, learning_rate):
            dtype = variable.dtype
            lr = ops.cast(learning_rate, dtype)
            g = ops.cast(gradient, dtype)
            if self.momentum == 0:
                self.assign(variable, variable - lr * g)
                return
            mu = ops.convert_to_tensor(self.momentum, dtype=dtype)
            buffer = self.buffers[self._get_variable_index(variable)]
            new_buffer = buffer * mu + g
            self.assign(buffer, new_buffer)
            direction = g + mu * new_buffer if self.nesterov else new_buffer
            self.assign(variable, variable + (-lr) * direction)

    class TorchAdamW(keras.optimizers.Optimizer):
        """torch.optim.AdamW: decoupled decay, then Adam with ε added after
        the bias-corrected square root."""

        def __init__(self, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                     decay=0.01, **kwargs):
            super().__init__(learning_rate=learning_rate, **kwargs)
            self.beta_1, self.beta_2, self.epsilon, self.decay = beta_1, beta_2, epsilon, decay

        def build(self, variables):
            if self.built:
                return
            super().build(variables)
            self.m = [self.add_variable_from_reference(v, "m") for v in variables]
            self.v = [self.add_variable_from_reference(v, "v") for v in variables]

        def update_step(self, gradient, variable, learning_rate):
            dtype = variable.dtype

            def const(value):
                return ops.convert_to_tensor(value, dtype=dtype)

            lr = ops.cast(learning_rate, dtype)
            g = ops.cast(gradient, dtype)
            t = ops.cast(self.iterations + 1, dtype)
            index = self._get_variable_index(variable)
            m, v = self.m[index], self.v[index]
            p = variable * (1.0 - lr * const(self.decay))
            new_m = m + (1.0 - const(self.beta_1)) * (g - m)
            new_v = v * const(self.beta_2) + (1.0 - const(self.beta_2)) * (g * g)
            bias_correction1 = 1.0 - ops.power(const(self.beta_1), t)
            bias_correction2_sqrt = ops.sqrt(1.0 - ops.power(const(self.beta_2), t))
            denom = ops.sqrt(new_v) / bias_correction2_sqrt + const(self.epsilon)
            self.assign(m, new_m)
            self.assign(v, new_v)
            self.assign(variable, p + (-(lr / bias_correction1)) * (new_m / denom))

    return TorchSGD, TorchAdamW


def _base(scenario):
    TorchSGD, TorchAdamW = _torch_bases()
    lr, base = float(scenario.lr), scenario.base_optimizer
    if base.family == "adamw":
        beta_1, beta_2 = base.BETAS
        return TorchAdamW(lr, beta_1=beta_1, beta_2=beta_2, epsilon=base.EPS,
                          decay=base.WEIGHT_DECAY)
    return TorchSGD(lr, momentum=base.momentum, nesterov=base.nesterov)


# -- Running one scenario --------------------------------------------------------


def _compiled(fn, variables):
    """``fn`` compiled for the backend; it may read and assign ``variables``."""
    keras = _keras()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if backend == "jax":
        import jax

        @jax.jit
        def pure(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))) as scope:
                out = fn(*args)
            return out, [scope.get_current_value(v) for v in variables]

        def call(*args):
            out, values = pure([v.value for v in variables], *args)
            for variable, value in zip(variables, values):
                variable.assign(value)
            return out

        return call
    return fn


def run_scenario(scenario) -> dict:
    """One scenario through ``ire_keras``: ``{"params", "masks", "losses"}``."""
    import ire_core
    import ire_keras
    from ire_keras import _xp, autodiff, estimators

    keras = _keras()
    ops = keras.ops
    keras.config.set_floatx(scenario.dtype)
    dtype = scenario.dtype
    problem, config, draws = scenario.problem, scenario.config, scenario.draws

    def asarray(value):
        floating = np.issubdtype(value.dtype, np.floating)
        return ops.convert_to_tensor(value, dtype=dtype if floating else "int32")

    model = problem.bind(asarray, xp=_namespace())
    weights = [keras.Variable(np.asarray(p), dtype=dtype) for p in problem.params]
    estimator = scenario.estimator
    optimizer = ire_keras.IRE(
        _base(scenario),
        **config.keywords("estimator", "sam_eps"),
        estimator=estimator,
        seed=scenario.seed,
    )
    optimizer.build(weights)

    def step(probes, uniforms, exact):
        values = [_xp.read(w) for w in weights]
        loss, grads = autodiff.value_and_grad(model.loss, values)
        curvature = None
        if estimator == "hutchinson" and probes is not None:
            curvature = estimators.hutchinson_estimate(model.loss, values, probes)
        elif estimator == "fisher" and uniforms is not None:
            curvature = estimators.fisher_estimate(model.logits, values, uniforms)
        elif estimator == "exact" and exact is not None:
            curvature = exact
        elif estimator == "gradient" and config.rho > 0 and exact is not None:
            curvature = estimators.gradient_estimate(grads)  # g at θ, not θ + e
        elif estimator != "gradient" or config.rho > 0:
            # Not a refresh step: the estimate is not used, but IRE's refresh
            # branch is still traced and needs a value of the right shape.
            curvature = [ops.zeros_like(v) for v in values]
        if config.rho > 0:
            e = ire_core.sam_perturbation(
                _xp.to_core(grads), _xp.to_core(values), config.rho, config.adaptive,
                config.sam_eps,
            )
            shifted = [v + _xp.from_core(d) for v, d in zip(values, e)]
            _, grads = autodiff.value_and_grad(model.loss, shifted)
        optimizer.apply(grads, weights, curvature=curvature)
        return loss

    compiled = _compiled(step, weights + optimizer.variables)
    params, masks, losses = [[np.asarray(p, np.float64) for p in problem.params]], {}, []
    for t in range(scenario.steps):
        refresh = bool(ire_core.is_refresh_step(t, config.interval, config.start_step))
        probes = uniforms = exact = None
        if refresh:
            if estimator == "hutchinson":
                probes = [[ops.convert_to_tensor(z, dtype=dtype) for z in probe]
                          for probe in draws.probes(t)]
            elif estimator == "fisher":
                uniforms = ops.convert_to_tensor(draws.uniforms(t), dtype=dtype)
            elif estimator == "exact":
                exact = model.hessian_diagonal([_xp.read(w) for w in weights])
            elif config.rho > 0:
                # Marks the refresh: SAM's gradient estimate is taken at θ.
                exact = [ops.zeros(tuple(w.shape), dtype=dtype) for w in weights]
        loss = compiled(probes, uniforms, exact) if refresh else compiled(None, None, None)
        losses.append(float(ops.convert_to_numpy(loss)))
        if refresh:
            masks[t] = [np.asarray(ops.convert_to_numpy(m), bool) for m in optimizer.flat_masks]
        params.append([np.asarray(ops.convert_to_numpy(w), np.float64) for w in weights])
    return {"params": params, "masks": masks, "losses": losses}


# -- Files -------------------------------------------------------------------------


def write_results(path: str, results: dict) -> None:
    """Writes ``{name: run_scenario(...) or error string}`` to ``path``.

    Layout: ``NAME/losses``; ``NAME/params/T/I`` (parameter I before step T);
    ``NAME/masks/T/I`` (mask of tensor I chosen at refresh step T);
    ``NAME/error`` (a message, when the scenario failed).
    """
    arrays = {}
    for name, result in results.items():
        if isinstance(result, str):
            arrays[f"{name}/error"] = np.array(result)
            continue
        arrays[f"{name}/losses"] = np.asarray(result["losses"], np.float64)
        for t, params in enumerate(result["params"]):
            for i, p in enumerate(params):
                arrays[f"{name}/params/{t}/{i}"] = p
        for t, mask in result["masks"].items():
            for i, m in enumerate(mask):
                arrays[f"{name}/masks/{t}/{i}"] = m
    np.savez(path, **arrays)


def main(argv=None) -> int:
    """``python -m conformance.drivers.keras_worker OUT.npz NAME...``"""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 1:
        print("usage: python -m conformance.drivers.keras_worker OUT.npz NAME...",
              file=sys.stderr)
        return 2
    from conformance.scenarios import get_scenario

    out, names = argv[0], argv[1:]
    results = {}
    for name in names:
        try:
            results[name] = run_scenario(get_scenario(name))
        except Exception:  # reported per scenario by the driver
            results[name] = traceback.format_exc()
        finally:
            _keras().utils.clear_session()
    write_results(out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
