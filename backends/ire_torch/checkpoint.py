"""The saved form of IRE's own state inside a torch ``state_dict``.

:meth:`ire_torch.IRE.state_dict` is the base optimizer's ``state_dict`` plus
one ``"ire"`` entry, made of tensors, numbers, lists and dicts only (it loads
with ``torch.load(..., weights_only=True)``). Parameters are keyed by their
index in ``param_groups`` order, as torch keys ``"state"``.

``"ire"`` holds:

* ``"step"``, ``"refreshes"``: IRE's step counter and the number of
  refreshes taken;
* ``"masks"``: ``{index: bool tensor}``, the flat mask of each parameter;
* ``"curvature"``: ``{index: tensor}``, the curvature average, where
  ``ema > 0``;
* ``"last_refresh"``: ``{"step", "threshold", "params"}`` of the last
  refresh, or ``None``;
* ``"draws"``: the random generator's state, so that a resumed run draws
  what the uninterrupted run would have.

Example:
  >>> import torch
  >>> from ire_torch import SGDIRE
  >>> param = torch.nn.Parameter(torch.ones(3))
  >>> opt = SGDIRE([param], lr=0.1, kappa=1.0, flat_fraction=0.5)
  >>> param.grad = torch.tensor([1.0, 2.0, 3.0])
  >>> opt.step()
  >>> saved = ire_state(opt)
  >>> saved["step"], saved["masks"][0].tolist()
  (1, [True, False, False])
"""

from __future__ import annotations

import torch

__all__ = ["ire_state", "load_ire_state"]


def ire_state(opt) -> dict:
    """The ``"ire"`` entry of ``opt.state_dict()`` (``opt`` an
    :class:`ire_torch.IRE`)."""
    index = {id(p): i for i, p in enumerate(opt._all_params())}
    last = None
    if opt._last_refresh is not None:
        step, threshold, params = opt._last_refresh
        last = {"step": step, "threshold": threshold, "params": [index[id(p)] for p in params]}
    return {
        "step": opt._ire_step,
        "refreshes": opt._refreshes,
        "masks": {index[id(p)]: e["mask"] for p, e in opt._ire_state.items()},
        "curvature": {
            index[id(p)]: e["curvature"] for p, e in opt._ire_state.items() if "curvature" in e
        },
        "last_refresh": last,
        "draws": opt._draws.state_dict(),
    }


def load_ire_state(opt, saved: dict) -> None:
    """Restores ``opt``'s IRE state from an ``"ire"`` entry made by
    :func:`ire_state`; masks and averages go to their parameters' devices."""
    params = opt._all_params()
    masks, curvature = saved["masks"], saved["curvature"]
    for i, mask in masks.items():
        p = params[int(i)]
        entry = {"mask": mask.to(device=p.device, dtype=torch.bool)}
        if i in curvature:
            entry["curvature"] = curvature[i].to(device=p.device)
        opt._ire_state[p] = entry
    opt._ire_step = int(saved["step"])
    opt._refreshes = int(saved["refreshes"])
    last = saved["last_refresh"]
    if last is not None:
        opt._last_refresh = (
            last["step"], last["threshold"], [params[int(i)] for i in last["params"]]
        )
    opt._draws.load_state_dict(saved["draws"])
