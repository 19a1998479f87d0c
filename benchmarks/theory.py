"""Paper, Section 5: on a manifold of minima IRE drifts (1 + κ) times faster.

The toy manifold of docs/algorithm.md, SAM coupling:
L(u, v) = ½ · h(u) · ‖v‖², h(u) = 1 + u², v ∈ ℝᵈ.
The minima are {v = 0}; the sharpness across the manifold is h(u) and the
trace of the Hessian there is d · h(u), smallest at u = 0. Two dynamics keep
v oscillating around the manifold, which makes u drift toward u = 0:

* **SAM** (deterministic, radius ρ): the ascent step lands at distance ~ρ from
  the manifold, so the gradient in u is u · ‖v + e‖² > 0 at every step.
* **GD with label noise**: each step sees ½ h(u) ‖v − ξ‖² with ξ ~ N(0, σ²I),
  the classic model of SGD's implicit regularization (its expected drift
  follows −∇ tr H).

IRE with the exact Hessian diagonal (∂²L/∂u² = ‖v‖², ∂²L/∂vᵢ² = h(u)) and
γ = 1/(d + 1) marks exactly u flat and multiplies its step by 1 + κ; the
motion across the manifold (v) is untouched. The drift speed is measured as
the number of steps u needs to travel from ``u_start`` to ``u_end``; the
ratio base/IRE is compared with 1 + κ.

Every optimizer here is :class:`ire_core.reference.ReferenceIRE` over plain
SGD; κ = 0 is the base method (bit for bit, an invariant of IRE).

Run::

    python -m benchmarks.theory [--quick] [--seeds N] [--out DIR]

Example:
  >>> run = simulate("sam", kappa=1.0, steps=50)
  >>> run.u.shape, bool(run.u[-1] < run.u[0])
  ((51,), True)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from ire_core import IREConfig
from ire_core.reference import SGD, ReferenceIRE

from .metrics import format_mean_std, mean_std, steps_to_target
from .plots import plot_curves
from .tables import render_table, write_text

__all__ = ["ToyManifold", "Trajectory", "drift_ratio", "main", "simulate"]

METHODS = ("gd", "sam")
NAMES = {"gd": "GD (label noise)", "sam": "SAM"}


@dataclasses.dataclass(frozen=True)
class ToyManifold:
    """L(u, v) = ½ (1 + u²) ‖v‖² and the dynamics' settings.

    Attributes:
      dim: d, the dimension of v.
      u0: initial position along the manifold.
      v0: initial distance from the manifold (every coordinate of v).
      lr: learning rate η of the base step.
      rho: SAM radius.
      noise: σ of the label noise of GD.
    """

    dim: int = 20
    u0: float = 2.0
    v0: float = 0.01
    lr: float = 0.2
    rho: float = 0.1
    noise: float = 0.02

    def loss(self, u: float, v: np.ndarray) -> float:
        return 0.5 * (1.0 + u * u) * float(v @ v)

    def hessian_trace(self, u: float, v: np.ndarray) -> float:
        """tr ∇²L = ‖v‖² + d · (1 + u²)."""
        return float(v @ v) + self.dim * (1.0 + u * u)

    def gradient(self, params, shift=None) -> list:
        """∇L at ``[u, v]``, of ½ h(u) ‖v − shift‖² when ``shift`` is given."""
        u, v = params
        r = v if shift is None else v - shift
        return [u * float(r @ r), (1.0 + u[0] ** 2) * r]

    def exact_diagonal(self, params) -> list:
        """The exact Hessian diagonal of L: [‖v‖²], (1 + u²)·1."""
        u, v = params
        return [np.array([float(v @ v)]), np.full_like(v, 1.0 + u[0] ** 2)]


@dataclasses.dataclass
class Trajectory:
    """u and tr H before every step (``steps + 1`` values each)."""

    u: np.ndarray
    trace: np.ndarray


def simulate(method: str, kappa: float, steps: int, toy: ToyManifold = ToyManifold(),
             seed: int = 0) -> Trajectory:
    """Runs GD (label noise) or SAM, with IRE when ``kappa > 0``.

    Args:
      method: ``"gd"`` or ``"sam"``.
      kappa: IRE's κ (0: the base method).
      steps: number of steps.
      toy: the problem.
      seed: seed of the label noise (GD).

    Raises:
      ValueError: on an unknown ``method``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    config = IREConfig(
        kappa=kappa, flat_fraction=1.0 / (toy.dim + 1), interval=1, estimator="exact",
        rho=toy.rho if method == "sam" else 0.0,
    )
    optimizer = ReferenceIRE(SGD(lr=toy.lr), config)
    params = [np.array([toy.u0]), np.full(toy.dim, toy.v0)]
    state = optimizer.init(params)
    rng = np.random.default_rng(seed)
    u, trace = [toy.u0], [toy.hessian_trace(toy.u0, params[1])]
    for _ in range(steps):
        def curvature(p=params):
            return toy.exact_diagonal(p)

        if method == "sam":
            params, state = optimizer.sam_step(params, toy.gradient, state, curvature=curvature)
        else:
            shift = rng.normal(0.0, toy.noise, toy.dim)
            grads = toy.gradient(params, shift)
            params, state = optimizer.step(params, grads, state, curvature=curvature)
        u.append(float(params[0][0]))
        trace.append(toy.hessian_trace(u[-1], params[1]))
    return Trajectory(np.array(u), np.array(trace))


