"""Fused IRE steps for ``torch.optim.SGD``, ``Adam`` and ``AdamW``.

The generic path (:mod:`ire_torch.amplify`) copies the parameters, lets the
base optimizer step and rescales the displacement afterwards. For the three
most common bases this module takes the base step itself, with the factor
(1 + κ·P) applied inside the update: no copy of the parameters, one extra
pass over the amplified tensors (two for AdamW with weight decay; three,
group by group, after torch's fused Adam kernel).

The step reads and writes the base optimizer's own state entries
(``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``,
``momentum_buffer``) with the same operations, in the same order, as
``torch.optim``: foreach ops over each device and dtype when the group uses
foreach; per tensor otherwise (the CPU default), where large tensors are
taken in cache-sized slices so that each pass over a slice reads from the
cache; and for Adam/AdamW with ``fused=True``, torch's fused kernel itself,
followed on amplified tensors by θ ← θ' + κ·P ⊙ (θ' − θ) from a copy of
about one slice of them at a time. So:

* coordinates outside the mask, and groups without amplification, receive
  bit for bit the base optimizer's update;
* flat coordinates receive θ + (1 + κ)·Δ, equal to the generic path's
  θ' + κ·(θ' − θ) up to floating-point rounding;
* state dicts move freely between fused and generic runs.

How the factor enters each update (P is the boolean mask, read as 0/1):

* SGD (momentum, Nesterov, dampening, weight decay): θ ← θ − lr·d, then
  θ ← θ − κ·lr·(P ⊙ d) for the direction d the base uses.
* Adam / AdamW: the denominator √v̂ + ε is divided by (1 + κ) on flat
  coordinates before ``addcdiv``; AdamW's decoupled decay θ ← (1 − lr·λ)·θ is
  followed by θ ← θ − κ·lr·λ/(1 − lr·λ)·(P ⊙ θ), which is −κ·lr·λ·θ_old.

Anything else — other optimizer classes (subclasses included), ``maximize``,
``capturable``, ``differentiable``, SGD with ``fused=True``, tensor
hyperparameters, complex or tensor-subclass parameters, hooks registered on
the base optimizer or a patched ``base.step`` — is left to the generic
path: :func:`fused_step` then returns ``False`` and changes nothing. So is
any optimizer whose torch internals (foreach ops, fused kernels, hook
registries) :mod:`ire_torch._torch_internals` does not find.

This module decides whether the step applies and dispatches it; the steps
themselves are in :mod:`ire_torch._fused_sgd` and :mod:`ire_torch._fused_adam`
(per tensor, foreach, fused kernel, as ``torch.optim``'s ``_single_tensor_*``,
``_multi_tensor_*`` and ``_fused_*``), built on :mod:`ire_torch._fused_slices`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import torch

from . import _torch_internals as internals
from ._fused_adam import adam_group
from ._fused_sgd import sgd_group

__all__ = ["fused_step", "supports_fused_step"]

_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)


def _is_number(value) -> bool:
    if type(value) in (float, int):  # the common case, before the ABC check
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _plain_params(group: dict) -> bool:
    return all(type(p) in _PLAIN_TYPES and not torch.is_complex(p) for p in group["params"])


def _sgd_group_ok(group: dict) -> bool:
    return (
        not group.get("maximize", False)
        and not group.get("differentiable", False)
        and not group.get("fused")
        and all(_is_number(group[k]) for k in ("lr", "momentum", "dampening", "weight_decay"))
    )


def _adam_group_ok(group: dict) -> bool:
    betas = group["betas"]
    return (
        not group.get("maximize", False)
        and not group.get("differentiable", False)
        and not group.get("capturable", False)
        and all(_is_number(group[k]) for k in ("lr", "eps", "weight_decay"))
        and all(_is_number(b) for b in betas)
    )


# Exact classes, so a subclass (which may step differently) is never taken;
# AdamW is listed on its own, whether or not this torch derives it from Adam.
_GROUP_CHECKS = {
    torch.optim.SGD: _sgd_group_ok,
    torch.optim.Adam: _adam_group_ok,
    torch.optim.AdamW: _adam_group_ok,
}
_ADAM_CLASSES = (torch.optim.Adam, torch.optim.AdamW)


def _kernel_found(optimizer, group: dict) -> bool:
    """For a group with ``fused=True``: whether torch's kernel is there."""
    if not group.get("fused"):
        return True
    decoupled = internals.decoupled_weight_decay(optimizer, group)
    return internals.fused_adam_kernel(decoupled) is not None


