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
taken in cache-sized slices (on such tensors the step is faster than
torch.optim's own); and for Adam/AdamW with ``fused=True``, torch's fused
kernel itself, followed on amplified tensors by θ ← θ' + κ·P ⊙ (θ' − θ)
from a copy of about one slice of them at a time. So:

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
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import torch

from . import _torch_internals as internals
from ._views import views_like

__all__ = ["fused_step", "supports_fused_step"]

# Devices where torch.optim defaults to foreach kernels (foreach=None).
_FOREACH_DEVICES = ("cuda", "xpu")
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)
# Coordinates per slice of a per-tensor step (1 MiB of float32 per operand).
_CHUNK = 1 << 18
# torch's CPU fused Adam kernel works in cache-line units with vector loops;
# slices of a multiple of 4096 coordinates start and end on unit boundaries,
# so the kernel rounds every coordinate as it would on the whole tensor.
_KERNEL_ALIGN = 1 << 12
# Off the CPU, masks are turned into floats in a scratch buffer of at most
# this many coordinates (16 MiB of float32) at a time.
_DEVICE_SCRATCH = 1 << 22


def _is_number(value) -> bool:
    if type(value) in (float, int):  # the common case, without the slower ABC check
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
            _adam_group(optimizer, group, amplify, kappa)
    else:
        for group, kappa in zip(optimizer.param_groups, kappas):
            _sgd_group(optimizer, group, amplify, kappa)
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


def _uses_foreach(params: Sequence[torch.Tensor], foreach) -> bool:
    """The group's ``foreach`` setting, resolved as torch.optim resolves it."""
    if foreach is None:
        return all(p.device.type in _FOREACH_DEVICES for p in params)
    return bool(foreach)


