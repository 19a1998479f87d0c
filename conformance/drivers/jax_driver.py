"""The JAX driver: runs a conformance scenario through ``ire_jax``.

The problem's loss and logits are the array-API functions of
:mod:`conformance.problems` evaluated on JAX arrays (gradients and
Hessian-vector products by JAX's autodiff). The scenario's base becomes an
optax optimizer with torch.optim's definitions (``optax.sgd`` with or without
momentum/Nesterov — its trace ``g + μ·trace`` from zero equals torch's buffer
with dampening 0 — and ``optax.adamw`` with the weight decay given
explicitly — same eps placement and decoupled decay as torch's AdamW),
wrapped by :func:`ire_jax.ire` or :func:`ire_jax.sam_ire`. The scenario's
draws are fed through the public ``probes=`` / ``label_uniforms=`` arguments
of ``update``, and the ``exact`` estimator is a user callable returning the
problem's analytic Hessian diagonal, traced with the step. The whole step
runs under ``jax.jit``.

Importing this module enables ``jax_enable_x64`` (float64 scenarios need
it; float32 scenarios are computed in float32 all the same).

Example:
  >>> from conformance.drivers.jax_driver import JaxDriver
  >>> from conformance.scenarios import SCENARIOS
  >>> driver = JaxDriver()
  >>> driver.available() is None
  True
  >>> trajectory = driver.run(SCENARIOS["manifold_sgd_exact"])
  >>> len(trajectory.params), len(trajectory.losses)
  (41, 40)
"""

from __future__ import annotations

import numpy as np

from ..protocol import BASES, Problem, Scenario, Trajectory, walk

__all__ = ["JaxDriver", "jax_base"]

try:
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:  # reported by JaxDriver.available()
    jax = None


def jax_base(base: str, lr: float):
    """The optax optimizer named ``base`` (a key of
    :data:`conformance.protocol.BASES`); SAM steps plain SGD with the SAM
    gradient.

    Example:
      >>> import optax
      >>> isinstance(jax_base("nesterov", 0.1), optax.GradientTransformation)
      True
    """
    import optax

    if base not in BASES:
        raise ValueError(f"scenario.base must be one of {tuple(BASES)}, got {base!r}")
    spec = BASES[base]
    if spec.family == "adamw":
        b1, b2 = spec.BETAS
        return optax.adamw(lr, b1=b1, b2=b2, eps=spec.EPS, weight_decay=spec.WEIGHT_DECAY)
    return optax.sgd(lr, momentum=spec.momentum or None, nesterov=spec.nesterov)


class JaxDriver:
    """Runs scenarios on ``ire_jax`` (CPU, the scenario's dtype, jitted)."""

    name = "jax"

    def available(self) -> str | None:
        try:
            import jax  # noqa: F401
            import optax  # noqa: F401

            import ire_jax  # noqa: F401
        except ImportError as error:
            return f"ire_jax cannot be imported: {error}"
        return None

    @staticmethod
    def model(problem: Problem, dtype):
        """The problem's model over JAX arrays (float data in ``dtype``)."""
        import jax.numpy as jnp

        def asarray(value):
            floating = np.issubdtype(value.dtype, np.floating)
            return jnp.asarray(value, dtype=dtype if floating else jnp.int32)

        return problem.bind(asarray)

    @staticmethod
    def transformation(scenario: Scenario, exact=None):
        """The ``ire_jax`` transformation of ``scenario``."""
        import ire_jax

        config = scenario.config
        estimator = exact if scenario.estimator == "exact" else scenario.estimator
        kwargs = dict(
            config.keywords("estimator", "rho", "adaptive", "sam_eps"),
            estimator=estimator,
            peak_lr=scenario.lr if config.kappa_follows_lr else None,
            learning_rate=scenario.lr if config.kappa_follows_lr else None,
            seed=scenario.seed,
        )
        inner = jax_base(scenario.base, scenario.lr)
        if scenario.base_optimizer.sam:
            return ire_jax.sam_ire(
                inner, rho=config.rho, adaptive=config.adaptive, sam_eps=config.sam_eps, **kwargs
            )
        return ire_jax.ire(inner, **kwargs)

    def run(self, scenario: Scenario) -> Trajectory:
        import jax
        import jax.numpy as jnp
        import optax

        import ire_jax

        dtype = {"float64": jnp.float64, "float32": jnp.float32}[scenario.dtype]
        problem = scenario.problem
        model = self.model(problem, dtype)
        params = [jnp.asarray(p, dtype=dtype) for p in problem.params]

        def exact(current, key):
            del key
            return model.hessian_diagonal(list(current))

        tx = self.transformation(scenario, exact)
        draws = scenario.draws
        estimator = scenario.estimator

        @jax.jit
        def update(params, state, probes, uniforms):
            loss, grads = jax.value_and_grad(model.loss)(params)
            feed = {"loss_fn": model.loss}
            if estimator == "hutchinson":
                feed["probes"] = probes
            if estimator == "fisher":
                feed["logits_fn"] = model.logits
                feed["label_uniforms"] = uniforms
            updates, state = tx.update(grads, state, params, **feed)
            return optax.apply_updates(params, updates), state, loss

        current = {"params": params, "state": tx.init(params)}

        def step(t):
            refresh = bool(ire_jax.refresh_due(current["state"]))
            probes = uniforms = None
            if estimator == "hutchinson":
                probes = [[jnp.asarray(z, dtype=dtype) for z in probe] for probe in draws.probes(t)]
            if estimator == "fisher":
                uniforms = jnp.asarray(draws.uniforms(t), dtype=dtype)
            params, state, loss = update(current["params"], current["state"], probes, uniforms)
            current.update(params=params, state=state)
            return loss, params, (state.mask if refresh else None)

        return walk(scenario, params, step)
