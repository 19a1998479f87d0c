"""The language-model sweep (quick mode)."""

import re

import pytest

from benchmarks import lm_sweep


@pytest.fixture(scope="module")
def sweep():
    return lm_sweep.run_sweep(lm_sweep.QUICK_GRID, seeds=2, quick=True, steps=16,
                              log=lambda line: None)


def test_stages_cover_the_grid_and_the_seeds(sweep):
    assert sweep["lr"] == 3e-3
    assert len(sweep["ire"]) == 2  # κ = 2, γ = 0.6, κ constant and following the lr
    assert {s.kappa_follows_lr for s in sweep["ire"]} == {False, True}
    assert sweep["best"] in sweep["ire"]
    assert len(sweep["seeds"]["adamw"]) == len(sweep["seeds"]["ire"]) == 2
    # seed 0 of stage 3 is the stage-1 baseline itself
    assert sweep["seeds"]["adamw"][0] is sweep["adamw"][3e-3]


def test_kappa_schedules_give_different_runs_and_losses_fall(sweep):
    runs = list(sweep["ire"].values())
    assert runs[0].val_losses != runs[1].val_losses
    for run in runs + sweep["seeds"]["adamw"]:
        assert run.val_losses[-1] < run.val_losses[0] - 0.5
    a, b = sweep["seeds"]["adamw"]
    assert a.val_losses != b.val_losses  # another seed, other data and weights


def test_tables_report_loss_and_speedup(sweep):
    tables = sweep["tables"]
    assert re.search(r"^\| 2 +\| 0.6 +\| \d\.\d{4} +\| (\d\.\d\d×|not reached)", tables["grid"],
                     re.MULTILINE)
    assert "IRE − AdamW (paired)" in tables["seeds"]
    assert re.search(r"\d\.\d{4} ± \d\.\d{4}", tables["seeds"])


def test_quick_main_writes_files(tmp_path, capsys):
    assert lm_sweep.main(["--quick", "--steps", "16", "--seeds", "1", "--out", str(tmp_path)]) == 0
    assert "Stage 3" in (tmp_path / "lm_sweep.md").read_text()
    assert (tmp_path / "lm_sweep_best.png").stat().st_size > 5_000
    assert "steps-to-target speed-up in the grid" in capsys.readouterr().out
