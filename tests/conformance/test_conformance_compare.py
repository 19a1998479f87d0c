"""The comparison catches every kind of deviation it promises to."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from conformance.compare import (
    FLOAT32_TOLERANCE,
    FLOAT64_TOLERANCE,
    compare,
    driver_failure,
    tolerance_for,
)
from conformance.runner import check, reference_run
from conformance.scenarios import get_scenario

F64 = get_scenario("mlp_adamw_fisher")
F32 = get_scenario("mlp_sgd_fisher_f32")


def _copy(trajectory):
    return copy.deepcopy(trajectory)


def _nudged(trajectory, step, amount):
    out = _copy(trajectory)
    out.params[step][0] = out.params[step][0] + amount
    return out


def test_identical_trajectories_conform():
    reference = reference_run(F64).trajectory
    result = compare(_copy(reference), reference, F64, "same")
    assert result.passed and result.masks_agree
    assert result.deviation == result.max_abs == result.loss_deviation == 0.0
    assert result.refreshes == len(reference.masks) > 1
    assert "conforms" in result.summary()


def test_float64_tolerance_is_absolute():
    reference = reference_run(F64).trajectory
    assert compare(_nudged(reference, 7, 0.5 * FLOAT64_TOLERANCE), reference, F64, "x").passed
    result = compare(_nudged(reference, 7, 3 * FLOAT64_TOLERANCE), reference, F64, "x")
    assert not result.passed
    assert result.deviation == pytest.approx(3 * FLOAT64_TOLERANCE)
    assert "first exceeded after step 6" in result.problems[0]


def test_float32_tolerance_is_relative_to_the_parameter_scale():
    reference = reference_run(F32).trajectory
    scale = max(np.max(np.abs(p)) for p in reference.params[4])
    small = _nudged(reference, 4, 0.5 * FLOAT32_TOLERANCE * scale)
    assert compare(small, reference, F32, "x").passed
    large = compare(_nudged(reference, 4, 2 * FLOAT32_TOLERANCE * scale), reference, F32, "x")
    assert not large.passed and large.measure == "rel"
    assert large.deviation == pytest.approx(2 * FLOAT32_TOLERANCE, rel=1e-6)


def test_a_single_flipped_mask_coordinate_fails():
    reference = reference_run(F64).trajectory
    step = sorted(reference.masks)[1]
    flipped = _copy(reference)
    flipped.masks[step][2][1, 0] = ~flipped.masks[step][2][1, 0]
    result = compare(flipped, reference, F64, "x")
    assert not result.passed and not result.masks_agree
    assert result.deviation == 0.0
    assert f"mask at step {step} differs in 1 of 67 coordinates (tensor 2 (1, 0))" in result.problems


def test_refresh_on_other_steps_fails():
    reference = reference_run(F64).trajectory
    moved = _copy(reference)
    first = sorted(moved.masks)[0]
    moved.masks[first + 1] = moved.masks.pop(first)
    result = compare(moved, reference, F64, "x")
    assert not result.masks_agree
    assert f"missing [{first}], unexpected [{first + 1}]" in result.problems[0]


def test_wrong_lengths_shapes_and_non_finite_values_fail():
    reference = reference_run(F64).trajectory
    short = _copy(reference)
    short.params.pop()
    short.losses.pop()
    result = compare(short, reference, F64, "x")
    assert not result.passed and math.isinf(result.deviation)
    assert any("steps + 1 = 41" in p for p in result.problems)

    reshaped = _copy(reference)
    reshaped.params[3][1] = reshaped.params[3][1].reshape(1, -1)
    assert any("shapes at step 3" in p for p in compare(reshaped, reference, F64, "x").problems)

    broken = _nudged(reference, 9, np.nan)
    result = compare(broken, reference, F64, "x")
    assert not result.passed and math.isinf(result.deviation)

    lossy = _copy(reference)
    lossy.losses[5] = float("nan")
    assert any("losses deviate" in p for p in compare(lossy, reference, F64, "x").problems)


def test_masks_may_come_as_any_boolean_array_like():
    reference = reference_run(F64).trajectory
    as_ints = _copy(reference)
    as_ints.masks = {t: [m.astype(np.int8) for m in mask] for t, mask in as_ints.masks.items()}
    assert compare(as_ints, reference, F64, "x").passed


def test_a_raising_driver_is_a_failed_cell():
    class Broken:
        name = "broken"

        def available(self):
            return None

        def run(self, scenario):
            raise RuntimeError("no HVP here")

    result = check(Broken(), F64)
    assert not result.passed
    assert result.problems == ("driver raised RuntimeError: no HVP here",)
    assert math.isnan(result.deviation)
    as_dict = result.to_dict()
    assert as_dict["deviation"] == "nan" and as_dict["passed"] is False
    assert driver_failure("d", F32, ValueError("v")).measure == "rel"


def test_tolerances_by_dtype():
    assert tolerance_for("float64") == (1e-9, "abs")
    assert tolerance_for("float32") == (1e-4, "rel")
    with pytest.raises(ValueError, match="'bfloat16'"):
        tolerance_for("bfloat16")
