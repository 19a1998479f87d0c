"""Running drivers over scenarios and judging them against the reference.

The reference trajectory of each scenario is computed once per process and
shared by every driver checked against it.

Example:
  >>> from conformance.drivers.reference_driver import ReferenceDriver
  >>> from conformance.runner import check
  >>> from conformance.scenarios import SCENARIOS
  >>> check(ReferenceDriver(name="numpy-again"), SCENARIOS["mlp_sgd_exact"]).passed
  True
"""

from __future__ import annotations

import dataclasses
import functools
import time

from .compare import Comparison, compare, driver_failure
from .drivers.reference_driver import ReferenceDriver, ReferenceRun
from .protocol import Scenario
from .scenarios import get_scenario

__all__ = ["check", "reference_run"]


@functools.cache
def _reference_run(name: str) -> ReferenceRun:
    return ReferenceDriver().run_detailed(get_scenario(name))


def reference_run(scenario: Scenario) -> ReferenceRun:
    """The reference run of ``scenario`` (cached for registered scenarios)."""
    if _is_registered(scenario):
        return _reference_run(scenario.name)
    return ReferenceDriver().run_detailed(scenario)


def _is_registered(scenario: Scenario) -> bool:
    try:
        return get_scenario(scenario.name) is scenario
    except KeyError:
        return False


def check(driver, scenario: Scenario) -> Comparison:
    """Runs ``scenario`` on ``driver`` and compares it with the reference.

    A driver that raises is a failed cell carrying the error, not an
    exception: one broken scenario does not hide the others.
    """
    reference = reference_run(scenario).trajectory
    start = time.perf_counter()
    try:
        trajectory = driver.run(scenario)
    except Exception as error:  # reported in the cell
        return driver_failure(driver.name, scenario, error)
    seconds = time.perf_counter() - start
    result = compare(trajectory, reference, scenario, driver.name)
    return dataclasses.replace(result, seconds=seconds)
