"""The torch internals the fused step relies on, each one feature-detected.

:mod:`ire_torch.fused` (with its step modules ``_fused_sgd`` and
``_fused_adam``) takes the base optimizer's step itself, so it relies on
parts of torch that are not public API. Every check for them is here.
Each answers "unknown" (``None`` or ``False``) when the installed torch does
not have what it looks for, and the caller then leaves the step to the
generic path (:mod:`ire_torch.amplify`: copy, base step, rescale), which
uses public API only.

* The ``torch._foreach_*`` ops: the multi-tensor ops of torch.optim's own
  foreach steps.
* ``torch._fused_adam_`` / ``torch._fused_adamw_``: the kernels of
  ``Adam(fused=True)`` / ``AdamW(fused=True)``.
* ``Optimizer._optimizer_step_pre_hooks`` / ``_optimizer_step_post_hooks``:
  the hooks registered on one optimizer, which a step taken outside its
  ``step`` would skip.
* The ``"decoupled_weight_decay"`` entry of an Adam/AdamW param group, which
  only some torch versions carry (where ``AdamW`` is an ``Adam`` with that
  flag set); without it, decoupled decay means ``AdamW``.

Example:
  >>> import torch
  >>> from ire_torch import _torch_internals as internals
  >>> params = [torch.nn.Parameter(torch.zeros(2))]
  >>> opt = torch.optim.AdamW(params)
  >>> internals.decoupled_weight_decay(opt, opt.param_groups[0])
  True
  >>> internals.has_step_hooks(opt)
  False
"""

from __future__ import annotations

import torch

__all__ = [
    "FOREACH_OPS_AVAILABLE",
    "decoupled_weight_decay",
    "fused_adam_kernel",
    "has_step_hooks",
]

# The foreach ops the fused step calls (all out of place or in place on lists).
_FOREACH_OPS = (
    "_foreach_add", "_foreach_add_", "_foreach_addcdiv_", "_foreach_addcmul_",
    "_foreach_copy_", "_foreach_div_", "_foreach_lerp_", "_foreach_maximum_",
    "_foreach_mul_", "_foreach_sqrt", "_foreach_sub_",
)
FOREACH_OPS_AVAILABLE = all(callable(getattr(torch, name, None)) for name in _FOREACH_OPS)
"""Whether the installed torch has every foreach op the fused step calls."""

_HOOK_ATTRIBUTES = ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks")


def fused_adam_kernel(decoupled: bool):
    """torch's fused Adam kernel (``torch._fused_adamw_`` for decoupled weight
    decay, else ``torch._fused_adam_``), or ``None`` where torch has none."""
    kernel = getattr(torch, "_fused_adamw_" if decoupled else "_fused_adam_", None)
    return kernel if callable(kernel) else None


def has_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    """Whether hooks are registered on ``optimizer``'s own ``step``; ``True``
    (take the base's ``step``) when this torch keeps them elsewhere."""
    hooks = [getattr(optimizer, name, None) for name in _HOOK_ATTRIBUTES]
    return any(h is None or len(h) > 0 for h in hooks)


def decoupled_weight_decay(optimizer: torch.optim.Optimizer, group: dict) -> bool:
    """Whether an Adam/AdamW ``group`` decays the weights directly (AdamW's
    θ ← (1 − lr·λ)·θ) rather than adding λ·θ to the gradient.

    Read from the group's ``"decoupled_weight_decay"`` where torch keeps it
    there; otherwise it is ``True`` exactly for ``torch.optim.AdamW``.
    """
    if "decoupled_weight_decay" in group:
        return bool(group["decoupled_weight_decay"])
    return isinstance(optimizer, torch.optim.AdamW)
