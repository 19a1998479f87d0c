"""IRE hyperparameters as seen by a JAX transformation.

Constants are validated by :class:`ire_core.IREConfig`, so a bad value raises
the same error in every framework. Under ``optax.inject_hyperparams`` the
numeric hyperparameters arrive as arrays, traced inside ``jax.jit``: concrete
arrays are checked like Python numbers, traced ones are used as they are (a
traced value cannot be inspected).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ire_core import IREConfig
from ire_core.threshold import with_exact_rank

from .selection import exact_threshold

__all__ = ["STATIC_ARGS", "Hyperparams", "lr_value", "resolve"]

STATIC_ARGS = ("ema", "num_probes", "estimator", "learning_rate", "threshold_fn")
"""Arguments of :func:`ire_jax.ire` / :func:`ire_jax.sam_ire` that shape the
computation or the state and cannot be traced (or would be mistaken for
schedules): pass them as ``static_args`` to ``optax.inject_hyperparams``.
Every other numeric argument (κ, γ, interval, start step, ρ, lr_peak) may be
injected and changed without recompiling."""


def _is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def _concrete(value):
    """A 0-d concrete array as a Python number; anything else unchanged."""
    if _is_traced(value):
        return value
    if isinstance(value, (jax.Array, np.ndarray, np.generic)) and np.ndim(value) == 0:
        return np.asarray(value).item()
    return value


class _Constant:
    """A traced constant posing as a schedule, so ``ire_core`` evaluates it
    without checking it (a traced value cannot be checked)."""

    def __init__(self, value):
        self.value = value

    def __call__(self, step):
        del step
        return self.value


@dataclasses.dataclass(frozen=True)
class Hyperparams:
    """Validated hyperparameters of one IRE transformation.

    Attributes:
      config: the :class:`ire_core.IREConfig` (traced κ, γ appear in it as
        constant schedules; traced integers and ρ are replaced by defaults
        there and kept in the fields below).
      interval: refresh period K (int or traced integer).
      start_step: first active step (int or traced integer).
      ema: curvature moving-average decay β (float or traced).
      num_probes: Hutchinson probes per refresh (int or traced integer).
      rho: SAM radius ρ (float or traced).
      sam_eps: added to the norm of the SAM perturbation (float or traced).
      seed: seed of the state's PRNG key (int or traced integer).
      peak_lr: lr_peak for ``kappa_follows_lr`` (or ``None``).
      learning_rate: the inner optimizer's learning rate or schedule, if given.
      threshold_fn: ``(values, k) -> τ`` used by the mask selection.
    """

    config: IREConfig
    interval: Any
    start_step: Any
    ema: Any
    num_probes: Any
    rho: Any
    sam_eps: Any
    seed: Any
    peak_lr: Any
    learning_rate: Any
    threshold_fn: Callable = exact_threshold

    def static_probes(self) -> int:
        """The number of Hutchinson probes, which fixes the traced graph."""
        if _is_traced(self.num_probes):
            raise TypeError(
                "num_probes must be a Python value, got a traced array; with "
                "optax.inject_hyperparams, list 'num_probes' in static_args "
                "(see ire_jax.STATIC_ARGS)"
            )
        return self.num_probes

    @property
    def keeps_average(self) -> bool:
        """Whether the state holds a curvature moving average."""
        if _is_traced(self.ema):
            raise TypeError(
                "ema must be known when the state is built, got a traced value; "
                "with optax.inject_hyperparams, list 'ema' in static_args "
                "(see ire_jax.STATIC_ARGS)"
            )
        return self.ema > 0


def _split(value, placeholder):
    """(value for IREConfig, value for the computation): a traced value is
    checked as ``placeholder`` (it cannot be inspected) and used as is."""
    value = _concrete(value)
    if _is_traced(value) or isinstance(value, jax.Array):
        return placeholder, value
    return value, value


def _schedule(value, name: str):
    value = _concrete(value)
    if _is_traced(value) or isinstance(value, jax.Array):
        return _Constant(value)
    if isinstance(value, np.ndarray):
        raise ValueError(
            f"{name} must be a number or a schedule, got an array of shape {value.shape}"
        )
    return value


def resolve(
    *,
    kappa,
    flat_fraction,
    interval,
    ema,
    start_step,
    estimator,
    num_probes,
    kappa_follows_lr,
    peak_lr,
    learning_rate,
    seed,
    rho=0.0,
    adaptive=False,
    sam_eps=1e-12,
    threshold_fn=None,
) -> Hyperparams:
    """Checks every argument and returns the :class:`Hyperparams`.

    Raises:
      ValueError / TypeError naming the argument and the bad value.

    Example:
      >>> from ire_jax._hyperparams import resolve
      >>> hp = resolve(kappa=2.0, flat_fraction=0.5, interval=10, ema=0.0,
      ...              start_step=0, estimator="gradient", num_probes=1,
      ...              kappa_follows_lr=False, peak_lr=None, learning_rate=None, seed=0)
      >>> hp.config.kappa, hp.interval
      (2.0, 10)
    """
    interval_cfg, interval = _split(interval, 1)
    start_cfg, start_step = _split(start_step, 0)
    ema_cfg, ema = _split(ema, 0.0)
    rho_cfg, rho = _split(rho, 0.0)
    seed_cfg, seed = _split(seed, 0)
    probes_cfg, num_probes = _split(num_probes, 1)
    sam_eps_cfg, sam_eps = _split(sam_eps, 1e-12)
    config = IREConfig(
        kappa=_schedule(kappa, "kappa"),
        flat_fraction=_schedule(flat_fraction, "flat_fraction"),
        interval=interval_cfg,
        ema=ema_cfg,
        start_step=start_cfg,
        estimator=estimator,
        num_probes=probes_cfg,
        kappa_follows_lr=kappa_follows_lr,
        rho=rho_cfg,
        adaptive=adaptive,
        sam_eps=sam_eps_cfg,
    )
    if not isinstance(seed_cfg, numbers.Integral) or isinstance(seed_cfg, bool):
        raise ValueError(f"seed must be an integer, got {seed_cfg!r}")
    peak_lr = _concrete(peak_lr)
    learning_rate = _concrete(learning_rate)
    if kappa_follows_lr:
        if peak_lr is None:
            raise ValueError(
                "kappa_follows_lr=True needs peak_lr (the largest learning rate), got None"
            )
        if isinstance(peak_lr, numbers.Number) and not (peak_lr > 0 and np.isfinite(peak_lr)):
            raise ValueError(f"peak_lr must be a finite number > 0, got {peak_lr!r}")
        if learning_rate is not None and not (
            callable(learning_rate) or isinstance(learning_rate, (numbers.Real, jax.Array))
        ):
            raise ValueError(
                f"learning_rate must be a number, a schedule or None, got {learning_rate!r}"
            )
    if threshold_fn is None:
        threshold_fn = exact_threshold
    elif not callable(threshold_fn):
        raise ValueError(
            f"threshold_fn must be a callable (values, k) -> threshold or None, got {threshold_fn!r}"
        )
    else:  # a SampledThreshold's sample is ranked by the bit-pattern search, not XLA's sort
        threshold_fn = with_exact_rank(threshold_fn, exact_threshold)
    return Hyperparams(
        config,
        interval,
        start_step,
        ema,
        num_probes,
        rho,
        sam_eps,
        seed,
        peak_lr,
        learning_rate,
        threshold_fn,
    )


def lr_value(learning_rate: Callable | Any, step):
    """The learning rate at ``step`` from a constant or a schedule."""
    return learning_rate(step) if callable(learning_rate) else learning_rate
