"""Comparing a backend's trajectory with the reference's.

A trajectory conforms when, at every step:

* float64 scenarios: every parameter is within ``1e-9`` (absolute) of the
  reference;
* float32 scenarios: every parameter is within ``1e-4`` relative to the
  largest parameter magnitude of the reference at that step;
* the loss before every step is within the same tolerance (absolute for
  float64; relative to the largest reference loss for float32);
* the mask refreshes happen on the same steps and every mask is identical.

Example:
  >>> import numpy as np
  >>> from conformance.compare import compare
  >>> from conformance.drivers.reference_driver import ReferenceDriver
  >>> from conformance.scenarios import SCENARIOS
  >>> scenario = SCENARIOS["manifold_sgd_exact"]
  >>> reference = ReferenceDriver().run(scenario)
  >>> result = compare(reference, reference, scenario, driver="numpy-reference")
  >>> result.passed, result.deviation, result.masks_agree
  (True, 0.0, True)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .protocol import Scenario, Trajectory

__all__ = [
    "FLOAT32_TOLERANCE",
    "FLOAT64_TOLERANCE",
    "Comparison",
    "compare",
    "driver_failure",
    "tolerance_for",
]

FLOAT64_TOLERANCE = 1e-9
"""Largest absolute deviation allowed in float64 scenarios."""

FLOAT32_TOLERANCE = 1e-4
"""Largest relative deviation allowed in float32 scenarios."""

_TINY = 1e-12  # floor of the scale relative deviations are taken against
_LISTED = 4  # differing mask coordinates named in a message


def tolerance_for(dtype: str) -> tuple[float, str]:
    """``(tolerance, measure)`` of a scenario dtype; measure is ``"abs"`` or
    ``"rel"``.

    Example:
      >>> tolerance_for("float32")
      (0.0001, 'rel')
    """
    if dtype == "float64":
        return FLOAT64_TOLERANCE, "abs"
    if dtype == "float32":
        return FLOAT32_TOLERANCE, "rel"
    raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The verdict on one driver × scenario cell.

    Attributes:
      driver: the driver's name.
      scenario: the scenario's name.
      dtype: the scenario's dtype.
      measure: ``"abs"`` (float64) or ``"rel"`` (float32): which deviation is
        held to ``tolerance``.
      tolerance: the largest deviation allowed.
      deviation: the largest parameter deviation in ``measure`` over all
        steps (``inf`` when shapes differ or values are not finite, ``nan``
        when the driver failed).
      max_abs: the largest absolute parameter deviation.
      max_rel: the largest relative parameter deviation.
      loss_deviation: the largest loss deviation in ``measure``.
      masks_agree: refresh steps and every mask identical.
      refreshes: the number of refreshes of the reference.
      problems: what does not conform, one message each; empty when passed.
      seconds: wall time of the driver's run (informative only).
    """

    driver: str
    scenario: str
    dtype: str
    measure: str
    tolerance: float
    deviation: float
    max_abs: float
    max_rel: float
    loss_deviation: float
    masks_agree: bool
    refreshes: int
    problems: tuple = ()
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line: the verdict, the deviations and the first problems."""
        verdict = "conforms" if self.passed else "does NOT conform"
        text = (
            f"{self.driver} on {self.scenario} {verdict}: max {self.measure} deviation "
            f"{self.deviation:.3g} (tolerance {self.tolerance:g}), loss deviation "
            f"{self.loss_deviation:.3g}, masks {'agree' if self.masks_agree else 'differ'} "
            f"over {self.refreshes} refreshes"
        )
        return text + "".join(f"\n  - {problem}" for problem in self.problems)

    def to_dict(self) -> dict:
        """A JSON-ready dict (non-finite numbers as strings)."""
        out = dataclasses.asdict(self)
        out["problems"] = list(self.problems)
        out["passed"] = self.passed
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = str(value)
        return out


def _deviations(params: list, reference: list) -> tuple[float, float]:
    """(max abs, max rel) over the steps; rel is against the largest reference
    magnitude at each step."""
    max_abs = max_rel = 0.0
    for got, want in zip(params, reference):
        scale = max(float(np.max(np.abs(w))) if w.size else 0.0 for w in want)
        step_abs = 0.0
        for g, w in zip(got, want):
            if g.size == 0:
                continue
            difference = np.abs(np.asarray(g, dtype=np.float64) - w)
            worst = float(np.max(difference))
            step_abs = max(step_abs, worst if np.all(np.isfinite(difference)) else math.inf)
        max_abs = max(max_abs, step_abs)
        max_rel = max(max_rel, step_abs / max(scale, _TINY))
    return max_abs, max_rel


def _shape_problems(trajectory: Trajectory, reference: Trajectory, steps: int) -> list:
    problems = []
    if len(trajectory.params) != steps + 1:
        problems.append(
            f"trajectory.params has {len(trajectory.params)} entries, expected steps + 1 = "
            f"{steps + 1}"
        )
    if len(trajectory.losses) != steps:
        problems.append(f"trajectory.losses has {len(trajectory.losses)} entries, expected {steps}")
    for t, (got, want) in enumerate(zip(trajectory.params, reference.params)):
        got_shapes = [tuple(np.shape(g)) for g in got]
        want_shapes = [w.shape for w in want]
        if got_shapes != want_shapes:
            problems.append(
                f"parameter shapes at step {t} are {got_shapes}, expected {want_shapes}"
            )
            break
    return problems


def _mask_problems(masks: dict, reference: dict) -> list:
    problems = []
    got_steps, want_steps = sorted(masks), sorted(reference)
    if got_steps != want_steps:
        missing = sorted(set(want_steps) - set(got_steps))
        extra = sorted(set(got_steps) - set(want_steps))
        problems.append(f"refresh steps differ: missing {missing}, unexpected {extra}")
    for t in want_steps:
        if t not in masks:
            continue
        got = [np.asarray(m, dtype=bool) for m in masks[t]]
        want = reference[t]
        if [g.shape for g in got] != [w.shape for w in want]:
            problems.append(
                f"mask at step {t} has shapes {[g.shape for g in got]}, expected "
                f"{[w.shape for w in want]}"
            )
            continue
        differing = [
            (i, tuple(int(j) for j in index))
            for i, (g, w) in enumerate(zip(got, want))
            for index in np.argwhere(g != w)
        ]
        if differing:
            total = sum(w.size for w in want)
            listed = ", ".join(f"tensor {i} {index}" for i, index in differing[:_LISTED])
            more = " …" if len(differing) > _LISTED else ""
            problems.append(
                f"mask at step {t} differs in {len(differing)} of {total} coordinates "
                f"({listed}{more})"
            )
    return problems


def _loss_deviation(losses: list, reference: list, measure: str) -> float:
    if len(losses) != len(reference) or not reference:
        return math.inf if len(losses) != len(reference) else 0.0
    got = np.asarray(losses, dtype=np.float64)
    want = np.asarray(reference, dtype=np.float64)
    difference = np.abs(got - want)
    if not np.all(np.isfinite(difference)):
        return math.inf
    worst = float(np.max(difference))
    if measure == "rel":
        return worst / max(float(np.max(np.abs(want))), _TINY)
    return worst


def compare(
    trajectory: Trajectory, reference: Trajectory, scenario: Scenario, driver: str
) -> Comparison:
    """Checks ``trajectory`` against the ``reference`` trajectory of
    ``scenario`` (see the module docstring for the rules).

    Args:
      trajectory: what the driver returned.
      reference: what the reference driver returned for the same scenario.
      scenario: the scenario both ran.
      driver: the driver's name, for the report.

    Returns:
      A :class:`Comparison`; ``passed`` tells the verdict and ``problems``
      says what does not conform.
    """
    tolerance, measure = tolerance_for(scenario.dtype)
    problems = _shape_problems(trajectory, reference, scenario.steps)
    if problems:
        max_abs = max_rel = math.inf
    else:
        max_abs, max_rel = _deviations(trajectory.params, reference.params)
    deviation = max_abs if measure == "abs" else max_rel
    if not deviation <= tolerance and not problems:
        problems.append(
            f"parameters deviate by {deviation:.3g} ({measure}), tolerance {tolerance:g}"
            f"{_first_bad_step(trajectory.params, reference.params, measure, tolerance)}"
        )
    loss_deviation = _loss_deviation(trajectory.losses, reference.losses, measure)
    if not loss_deviation <= tolerance:
        problems.append(f"losses deviate by {loss_deviation:.3g} ({measure}), tolerance {tolerance:g}")
    mask_problems = _mask_problems(trajectory.masks, reference.masks)
    return Comparison(
        driver=driver,
        scenario=scenario.name,
        dtype=scenario.dtype,
        measure=measure,
        tolerance=tolerance,
        deviation=deviation,
        max_abs=max_abs,
        max_rel=max_rel,
        loss_deviation=loss_deviation,
        masks_agree=not mask_problems,
        refreshes=len(reference.masks),
        problems=tuple(problems + mask_problems),
    )


def _first_bad_step(params, reference, measure, tolerance) -> str:
    for t in range(len(reference)):
        max_abs, max_rel = _deviations(params[t : t + 1], reference[t : t + 1])
        if not (max_abs if measure == "abs" else max_rel) <= tolerance:
            return f", first exceeded after step {t - 1}" if t else ", already in the initial parameters"
    return ""


def driver_failure(driver: str, scenario: Scenario, error: BaseException) -> Comparison:
    """The verdict on a cell whose driver raised ``error``.

    Example:
      >>> from conformance.scenarios import SCENARIOS
      >>> cell = driver_failure("torch", SCENARIOS["mlp_sgd_exact"], ValueError("boom"))
      >>> cell.passed, cell.problems
      (False, ('driver raised ValueError: boom',))
    """
    tolerance, measure = tolerance_for(scenario.dtype)
    return Comparison(
        driver=driver,
        scenario=scenario.name,
        dtype=scenario.dtype,
        measure=measure,
        tolerance=tolerance,
        deviation=math.nan,
        max_abs=math.nan,
        max_rel=math.nan,
        loss_deviation=math.nan,
        masks_agree=False,
        refreshes=0,
        problems=(f"driver raised {type(error).__name__}: {error}",),
    )
