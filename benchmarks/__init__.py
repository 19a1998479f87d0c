"""Benchmarks and reproductions of the IRE paper's claims at CPU scale.

Each module with a ``main`` is a command-line program::

    python -m benchmarks.demo            # AdamW vs AdamW + IRE on a tiny Llama
    python -m benchmarks.theory          # drift speed on the toy manifold
    python -m benchmarks.digits          # SGD/SAM ± IRE on scikit-learn digits
    python -m benchmarks.lm_sweep        # κ, γ sweep of the language-model speed-up
    python -m benchmarks.overhead        # IRE's step time, memory and state over AdamW

Every program accepts ``--quick`` (a run of seconds, exercised by the tests)
and ``--out DIR`` (where tables and PNG plots are written; ``--out
docs/results`` regenerates the documentation's copies). Results of the full
runs are collected in ``docs/benchmarks.md``, and the overhead tables in
``docs/performance.md``.
"""

__all__: list[str] = []