def travel_steps(u: np.ndarray, start: float, end: float) -> float:
    """Steps u takes to go from ``start`` down to ``end`` (interpolated)."""
    steps, values = list(range(len(u))), [float(x) for x in u]
    first = steps_to_target(steps, values, start)
    last = steps_to_target(steps, values, end)
    return last - first


def drift_ratio(method: str, kappa: float, steps: int, toy: ToyManifold = ToyManifold(),
                seed: int = 0, start: float = 1.8, end: float = 1.0) -> float:
    """(steps the base needs) / (steps IRE needs) to move u from ``start`` to
    ``end``; the paper predicts 1 + κ. Both runs share the label noise."""
    base = simulate(method, 0.0, steps, toy, seed)
    enhanced = simulate(method, kappa, steps, toy, seed)
    base_steps = travel_steps(base.u, start, end)
    ire_steps = travel_steps(enhanced.u, start, end)
    if not np.isfinite(base_steps):
        raise RuntimeError(
            f"{method}: u did not reach {end} within steps={steps} (u ended at "
            f"{base.u[-1]:.3f}); raise steps"
        )
    return base_steps / ire_steps


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.theory", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two values of κ, one seed")
    parser.add_argument("--seeds", type=int, default=None, help="label-noise seeds (default 5, quick 1)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    return args


def main(argv=None) -> int:
    """Prints the drift-ratio table, writes it and the tr H plot to ``--out``."""
    args = parse_args(argv)
    toy = ToyManifold()
    kappas = (1.0, 2.0) if args.quick else (0.5, 1.0, 2.0, 4.0)
    seeds = args.seeds or (1 if args.quick else 5)
    steps = {"gd": 900, "sam": 600}
    rows, measured = [], {}
    for kappa in kappas:
        row = [f"{kappa:g}", f"{1 + kappa:g}"]
        for method in METHODS:
            ratios = [drift_ratio(method, kappa, steps[method], toy, seed) for seed in range(seeds)]
            measured[(method, kappa)] = mean_std(ratios)[0]
            row.append(format_mean_std(ratios, 3) if seeds > 1 else f"{ratios[0]:.3f}")
        rows.append(row)
    table = render_table(
        ["κ", "1 + κ", f"{NAMES['gd']}: IRE / base", f"{NAMES['sam']}: IRE / base"], rows
    )
    header = (
        f"Drift speed along the manifold of L(u, v) = ½(1 + u²)‖v‖², d = {toy.dim}: steps to "
        f"move u from 1.8 to 1.0, base / IRE ({seeds} seed{'s' if seeds > 1 else ''}; "
        f"η = {toy.lr}, ρ = {toy.rho}, σ = {toy.noise})."
    )
    print(header + "\n\n" + table + "\n")
    out = Path(args.out)
    write_text(out / "theory_drift.md", header + "\n\n" + table)

    kappa = 2.0
    horizon = 400
    curves = {}
    for method in METHODS:
        for k, suffix in ((0.0, ""), (kappa, f"-IRE (κ={kappa:g})")):
            run = simulate(method, k, horizon, toy, seed=0)
            label = ("GD (label noise)" if method == "gd" else "SAM") + suffix
            curves[label] = (np.arange(horizon + 1), run.trace)
    png = plot_curves(curves, out / "theory_trace.png", title="Toy manifold: trace of the Hessian",
                      ylabel="tr ∇²L", logy=True)
    print(f"Trace of the Hessian over steps: {png.resolve()}")
    worst = max(abs(r / (1 + k) - 1) for (_, k), r in measured.items())
    print(f"Largest relative deviation of the measured ratio from 1 + κ: {worst:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
