"""JAX test set-up: two host CPU devices (for the sharding tests) and float64.

XLA reads the device count once, when JAX initialises its backend, so the
flag is set here, before any test module imports JAX.
"""

import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
).strip()

# The conformance package lives at the repository root (it is not installed).
ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
