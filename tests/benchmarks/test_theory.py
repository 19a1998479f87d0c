"""The toy manifold: IRE drifts (1 + κ) times faster along the minima."""

import re

import numpy as np
import pytest

from benchmarks import theory


@pytest.mark.parametrize("method", ["sam", "gd"])
@pytest.mark.parametrize("kappa", [1.0, 3.0])
def test_drift_ratio_matches_one_plus_kappa(method, kappa):
    ratio = theory.drift_ratio(method, kappa, steps=900)
    assert ratio == pytest.approx(1 + kappa, rel=0.10)


def test_kappa_zero_is_the_base_method_bit_for_bit():
    base = theory.simulate("sam", 0.0, steps=30)
    again = theory.simulate("sam", 0.0, steps=30)
    np.testing.assert_array_equal(base.u, again.u)
    moved = theory.simulate("sam", 1.0, steps=30)
    assert moved.u[-1] < base.u[-1]


def test_ire_lowers_the_trace_faster_and_stays_near_the_manifold():
    toy = theory.ToyManifold()
    for method in theory.METHODS:
        base = theory.simulate(method, 0.0, 200, toy)
        enhanced = theory.simulate(method, 2.0, 200, toy)
        assert enhanced.trace[-1] < base.trace[-1] < base.trace[0]
        # the flattest point of the manifold has tr H = d; v stays small
        assert enhanced.trace[-1] > toy.dim
        assert np.all(np.isfinite(enhanced.trace))


def test_exact_diagonal_marks_only_u_flat():
    toy = theory.ToyManifold()
    u, v = np.array([1.5]), np.full(toy.dim, 0.05)
    h_u, h_v = toy.exact_diagonal([u, v])
    assert h_u[0] < h_v.min()
    assert toy.hessian_trace(1.5, v) == pytest.approx(float(v @ v) + toy.dim * 3.25)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="method must be one of"):
        theory.simulate("adam", 1.0, steps=1)


def test_quick_run_writes_table_and_plot(tmp_path, capsys):
    assert theory.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SAM: IRE / base" in out
    assert (tmp_path / "theory_trace.png").stat().st_size > 10_000
    table = (tmp_path / "theory_drift.md").read_text()
    assert re.search(r"^\| 2 +\| 3 +\|", table, re.MULTILINE)
