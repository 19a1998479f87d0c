"""Which framework runs a benchmark, and what it needs installed.

Example:
  >>> require_backend("torch") is None
  True
  >>> require_backend("mxnet")
  Traceback (most recent call last):
  ...
  ValueError: backend must be one of 'torch', 'jax', 'keras', got 'mxnet'
"""

from __future__ import annotations

import importlib

__all__ = ["BACKENDS", "require_backend"]

BACKENDS = {
    # backend: ((module, attribute or None, pip extra), ...)
    "torch": (("torch", None, "torch"), ("ire_torch", "AdamWIRE", "torch")),
    "jax": (("jax", None, "jax"), ("optax", None, "jax"), ("ire_jax", "ire", "jax")),
    "keras": (("keras", None, "keras"), ("ire_keras", "IRE", "keras")),
}
"""The modules (and the attribute each must provide) a backend needs."""


def require_backend(name: str) -> str | None:
    """``None`` when ``name`` can run, else a message naming what is missing.

    Raises:
      ValueError: if ``name`` is not a known backend.
    """
    if name not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}"
        )
    for module, attribute, extra in BACKENDS[name]:
        try:
            loaded = importlib.import_module(module)
        except ImportError as error:
            return (
                f"The {name} backend needs the package {module!r}, which is not importable "
                f"({error}). Install it with: pip install 'ire-optim[{extra}]'"
            )
        if attribute is not None and not hasattr(loaded, attribute):
            return (
                f"The {name} backend needs {module}.{attribute}, which this installation of "
                f"{module!r} does not provide; install a release that has it: "
                f"pip install 'ire-optim[{extra}]'"
            )
    return None
