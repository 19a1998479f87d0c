"""IRE around the common torch.optim optimizers, built in one call.

Each class takes the base optimizer's own arguments plus the IRE keywords of
:class:`~ire_torch.IRE` (``kappa``, ``flat_fraction``, ``interval``, …).
"""

from __future__ import annotations

import torch

from .optimizer import IRE, IRE_KEYWORDS

__all__ = ["AdamIRE", "AdamWIRE", "SGDIRE", "split_ire_kwargs"]


def split_ire_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """Splits keyword arguments into ``(ire_kwargs, base_kwargs)``.

    Example:
      >>> split_ire_kwargs({"kappa": 2.0, "momentum": 0.9})
      ({'kappa': 2.0}, {'momentum': 0.9})
    """
    ire = {k: v for k, v in kwargs.items() if k in IRE_KEYWORDS}
    base = {k: v for k, v in kwargs.items() if k not in IRE_KEYWORDS}
    return ire, base


def _checked_params(params) -> list:
    if isinstance(params, torch.Tensor):
        raise TypeError(
            "params must be an iterable of tensors or of param group dicts, got a single "
            "tensor (wrap it in a list)"
        )
    params = list(params)
    if not params:
        raise ValueError("params must hold at least one tensor, got an empty parameter list")
    return params


class _Built(IRE):
    base_class: type = torch.optim.Optimizer

    def __init__(self, params, lr=1e-3, **kwargs):
        ire_kwargs, base_kwargs = split_ire_kwargs(kwargs)
        base = self.base_class(_checked_params(params), lr=lr, **base_kwargs)
        super().__init__(base, **ire_kwargs)


class SGDIRE(_Built):
    """IRE around ``torch.optim.SGD``.

    Args:
      params: parameters or param group dicts.
      lr: learning rate.
      **kwargs: ``torch.optim.SGD`` arguments (``momentum``, ``nesterov``,
        ``weight_decay``, …) and IRE keywords (``kappa``, ``flat_fraction``,
        ``interval``, ``estimator``, …).

    Example:
      >>> import torch
      >>> from ire_torch import SGDIRE
      >>> model = torch.nn.Linear(3, 1)
      >>> opt = SGDIRE(model.parameters(), lr=0.1, momentum=0.9, kappa=1.0)
      >>> opt.param_groups[0]["momentum"], opt.config.kappa
      (0.9, 1.0)
    """

    base_class = torch.optim.SGD


class AdamIRE(_Built):
    """IRE around ``torch.optim.Adam``.

    Example:
      >>> import torch
      >>> from ire_torch import AdamIRE
      >>> opt = AdamIRE(torch.nn.Linear(3, 1).parameters(), lr=1e-3, kappa=2.0)
      >>> type(opt.base_optimizer).__name__
      'Adam'
    """

    base_class = torch.optim.Adam


class AdamWIRE(_Built):
    """IRE around ``torch.optim.AdamW`` (the authors' choice for language models).

    Example:
      >>> import torch
      >>> from ire_torch import AdamWIRE
      >>> model = torch.nn.Linear(3, 1)
      >>> opt = AdamWIRE(model.parameters(), lr=6e-4, weight_decay=0.1, kappa=3.0,
      ...                flat_fraction=0.6, interval=10)
      >>> opt.param_groups[0]["weight_decay"]
      0.1
    """

    base_class = torch.optim.AdamW
