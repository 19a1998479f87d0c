"""The NumPy reference driver: the trajectory every backend is compared with.

It runs :class:`ire_core.reference.ReferenceIRE` on the exact mathematics of
:mod:`conformance.problems` evaluated on NumPy arrays (analytic gradients,
Hessian-vector products and diagonals), with the scenario's draws, and
always in float64 unless built with another ``dtype``.

Example:
  >>> from conformance.drivers.reference_driver import ReferenceDriver
  >>> from conformance.scenarios import SCENARIOS
  >>> trajectory = ReferenceDriver().run(SCENARIOS["manifold_sgd_exact"])
  >>> len(trajectory.params), len(trajectory.losses), sorted(trajectory.masks)[:3]
  (41, 40, [0, 1, 2])
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ire_core import blend, squared
from ire_core.reference import SGD, AdamW, ReferenceIRE, fisher_estimate, hutchinson_estimate

from ..problems import numpy_model
from ..protocol import BASES, Scenario, Trajectory, walk

__all__ = ["ReferenceDriver", "ReferenceRun", "reference_base", "selection_margin"]


def reference_base(base: str, lr: float):
    """The NumPy base optimizer named ``base`` (a key of
    :data:`conformance.protocol.BASES`); SAM steps plain SGD with the SAM
    gradient.

    Example:
      >>> reference_base("nesterov", 0.1).nesterov
      True
    """
    if base not in BASES:
        raise ValueError(f"base must be one of {tuple(BASES)}, got {base!r}")
    spec = BASES[base]
    if spec.family == "adamw":
        return AdamW(lr=lr, betas=spec.BETAS, eps=spec.EPS, weight_decay=spec.WEIGHT_DECAY)
    return SGD(lr=lr, momentum=spec.momentum, nesterov=spec.nesterov)


def selection_margin(selection: list, mask: list) -> float:
    """The relative gap between the flat and the sharp coordinates of a
    refresh: (smallest sharp value − largest flat value) / largest flat value.

    ``inf`` when every coordinate, or none, is flat. A small margin means a
    rounding difference between backends could move a coordinate across the
    threshold.

    Example:
      >>> import numpy as np
      >>> selection_margin([np.array([1.0, 1.5, 4.0])], [np.array([True, False, False])])
      0.5
    """
    values = np.concatenate([np.ravel(s) for s in selection])
    flat = np.concatenate([np.ravel(m) for m in mask])
    sharp_values = values[~flat & np.isfinite(values)]
    if not flat.any() or sharp_values.size == 0:
        return float("inf")
    largest_flat = float(values[flat].max())
    gap = float(sharp_values.min()) - largest_flat
    return gap / largest_flat if largest_flat > 0 else float("inf")


@dataclasses.dataclass
class ReferenceRun:
    """A reference trajectory with the curvature behind each refresh.

    Attributes:
      trajectory: what :meth:`ReferenceDriver.run` returns.
      selections: refresh step -> the values the mask was ranked on (the
        estimate after the moving average, non-finite values as +inf).
      margins: refresh step -> :func:`selection_margin` of that refresh.
    """

    trajectory: Trajectory
    selections: dict
    margins: dict


class ReferenceDriver:
    """Runs scenarios on the NumPy reference optimizer.

    Args:
      dtype: the dtype to compute in; ``None`` (the reference) always uses
        float64, ``"scenario"`` follows ``Scenario.dtype``.
      name: the driver's name in reports.
    """

    def __init__(self, dtype=None, name: str = "numpy-reference"):
        if dtype not in (None, "scenario") and not np.issubdtype(np.dtype(dtype), np.floating):
            raise ValueError(f"dtype must be None, 'scenario' or a float dtype, got {dtype!r}")
        self.dtype = dtype
        self.name = name

    def available(self) -> str | None:
        return None

    def run(self, scenario: Scenario) -> Trajectory:
        """The trajectory of ``scenario`` (protocol: ``steps + 1`` parameter
        lists in float64, the mask of every refresh, the loss before each
        step)."""
        return self.run_detailed(scenario).trajectory

    def _dtype(self, scenario: Scenario):
        if self.dtype is None:
            return np.dtype(np.float64)
        return np.dtype(scenario.dtype if self.dtype == "scenario" else self.dtype)

    def run_detailed(self, scenario: Scenario) -> ReferenceRun:
        """Like :meth:`run`, also returning the ranked values and the margin
        of every refresh."""
        dtype = self._dtype(scenario)
        model = numpy_model(scenario.problem, dtype)
        config = scenario.config
        optimizer = ReferenceIRE(reference_base(scenario.base, scenario.lr), config)
        params = [np.asarray(p, dtype=dtype) for p in scenario.problem.params]
        current = {"params": params, "state": optimizer.init(params)}
        selections, margins = {}, {}

        def step(t):
            params, state = current["params"], current["state"]
            loss = model.loss(params)
            estimates = []

            def curvature():
                estimates.append(self._estimate(scenario, model, params, t, dtype))
                return estimates[-1]

            if scenario.base_optimizer.sam:
                params, after = optimizer.sam_step(params, model.grad, state, curvature=curvature)
            else:
                params, after = optimizer.step(
                    params, model.grad(params), state, curvature=curvature
                )
            current.update(params=params, state=after)
            if not estimates:
                return loss, params, None
            _, selections[t] = blend(state.curvature, estimates[0], config.ema)
            margins[t] = selection_margin(selections[t], after.mask)
            return loss, params, after.mask

        trajectory = walk(scenario, params, step)
        return ReferenceRun(trajectory, selections, margins)

    @staticmethod
    def _estimate(scenario, model, params, step, dtype) -> list:
        """The raw curvature estimate of refresh ``step`` at ``params``."""
        estimator = scenario.estimator
        draws = scenario.draws
        if estimator == "gradient":
            return squared(model.grad(params))
        if estimator == "exact":
            return model.hessian_diagonal(params)
        if estimator == "hutchinson":
            probes = [[np.asarray(z, dtype=dtype) for z in probe] for probe in draws.probes(step)]
            return hutchinson_estimate(model.hvp, params, probes)
        if estimator == "fisher":
            if not scenario.problem.is_classifier:
                raise ValueError(
                    f"estimator='fisher' needs a classifier problem, got {scenario.problem.name!r}"
                )
            uniforms = np.asarray(draws.uniforms(step), dtype=dtype)
            return fisher_estimate(model.logits, model.label_grad, params, uniforms)
        raise ValueError(
            f"scenario.estimator must be 'gradient', 'exact', 'hutchinson' or 'fisher', "
            f"got {estimator!r}"
        )
