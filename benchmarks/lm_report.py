"""Tables and plots comparing language-model runs against an AdamW baseline.

Example:
  >>> from benchmarks.lm_config import RunResult
  >>> base = RunResult("AdamW", [0, 10, 20], [5.0, 3.0, 2.0], [], 2.0, 0.1)
  >>> ire = RunResult("AdamW+IRE", [0, 10, 20], [5.0, 2.5, 1.8], [], 2.2, 0.11)
  >>> print(summary_table(base, [ire]))
  | run       | final val loss | steps to 2.000 | speed-up | wall time (s) | CPU ms / step | step-time ratio |
  |-----------|----------------|----------------|----------|---------------|---------------|-----------------|
  | AdamW     | 2.000          | 20             | 1.00×    | 2.0           | 100.0         | 1.00×           |
  | AdamW+IRE | 1.800          | 17.1           | 1.17×    | 2.2           | 110.0         | 1.10×           |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .lm_config import RunResult
from .metrics import steps_to_target
from .plots import plot_curves
from .tables import render_table

__all__ = ["checkpoint_table", "plot_validation", "speedup", "summary_table"]


def _nearest(result: RunResult, step: int) -> int:
    return min(range(len(result.eval_steps)), key=lambda i: abs(result.eval_steps[i] - step))


def checkpoint_table(results: Sequence[RunResult], checkpoints: Sequence[int]) -> str:
    """Validation loss of every run at the evaluations nearest to ``checkpoints``
    (all runs are evaluated at the same steps)."""
    header = ["step", *(r.label for r in results)]
    indices = sorted({_nearest(results[0], step) for step in checkpoints})
    rows = [
        [str(results[0].eval_steps[i]), *(f"{r.val_losses[i]:.3f}" for r in results)]
        for i in indices
    ]
    return render_table(header, rows)


def speedup(baseline: RunResult, result: RunResult) -> tuple[float, float]:
    """``(steps, ratio)``: the steps ``result`` needs to reach the baseline's
    final validation loss, and the baseline's steps divided by them (> 1:
    ``result`` is faster; 0 when it never gets there)."""
    target = baseline.final_val
    reference = steps_to_target(baseline.eval_steps, baseline.val_losses, target)
    steps = steps_to_target(result.eval_steps, result.val_losses, target)
    ratio = 0.0 if math.isinf(steps) or steps <= 0 else reference / steps
    return steps, ratio


def _format_steps(steps: float) -> str:
    if math.isinf(steps):
        return "not reached"
    return f"{steps:.0f}" if steps == int(steps) else f"{steps:.1f}"


def summary_table(baseline: RunResult, others: Sequence[RunResult]) -> str:
    """Final loss, steps to the baseline's final loss, the speed-up, wall time,
    CPU time per step and its ratio to the baseline's (the per-step overhead)."""
    target = baseline.final_val
    header = [
        "run", "final val loss", f"steps to {target:.3f}", "speed-up", "wall time (s)",
        "CPU ms / step", "step-time ratio",
    ]
    rows = []
    for result in (baseline, *others):
        steps, ratio = speedup(baseline, result)
        rows.append([
            result.label,
            f"{result.final_val:.3f}",
            _format_steps(steps),
            f"{ratio:.2f}×" if ratio else "—",
            f"{result.wall_time:.1f}",
            f"{1000 * result.step_time:.1f}",
            f"{result.step_time / baseline.step_time:.2f}×",
        ])
    return render_table(header, rows)


def plot_validation(results: Sequence[RunResult], path: Path, title: str) -> Path:
    """PNG of the validation curves, with the baseline's final loss dashed.

    The y axis starts where the curves have left the steep initial drop (15%
    of training), so the differences late in training are visible."""
    curves = {r.label: (r.eval_steps, r.val_losses) for r in results}
    early = _nearest(results[0], round(0.15 * results[0].eval_steps[-1]))
    top = max(r.val_losses[early] for r in results)
    bottom = min(min(r.val_losses) for r in results)
    margin = 0.05 * max(top - bottom, 1e-3)
    return plot_curves(
        curves, path, title=title, ylabel="validation loss (nats / byte)",
        hline=(results[0].final_val, f"{results[0].label} final"),
        ylim=(bottom - margin, top + margin),
    )