def supports_fused_step(optimizer: torch.optim.Optimizer) -> bool:
    """True when :func:`fused_step` can take ``optimizer``'s step.

    Example:
      >>> import torch
      >>> params = [torch.nn.Parameter(torch.zeros(2))]
      >>> supports_fused_step(torch.optim.AdamW(params, lr=1e-3))
      True
      >>> supports_fused_step(torch.optim.AdamW(params, lr=1e-3, maximize=True))
      False
      >>> supports_fused_step(torch.optim.RMSprop(params))
      False
    """
    check = _GROUP_CHECKS.get(type(optimizer))
    if check is None or not internals.FOREACH_OPS_AVAILABLE:
        return False
    if "step" in vars(optimizer):  # patched (profilers, schedulers on the base, …)
        return False
    if internals.has_step_hooks(optimizer):
        return False
    if any(getattr(optimizer, name, None) is not None for name in ("grad_scale", "found_inf")):
        return False  # a fused kernel asked to unscale: torch.optim's own step does that
    adam = type(optimizer) in _ADAM_CLASSES
    return all(
        check(group) and _plain_params(group) and (not adam or _kernel_found(optimizer, group))
        for group in optimizer.param_groups
    )


@torch.no_grad()
def fused_step(
    optimizer: torch.optim.Optimizer,
    amplify: Mapping[torch.Tensor, tuple[torch.Tensor, float]],
) -> bool:
    """The base optimizer's step with (1 + κ·P) applied inside the update.

    Args:
      optimizer: a ``torch.optim.SGD``, ``Adam`` or ``AdamW``.
      amplify: ``{param: (mask, kappa)}`` for the parameters to amplify:
        a boolean mask of the parameter's shape and a Python number κ, the
        same for all parameters of a param group. Other parameters with a
        gradient take the plain base step.

    Returns:
      ``True`` if the step was taken; ``False`` (nothing changed) when the
      optimizer or one of its settings is not supported.

    Example:
      >>> import torch
      >>> p = torch.nn.Parameter(torch.ones(3))
      >>> opt = torch.optim.SGD([p], lr=0.5)
      >>> p.grad = torch.ones(3)
      >>> fused_step(opt, {p: (torch.tensor([True, False, True]), 1.0)})
      True
      >>> p.tolist()
      [0.0, 0.5, 0.0]
    """
    if not supports_fused_step(optimizer):
        return False
    kappas = [_group_kappa(group, amplify) for group in optimizer.param_groups]
    if any(k is False for k in kappas):
        return False
    if type(optimizer) in _ADAM_CLASSES:
        decays = [
            group["lr"] * group["weight_decay"]
            for group, k in zip(optimizer.param_groups, kappas)
            if k and group["weight_decay"] != 0
            and internals.decoupled_weight_decay(optimizer, group)
        ]
        if any(d == 1 for d in decays):
            return False
        for group, kappa in zip(optimizer.param_groups, kappas):
            adam_group(optimizer, group, amplify, kappa)
    else:
        for group, kappa in zip(optimizer.param_groups, kappas):
            sgd_group(optimizer, group, amplify, kappa)
    return True


def _group_kappa(group: dict, amplify: Mapping):
    """The group's κ (0.0 when nothing in it is amplified); ``False`` when
    κ is not one Python number for the whole group."""
    kappa = None
    for p in group["params"]:
        entry = amplify.get(p)
        if entry is None:
            continue
        value = entry[1]
        if not _is_number(value) or (kappa is not None and value != kappa):
            return False
        kappa = value
    return 0.0 if kappa is None else float(kappa)
