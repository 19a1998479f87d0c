"""The fused IRE step for ``torch.optim.Adam`` and ``AdamW``: per tensor,
foreach, and around torch's fused kernel.

The per-tensor and foreach steps mirror ``torch.optim.adam``'s
``_single_tensor_adam`` and ``_multi_tensor_adam`` operation for operation,
with two changes on flat coordinates: the denominator √v̂ + ε is divided by
(1 + κ) before ``addcdiv``, and AdamW's decoupled decay θ ← (1 − lr·λ)·θ is
followed by θ ← θ − κ·lr·λ/(1 − lr·λ)·(P ⊙ θ), which is −κ·lr·λ·θ_old.
With ``fused=True`` torch's own kernel (``_fused_adam``) takes every step,
and amplified tensors then move a further κ·Δ on their flat coordinates.
Coordinates outside the mask get the base update bit for bit.
:func:`ire_torch.fused.fused_step` decides when this step applies.

Example:
  >>> import torch
  >>> p = torch.nn.Parameter(torch.zeros(3))
  >>> opt = torch.optim.Adam([p], lr=0.1)
  >>> p.grad = torch.ones(3)
  >>> with torch.no_grad():
  ...     adam_group(opt, opt.param_groups[0], {p: (torch.tensor([True, False, True]), 1.0)}, 1.0)
  >>> [round(x, 4) for x in p.tolist()]
  [-0.2, -0.1, -0.2]
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from . import _fused_slices as slices
from . import _torch_internals as internals
from ._views import views_like


def adam_state(optimizer, group: dict, p: torch.Tensor) -> dict:
    """The parameter's state, created as ``torch.optim.Adam`` creates it."""
    state = optimizer.state[p]
    if len(state) == 0:
        if group.get("fused"):  # the kernel reads a float32 step on the parameter's device
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        else:
            scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
            state["step"] = torch.tensor(0.0, dtype=scalar, device="cpu")
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state


def adam_group(optimizer, group: dict, amplify: Mapping, kappa: float) -> None:
    """One Adam/AdamW param group's step, its flat coordinates amplified by κ."""
    params = [p for p in group["params"] if p.grad is not None]
    if not params:
        return
    states = [adam_state(optimizer, group, p) for p in params]
    beta1, beta2 = group["betas"]
    hyper = (group["lr"], beta1, beta2, group["eps"], group["weight_decay"], group["amsgrad"],
             internals.decoupled_weight_decay(optimizer, group), kappa)
    masks = slices.masks_of(params, amplify, kappa)
    if group.get("fused") or slices.uses_foreach(params, group["foreach"]):
        batch_step = _adam_kernel if group.get("fused") else _adam_foreach
        for indices in slices.device_batches(params):
            batch_step([params[i] for i in indices], [states[i] for i in indices],
                       [masks[i] for i in indices], *hyper)
    else:
        for p, state, mask in zip(params, states, masks):
            _adam_single(p, state, mask, *hyper)


def _decay_factor(lr, weight_decay, kappa) -> float:
    """c with (1 − lr·λ)·θ·(1 + c) = θ − (1 + κ)·lr·λ·θ: the extra decoupled
    decay of flat coordinates, applied after the base decay."""
    decay = lr * weight_decay
    return -kappa * decay / (1 - decay)


