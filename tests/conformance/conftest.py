"""Shared set-up of the conformance tests, and the report of a pytest run.

The ``conformance`` package lives at the repository root and is not
installed; it is made importable here whatever the working directory.

The backend × scenario cells selected for a run are computed together on
first use, drivers in parallel threads (as many as CPUs;
``--conformance-jobs N`` sets the number), so the Keras subprocesses run
alongside torch and JAX. At the end of the run the
backend × scenario table is printed, and
``--conformance-report DIR`` also writes it as ``DIR/conformance.md`` and
``DIR/conformance.json`` (the same files as ``python -m conformance.report``,
without running everything a second time).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

_RESULTS = pytest.StashKey[list]()
_CELLS = pytest.StashKey[dict]()
_TEST = "test_trajectory_matches_the_reference"


def pytest_addoption(parser):
    parser.addoption(
        "--conformance-report",
        metavar="DIR",
        default=None,
        help="write the backend × scenario conformance table to DIR/conformance.{md,json}",
    )
    parser.addoption(
        "--conformance-jobs",
        metavar="N",
        type=int,
        default=None,
        help="conformance drivers run at the same time (default: the number of CPUs)",
    )


def pytest_configure(config):
    config.stash[_RESULTS] = []


@pytest.fixture
def conformance_results(request):
    """The list every checked conformance cell is appended to."""
    return request.config.stash[_RESULTS]


@pytest.fixture(scope="session")
def conformance_cells(request):
    """``(driver name, scenario name) -> Comparison`` for every selected,
    available cell of the backend tests, computed on first use."""
    config = request.config
    if _CELLS not in config.stash:
        from conformance.runner import check_cells

        cells = []
        for item in request.session.items:
            params = getattr(getattr(item, "callspec", None), "params", {})
            if getattr(item, "originalname", None) != _TEST or "driver" not in params:
                continue
            if params["driver"].available() is None:
                cells.append((params["driver"], params["scenario"]))
        jobs = config.getoption("--conformance-jobs", default=None)
        config.stash[_CELLS] = check_cells(cells, jobs=jobs)
    return config.stash[_CELLS]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    from conformance.drivers import backend_drivers
    from conformance.report import Report, render_text, write
    from conformance.scenarios import SCENARIOS

    drivers = backend_drivers()
    names = {d.name for d in drivers}
    report = Report(
        [(d.name, d.available()) for d in drivers],
        list(SCENARIOS.values()),
        {(r.driver, r.scenario): r for r in results if r.driver in names},
    )
    terminalreporter.section("conformance: deviation from the NumPy reference")
    terminalreporter.write_line(render_text(report))
    out = config.getoption("--conformance-report", default=None)
    if out:
        for path in write(report, out):
            terminalreporter.write_line(f"wrote {path}")
