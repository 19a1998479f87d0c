"""ire_core.bit_search, run on NumPy: the search over bit patterns finds the
exact k-th smallest (the value ire_core.exact_threshold finds), for random
sizes and ranks, ties, zeros, +inf, float16/32/64, k an int or a 0-d array,
and ``prepare`` = |x| (NaN as +inf) over signed values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ire_core import bit_search, exact_threshold
from ire_core.bit_search import NUMPY_OPS, NumpyOps

RANK = bit_search.searcher(np, NUMPY_OPS)
DTYPES = [np.float16, np.float32, np.float64]


def _distribution(kind: str, rng, n: int) -> np.ndarray:
    if kind == "mixed":  # zeros, +inf, ties and a heavy tail
        values = np.abs(rng.standard_cauchy(n)) ** 3
        values[rng.random(n) < 0.1] = 0.0
        values[rng.random(n) < 0.05] = np.inf
        values[rng.random(n) < 0.2] = 1.5
        return values
    if kind == "few distinct":
        return rng.choice(rng.random(7), n)
    if kind == "all equal":
        return np.full(n, 0.25)
    if kind == "all zero":
        return np.zeros(n)
    if kind == "mostly infinite":
        return np.where(rng.random(n) < 0.97, np.inf, rng.random(n))
    if kind == "wide":
        return rng.lognormal(0.0, 8.0, n)
    return rng.random(n) ** 2  # smooth


KINDS = ["mixed", "few distinct", "all equal", "all zero", "mostly infinite", "wide", "smooth"]


def _split(values: np.ndarray, rng) -> list:
    """``values`` cut into a few arrays of random sizes, some of them empty."""
    cuts = np.sort(rng.integers(0, values.size + 1, size=int(rng.integers(0, 4))))
    return np.split(values, cuts)


def _magnitude(x):
    return np.where(np.isnan(x), np.inf, np.abs(x))


class _CountingOps(NumpyOps):
    """NumPy's ops, counting the search's probes."""

    def __init__(self):
        self.probes = 0

    def while_loop(self, cond, body, state):
        def counted(s):
            self.probes += 1
            return body(s)

        return super().while_loop(cond, counted, state)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 20_000), kind=st.sampled_from(KINDS))
def test_search_finds_the_kth_smallest(dtype, seed, n, kind):
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        values = _distribution(kind, rng, n).astype(dtype)
    flats = [f for f in _split(values, rng) if f.size]
    ops = _CountingOps()
    key_bits = np.finfo(dtype).bits
    for k in sorted({min(2, n), n // 2 + 1, max(n - 1, 1), n, int(rng.integers(1, n + 1))}):
        expected = exact_threshold(flats, k)
        for rank in (k, np.asarray(k, np.int32), np.asarray(k, np.int64)):
            got = bit_search.kth_smallest(np, ops, flats, rank)
            assert got.dtype == dtype
            assert got == expected, (kind, n, k)
        ops.probes = 0
        bit_search.kth_smallest(np, ops, flats, k)
        # Interpolation is bounded, then one halving per bit at most.
        assert ops.probes <= bit_search.MAX_INTERPOLATIONS + key_bits


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 20_000), kind=st.sampled_from(KINDS))
def test_search_over_magnitudes_of_signed_values(dtype, seed, n, kind):
    # prepare = |x| with NaN as +inf: the k-th smallest magnitude, with signs,
    # NaN, -inf and -0.0 among the values.
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore"):
        values = (_distribution(kind, rng, n) * rng.choice([-1.0, 1.0], n)).astype(dtype)
    values[rng.random(n) < 0.02] = np.nan
    values[rng.random(n) < 0.02] = -np.inf
    values[rng.random(n) < 0.02] = -0.0
    flats = [f for f in _split(values, rng) if f.size]
    magnitudes = [_magnitude(f) for f in flats]
    for k in sorted({1, n // 3 + 1, n, int(rng.integers(1, n + 1))}):
        expected = exact_threshold(magnitudes, k)
        got = bit_search.kth_smallest(np, NUMPY_OPS, flats, k, prepare=_magnitude)
        assert got.dtype == dtype
        assert got == expected, (kind, n, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_threshold_frame_clips_k_and_drops_empty_arrays(dtype):
    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):
        values = _distribution("mixed", rng, 5000).astype(dtype)
    flats = [np.zeros(0, dtype), values[:1234], np.zeros(0, dtype), values[1234:]]
    ordered = np.sort(values)
    for k in (1, 777, 5000):
        assert bit_search.threshold(np, flats, k, RANK) == ordered[k - 1]
        assert bit_search.threshold(np, flats, np.asarray(k), RANK) == ordered[k - 1]
    for k in (0, -3):
        assert bit_search.threshold(np, flats, k, RANK) == np.inf
        assert bit_search.threshold(np, flats, np.asarray(k), RANK) == np.inf
    assert bit_search.threshold(np, flats, 10**6, RANK) == ordered[-1]
    assert bit_search.threshold(np, flats, np.asarray(10**6), RANK) == ordered[-1]
    tau = bit_search.threshold(np, flats, 3, RANK)
    assert tau.dtype == dtype
    empty = bit_search.threshold(np, [np.zeros(0, dtype)], 3, RANK)
    assert empty == np.inf and empty.dtype == dtype
    assert bit_search.threshold(np, [], 3, RANK) == np.inf


def test_kth_sorted_equals_the_search():
    rng = np.random.default_rng(2)
    for kind in KINDS:
        values = _distribution(kind, rng, 3000).astype(np.float32)
        flats = [values[:1000], values[1000:]]
        for k in (1, 1500, 3000):
            sorted_tau = bit_search.kth_sorted(np, NUMPY_OPS, flats, np.asarray(k))
            assert sorted_tau == bit_search.kth_smallest(np, NUMPY_OPS, flats, k)
            assert sorted_tau == np.sort(values)[k - 1]


@pytest.mark.parametrize("searched", [True, False])
def test_threshold_of_squares_is_the_threshold_of_the_squares(searched):
    rng = np.random.default_rng(3)
    n = 6000
    g = (np.sqrt(_distribution("mixed", rng, n)) * rng.choice([-1.0, 1.0], n)).astype(np.float32)
    g[rng.random(n) < 0.01] = np.nan
    g[rng.random(n) < 0.01] = 1e30  # g² = +inf in float32
    g[rng.random(n) < 0.01] = 1e-30  # g² = 0 in float32
    flats = [g[:2500], g[2500:]]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        squares = [_magnitude(f * f) for f in flats]
        for k in (0, 1, n // 3, n - 1, n):
            got = bit_search.threshold_of_squares(
                np, flats, k, RANK, searched=searched, magnitude=_magnitude
            )
            assert got.dtype == np.float32
            assert got == exact_threshold(squares, k), k


def test_threshold_of_squares_needs_one_dtype():
    flats = [np.ones(3, np.float32), np.ones(3, np.float64)]
    with pytest.raises(ValueError, match="one dtype"):
        bit_search.threshold_of_squares(np, flats, 2, RANK, searched=True, magnitude=_magnitude)
