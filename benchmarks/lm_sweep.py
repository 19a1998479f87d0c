"""Paper claim 1: AdamW + IRE reaches AdamW's loss in fewer steps.

The demo's setup (tiny Llama on the pydoc topics, warm-up + cosine learning
rate, IRE switched on after warm-up, Fisher curvature, K = 10), swept over
κ ∈ {1, 2, 3, 4}, γ ∈ {0.5, 0.6, 0.8}, with κ constant or following the
learning-rate schedule (κ_t = κ · lr_t / lr_peak). Three stages:

1. AdamW's peak learning rate is tuned on a small grid (seed 0);
2. every IRE setting runs at that learning rate (seed 0);
3. AdamW and the best IRE setting are rerun over ``--seeds`` seeds.

Reported: final validation loss and the steps-to-target ratio (AdamW's steps
to its own final validation loss divided by the steps IRE needs to reach it;
above 1 means IRE is faster).

Run::

    python -m benchmarks.lm_sweep [--quick] [--seeds N] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import sys
from pathlib import Path

from .metrics import format_mean_std
from .tables import render_table, write_text

__all__ = ["SweepGrid", "main", "run_sweep"]


@dataclasses.dataclass(frozen=True)
class SweepGrid:
    """The values swept.

    Attributes:
      lrs: AdamW peak learning rates tried in stage 1.
      kappas: κ values.
      flat_fractions: γ values.
      follows: whether κ follows the learning rate.
    """

    lrs: tuple = (7.5e-4, 1.5e-3, 3e-3, 6e-3)
    kappas: tuple = (1.0, 2.0, 3.0, 4.0)
    flat_fractions: tuple = (0.5, 0.6, 0.8)
    follows: tuple = (False, True)


QUICK_GRID = SweepGrid(lrs=(3e-3,), kappas=(2.0,), flat_fractions=(0.6,), follows=(False, True))


def _ratio(baseline, result) -> float:
    from .lm_report import speedup

    return speedup(baseline, result)[1]


def run_sweep(grid: SweepGrid, seeds: int, quick: bool = False, steps: int | None = None,
              log=print) -> dict:
    """Runs the three stages; returns every result and the tables.

    Returns:
      ``{"lr": tuned lr, "adamw": {lr: result}, "ire": {settings: result},
      "best": settings, "seeds": {"adamw": [...], "ire": [...]},
      "tables": {...}}``.
    """
    from .demo import demo_setup
    from .lm import train_language_model
    from .lm_config import IRESettings
    from .text import load_corpus

    corpus = load_corpus()
    adamw = {}
    for lr in grid.lrs:
        adamw[lr] = train_language_model(demo_setup(quick, steps, lr, 0), corpus, progress=False)
        log(f"AdamW lr={lr:g}: final val {adamw[lr].final_val:.4f}")
    lr = min(grid.lrs, key=lambda v: adamw[v].final_val)
    baseline = adamw[lr]

    ire = {}
    for kappa, gamma, follows in itertools.product(grid.kappas, grid.flat_fractions, grid.follows):
        settings = IRESettings(kappa=kappa, flat_fraction=gamma, estimator="fisher",
                               kappa_follows_lr=follows)
        ire[settings] = train_language_model(demo_setup(quick, steps, lr, 0), corpus, settings,
                                             progress=False)
        log(f"{settings.label}: final val {ire[settings].final_val:.4f}, "
            f"steps-to-target ratio {_ratio(baseline, ire[settings]):.2f}")
    best = min(ire, key=lambda s: ire[s].final_val)

    repeats = {"adamw": [baseline], "ire": [ire[best]]}
    for seed in range(1, seeds):
        base_s = train_language_model(demo_setup(quick, steps, lr, seed), corpus, progress=False)
        ire_s = train_language_model(demo_setup(quick, steps, lr, seed), corpus, best, progress=False)
        repeats["adamw"].append(base_s)
        repeats["ire"].append(ire_s)
        log(f"seed {seed}: AdamW {base_s.final_val:.4f}, best IRE {ire_s.final_val:.4f}")

    tables = {
        "lr": render_table(["AdamW peak lr", "final val loss"],
                           [[f"{v:g}", f"{adamw[v].final_val:.4f}"] for v in grid.lrs]),
        "grid": _grid_table(grid, ire, baseline),
        "seeds": _seed_table(repeats, best),
    }
    return {"lr": lr, "adamw": adamw, "ire": ire, "best": best, "seeds": repeats,
            "tables": tables}


def _grid_table(grid, ire, baseline) -> str:
    rows = []
    for kappa, gamma in itertools.product(grid.kappas, grid.flat_fractions):
        row = [f"{kappa:g}", f"{gamma:g}"]
        for follows in grid.follows:
            match = [s for s in ire if (s.kappa, s.flat_fraction, s.kappa_follows_lr)
                     == (kappa, gamma, follows)]
            result = ire[match[0]]
            ratio = _ratio(baseline, result)
            row += [f"{result.final_val:.4f}", f"{ratio:.2f}×" if ratio else "not reached"]
        rows.append(row)
    header = ["κ", "γ"]
    for follows in grid.follows:
        name = "κ∝lr" if follows else "κ const"
        header += [f"{name}: final val", f"{name}: speed-up"]
    return render_table(header, rows)


def _seed_table(repeats, best) -> str:
    base, ire = repeats["adamw"], repeats["ire"]
    ratios = [_ratio(b, r) for b, r in zip(base, ire)]
    reached = [r for r in ratios if r > 0]
    speed = format_mean_std(reached, 2) + "×" if reached else "not reached"
    if reached and len(reached) < len(ratios):
        speed += f" ({len(reached)} of {len(ratios)} seeds reach it)"
    diffs = [r.final_val - b.final_val for b, r in zip(base, ire)]
    return render_table(
        ["run", "final val loss", "IRE − AdamW (paired)", "steps-to-target speed-up"],
        [
            ["AdamW", format_mean_std([r.final_val for r in base], 4), "", "1×"],
            [best.label, format_mean_std([r.final_val for r in ire], 4),
             format_mean_std(diffs, 4), speed],
        ],
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lm_sweep",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny model, one lr, κ = 2, γ = 0.6, both κ schedules")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds of the final comparison (default 3, quick 2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if args.steps is not None and args.steps < 8:
        parser.error(f"--steps must be at least 8, got {args.steps}")
    return args


def main(argv=None) -> int:
    """Runs the sweep, prints and writes the tables and a PNG."""
    import torch

    from .lm_report import plot_validation

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    grid = QUICK_GRID if args.quick else SweepGrid()
    seeds = args.seeds or (2 if args.quick else 3)
    sweep = run_sweep(grid, seeds, quick=args.quick, steps=args.steps,
                      log=lambda line: print(line, flush=True))
    tables = sweep["tables"]
    steps = sweep["adamw"][sweep["lr"]].eval_steps[-1]
    text = "\n\n".join([
        f"Stage 1, AdamW learning rate ({steps} steps, seed 0):", tables["lr"],
        f"Stage 2, IRE at lr {sweep['lr']:g} (seed 0); speed-up = AdamW's steps to its final "
        "validation loss / IRE's steps to the same loss:", tables["grid"],
        f"Stage 3, {seeds} seeds, AdamW vs the best IRE setting of stage 2:", tables["seeds"],
    ])
    print("\n" + text + "\n")
    out = Path(args.out)
    write_text(out / "lm_sweep.md", text)
    best = sweep["best"]
    png = plot_validation([sweep["seeds"]["adamw"][0], sweep["seeds"]["ire"][0]],
                          out / "lm_sweep_best.png",
                          title=f"AdamW vs the best IRE setting ({best.description}), seed 0")
    print(f"Validation curves: {png.resolve()}")
    best_ratio = max(_ratio(sweep["adamw"][sweep["lr"]], r) for r in sweep["ire"].values())
    print(f"Largest steps-to-target speed-up in the grid: {best_ratio:.2f}×"
          + ("" if best_ratio > 0 else " (no IRE setting reached AdamW's final loss)"))
    return 0 if all(math.isfinite(r.final_val) for r in sweep["ire"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
