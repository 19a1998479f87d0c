"""The main job: a tiny Llama trained with AdamW and with AdamW + IRE.

Run it with ``nox -s demo`` or directly::

    python -m benchmarks.demo [--backend torch|jax|keras] [--steps N] [--out DIR]

Both runs share the initial weights, the batches and the warm-up + cosine
learning-rate schedule; IRE is switched on when warm-up ends. The program
shows a progress bar per run, prints the validation loss at fixed
checkpoints, the steps each run needs to reach AdamW's final validation loss,
the wall time and the per-step overhead, and writes a PNG of both validation
curves.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .backends import require_backend

__all__ = ["DEFAULT_LR", "demo_setup", "describe_model", "load_trainer", "main", "run_demo"]

DEFAULT_LR = 1.5e-3
"""Peak learning rate: AdamW's best on {0.75, 1.5, 3, 6}·10⁻³ (``benchmarks.lm_sweep``)."""


def demo_setup(quick: bool = False, steps: int | None = None, lr: float = DEFAULT_LR,
               seed: int = 0):
    """The demo's model, data and schedule (the LM sweep uses it too).

    Full: width 128, 2 blocks, 4 heads, context 64 bytes (0.43M parameters),
    600 steps of 16 sequences, 60 warm-up steps, evaluation every 25 steps on
    64 windows. Quick: width 32, 1 block, context 32, 40 steps of 8
    sequences, for the tests.

    Args:
      quick: the tiny variant.
      steps: optimizer steps (default 600, quick 40); warm-up stays 10% of
        them (20% when quick).
      lr: peak learning rate.
      seed: initial weights and batch order.

    Example:
      >>> setup = demo_setup(steps=300)
      >>> setup.warmup, setup.eval_every, setup.model.dim
      (30, 25, 128)
    """
    from .lm_config import LlamaConfig, LMSetup

    if quick:
        steps = steps or 40
        model = LlamaConfig(dim=32, layers=1, heads=2, seq_len=32)
        return LMSetup(model=model, steps=steps, batch_size=8, peak_lr=lr,
                       warmup=max(1, round(0.2 * steps)), eval_every=max(1, min(8, steps // 8)),
                       eval_windows=16, seed=seed)
    steps = steps or 600
    model = LlamaConfig(dim=128, layers=2, heads=4, seq_len=64)
    return LMSetup(model=model, steps=steps, batch_size=16, peak_lr=lr,
                   warmup=max(1, round(0.1 * steps)), eval_every=max(1, min(25, steps // 8)),
                   eval_windows=64, seed=seed)


def describe_model(setup) -> str:
    """``"width 128, 2 blocks, 4 heads, context 64 bytes"``."""
    c = setup.model
    blocks = "block" if c.layers == 1 else "blocks"
    return f"width {c.dim}, {c.layers} {blocks}, {c.heads} heads, context {c.seq_len} bytes"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.demo",
        description="AdamW vs AdamW + IRE on a small Llama-style byte-level language model "
        "trained on the text of Python's documentation topics.",
    )
    parser.add_argument("--backend", choices=("torch", "jax", "keras"), default="torch")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps per run (default 600, quick 40)")
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="folder for the PNG and the tables (default: ./demo-output)")
    parser.add_argument("--quick", action="store_true", help="a tiny model, seconds per run")
    parser.add_argument("--kappa", type=float, default=1.0,
                        help="IRE's κ (default 1, the best of the sweep)")
    parser.add_argument("--flat-fraction", type=float, default=0.5,
                        help="IRE's γ (default 0.5, the best of the sweep)")
    parser.add_argument("--interval", type=int, default=10, help="mask refresh interval K")
    parser.add_argument("--estimator", choices=("fisher", "gradient"), default="fisher",
                        help="curvature estimator (default fisher, as in the paper)")
    parser.add_argument("--lr", type=float, default=DEFAULT_LR,
                        help="peak learning rate of both runs (default 1.5e-3, AdamW's best in "
                        "the sweep)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of torch and JAX (default 1: steadier timings for a "
                        "model this small)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 2:
        parser.error(f"--steps must be at least 2, got {args.steps}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    return args


def load_trainer(backend: str, threads: int):
    """The ``train_language_model`` function of ``backend``, using ``threads``
    CPU threads.

    Raises:
      ValueError: on an unknown backend.
    """
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        from .lm import train_language_model
    elif backend == "jax":
        if threads == 1:  # read when XLA's CPU client starts
            os.environ.setdefault(
                "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            )
        from .lm_jax import train_language_model
    elif backend == "keras":  # on the backend Keras was started with (KERAS_BACKEND)
        from .lm_keras import train_language_model
    else:
        raise ValueError(f"backend must be 'torch', 'jax' or 'keras', got {backend!r}")
    return train_language_model


def run_demo(args: argparse.Namespace) -> dict:
    """Runs both trainings, prints the tables, writes the PNG and tables.

    Returns:
      ``{"results": [adamw, ire], "png": path, "table": path}``.
    """
    from .lm_config import IRESettings
    from .lm_report import checkpoint_table, plot_validation, summary_table
    from .tables import write_text
    from .text import load_corpus

    train_language_model = load_trainer(args.backend, args.threads)
    setup = demo_setup(args.quick, args.steps, args.lr, args.seed)
    steps, warmup = setup.steps, setup.warmup
    ire = IRESettings(kappa=args.kappa, flat_fraction=args.flat_fraction,
                      interval=args.interval, estimator=args.estimator)
    corpus = load_corpus()
    print(f"[{args.backend}] Byte-level Llama ({describe_model(setup)}) on pydoc_data.topics: "
          f"{len(corpus.train):,} training and {len(corpus.val):,} validation bytes; {steps} steps of {setup.batch_size}×"
          f"{setup.model.seq_len} bytes, warm-up {warmup}, IRE from step {warmup} "
          f"({ire.estimator} curvature, K={ire.interval}).", flush=True)
    progress = not args.no_progress
    baseline = train_language_model(setup, corpus, None, progress=progress)
    enhanced = train_language_model(setup, corpus, ire, progress=progress)
    results = [baseline, enhanced]

    checkpoints = sorted({max(1, round(steps * f)) for f in (0.1, 0.25, 0.5, 0.75, 1.0)})
    table = "\n\n".join([
        "Validation loss (nats per byte) at checkpoints:",
        checkpoint_table(results, checkpoints),
        "Steps to AdamW's final validation loss, time and per-step overhead:",
        summary_table(baseline, [enhanced]),
    ])
    print("\n" + table + "\n")
    out = Path(args.out)
    png = plot_validation(results, out / "demo_validation.png",
                          title=f"Tiny Llama on pydoc topics ({args.backend})")
    table_path = write_text(out / "demo_table.md", table)
    print(f"Validation curves: {png.resolve()}")
    print(f"Tables: {table_path.resolve()}")
    return {"results": results, "png": png, "table": table_path}


def main(argv=None) -> int:
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    if args.backend == "keras":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    problem = require_backend(args.backend)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    run_demo(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
