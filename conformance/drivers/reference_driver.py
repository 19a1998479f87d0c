"""The NumPy reference driver: the trajectory every backend is compared with.

It runs :class:`ire_core.reference.ReferenceIRE` on the exact NumPy
mathematics of :mod:`conformance.problems`, with the scenario's draws, and
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
from ..protocol import Scenario, Trajectory

__all__ = ["ReferenceDriver", "ReferenceRun", "reference_base", "selection_margin"]


def reference_base(base: str, lr: float):
    """The NumPy base optimizer named ``base`` with torch.optim's defaults of
    :mod:`conformance.protocol` (SAM steps plain SGD with the SAM gradient).

    Example:
      >>> reference_base("nesterov", 0.1).nesterov
      True
    """
    if base in ("sgd", "sam"):
        return SGD(lr=lr)
    if base == "momentum":
        return SGD(lr=lr, momentum=0.9)
    if base == "nesterov":
        return SGD(lr=lr, momentum=0.9, nesterov=True)
    if base == "adamw":
        return AdamW(lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    raise ValueError(
        f"base must be one of 'sgd', 'momentum', 'nesterov', 'adamw', 'sam', got {base!r}"
    )


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
        state = optimizer.init(params)
        trajectory = Trajectory([_float64(params)], {}, [])
        selections, margins = {}, {}
        for t in range(scenario.steps):
            trajectory.losses.append(float(model.loss(params)))
            estimates = []

            def curvature(params=params, t=t, estimates=estimates):
                estimate = self._estimate(scenario, model, params, t, dtype)
                estimates.append(estimate)
                return estimate

            previous_average = state.curvature
            if scenario.base == "sam":
                params, state = optimizer.sam_step(params, model.grad, state, curvature=curvature)
            else:
                params, state = optimizer.step(
                    params, model.grad(params), state, curvature=curvature
                )
            if estimates:
                _, selection = blend(previous_average, estimates[0], config.ema)
                trajectory.masks[t] = [np.array(m, dtype=bool) for m in state.mask]
                selections[t] = selection
                margins[t] = selection_margin(selection, state.mask)
            trajectory.params.append(_float64(params))
        return ReferenceRun(trajectory, selections, margins)

    @staticmethod
    def _estimate(scenario, model, params, step, dtype) -> list:
        """The raw curvature estimate of refresh ``step`` at ``params``."""
        estimator = scenario.estimator
        draws = scenario.draws
        if estimator == "gradient":
            return squared(model.grad(params))
        if estimator == "exact":
            return [np.asarray(h, dtype=dtype) for h in model.hessian_diagonal(params)]
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


def _float64(params) -> list:
    return [np.array(p, dtype=np.float64, copy=True) for p in params]
