"""The README's JAX example runs as written, trains, and reports γ."""

import re

from readme import run_block


def test_jax_example_runs_as_written(capsys):
    run_block("JAX / optax")
    printed = capsys.readouterr().out
    match = re.fullmatch(r"loss (\S+), flat fraction (\S+)\n", printed)
    assert match, printed
    loss, fraction = map(float, match.groups())
    assert loss < 0.05  # y = sin(x₀) has variance ≈ 0.43 at the start
    assert abs(fraction - 0.6) < 0.01
