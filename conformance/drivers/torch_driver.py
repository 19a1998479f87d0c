"""The PyTorch driver: runs a conformance scenario through ``ire_torch``.

The problem's loss and logits are the array-API functions of
:mod:`conformance.problems` evaluated on torch tensors (gradients and
Hessian-vector products by torch's autograd). The scenario's base and
hyperparameters become an ``ire_torch`` optimizer (``SGDIRE``, ``AdamWIRE``
or ``SAMIRE``) fed the scenario's draws through the public ``probes_fn`` /
``label_uniforms_fn`` arguments, and the ``exact`` estimator is a user
callable returning the problem's analytic Hessian diagonal on the current
tensors, as the protocol asks.

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

from ..protocol import Problem, Scenario, Trajectory, walk

__all__ = ["TorchDriver"]


def _torch():
    import torch

    return torch


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
    def model(problem: Problem, dtype):
        """The problem's model over torch tensors (float data in ``dtype``)."""
        torch = _torch()

        def asarray(value):
            floating = np.issubdtype(value.dtype, np.floating)
            return torch.tensor(value, dtype=dtype if floating else torch.long)

        return problem.bind(asarray)

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
        base, lr = scenario.base_optimizer, scenario.lr
        if base.family == "adamw":
            return AdamWIRE(params, lr=lr, betas=base.BETAS, eps=base.EPS,
                            weight_decay=base.WEIGHT_DECAY, **ire)
        sgd = dict(lr=lr, momentum=base.momentum, nesterov=base.nesterov)
        if base.sam:
            return SAMIRE(params, torch.optim.SGD, rho=config.rho, adaptive=config.adaptive,
                          sam_eps=config.sam_eps, **sgd, **ire)
        return SGDIRE(params, **sgd, **ire)

    def run(self, scenario: Scenario) -> Trajectory:
        torch = _torch()
        dtype = {"float64": torch.float64, "float32": torch.float32}[scenario.dtype]
        problem = scenario.problem
        model = self.model(problem, dtype)
        params = [torch.tensor(p, dtype=dtype, requires_grad=True) for p in problem.params]

        def exact(current, grads):
            return model.hessian_diagonal([p.detach() for p in current])

        optimizer = self.optimizer(scenario, params, exact)

        def loss_fn():
            return model.loss(params)

        logits_fn = (lambda: model.logits(params)) if problem.is_classifier else None

        def closure():
            optimizer.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        def step(t):
            refresh = optimizer.refresh_due
            if scenario.base_optimizer.sam:
                loss = optimizer.step(closure, loss_fn=loss_fn, logits_fn=logits_fn)
            else:
                loss = closure()
                optimizer.step(loss_fn=loss_fn, logits_fn=logits_fn)
            mask = [optimizer.flat_mask(p).numpy() for p in params] if refresh else None
            return loss.detach(), _numpy(params), mask

        return walk(scenario, _numpy(params), step)


def _numpy(params) -> list:
    return [p.detach().double().numpy().copy() for p in params]
