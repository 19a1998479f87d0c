"""ire_core must stay framework-free: importing it (and using it on NumPy)
loads none of torch, jax, tensorflow, keras or optax, even when installed."""

import subprocess
import sys

FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "keras", "optax")

PROGRAM = f"""
import sys
import numpy as np
import ire_core, ire_core.reference, ire_core.draws
mask = ire_core.select_flat_mask([np.arange(4.0)], 0.5).mask
ire_core.amplify_update(np.ones(4), mask[0], 2.0)
loaded = [name for name in {FRAMEWORKS!r} if name in sys.modules]
print(",".join(loaded))
"""


def test_ire_core_imports_no_framework():
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
