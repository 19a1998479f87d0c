"""Running drivers over scenarios and judging them against the reference.

The reference trajectory of each scenario is computed once per process and
shared by every driver checked against it. :func:`check_cells` runs many
cells with up to one thread per CPU, one driver per thread, so backends that
work in subprocesses (the Keras drivers) run alongside the in-process ones;
the cells of one driver always run one after the other, in order.

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
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from .compare import Comparison, compare, driver_failure
from .drivers.reference_driver import ReferenceDriver, ReferenceRun
from .protocol import Scenario
from .scenarios import get_scenario

__all__ = ["check", "check_cells", "reference_run"]


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


def check_cells(cells: Iterable[tuple], jobs: int | None = None) -> dict:
    """Checks many ``(driver, scenario)`` cells, drivers in parallel.

    Args:
      cells: ``(driver, scenario)`` pairs; drivers must be available.
      jobs: how many drivers run at the same time (default: the number of
        CPUs; 1 runs everything in this thread).

    Returns:
      ``(driver name, scenario name) -> Comparison``, in the order of ``cells``.

    Example:
      >>> from conformance.drivers.reference_driver import ReferenceDriver
      >>> from conformance.scenarios import SCENARIOS
      >>> driver = ReferenceDriver(name="numpy-again")
      >>> cells = [(driver, SCENARIOS[n]) for n in ("mlp_sgd_exact", "manifold_sgd_exact")]
      >>> [(key, result.passed) for key, result in check_cells(cells).items()]
      [(('numpy-again', 'mlp_sgd_exact'), True), (('numpy-again', 'manifold_sgd_exact'), True)]
    """
    cells = list(cells)
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be None or an integer >= 1, got {jobs!r}")
    columns: dict = {}
    for driver, scenario in cells:
        columns.setdefault(id(driver), (driver, []))[1].append(scenario)
    for scenario in {s.name: s for _, s in cells}.values():
        reference_run(scenario)  # once, before the threads share the cache

    def column(entry):
        driver, scenarios = entry
        return {(driver.name, s.name): check(driver, s) for s in scenarios}

    workers = min(jobs or os.cpu_count() or 1, len(columns))
    results: dict = {}
    if workers <= 1:
        for entry in columns.values():
            results.update(column(entry))
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="conformance") as pool:
            for done in pool.map(column, columns.values()):
                results.update(done)
    return {(d.name, s.name): results[(d.name, s.name)] for d, s in cells}
