"""The examples in the ire_torch docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "ire_torch",
    "ire_torch._checks",
    "ire_torch.amplify",
    "ire_torch.autodiff",
    "ire_torch.bases",
    "ire_torch.distributed",
    "ire_torch.draws",
    "ire_torch.estimators",
    "ire_torch.monitoring",
    "ire_torch.optimizer",
    "ire_torch.sam",
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
         "MaskReport", "hessian_diagonal", "hessian_trace", "hessian_vector_products"]
    )
    for name in ire_torch.__all__:
        assert getattr(ire_torch, name).__doc__