def _adam_single(p, state, mask, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled,
                 kappa):
    """``torch.optim.adam._single_tensor_adam`` for one tensor, amplified."""
    step_t = state["step"]
    step_t += 1
    step = step_t.item()
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    operands = (p, p.grad, state["exp_avg"], state["exp_avg_sq"],
                state["max_exp_avg_sq"] if amsgrad else None,
                None if mask is None else slices.as_bytes(mask))
    for p_part, grad, exp_avg, exp_avg_sq, max_sq, flat in slices.chunks(*operands):
        if weight_decay != 0:
            if decoupled:
                p_part.mul_(1 - lr * weight_decay)
                if flat is not None:
                    p_part.addcmul_(p_part, flat, value=_decay_factor(lr, weight_decay, kappa))
            else:
                grad = grad.add(p_part, alpha=weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if max_sq is not None:
            torch.maximum(max_sq, exp_avg_sq, out=max_sq)
            exp_avg_sq = max_sq
        denom = exp_avg_sq.sqrt().div_(bias_correction2_sqrt).add_(eps)
        if flat is not None:
            denom.addcmul_(denom, flat, value=-kappa / (1 + kappa))
        p_part.addcdiv_(exp_avg, denom, value=-step_size)


def _adam_foreach(ps, ss, ms, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, kappa):
    """``torch.optim.adam._multi_tensor_adam`` for one device and dtype, amplified."""
    grads = [p.grad for p in ps]
    exp_avgs = [s["exp_avg"] for s in ss]
    exp_avg_sqs = [s["exp_avg_sq"] for s in ss]
    steps = [s["step"] for s in ss]
    torch._foreach_add_(steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
    if weight_decay != 0:
        if decoupled:
            torch._foreach_mul_(ps, 1 - lr * weight_decay)
            decayed, flat = slices.flat_parts(ms, ps)
            slices.addcmul_flat_(decayed, decayed, flat, _decay_factor(lr, weight_decay, kappa))
        else:
            grads = torch._foreach_add(grads, ps, alpha=weight_decay)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    del grads
    counts = [step.item() for step in steps]
    step_size = [(lr / (1 - beta1**t)) * -1 for t in counts]
    bias_correction2_sqrt = [(1 - beta2**t) ** 0.5 for t in counts]
    if amsgrad:
        max_sqs = [s["max_exp_avg_sq"] for s in ss]
        torch._foreach_maximum_(max_sqs, exp_avg_sqs)
        denom = torch._foreach_sqrt(max_sqs)
    else:
        denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias_correction2_sqrt)
    torch._foreach_add_(denom, eps)
    scaled, flat = slices.flat_parts(ms, denom)
    slices.addcmul_flat_(scaled, scaled, flat, -kappa / (1 + kappa))
    torch._foreach_addcdiv_(ps, exp_avgs, denom, step_size)


def _adam_kernel(ps, ss, ms, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, kappa):
    """``torch.optim.adam._fused_adam`` (``fused=True``) for one device and
    dtype, amplified.

    torch's own kernel takes every step, so every coordinate first gets the
    base update bit for bit. Amplified tensors go through the kernel in groups
    of about one slice (small tensors together, a large one a slice at a time
    on the CPU; off the CPU, groups of up to ``DEVICE_SCRATCH`` coordinates,
    fewer launches): the group is copied to a scratch buffer before, and its
    flat coordinates move a further κ·Δ after.
    """
    kernel = internals.fused_adam_kernel(decoupled)  # found: see supports_fused_step
    steps = [s["step"] for s in ss]
    torch._foreach_add_(steps, 1)
    settings = dict(amsgrad=amsgrad, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                    eps=eps, maximize=False, grad_scale=None, found_inf=None)

    def operands(i):
        s = ss[i]
        return (ps[i], ps[i].grad, s["exp_avg"], s["exp_avg_sq"],
                s["max_exp_avg_sq"] if amsgrad else None, steps[i])

    def run(pieces):
        p, g, m, v, v_max, t = (list(column) for column in zip(*pieces))
        kernel(p, g, m, v, v_max if amsgrad else [], t, **settings)

    plain = [operands(i) for i, mask in enumerate(ms) if mask is None]
    if plain:
        run(plain)
    pieces, flats = [], []
    for i, mask in enumerate(ms):
        if mask is not None:
            *tensors, step = operands(i)
            for *part, flat in slices.chunks(*tensors, slices.as_bytes(mask),
                                             align=slices.KERNEL_ALIGN):
                pieces.append((*part, step))
                flats.append(flat)
    if not pieces:
        return
    on_cpu = ps[0].device.type == "cpu"
    size = slices.slice_size(slices.KERNEL_ALIGN) if on_cpu else slices.DEVICE_SCRATCH
    sizes = [piece[0].numel() for piece in pieces]
    groups = slices.groups(sizes, size)
    scratch = torch.empty(max(sum(sizes[j] for j in group) for group in groups),
                          dtype=ps[0].dtype, device=ps[0].device)
    for group in groups:
        targets = [pieces[j][0] for j in group]
        befores = views_like(scratch, targets)
        torch._foreach_copy_(befores, targets)
        run([pieces[j] for j in group])
        torch._foreach_sub_(befores, targets)  # −Δ
        slices.addcmul_flat_(targets, befores, [flats[j] for j in group], -kappa)
