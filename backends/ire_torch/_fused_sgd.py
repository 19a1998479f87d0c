"""The fused IRE step for ``torch.optim.SGD``: per tensor and foreach.

Each function mirrors its ``torch.optim.sgd`` counterpart
(``_single_tensor_sgd``, ``_multi_tensor_sgd``) operation for operation,
and then moves the flat coordinates a further κ times the step: θ ← θ − lr·d,
then θ ← θ − κ·lr·(P ⊙ d) for the direction d the base uses (momentum,
Nesterov, dampening and weight decay included). Coordinates outside the
mask get the base update bit for bit. :func:`ire_torch.fused.fused_step`
decides when this step applies.

Example:
  >>> import torch
  >>> p = torch.nn.Parameter(torch.ones(3))
  >>> opt = torch.optim.SGD([p], lr=0.5, momentum=0.9)
  >>> p.grad = torch.ones(3)
  >>> with torch.no_grad():
  ...     sgd_group(opt, opt.param_groups[0], {p: (torch.tensor([True, False, True]), 1.0)}, 1.0)
  >>> p.tolist()
  [0.0, 0.5, 0.0]
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from . import _fused_slices as slices


def sgd_group(optimizer, group: dict, amplify: Mapping, kappa: float) -> None:
    """One SGD param group's step, its flat coordinates amplified by κ."""
    params = [p for p in group["params"] if p.grad is not None]
    if not params:
        return
    hyper = (group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
             group["nesterov"], kappa)
    masks = slices.masks_of(params, amplify, kappa)
    if slices.uses_foreach(params, group["foreach"]):
        for indices in slices.device_batches(params):
            _sgd_foreach(optimizer.state, [params[i] for i in indices],
                         [masks[i] for i in indices], *hyper)
    else:
        for p, mask in zip(params, masks):
            _sgd_single(optimizer.state, p, mask, *hyper)


def _sgd_single(state, p, mask, lr, momentum, dampening, weight_decay, nesterov, kappa):
    """``torch.optim.sgd._single_tensor_sgd`` for one tensor, amplified."""
    flat = None if mask is None else slices.as_bytes(mask)
    buf = state[p].get("momentum_buffer") if momentum != 0 else None
    if momentum != 0 and buf is None:  # the first step creates the buffer whole
        grad = p.grad.add(p, alpha=weight_decay) if weight_decay != 0 else p.grad
        buf = state[p]["momentum_buffer"] = grad.detach().clone()
        _sgd_apply(p, grad.add(buf, alpha=momentum) if nesterov else buf, flat, lr, kappa)
        return
    for p_part, grad, buf_part, flat_part in slices.chunks(p, p.grad, buf, flat):
        if weight_decay != 0:
            grad = grad.add(p_part, alpha=weight_decay)
        if momentum != 0:
            buf_part.mul_(momentum).add_(grad, alpha=1 - dampening)
            grad = grad.add(buf_part, alpha=momentum) if nesterov else buf_part
        _sgd_apply(p_part, grad, flat_part, lr, kappa)


def _sgd_apply(p, direction, flat, lr, kappa):
    p.add_(direction, alpha=-lr)
    if flat is not None:
        p.addcmul_(direction, flat, value=-lr * kappa)


def _sgd_foreach(state, ps, masks, lr, momentum, dampening, weight_decay, nesterov, kappa):
    """``torch.optim.sgd._multi_tensor_sgd`` for one device and dtype, amplified
    (``p.grad`` is never written)."""
    grads = [p.grad for p in ps]
    if weight_decay != 0:
        grads = torch._foreach_add(grads, ps, alpha=weight_decay)
    if momentum != 0:
        bufs = [state[p].get("momentum_buffer") for p in ps]
        if all(buf is not None for buf in bufs):
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads, alpha=1 - dampening)
        else:
            for i, (p, g) in enumerate(zip(ps, grads)):
                if bufs[i] is None:
                    bufs[i] = state[p]["momentum_buffer"] = g.detach().clone()
                else:
                    bufs[i].mul_(momentum).add_(g, alpha=1 - dampening)
        grads = torch._foreach_add(grads, bufs, alpha=momentum) if nesterov else bufs
    torch._foreach_add_(ps, grads, alpha=-lr)
    targets, directions, flat = slices.flat_parts(masks, ps, grads)
    slices.addcmul_flat_(targets, directions, flat, -lr * kappa)
