"""The examples in ire_jax's docstrings and in docs/jax.md run as written."""

from __future__ import annotations

import doctest
import importlib
import pathlib

import pytest

MODULES = (
    "ire_jax",
    "ire_jax._hyperparams",
    "ire_jax._reduce",
    "ire_jax.estimators",
    "ire_jax.sam",
    "ire_jax.selection",
    "ire_jax.state",
    "ire_jax.transform",
)
GUIDE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "jax.md"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_user_guide_examples():
    assert GUIDE.exists(), f"missing {GUIDE}"
    result = doctest.testfile(str(GUIDE), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 10
