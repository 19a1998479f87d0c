"""The README's framework-free example runs as written and prints what it says."""

from readme import python_block, run_block


def test_core_example_runs_as_written(capsys):
    run_block("The framework-free core")
    printed = capsys.readouterr().out.strip()
    assert printed == "[2. 1. 2. 1.]"
    assert "# [2. 1. 2. 1.]" in python_block("The framework-free core")
