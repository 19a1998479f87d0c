"""Running cells: the reference is cached, drivers may run in parallel."""

from __future__ import annotations

import threading

import pytest

from conformance.drivers.reference_driver import ReferenceDriver
from conformance.runner import check_cells, reference_run
from conformance.scenarios import get_scenario

NAMES = ("manifold_sgd_exact", "logistic_sgd_fisher", "mlp_sgd_fisher_f32")


class Recording(ReferenceDriver):
    """The reference, noting which thread ran which scenario."""

    def __init__(self, name, meeting=None):
        super().__init__(name=name)
        self.calls = []
        self.meeting = meeting

    def run(self, scenario):
        if self.meeting is not None and not self.calls:
            # Both drivers' first cells must be running at the same time.
            self.meeting.wait(timeout=60)
        self.calls.append((scenario.name, threading.current_thread().name))
        return super().run(scenario)


def test_reference_runs_are_cached_per_registered_scenario():
    scenario = get_scenario("mlp_sgd_exact")
    assert reference_run(scenario) is reference_run(scenario)


@pytest.mark.parametrize("jobs", [1, 2])
def test_cells_keep_their_order_and_each_driver_runs_in_order(jobs):
    meeting = threading.Barrier(2) if jobs == 2 else None
    first, second = Recording("first", meeting), Recording("second", meeting)
    cells = [(d, get_scenario(n)) for n in NAMES for d in (first, second)]
    results = check_cells(cells, jobs=jobs)
    assert list(results) == [(d.name, s.name) for d, s in cells]
    assert all(r.passed and r.deviation == 0.0 for r in results.values())
    for driver in (first, second):
        assert [name for name, _ in driver.calls] == list(NAMES)
        assert len({thread for _, thread in driver.calls}) == 1
    threads = {first.calls[0][1], second.calls[0][1]}
    assert len(threads) == jobs  # with 2 jobs the barrier above proved both ran at once


def test_jobs_must_be_positive():
    with pytest.raises(ValueError, match="jobs must be None or an integer >= 1, got 0"):
        check_cells([], jobs=0)
