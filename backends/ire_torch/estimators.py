"""The curvature estimators and what feeds them.

Each estimator turns :class:`CurvatureInputs` into one non-negative-ish value
per coordinate (signs are removed at selection). The autodiff pieces are
computed here natively; turning them into ĥ is done by :mod:`ire_core`
(``squared``, ``hutchinson``, ``sample_labels``).

============  ==========================================  ==========================
estimator     ĥ                                           needs on refresh steps
============  ==========================================  ==========================
gradient      g ⊙ g of the training gradient               nothing
fisher        (∇ CE(logits, ŷ))², ŷ ~ softmax(logits)      ``logits_fn``
hutchinson    mean over probes of z ⊙ (H z)               ``loss_fn``
exact         the exact Hessian diagonal (small models)    ``loss_fn``
callable      ``estimator(params, grads)``                 whatever it closes over
============  ==========================================  ==========================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

import ire_core

from ._views import views_like
from .autodiff import hessian_diagonal, hessian_vector_products
from .distributed import CurvatureSync
from .draws import Draws

__all__ = ["CurvatureInputs", "check_sources", "estimate_curvature"]

_HALF = (torch.float16, torch.bfloat16)


class CurvatureInputs(NamedTuple):
    """Everything an estimator may use at a refresh.

    Attributes:
      step: the 0-based optimizer step of the refresh.
      params: the parameters receiving curvature.
      grads: the training gradients of ``params`` at the current parameters.
      loss_fn: zero-argument callable returning the scalar loss, or ``None``.
      logits_fn: zero-argument callable returning ``(..., classes)`` logits,
        or ``None``.
      draws: the source of probes and label uniforms.
      num_probes: Hutchinson probes per estimate.
      sync: averaging across data-parallel ranks.
    """

    step: int
    params: list
    grads: list
    loss_fn: Callable | None
    logits_fn: Callable | None
    draws: Draws
    num_probes: int
    sync: CurvatureSync


def _wide(t: torch.Tensor) -> torch.Tensor:
    # Half-precision curvature would tie most coordinates: use float32.
    return t.float() if t.dtype in _HALF else t


def _require(fn, name, estimator, step):
    if fn is None:
        raise ValueError(
            f"estimator={estimator!r} needs {name} on refresh steps (step {step}): pass "
            f"step(..., {name}=...) or call set_curvature_source({name}=...)"
        )
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    return fn


def _squares(grads: list) -> list:
    """:func:`ire_core.squared` of ``grads`` (widened), written into
    consecutive views of one buffer when they share a device and a dtype.

    The values are the same; the threshold then ranks the buffer as one
    tensor instead of one tensor per parameter, without copying it
    (:func:`ire_torch.selection.exact_threshold`).
    """
    grads = [_wide(g) for g in grads]
    if len({(g.device, g.dtype) for g in grads}) != 1:
        return ire_core.squared(grads)
    buffer = torch.empty(sum(g.numel() for g in grads), dtype=grads[0].dtype,
                         device=grads[0].device)
    squares = views_like(buffer, grads)
    for g, square in zip(grads, squares):
        torch.mul(g, g, out=square)
    return squares


def _gradient(inputs: CurvatureInputs) -> list:
    return _squares(inputs.grads)


def _fisher(inputs: CurvatureInputs) -> list:
    logits_fn = _require(inputs.logits_fn, "logits_fn", "fisher", inputs.step)
    with torch.enable_grad():
        logits = logits_fn()
        if not isinstance(logits, torch.Tensor) or logits.ndim < 1:
            raise ValueError(
                "logits_fn must return a tensor of logits of shape (..., classes), got "
                f"{type(logits).__name__ if not isinstance(logits, torch.Tensor) else tuple(logits.shape)}"
            )
        if logits.grad_fn is None:
            raise ValueError(
                "logits_fn must return logits computed from the parameters with gradients "
                "enabled (a tensor with a grad_fn), got one without a grad_fn"
            )
        wide = logits.double() if logits.dtype == torch.float64 else logits.float()
        uniforms = inputs.draws.label_uniforms(
            inputs.step, tuple(wide.shape[:-1]), wide.device, wide.dtype
        )
        labels = ire_core.sample_labels(wide.detach(), uniforms)
        loss = F.cross_entropy(wide.reshape(-1, wide.shape[-1]), labels.reshape(-1).long())
        grads = torch.autograd.grad(loss, inputs.params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(inputs.params, grads)]
    return _squares(inputs.sync.average([_wide(g) for g in grads]))


def _hutchinson(inputs: CurvatureInputs) -> list:
    loss_fn = _require(inputs.loss_fn, "loss_fn", "hutchinson", inputs.step)
    probes = inputs.draws.probes(inputs.step, inputs.params, inputs.num_probes)
    products = hessian_vector_products(loss_fn, inputs.params, probes)
    products = [inputs.sync.average([_wide(hz) for hz in product]) for product in products]
    probes = [[_wide(z) for z in probe] for probe in probes]
    return ire_core.hutchinson(probes, products)


def _exact(inputs: CurvatureInputs) -> list:
    loss_fn = _require(inputs.loss_fn, "loss_fn", "exact", inputs.step)
    diagonal = hessian_diagonal(loss_fn, inputs.params)
    return inputs.sync.average([_wide(d) for d in diagonal])


def _user(estimator: Callable, inputs: CurvatureInputs) -> list:
    values = estimator(list(inputs.params), list(inputs.grads))
    values = list(values) if values is not None else []
    if len(values) != len(inputs.params):
        raise ValueError(
            f"the estimator callable must return one tensor per parameter receiving "
            f"curvature ({len(inputs.params)}), got {len(values)}"
        )
    out = []
    for i, (v, p) in enumerate(zip(values, inputs.params)):
        v = torch.as_tensor(v, device=p.device)
        if v.shape != p.shape:
            raise ValueError(
                f"the estimator callable returned shape {tuple(v.shape)} for parameter {i}, "
                f"expected {tuple(p.shape)}"
            )
        out.append(_wide(v.detach()))
    return inputs.sync.average(out)


_BUILTIN = {"gradient": _gradient, "fisher": _fisher, "hutchinson": _hutchinson, "exact": _exact}


def estimate_curvature(estimator: str | Callable, inputs: CurvatureInputs) -> list:
    """The raw curvature estimate ĥ, one tensor per parameter in ``inputs``.

    Half-precision estimates are returned in float32.

    Example:
      >>> import torch
      >>> w = torch.tensor([1.0, -2.0], requires_grad=True)
      >>> inputs = CurvatureInputs(0, [w], [torch.tensor([0.5, 3.0])], None, None,
      ...                          Draws(), 1, CurvatureSync())
      >>> estimate_curvature("gradient", inputs)[0].tolist()
      [0.25, 9.0]
    """
    if callable(estimator):
        return _user(estimator, inputs)
    return [h.detach() for h in _BUILTIN[estimator](inputs)]


def check_sources(loss_fn, logits_fn) -> None:
    """Raises ``TypeError`` unless each source is ``None`` or callable."""
    for name, fn in (("loss_fn", loss_fn), ("logits_fn", logits_fn)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")

