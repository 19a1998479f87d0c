"""κ and γ as constants or functions of the step, and κ following the LR."""

from __future__ import annotations

import numbers

from .config import IREConfig, check_flat_fraction, check_kappa, check_positive


def value_at(schedule, step):
    """The value of a constant or callable schedule at ``step``.

    Example:
      >>> value_at(0.5, 3), value_at(lambda t: 0.1 * t, 3)
      (0.5, 0.30000000000000004)
    """
    return schedule(step) if callable(schedule) else schedule


def _checked(value, check, name):
    # Host values are checked; traced arrays (inside jit) cannot be.
    if isinstance(value, numbers.Real):
        check(value, name)
    return value


def kappa_at(config: IREConfig, step, lr=None, peak_lr=None):
    """κ_t: the κ schedule at ``step``, scaled by ``lr / peak_lr`` when
    ``config.kappa_follows_lr`` is set.

    Example:
      >>> from ire_core import IREConfig
      >>> config = IREConfig(kappa=2.0, kappa_follows_lr=True)
      >>> kappa_at(config, step=5, lr=0.05, peak_lr=0.1)
      1.0
    """
    kappa = _checked(value_at(config.kappa, step), check_kappa, "kappa schedule value")
    if config.kappa_follows_lr:
        if lr is None or peak_lr is None:
            raise ValueError(
                "kappa_follows_lr=True needs the current lr and the peak lr, "
                f"got lr={lr!r}, peak_lr={peak_lr!r}"
            )
        if isinstance(peak_lr, numbers.Real):
            check_positive(peak_lr, "peak_lr")
        kappa = kappa * (lr / peak_lr)
    return kappa


def flat_fraction_at(config: IREConfig, step):
    """γ_t: the flat-fraction schedule at ``step``, checked to lie in [0, 1].

    Example:
      >>> from ire_core import IREConfig
      >>> flat_fraction_at(IREConfig(flat_fraction=lambda t: 0.5), 7)
      0.5
    """
    return _checked(
        value_at(config.flat_fraction, step), check_flat_fraction, "flat_fraction schedule value"
    )
