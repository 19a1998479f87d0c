"""IRE's cost over its base optimizer: step time, memory, state size.

For each available backend, and for an MLP and a small Llama-style language
model at two sizes each, the benchmark times whole training steps of the
base optimizer (AdamW) and of IRE around it, side by side (see
:mod:`.harness`): every round runs each variant for one refresh period, so
the amortized refresh is included, the rounds interleave the variants, the
first round is warm-up, and the tables show medians over rounds, so that a
ratio is measured under one machine load.

Modules:

* :mod:`.harness`: problem sizes, interleaved timing, medians, machine facts;
* :mod:`.torch_rows`, :mod:`.jax_rows`, :mod:`.keras_rows`: each
  framework's rows, and what each row and memory column measures there;
* :mod:`.selection`: the flat-mask selection against one AdamW step;
* :mod:`.report`: the tables (:mod:`benchmarks.tables`) and the files;
* :mod:`.cli`: ``python -m benchmarks.overhead`` and :func:`run_overhead`.

Example:
  >>> from benchmarks import overhead
  >>> overhead.sizes(quick=True).steps
  2
"""

from .cli import main, run_overhead
from .harness import Row, Sizes, sizes
from .report import format_agreement, format_rows, format_selection, report, report_files

__all__ = ["Row", "Sizes", "format_agreement", "format_rows", "format_selection", "main",
           "report", "report_files", "run_overhead", "sizes"]
