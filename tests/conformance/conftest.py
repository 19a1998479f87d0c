"""Shared set-up of the conformance tests.

The ``conformance`` package lives at the repository root and is not
installed; it is made importable here whatever the working directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
