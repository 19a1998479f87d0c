"""The examples in ire_keras's docstrings and in docs/keras.md run as written."""

import doctest
import importlib
import pathlib

import pytest

MODULES = [
    "ire_keras",
    "ire_keras._config",
    "ire_keras._xp",
    "ire_keras.autodiff",
    "ire_keras.callbacks",
    "ire_keras.estimators",
    "ire_keras.fused",
    "ire_keras.optimizer",
    "ire_keras.refresh",
    "ire_keras.selection",
    "ire_keras.train_step",
]
GUIDE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "keras.md"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0, f"{name} has no examples"
    assert failures == 0


def test_guide_examples_run_as_written():
    assert GUIDE.exists(), f"missing {GUIDE}"
    result = doctest.testfile(str(GUIDE), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 10
