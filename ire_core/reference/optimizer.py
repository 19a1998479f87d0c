"""IRE and SAM-IRE on top of a NumPy base optimizer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from ..combine import amplify_displacement
from ..config import IREConfig
from ..curvature import blend, squared
from ..mask import select_flat_mask
from ..sam import sam_perturbation
from ..schedules import flat_fraction_at, kappa_at
from ..timing import is_active, is_refresh_step


class IREState(NamedTuple):
    """State of :class:`ReferenceIRE`.

    Attributes:
      step: optimizer steps completed.
      base: the base optimizer's state.
      mask: the flat mask in force (``None`` before the first refresh).
      curvature: the curvature moving average (``None`` unless ``ema > 0``).
      threshold: τ of the last refresh (``inf`` before the first).
      refreshes: how many refreshes happened.
    """

    step: int
    base: object
    mask: list | None
    curvature: list | None
    threshold: float
    refreshes: int


class ReferenceIRE:
    """IRE around a base optimizer from :mod:`ire_core.reference.bases`.

    Args:
      base: an object with ``init``, ``step`` and ``lr``.
      config: the IRE hyperparameters.
      peak_lr: lr_peak for ``kappa_follows_lr`` (default: ``base.lr``).

    The curvature source is given per step: ``curvature=None`` uses the
    gradient proxy (``estimator="gradient"``); otherwise pass the raw estimate
    (a list of arrays) or a zero-argument callable returning it, which is only
    called on refresh steps.
    """

    def __init__(self, base, config: IREConfig, peak_lr: float | None = None):
        self.base = base
        self.config = config
        self.peak_lr = base.lr if peak_lr is None else peak_lr

    def init(self, params: Sequence[np.ndarray]) -> IREState:
        return IREState(0, self.base.init(params), None, None, float("inf"), 0)

    def _refresh(self, state: IREState, grads, curvature) -> IREState:
        config = self.config
        if curvature is None:
            if config.estimator != "gradient":
                raise ValueError(
                    f"estimator={config.estimator!r} needs a curvature estimate on "
                    "refresh steps, got curvature=None"
                )
            estimate = squared(grads)
        else:
            estimate = curvature() if callable(curvature) else list(curvature)
        beta = config.ema
        average, selection = blend(state.curvature, estimate, beta)
        gamma = flat_fraction_at(config, state.step)
        selected = select_flat_mask(selection, gamma, previous=state.mask)
        return state._replace(
            mask=selected.mask,
            curvature=average if beta > 0 else None,
            threshold=float(selected.threshold),
            refreshes=state.refreshes + 1,
        )

    def step(
        self,
        params: Sequence[np.ndarray],
        grads: Sequence[np.ndarray],
        state: IREState,
        *,
        curvature: Sequence | Callable | None = None,
        lr: float | None = None,
    ) -> tuple[list, IREState]:
        """One IRE step: refresh the mask if due, step the base, amplify."""
        config = self.config
        t = state.step
        if is_refresh_step(t, config.interval, config.start_step):
            state = self._refresh(state, grads, curvature)
        moved, base_state = self.base.step(params, grads, state.base, lr=lr)
        if is_active(t, config.start_step):
            current_lr = self.base.lr if lr is None else lr
            kappa = kappa_at(config, t, lr=current_lr, peak_lr=self.peak_lr)
            moved = [
                amplify_displacement(new, old, m, kappa)
                for new, old, m in zip(moved, params, state.mask)
            ]
        return moved, state._replace(step=t + 1, base=base_state)

    def sam_step(
        self,
        params: Sequence[np.ndarray],
        grad_fn: Callable[[list], list],
        state: IREState,
        *,
        curvature: Sequence | Callable | None = None,
        lr: float | None = None,
    ) -> tuple[list, IREState]:
        """One SAM-IRE step: g at θ, g̃ at θ + e, base step with g̃, IRE.

        The ``gradient`` estimator uses g (the gradient at θ, not at θ + e).
        """
        config = self.config
        grads = grad_fn(list(params))
        e = sam_perturbation(grads, params, config.rho, config.adaptive, config.sam_eps)
        sharp_grads = grad_fn([p + d for p, d in zip(params, e)])
        if curvature is None and config.estimator == "gradient":
            curvature = squared(grads)
        return self.step(params, sharp_grads, state, curvature=curvature, lr=lr)
