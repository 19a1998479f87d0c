"""Every conformance driver: the NumPy reference and one per backend.

Backend drivers are imported lazily, one module each. A module that is
missing or fails to import (typically because its framework is not
installed) becomes an :class:`UnavailableDriver` that carries the reason, so
the suite reports the backend as skipped with that reason instead of failing
or silently leaving it out.

Adding a backend means adding one driver module and one entry to
``_BACKENDS`` below.

Example:
  >>> from conformance.drivers import all_drivers
  >>> drivers = all_drivers()
  >>> drivers[0].name, drivers[0].available() is None
  ('numpy-reference', True)
  >>> all(d.available() is None or isinstance(d.available(), str) for d in drivers)
  True
"""

from __future__ import annotations

import functools
import importlib

from .reference_driver import ReferenceDriver

__all__ = ["BACKEND_NAMES", "UnavailableDriver", "all_drivers", "backend_drivers"]

# module, how to get the drivers from it, the names its drivers report.
_BACKENDS = (
    ("torch_driver", lambda module: [module.TorchDriver()], ("torch",)),
    ("jax_driver", lambda module: [module.JaxDriver()], ("jax",)),
    (
        "keras_driver",
        lambda module: list(module.drivers()),
        ("keras-tensorflow", "keras-jax", "keras-torch"),
    ),
)

BACKEND_NAMES = tuple(name for _, _, names in _BACKENDS for name in names)
"""The backend drivers the suite expects, in report order."""


class UnavailableDriver:
    """Stands in for a backend driver that cannot run here.

    Args:
      name: the backend's name.
      reason: why it cannot run (shown as the skip reason).

    Example:
      >>> UnavailableDriver("torch", "torch is not installed").available()
      'torch is not installed'
    """

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason

    def available(self) -> str:
        return self.reason

    def run(self, scenario):
        raise RuntimeError(f"driver {self.name!r} is unavailable: {self.reason}")

    def __repr__(self) -> str:
        return f"UnavailableDriver({self.name!r}, {self.reason!r})"


def _load(module_name: str, make, names: tuple) -> list:
    qualified = f"{__name__}.{module_name}"
    try:
        module = importlib.import_module(qualified)
    except ModuleNotFoundError as error:
        if error.name == qualified:
            reason = f"no driver module {qualified}"
        else:
            reason = f"{qualified} needs {error.name!r}, which is not installed"
        return [UnavailableDriver(name, reason) for name in names]
    except Exception as error:  # any import failure is a skip reason
        reason = f"{qualified} failed to import: {type(error).__name__}: {error}"
        return [UnavailableDriver(name, reason) for name in names]
    try:
        return make(module)
    except Exception as error:
        reason = f"{qualified} could not build its drivers: {type(error).__name__}: {error}"
        return [UnavailableDriver(name, reason) for name in names]


@functools.cache
def _backend_drivers() -> tuple:
    drivers = []
    for module_name, make, names in _BACKENDS:
        drivers.extend(_load(module_name, make, names))
    return tuple(drivers)


def backend_drivers() -> list:
    """The backend drivers (not the reference), available or not.

    They are built once per process (importing a framework is slow), so
    every caller gets the same driver objects.
    """
    return list(_backend_drivers())


def all_drivers() -> list:
    """The reference driver first, then every backend driver."""
    return [ReferenceDriver(), *backend_drivers()]
