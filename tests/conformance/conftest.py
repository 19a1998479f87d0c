"""Shared set-up of the conformance tests, and the report of a pytest run.

The ``conformance`` package lives at the repository root and is not
installed; it is made importable here whatever the working directory.

Every backend × scenario cell checked by ``test_conformance_backends.py`` is
collected; at the end of the run the backend × scenario table is printed, and
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


def pytest_addoption(parser):
    parser.addoption(
        "--conformance-report",
        metavar="DIR",
        default=None,
        help="write the backend × scenario conformance table to DIR/conformance.{md,json}",
    )


def pytest_configure(config):
    config.stash[_RESULTS] = []


@pytest.fixture
def conformance_results(request):
    """The list every checked conformance cell is appended to."""
    return request.config.stash[_RESULTS]


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
