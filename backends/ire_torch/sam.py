"""``SAMIRE``: sharpness-aware minimization with IRE on top.

One step: g = ∇L(θ); e = ρ·g/‖g‖ (ASAM: ρ·θ²g/‖θg‖) from
:func:`ire_core.sam_perturbation`; g̃ = ∇L(θ + e); back to θ; the base
optimizer steps with g̃; IRE amplifies the flat coordinates of that step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import ire_core

from ._checks import as_scalar_loss
from .bases import _checked_params, split_ire_kwargs
from .optimizer import IRE

__all__ = ["SAMIRE"]


class SAMIRE(IRE):
    """SAM-IRE: SAM's two gradient passes, then an IRE-amplified base step.

    Use ``step(closure)``, where the closure zeroes the gradients, computes
    the loss and calls ``backward`` (it is called twice), or the explicit
    pair::

        loss_fn(batch).backward(); opt.first_step(zero_grad=True)
        loss_fn(batch).backward(); opt.second_step(zero_grad=True)

    The ``gradient`` estimator uses the gradient at θ (first pass); ``fisher``,
    ``hutchinson`` and ``exact`` evaluate their callables at θ, after the
    parameters are restored. Mixed precision: prefer bf16 autocast (the
    fp16 ``GradScaler`` is not supported with two passes).

    Args:
      params: parameters or param group dicts, or ``None`` when
        ``base_optimizer`` is an optimizer instance.
      base_optimizer: a ``torch.optim.Optimizer`` class (built on ``params``
        with ``**kwargs``) or an instance.
      rho: the SAM radius ρ >= 0.
      adaptive: adaptive SAM (ASAM), scaling the ascent by ``|θ|``.
      sam_eps: added to the norm of the ascent direction.
      **kwargs: IRE keywords (``kappa``, ``flat_fraction``, …) and, when
        ``base_optimizer`` is a class, its arguments (``lr``, ``momentum``, …).

    Example:
      >>> import torch
      >>> from ire_torch import SAMIRE
      >>> model = torch.nn.Linear(4, 1)
      >>> opt = SAMIRE(model.parameters(), torch.optim.SGD, lr=0.1, rho=0.05, kappa=1.0)
      >>> x, y = torch.randn(8, 4), torch.randn(8, 1)
      >>> def closure():
      ...     opt.zero_grad()
      ...     loss = torch.nn.functional.mse_loss(model(x), y)
      ...     loss.backward()
      ...     return loss
      >>> loss = opt.step(closure)
      >>> opt.ire_step
      1
    """

    def __init__(self, params, base_optimizer, rho: float = 0.05, adaptive: bool = False,
                 sam_eps: float = 1e-12, **kwargs):
        ire_kwargs, base_kwargs = split_ire_kwargs(kwargs)
        if isinstance(base_optimizer, torch.optim.Optimizer):
            if params is not None:
                raise ValueError(
                    "params must be None when base_optimizer is an optimizer instance (its "
                    "parameters are used), got an iterable"
                )
            if base_kwargs:
                raise TypeError(
                    "base optimizer arguments cannot be given with an optimizer instance, got "
                    f"{sorted(base_kwargs)}"
                )
            base = base_optimizer
        elif isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer):
            base = base_optimizer(_checked_params(params), **base_kwargs)
        else:
            raise TypeError(
                "base_optimizer must be a torch.optim.Optimizer class or instance, got "
                f"{base_optimizer!r}"
            )
        self._sam_config = {"rho": rho, "adaptive": adaptive, "sam_eps": sam_eps}
        self._sam_origin: dict = {}
        self._sam_grads: dict | None = None
        super().__init__(base, **ire_kwargs)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Moves the parameters to θ + e, with e from the current gradients."""
        if self._sam_origin:
            raise RuntimeError("first_step was called twice without second_step in between")
        entries = self._stepped_params()
        if not entries:
            raise RuntimeError("first_step needs gradients: no parameter has a grad")
        params = [p for _, p in entries]
        grads = [p.grad for p in params]
        config = self.config
        perturbation = ire_core.sam_perturbation(
            grads, [p.detach() for p in params], config.rho, config.adaptive, config.sam_eps
        )
        self._sam_grads = None
        if config.estimator == "gradient" and self.refresh_due:
            self._sam_grads = {p: g.detach().clone() for p, g in zip(params, grads)}
        for p, e in zip(params, perturbation):
            self._sam_origin[p] = p.detach().clone()
            p.add_(e)
        if zero_grad:
            self.zero_grad()

    def second_step(self, zero_grad: bool = False, *, loss_fn: Callable | None = None,
                    logits_fn: Callable | None = None) -> None:
        """Returns to θ and takes the IRE step with the gradients at θ + e."""
        if not self._sam_origin:
            raise RuntimeError("second_step needs a first_step before it")
        origin, self._sam_origin = self._sam_origin, {}
        with torch.no_grad():
            for p, theta in origin.items():
                p.copy_(theta)
        grads, self._sam_grads = self._sam_grads, None
        self._ire_update(loss_fn, logits_fn, estimate_grads=grads, originals=origin)
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable | None = None, *, loss_fn: Callable | None = None,
             logits_fn: Callable | None = None):
        """A full SAM-IRE step; ``closure`` is called twice (θ, then θ + e).

        Returns:
          The loss at θ (the closure's first result).
        """
        if closure is None:
            raise ValueError(
                "SAMIRE.step needs a closure (it evaluates the gradient twice), got None; "
                "or call first_step() and second_step()"
            )
        with torch.enable_grad():
            loss = as_scalar_loss(closure(), "closure")
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            as_scalar_loss(closure(), "closure")
        self.second_step(loss_fn=loss_fn, logits_fn=logits_fn)
        return loss
