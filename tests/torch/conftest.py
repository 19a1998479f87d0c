"""Shared set-up of the ire_torch tests.

The ``conformance`` package (the problems, scenarios and drivers the
equivalence tests reuse) lives at the repository root and is not installed;
it is made importable here whatever the working directory. Tiny models run
fastest on one intra-op thread.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

torch.set_num_threads(1)
