"""Hyperparameters of IRE, validated once at construction.

Every backend builds an :class:`IREConfig` from its keyword arguments, so a bad
value gets the same error message whatever the framework.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable

ESTIMATORS = ("gradient", "fisher", "hutchinson", "exact")
"""Names of the built-in curvature estimators (see docs/algorithm.md, Estimators)."""

Schedule = float | Callable[[int], float]
"""A constant, or a function of the 0-based optimizer step."""

Estimator = str | Callable


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_kappa(value, name: str = "kappa") -> None:
    """Raises ``ValueError`` unless ``value`` is a finite number >= 0."""
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_flat_fraction(value, name: str = "flat_fraction") -> None:
    """Raises ``ValueError`` unless ``value`` is a number in [0, 1]."""
    if not _is_real(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


def check_schedule(value, check: Callable, name: str) -> None:
    """Accepts a callable as is; checks a constant with ``check``."""
    if not callable(value):
        check(value, name)


def check_positive_int(value, name: str, minimum: int = 1) -> None:
    """Raises ``ValueError`` unless ``value`` is an integer >= ``minimum``."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_unit_interval_open(value, name: str) -> None:
    """Raises ``ValueError`` unless ``value`` is a number in [0, 1)."""
    if not _is_real(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")


def check_non_negative(value, name: str) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite number >= 0."""
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_positive(value, name: str) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite number > 0."""
    if not _is_real(value) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_estimator(value, name: str = "estimator") -> None:
    """Raises ``ValueError`` unless ``value`` is a known name or a callable."""
    if callable(value):
        return
    if not isinstance(value, str) or value not in ESTIMATORS:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, ESTIMATORS))} or a "
            f"callable, got {value!r}"
        )


def check_bool(value, name: str) -> None:
    """Raises ``TypeError`` unless ``value`` is a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


@dataclasses.dataclass(frozen=True)
class IREConfig:
    """The hyperparameters of IRE (and of SAM-IRE when ``rho > 0``).

    Attributes:
      kappa: amplification κ >= 0 of the update on flat coordinates, or a
        function ``step -> κ``.
      flat_fraction: fraction γ in [0, 1] of all coordinates marked flat, or a
        function ``step -> γ``.
      interval: the mask is refreshed every ``interval`` optimizer steps (K).
      ema: decay β in [0, 1) of the curvature moving average (0: no average).
      start_step: IRE is inactive before this optimizer step (warm-up).
      estimator: ``"gradient"``, ``"fisher"``, ``"hutchinson"``, ``"exact"``
        or a callable returning per-coordinate curvature.
      num_probes: Rademacher probes per Hutchinson estimate.
      kappa_follows_lr: scale κ with the learning-rate schedule,
        κ_t = κ · lr_t / lr_peak.
      rho: SAM radius; 0 disables the SAM perturbation.
      adaptive: use adaptive SAM (ASAM), e = ρ·θ²g / ‖θg‖.
      sam_eps: added to the norm in the SAM perturbation.

    Example:
      >>> from ire_core import IREConfig
      >>> IREConfig(kappa=2.0, flat_fraction=0.6).interval
      10
      >>> IREConfig(kappa=-1.0)
      Traceback (most recent call last):
      ...
      ValueError: kappa must be a finite number >= 0, got -1.0
    """

    kappa: Schedule = 2.0
    flat_fraction: Schedule = 0.6
    interval: int = 10
    ema: float = 0.0
    start_step: int = 0
    estimator: Estimator = "gradient"
    num_probes: int = 1
    kappa_follows_lr: bool = False
    rho: float = 0.0
    adaptive: bool = False
    sam_eps: float = 1e-12

    def __post_init__(self):
        check_schedule(self.kappa, check_kappa, "kappa")
        check_schedule(self.flat_fraction, check_flat_fraction, "flat_fraction")
        check_positive_int(self.interval, "interval")
        check_unit_interval_open(self.ema, "ema")
        check_positive_int(self.start_step, "start_step", minimum=0)
        check_estimator(self.estimator)
        check_positive_int(self.num_probes, "num_probes")
        check_bool(self.kappa_follows_lr, "kappa_follows_lr")
        check_non_negative(self.rho, "rho")
        check_bool(self.adaptive, "adaptive")
        check_positive(self.sam_eps, "sam_eps")

    def keywords(self, *exclude: str) -> dict:
        """The fields as keyword arguments (the adapters' constructors take
        the same names), without those named in ``exclude``.

        Example:
          >>> IREConfig().keywords("estimator", "rho", "adaptive", "sam_eps")["interval"]
          10
        """
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name not in exclude
        }

    def replace(self, **changes) -> IREConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)
