"""The backend × scenario conformance table, as text, Markdown and JSON.

Run every available driver over every scenario and write the report::

    python -m conformance.report --out docs/conformance

It prints the table of the largest deviation from the NumPy reference per
cell, writes ``conformance.md`` and ``conformance.json`` under ``--out``, and
exits with status 1 if any cell does not conform. Backends that cannot run
here are listed with the reason and do not fail the run.

Example:
  >>> from conformance.drivers.reference_driver import ReferenceDriver
  >>> from conformance.report import run_matrix
  >>> from conformance.scenarios import SCENARIOS
  >>> report = run_matrix([ReferenceDriver(name="numpy-again")], [SCENARIOS["mlp_sgd_exact"]])
  >>> report.passed, report.cell("numpy-again", "mlp_sgd_exact").deviation
  (True, 0.0)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from .compare import FLOAT32_TOLERANCE, FLOAT64_TOLERANCE, Comparison
from .protocol import Scenario
from .runner import check_cells
from .scenarios import SCENARIOS, describe

__all__ = ["Report", "main", "render_markdown", "render_text", "run_matrix", "to_json", "write"]

_LEGEND = (
    "✓ conforms, ✗ does not (mask: the flat masks differ), skipped: the backend "
    "cannot run here, —: not run"
)
_PACKAGES = ("numpy", "torch", "jax", "optax", "keras", "tensorflow", "tensorflow-cpu")


@dataclasses.dataclass
class Report:
    """Results of drivers × scenarios.

    Attributes:
      drivers: ``(name, reason)`` per driver in column order; ``reason`` is
        ``None`` for drivers that ran.
      scenarios: the scenarios, in row order.
      cells: ``(driver name, scenario name) -> Comparison`` for the cells
        that ran.
    """

    drivers: list
    scenarios: list
    cells: dict = dataclasses.field(default_factory=dict)

    def cell(self, driver: str, scenario: str) -> Comparison | None:
        """The comparison of one cell (``None`` if it did not run)."""
        return self.cells.get((driver, scenario))

    @property
    def failures(self) -> list:
        """The cells that do not conform."""
        return [c for c in self.cells.values() if not c.passed]

    @property
    def passed(self) -> bool:
        """True when every cell that ran conforms."""
        return not self.failures


def run_matrix(
    drivers: Sequence, scenarios: Iterable[Scenario], progress=None, jobs: int | None = None
) -> Report:
    """Runs every available driver on every scenario.

    Args:
      drivers: objects following :class:`conformance.protocol.Driver`.
      scenarios: the scenarios to run.
      progress: optional ``callable(Comparison)`` called for each cell.
      jobs: drivers run at the same time (see :func:`conformance.runner.check_cells`).
    """
    scenarios = list(scenarios)
    report = Report([(d.name, d.available()) for d in drivers], scenarios)
    cells = [
        (driver, scenario)
        for driver, (_, reason) in zip(drivers, report.drivers)
        if reason is None
        for scenario in scenarios
    ]
    for key, result in check_cells(cells, jobs=jobs).items():
        report.cells[key] = result
        if progress is not None:
            progress(result)
    return report


def _cell_text(result: Comparison | None, reason: str | None, markdown: bool) -> str:
    if result is None:
        return "skipped" if reason else "—"
    value = "error" if result.deviation != result.deviation else f"{result.deviation:.1e}"
    if result.passed:
        return f"{value} ✓"
    flags = [] if result.masks_agree else ["mask"]
    text = f"{value} ✗" + (f" ({', '.join(flags)})" if flags else "")
    return f"**{text}**" if markdown else text


def _rows(report: Report, markdown: bool) -> tuple[list, list]:
    header = ["scenario", "dtype", *[name for name, _ in report.drivers]]
    rows = []
    for scenario in report.scenarios:
        row = [scenario.name, scenario.dtype]
        for name, reason in report.drivers:
            row.append(_cell_text(report.cell(name, scenario.name), reason, markdown))
        rows.append(row)
    return header, rows


def _summary_line(report: Report) -> str:
    ran = len(report.cells)
    skipped = [name for name, reason in report.drivers if reason]
    text = f"{ran - len(report.failures)} of {ran} cells conform"
    if skipped:
        text += f"; skipped backends: {', '.join(skipped)}"
    return text


def render_text(report: Report) -> str:
    """A fixed-width table for the terminal, with the failures spelled out."""
    header, rows = _rows(report, markdown=False)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(_LEGEND)
    lines.append(_summary_line(report))
    for name, reason in report.drivers:
        if reason:
            lines.append(f"  {name}: skipped, {reason}")
    for failure in report.failures:
        lines.append(failure.summary())
    return "\n".join(lines)


def _versions() -> str:
    found = []
    for package in _PACKAGES:
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def render_markdown(report: Report) -> str:
    """The report as a Markdown page."""
    header, rows = _rows(report, markdown=True)
    table = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + [":-:"] * (len(header) - 2)) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    lines = [
        "# Conformance report",
        "",
        "Every backend runs every scenario and is compared, step by step, with the "
        "NumPy reference (`conformance/`). A cell shows the largest parameter deviation "
        f"over all steps: absolute for float64 (tolerance {FLOAT64_TOLERANCE:g}), relative "
        f"for float32 (tolerance {FLOAT32_TOLERANCE:g}); ✓ also means the losses agree "
        "and the flat masks are identical at every refresh.",
        "",
        f"**{_summary_line(report)}.**",
        "",
        *table,
        "",
        _LEGEND + ".",
        "",
    ]
    skipped = [(name, reason) for name, reason in report.drivers if reason]
    if skipped:
        lines += ["## Skipped backends", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in skipped]
        lines.append("")
    if report.failures:
        lines += ["## Failures", ""]
        for failure in report.failures:
            lines.append(f"- `{failure.driver}` × `{failure.scenario}`:")
            lines += [f"  - {problem}" for problem in failure.problems]
        lines.append("")
    lines += ["## Scenarios", "", "| scenario | settings |", "|---|---|"]
    lines += [f"| `{s.name}` | {describe(s)} |" for s in report.scenarios]
    versions = _versions()
    if versions:
        lines += ["", f"Generated by `python -m conformance.report` with {versions}."]
    return "\n".join(lines) + "\n"


def to_json(report: Report) -> dict:
    """The report as a JSON-ready dict."""
    return {
        "passed": report.passed,
        "tolerances": {"float64_abs": FLOAT64_TOLERANCE, "float32_rel": FLOAT32_TOLERANCE},
        "drivers": [
            {"name": name, "available": reason is None, "reason": reason}
            for name, reason in report.drivers
        ],
        "scenarios": [
            {"name": s.name, "settings": describe(s), "dtype": s.dtype, "steps": s.steps}
            for s in report.scenarios
        ],
        "cells": [report.cells[key].to_dict() for key in sorted(report.cells)],
    }


def write(report: Report, out: str | Path) -> tuple[Path, Path]:
    """Writes ``conformance.md`` and ``conformance.json`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    markdown, data = out / "conformance.md", out / "conformance.json"
    markdown.write_text(render_markdown(report), encoding="utf-8")
    data.write_text(json.dumps(to_json(report), indent=2) + "\n", encoding="utf-8")
    return markdown, data


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.report",
        description="Runs every backend over every conformance scenario against the "
        "NumPy reference and writes the table as Markdown and JSON.",
    )
    parser.add_argument("--out", default="docs/conformance",
                        help="folder for conformance.md and conformance.json "
                        "(default: %(default)s)")
    parser.add_argument("--driver", action="append", default=None, metavar="NAME",
                        help="run only this backend (repeatable)")
    parser.add_argument("--scenario", action="append", default=None, metavar="NAME",
                        help="run only this scenario (repeatable)")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="backends run at the same time (default: the number of CPUs)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (1 if a cell fails)."""
    from .drivers import backend_drivers

    args = _parser().parse_args(argv)
    drivers = backend_drivers()
    if args.driver:
        unknown = sorted(set(args.driver) - {d.name for d in drivers})
        if unknown:
            raise SystemExit(f"--driver must name a backend of {[d.name for d in drivers]}, "
                             f"got {unknown}")
        drivers = [d for d in drivers if d.name in args.driver]
    scenarios = list(SCENARIOS.values())
    if args.scenario:
        unknown = sorted(set(args.scenario) - set(SCENARIOS))
        if unknown:
            raise SystemExit(f"--scenario must name a scenario of {sorted(SCENARIOS)}, "
                             f"got {unknown}")
        scenarios = [s for s in scenarios if s.name in args.scenario]
    report = run_matrix(drivers, scenarios, jobs=args.jobs)
    print(render_text(report))
    if not args.no_write:
        for path in write(report, args.out):
            print(f"wrote {path}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
