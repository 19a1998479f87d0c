"""The report: table, Markdown, JSON and exit status."""

from __future__ import annotations

import json

import numpy as np

import conformance.report as report_module
from conformance.drivers import UnavailableDriver
from conformance.drivers.reference_driver import ReferenceDriver
from conformance.report import main, render_markdown, render_text, run_matrix, to_json, write
from conformance.scenarios import get_scenario

SCENARIOS = [get_scenario("manifold_sgd_exact"), get_scenario("logistic_nesterov_exact_f32")]


class Drifting(ReferenceDriver):
    """The reference with a deviation of 1e-6 added after the first step."""

    def run(self, scenario):
        trajectory = super().run(scenario)
        for params in trajectory.params[1:]:
            params[0] = params[0] + 1e-6
        return trajectory


def _matrix():
    drivers = [
        ReferenceDriver(name="numpy-again"),
        Drifting(name="drifting"),
        UnavailableDriver("absent", "absent is not installed"),
    ]
    return run_matrix(drivers, SCENARIOS)


def test_matrix_runs_available_drivers_and_records_verdicts():
    seen = []
    report = run_matrix([ReferenceDriver(name="numpy-again")], SCENARIOS, progress=seen.append)
    assert [c.scenario for c in seen] == [s.name for s in SCENARIOS]
    assert report.passed

    report = _matrix()
    assert not report.passed
    assert report.cell("numpy-again", "manifold_sgd_exact").passed
    assert not report.cell("drifting", "manifold_sgd_exact").passed  # 1e-6 > 1e-9 absolute
    assert report.cell("drifting", "logistic_nesterov_exact_f32").passed  # < 1e-4 relative
    assert report.cell("absent", "manifold_sgd_exact") is None
    assert len(report.failures) == 1


def test_text_and_markdown_tables():
    report = _matrix()
    text = render_text(report)
    assert "3 of 4 cells conform; skipped backends: absent" in text
    assert "absent: skipped, absent is not installed" in text
    assert "drifting on manifold_sgd_exact does NOT conform" in text
    markdown = render_markdown(report)
    assert "| scenario | dtype | numpy-again | drifting | absent |" in markdown
    assert "| manifold_sgd_exact | float64 | 0.0e+00 ✓ | **1.0e-06 ✗** | skipped |" in markdown
    assert "- `absent`: absent is not installed" in markdown
    assert "## Failures" in markdown and "## Scenarios" in markdown


def test_json_and_files(tmp_path):
    report = _matrix()
    data = to_json(report)
    assert data["passed"] is False
    assert data["drivers"][2] == {"name": "absent", "available": False,
                                  "reason": "absent is not installed"}
    assert len(data["cells"]) == 4
    markdown, path = write(report, tmp_path / "out")
    assert json.loads(path.read_text()) == json.loads(json.dumps(data))
    assert markdown.read_text().startswith("# Conformance report")


def test_main_exit_status_follows_the_cells(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        "conformance.drivers.backend_drivers",
        lambda: [ReferenceDriver(name="numpy-again"), UnavailableDriver("absent", "why")],
    )
    names = ["--scenario", "manifold_sgd_exact", "--scenario", "mlp_sgd_exact"]
    assert main([*names, "--out", str(tmp_path)]) == 0
    assert "2 of 2 cells conform" in capsys.readouterr().out
    assert (tmp_path / "conformance.md").exists() and (tmp_path / "conformance.json").exists()

    monkeypatch.setattr(
        "conformance.drivers.backend_drivers", lambda: [Drifting(name="drifting")]
    )
    assert main([*names, "--no-write", "--out", str(tmp_path / "none")]) == 1
    assert not (tmp_path / "none").exists()


def test_main_rejects_unknown_names(monkeypatch):
    monkeypatch.setattr("conformance.drivers.backend_drivers", lambda: [ReferenceDriver()])
    for argv, expected in ((["--driver", "cobol"], "'cobol'"), (["--scenario", "x"], "'x'")):
        try:
            main(argv)
        except SystemExit as exit:
            assert expected in str(exit.code)
        else:
            raise AssertionError("main accepted an unknown name")


def test_cells_keep_driver_order_and_scenario_order():
    report = _matrix()
    assert [name for name, _ in report.drivers] == ["numpy-again", "drifting", "absent"]
    assert [s.name for s in report.scenarios] == [s.name for s in SCENARIOS]
    assert np.isfinite(report.cell("drifting", "manifold_sgd_exact").seconds)
    assert report_module.Report is type(report)
