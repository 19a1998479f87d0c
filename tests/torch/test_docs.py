"""The examples in the ire_torch docstrings run as written."""

from __future__ import annotations

import doctest
import importlib
import math

import pytest

MODULES = [
    "ire_torch",
    "ire_torch._checks",
    "ire_torch._fused_adam",
    "ire_torch._fused_sgd",
    "ire_torch._fused_slices",
    "ire_torch.amplify",
    "ire_torch.autodiff",
    "ire_torch.bases",
    "ire_torch.checkpoint",
    "ire_torch.distributed",
    "ire_torch.draws",
    "ire_torch.estimators",
    "ire_torch.monitoring",
    "ire_torch.optimizer",
    "ire_torch.sam",
    "ire_torch.selection",
    "ire_torch._bit_histograms",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0 or name == "ire_torch.monitoring"


def test_public_api():
    import ire_torch

    assert sorted(ire_torch.__all__) == sorted(
        ["IRE", "IRE_KEYWORDS", "SAMIRE", "SGDIRE", "AdamIRE", "AdamWIRE", "Draws",
         "MaskStats", "hessian_diagonal", "hessian_trace", "hessian_vector_products"]
    )
    for name in ire_torch.__all__:
        assert getattr(ire_torch, name).__doc__


README_EXAMPLE = """
import torch
import torch.nn.functional as F
from ire_torch import AdamWIRE

model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
opt = AdamWIRE(model.parameters(), lr=1e-3, kappa=2.0, flat_fraction=0.6, interval=10)
x, y = torch.randn(256, 20), torch.randint(0, 10, (256,))
for step in range(100):
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad()
print(opt.mask_stats())
"""


def test_readme_example_runs_as_written(capsys):
    namespace = {}
    exec(compile(README_EXAMPLE, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert printed.startswith("MaskStats(flat_count=")
    assert ", threshold=" in printed and ", step=90, shapes=[(64, 20), (64,)," in printed
    assert namespace["loss"].item() < math.log(10)  # below chance level: it trained
    assert namespace["opt"].mask_stats().flat_count == int(0.6 * (20 * 64 + 64 + 64 * 10 + 10))