def _device_batches(params: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of ``params`` per device and dtype (one foreach call each)."""
    batches: dict = {}
    for i, p in enumerate(params):
        batches.setdefault((p.device, p.dtype), []).append(i)
    return list(batches.values())


def _as_bytes(mask: torch.Tensor) -> torch.Tensor:
    """The boolean mask read as 0/1 bytes (no copy: a view): ``addcmul`` is
    faster on a uint8 operand than on a bool one."""
    return mask.view(torch.uint8)


def _flat_parts(masks, *tensor_lists):
    """The entries of each of ``tensor_lists`` whose mask is not ``None``, and
    those masks as 0/1 bytes."""
    chosen = [i for i, m in enumerate(masks) if m is not None]
    parts = [[tensors[i] for i in chosen] for tensors in tensor_lists]
    return (*parts, [_as_bytes(masks[i]) for i in chosen])


def _addcmul_flat_(targets, factors, flats, value, through_scratch: bool | None = None) -> None:
    """``targets += value · factors ⊙ flats`` over lists of tensors, the flat
    masks as 0/1 bytes.

    A foreach kernel takes one launch per list only when every tensor has
    the same dtype; with byte masks it falls back to a kernel per tensor. On
    the CPU that fallback is what foreach does anyway. Elsewhere the masks
    are first copied into a float scratch buffer (``_foreach_copy_`` converts
    in one launch), at most ``_DEVICE_SCRATCH`` coordinates at a time, a
    larger contiguous tensor in slices of that size; 0.0 and 1.0 multiply
    exactly as the bytes do. ``through_scratch`` overrides the choice.
    """
    if not targets:
        return
    if through_scratch is None:
        through_scratch = targets[0].device.type != "cpu"
    if not through_scratch:
        torch._foreach_addcmul_(targets, factors, flats, value=value)
        return
    pieces = [piece for triple in zip(targets, factors, flats)
              for piece in _chunks(*triple, size=_DEVICE_SCRATCH)]
    for group in _groups([piece[0].numel() for piece in pieces], _DEVICE_SCRATCH):
        masks = [pieces[j][2] for j in group]
        scratch = torch.empty(sum(m.numel() for m in masks),
                              dtype=targets[0].dtype, device=targets[0].device)
        floats = views_like(scratch, masks)
        torch._foreach_copy_(floats, masks)
        torch._foreach_addcmul_([pieces[j][0] for j in group], [pieces[j][1] for j in group],
                                floats, value=value)


def _masks(group_params, amplify, kappa):
    if not kappa:
        return [None] * len(group_params)
    return [amplify[p][0] if p in amplify else None for p in group_params]


def _slice_size(align: int = 1) -> int:
    return max(align, _CHUNK // align * align)


def _chunks(*tensors, align: int = 1, size: int | None = None):
    """Matching flat slices of ``tensors`` (``None`` entries stay ``None``),
    ``_CHUNK`` coordinates at a time; the tensors themselves when they are
    small, not all contiguous, or not on the CPU. With ``size``, slices of
    ``size`` coordinates on any device.

    A per-tensor step makes about ten passes over each operand; on a slice
    that fits in the CPU cache they cost a fraction of passes over a tensor
    that does not. Every operation is elementwise, so the result is the same
    bit for bit. (On an accelerator, slices would only add kernel launches.)
    With ``align``, slices hold a multiple of ``align`` coordinates.
    """
    present = [t for t in tensors if t is not None]
    n = present[0].numel()
    anywhere = size is not None
    size = size if anywhere else _slice_size(align)
    if (n <= size or not (anywhere or present[0].device.type == "cpu")
            or not all(t.is_contiguous() for t in present)):
        yield tensors
        return
    flat = [None if t is None else t.view(-1) for t in tensors]
    for start in range(0, n, size):
        yield tuple(None if t is None else t[start : start + size] for t in flat)


# -- SGD -----------------------------------------------------------------------------


def _sgd_group(optimizer, group: dict, amplify: Mapping, kappa: float) -> None:
    params = [p for p in group["params"] if p.grad is not None]
    if not params:
        return
    hyper = (group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
             group["nesterov"], kappa)
    masks = _masks(params, amplify, kappa)
    if _uses_foreach(params, group["foreach"]):
        for indices in _device_batches(params):
            _sgd_foreach(optimizer.state, [params[i] for i in indices],
                         [masks[i] for i in indices], *hyper)
    else:
        for p, mask in zip(params, masks):
            _sgd_single(optimizer.state, p, mask, *hyper)


def _sgd_single(state, p, mask, lr, momentum, dampening, weight_decay, nesterov, kappa):
    """``torch.optim.sgd._single_tensor_sgd`` for one tensor, amplified."""
    flat = None if mask is None else _as_bytes(mask)
    buf = state[p].get("momentum_buffer") if momentum != 0 else None
    if momentum != 0 and buf is None:  # the first step creates the buffer whole
        grad = p.grad.add(p, alpha=weight_decay) if weight_decay != 0 else p.grad
        buf = state[p]["momentum_buffer"] = grad.detach().clone()
        _sgd_apply(p, grad.add(buf, alpha=momentum) if nesterov else buf, flat, lr, kappa)
        return
    for p_part, grad, buf_part, flat_part in _chunks(p, p.grad, buf, flat):
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
    targets, directions, flat = _flat_parts(masks, ps, grads)
    _addcmul_flat_(targets, directions, flat, -lr * kappa)


# -- Adam and AdamW -----------------------------------------------------------------


def _adam_state(optimizer, group: dict, p: torch.Tensor) -> dict:
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


def _adam_group(optimizer, group: dict, amplify: Mapping, kappa: float) -> None:
    params = [p for p in group["params"] if p.grad is not None]
    if not params:
        return
    states = [_adam_state(optimizer, group, p) for p in params]
    beta1, beta2 = group["betas"]
    hyper = (group["lr"], beta1, beta2, group["eps"], group["weight_decay"], group["amsgrad"],
             internals.decoupled_weight_decay(optimizer, group), kappa)
    masks = _masks(params, amplify, kappa)
    if group.get("fused") or _uses_foreach(params, group["foreach"]):
        batch_step = _adam_kernel if group.get("fused") else _adam_foreach
        for indices in _device_batches(params):
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
                None if mask is None else _as_bytes(mask))
    for p_part, grad, exp_avg, exp_avg_sq, max_sq, flat in _chunks(*operands):
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
            decayed, flat = _flat_parts(ms, ps)
            _addcmul_flat_(decayed, decayed, flat, _decay_factor(lr, weight_decay, kappa))
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
    scaled, flat = _flat_parts(ms, denom)
    _addcmul_flat_(scaled, scaled, flat, -kappa / (1 + kappa))
    torch._foreach_addcdiv_(ps, exp_avgs, denom, step_size)


def _adam_kernel(ps, ss, ms, lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, kappa):
    """``torch.optim.adam._fused_adam`` (``fused=True``) for one device and
    dtype, amplified.

    torch's own kernel takes every step, so every coordinate first gets the
    base update bit for bit. Amplified tensors go through the kernel in groups
    of about one slice (small tensors together, a large one a slice at a time
    on the CPU; off the CPU, groups of up to ``_DEVICE_SCRATCH`` coordinates,
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
            for *part, flat in _chunks(*tensors, _as_bytes(mask), align=_KERNEL_ALIGN):
                pieces.append((*part, step))
                flats.append(flat)
    if not pieces:
        return
    size = _slice_size(_KERNEL_ALIGN) if ps[0].device.type == "cpu" else _DEVICE_SCRATCH
    sizes = [piece[0].numel() for piece in pieces]
    groups = _groups(sizes, size)
    scratch = torch.empty(max(sum(sizes[j] for j in group) for group in groups),
                          dtype=ps[0].dtype, device=ps[0].device)
    for group in groups:
        targets = [pieces[j][0] for j in group]
        befores = views_like(scratch, targets)
        torch._foreach_copy_(befores, targets)
        run([pieces[j] for j in group])
        torch._foreach_sub_(befores, targets)  # −Δ
        _addcmul_flat_(targets, befores, [flats[j] for j in group], -kappa)


def _groups(sizes: Sequence[int], limit: int) -> list[list[int]]:
    """Consecutive indices packed into groups of at most ``limit`` in total
    (a larger entry forms a group of its own)."""
    groups, current, total = [], [], 0
    for j, n in enumerate(sizes):
        if current and total + n > limit:
            groups.append(current)
            current, total = [], 0
        current.append(j)
        total += n
    if current:
        groups.append(current)
    return groups
