"""The PyTorch driver: runs a conformance scenario through ``ire_torch``.

Each problem of :mod:`conformance.protocol` is written here as a torch loss;
the scenario's base and hyperparameters become an ``ire_torch`` optimizer
(``SGDIRE``, ``AdamWIRE`` or ``SAMIRE``) fed the scenario's draws through the
public ``probes_fn`` / ``label_uniforms_fn`` arguments, and the ``exact``
estimator is supplied as a user callable returning
:meth:`Problem.exact_diagonal`, as the protocol asks.

Example:
  >>> from conformance.drivers.torch_driver import TorchDriver
  >>> from conformance.scenarios import SCENARIOS
  >>> driver = TorchDriver()
  >>> driver.available() is None
  True
  >>> trajectory = driver.run(SCENARIOS["manifold_sgd_exact"])
  >>> len(trajectory.params), len(trajectory.losses)
  (41, 40)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..protocol import Problem, Scenario, Trajectory

__all__ = ["TorchDriver", "torch_loss", "torch_logits"]


def _torch():
    import torch

    return torch


def torch_logits(problem: Problem, params: list, data: dict):
    """The logits of a classifier problem (``logistic`` or ``mlp``)."""
    torch = _torch()
    x = data["x"]
    if problem.name == "logistic":
        w, b = params
        return x @ w + b
    if problem.name == "mlp":
        w1, b1, w2, b2 = params
        return torch.tanh(x @ w1 + b1) @ w2 + b2
    raise ValueError(f"problem must be a classifier ('logistic' or 'mlp'), got {problem.name!r}")


def torch_loss(problem: Problem, params: list, data: dict):
    """The loss of ``problem`` at torch ``params`` (a 0-d tensor).

    Args:
      problem: the conformance problem.
      params: torch tensors in the problem's parameter order.
      data: the problem's data as torch tensors (see :meth:`TorchDriver.data`).
    """
    torch = _torch()
    name = problem.name
    if name == "diag_quadratic":
        (theta,) = params
        return 0.5 * torch.sum(data["h"] * theta * theta)
    if name == "dense_quadratic":
        (theta,) = params
        return 0.5 * theta @ (data["A"] @ theta) - data["b"] @ theta
    if name in ("logistic", "mlp"):
        logits = torch_logits(problem, params, data)
        return torch.nn.functional.cross_entropy(logits, data["y"])
    if name == "manifold":
        u, v = params
        return 0.5 * (1 + u[0] * u[0]) * torch.sum(v * v)
    raise ValueError(f"unknown problem {name!r}")


class TorchDriver:
    """Runs scenarios on ``ire_torch`` (CPU, the scenario's dtype)."""

    name = "torch"

    def available(self) -> str | None:
        try:
            import torch  # noqa: F401

            import ire_torch  # noqa: F401
        except ImportError as error:
            return f"ire_torch cannot be imported: {error}"
        return None

    @staticmethod
    def data(problem: Problem, dtype) -> dict:
        """The problem's data as torch tensors (floats in ``dtype``)."""
        torch = _torch()
        out = {}
        for key, value in problem.data.items():
            value = np.asarray(value)
            if np.issubdtype(value.dtype, np.floating):
                out[key] = torch.tensor(value, dtype=dtype)
            else:
                out[key] = torch.tensor(value, dtype=torch.long)
        return out

    @staticmethod
    def optimizer(scenario: Scenario, params: list, exact: Callable | None = None):
        """The ``ire_torch`` optimizer of ``scenario`` over ``params``, fed the
        scenario's draws."""
        torch = _torch()
        from ire_torch import SAMIRE, SGDIRE, AdamWIRE

        config = scenario.config
        draws = scenario.draws
        estimator = exact if scenario.estimator == "exact" else scenario.estimator
        ire = dict(
            config.keywords("estimator", "rho", "adaptive", "sam_eps"),
            estimator=estimator,
            seed=scenario.seed,
            probes_fn=draws.probes,
            label_uniforms_fn=draws.uniforms if draws.batch else None,
        )
        lr = scenario.lr
        if scenario.base == "sgd":
            return SGDIRE(params, lr=lr, **ire)
        if scenario.base == "momentum":
            return SGDIRE(params, lr=lr, momentum=0.9, **ire)
        if scenario.base == "nesterov":
            return SGDIRE(params, lr=lr, momentum=0.9, nesterov=True, **ire)
        if scenario.base == "adamw":
            return AdamWIRE(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, **ire)
        if scenario.base == "sam":
            return SAMIRE(params, torch.optim.SGD, lr=lr, rho=config.rho,
                          adaptive=config.adaptive, sam_eps=config.sam_eps, **ire)
        raise ValueError(
            f"scenario.base must be one of 'sgd', 'momentum', 'nesterov', 'adamw', 'sam', "
            f"got {scenario.base!r}"
        )

    def run(self, scenario: Scenario) -> Trajectory:
        torch = _torch()
        dtype = {"float64": torch.float64, "float32": torch.float32}[scenario.dtype]
        problem = scenario.problem
        data = self.data(problem, dtype)
        params = [torch.tensor(np.asarray(p), dtype=dtype, requires_grad=True)
                  for p in problem.params]

        def exact(current, grads):
            values = problem.exact_diagonal([p.detach().double().numpy() for p in current])
            return [torch.as_tensor(np.asarray(v)) for v in values]

        optimizer = self.optimizer(scenario, params, exact)

        def loss_fn():
            return torch_loss(problem, params, data)

        logits_fn = (lambda: torch_logits(problem, params, data)) if problem.is_classifier else None

        def closure():
            optimizer.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        trajectory = Trajectory([_numpy(params)], {}, [])
        for t in range(scenario.steps):
            refresh = optimizer.refresh_due
            if scenario.base == "sam":
                loss = optimizer.step(closure, loss_fn=loss_fn, logits_fn=logits_fn)
            else:
                loss = closure()
                optimizer.step(loss_fn=loss_fn, logits_fn=logits_fn)
            trajectory.losses.append(float(loss.detach()))
            if refresh:
                trajectory.masks[t] = [optimizer.flat_mask(p).numpy().copy() for p in params]
            trajectory.params.append(_numpy(params))
        return trajectory


def _numpy(params) -> list:
    return [p.detach().to(dtype=p.dtype).double().numpy().copy() for p in params]
