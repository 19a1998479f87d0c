"""``python -m benchmarks.overhead``: see :mod:`benchmarks.overhead.cli`."""

from .cli import main

main()
