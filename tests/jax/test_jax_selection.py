"""ire_jax.selection's exact threshold equals a sort, eagerly and under jit with a
traced k, in both precisions: small models (sorted outright) and larger ones
(the sample-seeded search over bit patterns), on distributions that make the
search work hard (ties, zeros, +inf, a few distinct values, a wide range)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ire_jax
from ire_core import select_flat_mask
from ire_jax import exact_threshold
from ire_jax._reduce import packed_count_true, reduce_in_chunks
from ire_jax.selection import SAMPLE_SIZE, exact_threshold_of_squares, smallest_magnitude


def curvature(seed, n):
    rng = np.random.default_rng(seed)
    values = np.abs(rng.standard_cauchy(n)) ** 3
    values[rng.random(n) < 0.1] = 0.0
    values[rng.random(n) < 0.05] = np.inf
    values[rng.random(n) < 0.2] = 1.5  # ties
    return values


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.sampled_from([1, 2, 7, 64, 401]), fraction=st.floats(0, 1))
def test_exact_threshold_equals_a_sort(dtype, seed, n, fraction):
    values = curvature(seed, n)
    tensors = [jnp.asarray(values[: n // 2], dtype=dtype), jnp.asarray(values[n // 2 :], dtype=dtype)]
    k = int(fraction * n)
    ordered = np.sort(np.concatenate([np.asarray(t) for t in tensors]))
    expected = ordered[k - 1] if k > 0 else np.inf
    assert float(exact_threshold(tensors, k)) == expected
    assert float(jax.jit(exact_threshold)(tensors, jnp.asarray(k, dtype=jnp.int32))) == expected


def test_jitted_selection_with_traced_fraction_matches_numpy():
    values = curvature(3, 1000)
    tensors = [jnp.asarray(values[:300], dtype=jnp.float32), jnp.asarray(values[300:], dtype=jnp.float32)]
    select = jax.jit(lambda h, gamma: select_flat_mask(h, gamma, threshold_fn=exact_threshold).mask)
    for gamma in (0.0, 0.25, 0.6, 1.0):
        got = select(tensors, jnp.asarray(gamma, dtype=jnp.float32))
        expected = select_flat_mask([np.asarray(t) for t in tensors], gamma).mask
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(np.asarray(a), b)


def _distribution(kind: str, rng, n: int) -> np.ndarray:
    if kind == "mixed":
        return curvature(int(rng.integers(2**16)), n)
    if kind == "few distinct":
        return rng.choice(rng.random(7), n)
    if kind == "all equal":
        return np.full(n, 0.25)
    if kind == "mostly infinite":
        return np.where(rng.random(n) < 0.97, np.inf, rng.random(n))
    if kind == "wide":
        return rng.lognormal(0.0, 8.0, n)
    return rng.random(n) ** 2  # smooth


# Shapes of a small model past the sorting size: a matrix, a vector, an empty
# tensor and a matrix whose size is not a multiple of anything convenient.
SHAPES = [(61, 83), (7,), (0, 3), (97, 101)]
N = sum(int(np.prod(s)) for s in SHAPES)
KINDS = ["mixed", "few distinct", "all equal", "mostly infinite", "wide", "smooth"]


@pytest.mark.parametrize("chunk", [None, 1000], ids=["whole", "in-chunks"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_search_equals_a_sort_on_hard_distributions(dtype, chunk, monkeypatch):
    assert N > SAMPLE_SIZE  # the search, not the sort
    if chunk is not None:  # every pass over the larger tensors in slices, with tails
        monkeypatch.setattr(ire_jax._reduce, "CHUNK", chunk)
    threshold = jax.jit(exact_threshold)
    rng = np.random.default_rng(0)
    for kind in KINDS:
        values = _distribution(kind, rng, N).astype(np.dtype(dtype))
        tensors, start = [], 0
        for shape in SHAPES:
            size = int(np.prod(shape))
            tensors.append(jnp.asarray(values[start : start + size].reshape(shape)))
            start += size
        ordered = np.sort(values)
        ranks = [1, 2, N // 2, int(0.6 * N), N - 1, N, *rng.integers(1, N + 1, 4).tolist()]
        for k in ranks:
            got = threshold(tensors, jnp.asarray(k, dtype=jnp.int32))
            assert got.dtype == dtype
            assert float(got) == ordered[k - 1], (kind, k)
        assert float(threshold(tensors, jnp.asarray(0, dtype=jnp.int32))) == np.inf


def _signed_gradients(kind: str, rng, n: int, dtype) -> np.ndarray:
    """Gradients whose squares follow ``kind``, with random signs, NaNs, ±inf,
    and magnitudes whose squares overflow or underflow."""
    g = np.sqrt(_distribution(kind, rng, n)) * rng.choice([-1.0, 1.0], n)
    g[rng.random(n) < 0.01] = np.nan
    g[rng.random(n) < 0.01] = -np.inf
    g[rng.random(n) < 0.01] = 1e30 * rng.choice([-1.0, 1.0])  # g² = +inf in float32
    g[rng.random(n) < 0.01] = 1e-30  # g² = 0 in float32
    return g.astype(np.dtype(dtype))


@pytest.mark.parametrize("chunk", [None, 1000], ids=["whole", "in-chunks"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
def test_threshold_of_squares_is_the_threshold_of_the_squares(dtype, chunk, monkeypatch):
    if chunk is not None:
        monkeypatch.setattr(ire_jax._reduce, "CHUNK", chunk)
    of_squares = jax.jit(exact_threshold_of_squares)
    threshold = jax.jit(exact_threshold)
    rng = np.random.default_rng(1)
    for shapes in (SHAPES, [(40, 50), (3,)]):  # searched; sorted outright
        n = sum(int(np.prod(s)) for s in shapes)
        for kind in KINDS:
            g = _signed_gradients(kind, rng, n, dtype)
            grads, start = [], 0
            for shape in shapes:
                size = int(np.prod(shape))
                grads.append(jnp.asarray(g[start : start + size].reshape(shape)))
                start += size
            squares = [jnp.where(jnp.isnan(x * x), jnp.inf, x * x) for x in grads]
            for k in [0, 1, n // 3, int(0.6 * n), n - 1, n, *rng.integers(1, n + 1, 3).tolist()]:
                k = jnp.asarray(k, dtype=jnp.int32)
                got = of_squares(grads, k)
                assert got.dtype == dtype
                assert float(got) == float(threshold(squares, k)), (kind, int(k))
    with pytest.raises(ValueError, match="one dtype"):
        exact_threshold_of_squares([jnp.ones(3, jnp.float32), jnp.ones(3, jnp.float64)], 2)


@pytest.mark.parametrize("chunk", [None, 16], ids=["whole", "in-chunks"])
def test_smallest_magnitude_ranks_nan_as_infinity(chunk, monkeypatch):
    if chunk is not None:
        monkeypatch.setattr(ire_jax._reduce, "CHUNK", chunk)
    x = np.linspace(-3.0, -1.0, 100).astype(np.float32)
    x[::7] = np.nan
    assert float(jax.jit(smallest_magnitude)(jnp.asarray(x))) == 1.0
    assert float(smallest_magnitude(jnp.full(50, jnp.nan))) == np.inf
    assert float(smallest_magnitude(jnp.zeros((0, 3)))) == np.inf


@pytest.mark.parametrize("backend, devices, sorts", [
    ("cpu", 1, False), ("gpu", 1, True), ("gpu", 2, False), ("tpu", 1, True)])
def test_a_single_accelerator_sorts_and_everything_else_searches(backend, devices, sorts,
                                                                 monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(jax, "device_count", lambda: devices)
    values = curvature(5, N).astype(np.float32)
    tensors = [jnp.asarray(values[: N // 3]), jnp.asarray(values[N // 3 :])]
    k = jnp.asarray(int(0.6 * N), dtype=jnp.int32)
    threshold = lambda v, k: exact_threshold(v, k)  # noqa: E731 (a fresh trace: no cached one)
    program = str(jax.make_jaxpr(threshold)(tensors, k))
    assert ("sort[" in program and "while[" not in program) == sorts
    assert ("while[" in program) == (not sorts)
    assert float(jax.jit(threshold)(tensors, k)) == np.sort(values)[int(k) - 1]


def test_search_selects_the_same_mask_as_numpy_under_jit():
    values = curvature(11, N)
    tensors = [jnp.asarray(values[:N // 3], jnp.float32), jnp.asarray(values[N // 3 :], jnp.float32)]
    select = jax.jit(lambda h, gamma: select_flat_mask(h, gamma, threshold_fn=exact_threshold))
    for gamma in (0.05, 0.6, 0.97):
        got = select(tensors, jnp.asarray(gamma, dtype=jnp.float32))
        expected = select_flat_mask([np.asarray(t) for t in tensors], gamma)
        assert float(got.threshold) == float(expected.threshold)
        assert int(got.flat_count) == int(expected.flat_count)
        for a, b in zip(got.mask, expected.mask):
            np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.parametrize(
    "shape", [(), (0,), (7,), (8,), (3, 5), (4, 8), (2, 3, 12), (1000, 4)]
)
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_packed_count_equals_a_sum(shape, density):
    # The mask is read as uint32 words of four bools where the last axis
    # allows it, summed plainly otherwise; eager and jitted give the same.
    rng = np.random.default_rng(len(shape) + int(10 * density))
    mask = jnp.asarray(rng.random(shape) < density)
    expected = int(np.count_nonzero(np.asarray(mask)))
    assert int(packed_count_true(mask, jnp.int32)) == expected
    assert int(jax.jit(packed_count_true, static_argnums=1)(mask, jnp.int32)) == expected


@pytest.mark.parametrize("n", [0, 5, 12, 13, 35])
def test_reduce_in_chunks_equals_one_reduction(n):
    x = jnp.asarray(np.random.default_rng(n).random(n), jnp.float32)
    counted = reduce_in_chunks(x, lambda s: jnp.sum(s > 0.5, dtype=jnp.int32), jnp.add, chunk=6)
    assert int(counted) == int(np.sum(np.asarray(x) > 0.5))
    if n:
        assert float(reduce_in_chunks(x, jnp.max, jnp.maximum, chunk=6)) == float(np.max(x))
        jitted = jax.jit(lambda v: reduce_in_chunks(v, jnp.min, jnp.minimum, chunk=6))
        assert float(jitted(x)) == float(np.min(x))


def test_the_old_module_path_warns_and_re_exports():
    import importlib
    import sys

    import ire_jax.selection

    sys.modules.pop("ire_jax.threshold", None)
    with pytest.warns(DeprecationWarning, match="ire_jax.selection"):
        old = importlib.import_module("ire_jax.threshold")
    assert old.exact_threshold is ire_jax.selection.exact_threshold
    assert old.exact_threshold_of_squares is ire_jax.selection.exact_threshold_of_squares
    assert old.smallest_magnitude is ire_jax.selection.smallest_magnitude
    assert old.SAMPLE_SIZE == ire_jax.selection.SAMPLE_SIZE
