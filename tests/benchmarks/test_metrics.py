"""Curve summaries, tables and the learning-rate schedule."""

import math

import pytest

from benchmarks.metrics import format_mean_std, mean_std, steps_to_target
from benchmarks.schedules import warmup_cosine
from benchmarks.tables import render_table, write_text


def test_steps_to_target_interpolates_between_evaluations():
    assert steps_to_target([0, 10, 20], [4.0, 3.0, 1.0], 2.0) == pytest.approx(15.0)
    assert steps_to_target([0, 10], [4.0, 3.0], 3.0) == 10.0


def test_steps_to_target_never_reached_and_already_reached():
    assert math.isinf(steps_to_target([0, 10], [4.0, 3.0], 2.0))
    assert steps_to_target([5, 10], [1.0, 0.5], 2.0) == 5.0


def test_steps_to_target_rejects_mismatched_curves():
    with pytest.raises(ValueError, match="equal length"):
        steps_to_target([0, 1], [1.0], 0.5)


def test_mean_std_is_the_sample_standard_deviation():
    assert mean_std([2.0, 4.0, 6.0]) == (4.0, 2.0)
    assert mean_std([3.0]) == (3.0, 0.0)
    assert format_mean_std([1.0, 2.0], digits=1) == "1.5 ± 0.7"
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])


def test_render_table_pads_columns_and_checks_row_length():
    table = render_table(["a", "long header"], [["xyz", 1]]).splitlines()
    assert table[0] == "| a   | long header |"
    assert table[2] == "| xyz | 1           |"
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        render_table(["a", "b"], [["only"]])


def test_write_text_creates_folders(tmp_path):
    path = write_text(tmp_path / "a" / "b.md", "hello")
    assert path.read_text() == "hello\n"


def test_warmup_cosine_rises_then_decays_to_the_floor():
    values = [warmup_cosine(t, total=100, warmup=10, floor=0.1) for t in range(101)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[100] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup must be in"):
        warmup_cosine(0, total=5, warmup=6)
    with pytest.raises(ValueError, match="floor must be in"):
        warmup_cosine(0, total=5, warmup=1, floor=1.5)
