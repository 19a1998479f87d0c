"""ire_jax's exact threshold: the bisection over bit patterns
equals a sort, eagerly and under jit with a traced k, in both precisions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ire_core import select_flat_mask
from ire_jax import exact_threshold


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
