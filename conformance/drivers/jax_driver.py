"""The JAX driver: runs a conformance scenario through ``ire_jax``.

Each problem of :mod:`conformance.protocol` is written here in
``jax.numpy``; the scenario's base becomes an optax optimizer with
torch.optim's definitions (``optax.sgd`` with or without momentum/Nesterov —
its trace ``g + μ·trace`` from zero equals torch's buffer with dampening 0 —
and ``optax.adamw`` with weight decay 0.01 given explicitly — same eps
placement and decoupled decay as torch's AdamW), wrapped by
:func:`ire_jax.ire` or :func:`ire_jax.sam_ire`. The scenario's draws are fed
through the public ``probes=`` / ``label_uniforms=`` arguments of ``update``,
and the ``exact`` estimator is a user callable returning
:meth:`Problem.exact_diagonal` (evaluated on the host with
``jax.pure_callback``). The whole step runs under ``jax.jit``.

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

from ..protocol import Problem, Scenario, Trajectory

__all__ = ["JaxDriver", "jax_base", "jax_logits", "jax_loss"]

try:
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:  # reported by JaxDriver.available()
    jax = None


def jax_logits(problem: Problem, params: list, data: dict):
    """The logits of a classifier problem (``logistic`` or ``mlp``)."""
    import jax.numpy as jnp

    x = data["x"]
    if problem.name == "logistic":
        w, b = params
        return x @ w + b
    if problem.name == "mlp":
        w1, b1, w2, b2 = params
        return jnp.tanh(x @ w1 + b1) @ w2 + b2
    raise ValueError(f"problem must be a classifier ('logistic' or 'mlp'), got {problem.name!r}")


def jax_loss(problem: Problem, params: list, data: dict):
    """The loss of ``problem`` at JAX ``params`` (a 0-d array).

    Args:
      problem: the conformance problem.
      params: arrays in the problem's parameter order.
      data: the problem's data as JAX arrays (see :meth:`JaxDriver.data`).
    """
    import jax.numpy as jnp

    from ire_jax import softmax_cross_entropy

    name = problem.name
    if name == "diag_quadratic":
        (theta,) = params
        return 0.5 * jnp.sum(data["h"] * theta * theta)
    if name == "dense_quadratic":
        (theta,) = params
        return 0.5 * theta @ (data["A"] @ theta) - data["b"] @ theta
    if name in ("logistic", "mlp"):
        return softmax_cross_entropy(jax_logits(problem, params, data), data["y"])
    if name == "manifold":
        u, v = params
        return 0.5 * (1 + u[0] * u[0]) * jnp.sum(v * v)
    raise ValueError(f"unknown problem {name!r}")


def jax_base(base: str, lr: float):
    """The optax optimizer named ``base`` with torch.optim's definitions of
    :mod:`conformance.protocol` (SAM steps plain SGD with the SAM gradient).

    Example:
      >>> import optax
      >>> isinstance(jax_base("nesterov", 0.1), optax.GradientTransformation)
      True
    """
    import optax

    if base in ("sgd", "sam"):
        return optax.sgd(lr)
    if base == "momentum":
        return optax.sgd(lr, momentum=0.9)
    if base == "nesterov":
        return optax.sgd(lr, momentum=0.9, nesterov=True)
    if base == "adamw":
        return optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01)
    raise ValueError(
        f"scenario.base must be one of 'sgd', 'momentum', 'nesterov', 'adamw', 'sam', got {base!r}"
    )


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
    def data(problem: Problem, dtype) -> dict:
        """The problem's data as JAX arrays (floats in ``dtype``)."""
        import jax.numpy as jnp

        out = {}
        for key, value in problem.data.items():
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.floating):
                out[key] = jnp.asarray(value, dtype=dtype)
            else:
                out[key] = jnp.asarray(value, dtype=jnp.int32)
        return out

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
        if scenario.base == "sam":
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
        data = self.data(problem, dtype)
        params = [jnp.asarray(np.asarray(p), dtype=dtype) for p in problem.params]
        shapes = [jax.ShapeDtypeStruct(p.shape, dtype) for p in params]

        def host_exact(*values):
            exact = problem.exact_diagonal([np.asarray(v, dtype=np.float64) for v in values])
            return [np.asarray(h, dtype=dtype) for h in exact]

        def exact(current, key):
            del key
            return jax.pure_callback(host_exact, shapes, *current)

        tx = self.transformation(scenario, exact)
        draws = scenario.draws
        estimator = scenario.estimator

        @jax.jit
        def step(params, state, probes, uniforms):
            def loss_fn(p):
                return jax_loss(problem, p, data)

            loss, grads = jax.value_and_grad(loss_fn)(params)
            feed = {"loss_fn": loss_fn}
            if estimator == "hutchinson":
                feed["probes"] = probes
            if estimator == "fisher":
                feed["logits_fn"] = lambda p: jax_logits(problem, p, data)
                feed["label_uniforms"] = uniforms
            updates, state = tx.update(grads, state, params, **feed)
            return optax.apply_updates(params, updates), state, loss

        state = tx.init(params)
        trajectory = Trajectory([_numpy(params)], {}, [])
        for t in range(scenario.steps):
            refresh = bool(ire_jax.needs_refresh(state))
            probes = uniforms = None
            if estimator == "hutchinson":
                probes = [[jnp.asarray(z, dtype=dtype) for z in probe] for probe in draws.probes(t)]
            if estimator == "fisher":
                uniforms = jnp.asarray(draws.uniforms(t), dtype=dtype)
            params, state, loss = step(params, state, probes, uniforms)
            trajectory.losses.append(float(loss))
            if refresh:
                trajectory.masks[t] = [np.asarray(m, dtype=bool).copy() for m in state.mask]
            trajectory.params.append(_numpy(params))
        return trajectory


def _numpy(params) -> list:
    return [np.asarray(p).astype(np.float64) for p in params]
