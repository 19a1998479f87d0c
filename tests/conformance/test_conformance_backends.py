"""Every backend walks the reference's trajectory in every scenario.

One test per driver × scenario (ids like ``torch-logistic_adamw_fisher``). A
backend that cannot run here is skipped with the reason its driver gives.
The selected cells are computed together, drivers in parallel (see
``conftest.py``); each test asserts its own cell.
``numpy-rerun`` runs the reference a second time: the reference is
deterministic, so it must match exactly.
"""

from __future__ import annotations

import pytest

from conformance.drivers import backend_drivers
from conformance.drivers.reference_driver import ReferenceDriver
from conformance.runner import check
from conformance.scenarios import SCENARIOS

DRIVERS = [ReferenceDriver(name="numpy-rerun"), *backend_drivers()]

CASES = [
    pytest.param(driver, scenario, id=f"{driver.name}-{name}")
    for driver in DRIVERS
    for name, scenario in SCENARIOS.items()
]


@pytest.mark.parametrize(("driver", "scenario"), CASES)
def test_trajectory_matches_the_reference(
    driver, scenario, conformance_cells, conformance_results
):
    reason = driver.available()
    if reason is not None:
        pytest.skip(f"{driver.name}: {reason}")
    result = conformance_cells.get((driver.name, scenario.name)) or check(driver, scenario)
    conformance_results.append(result)
    assert result.passed, result.summary()
    if driver.name == "numpy-rerun":
        assert result.deviation == 0.0
