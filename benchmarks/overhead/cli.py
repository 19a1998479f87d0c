"""The overhead benchmark's command line and its whole run.

Usage::

    python -m benchmarks.overhead [--quick] [--backends torch,jax,keras] [--out DIR]
                                  [--threads N] [--device cuda]

``--out DIR`` writes the files of :func:`benchmarks.overhead.report.report_files`
(``--out docs/results`` regenerates the documentation's copies).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..backends import require_backend
from .harness import machine_facts, sizes
from .report import report, write_report

__all__ = ["main", "run_overhead"]


def run_overhead(quick: bool = False, backends=("torch", "jax", "keras"),
                 threads: int = 2, device: str = "cpu") -> dict:
    """Runs the benchmark.

    Args:
      quick: tiny sizes (seconds), for the tests.
      backends: which of ``"torch"``, ``"jax"``, ``"keras"`` to run.
      threads: torch's intra-op threads.
      device: torch's device (JAX and Keras run on their default device).

    Returns:
      ``{"rows": [Row], "selection": [dict], "fisher_agreement": [dict],
      "skipped": {backend: why}, "failed": {what: error}, "machine": dict}``;
      the selection and Fisher tables come with the torch rows.
    """
    sz = sizes(quick)
    result = {"rows": [], "selection": [], "fisher_agreement": [], "skipped": {},
              "failed": {}}
    for backend in backends:
        missing = require_backend(backend)
        if missing:
            result["skipped"][backend] = missing
        elif backend == "torch":
            from .selection import selection_rows
            from .torch_rows import torch_rows

            rows, result["fisher_agreement"] = torch_rows(sz, threads, device)
            result["rows"] += rows
            result["selection"] = selection_rows(sz, threads, device)
        elif backend == "jax":
            from .jax_rows import jax_rows

            result["rows"] += jax_rows(sz)
        else:
            from .keras_rows import keras_rows

            result["rows"] += keras_rows(sz, result["failed"])
    result["machine"] = machine_facts(threads, device)
    return result


def _check_torch_device(parser, device: str) -> None:
    import torch

    try:
        kind = torch.empty(0, device=device).device.type
    except (RuntimeError, AssertionError) as error:
        parser.error(f"--device {device!r} is not usable by torch: {error}")
    if kind not in ("cpu", "cuda"):  # the timing waits for CUDA queues only
        parser.error(f"--device must be cpu or a CUDA device, got {device!r}")


def main(argv=None) -> dict:
    """Parses ``argv``, runs the benchmark, prints the report and, with
    ``--out``, writes the files; returns :func:`run_overhead`'s result.

    Raises:
      ValueError: for an unknown backend name.
      SystemExit: for an unusable ``--threads`` or ``--device``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description="IRE's cost over its base optimizer: step time, memory, state size.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--backends", default="torch,jax,keras",
                        help="comma-separated subset of torch,jax,keras")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for overhead.md, overhead.json and one file per table")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu",
                        help="torch device of the torch rows: cpu (default) or cuda[:N]")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        require_backend(backend)  # raises on unknown names
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if "torch" in backends and args.device != "cpu":
        _check_torch_device(parser, args.device)
    result = run_overhead(args.quick, backends, args.threads, args.device)
    print(report(result), end="")
    if args.out is not None:
        write_report(result, args.out)
    return result
