"""IRE over parameters sharded on a 2-device CPU mesh (see conftest.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import ire_core
import ire_jax
from ire_jax._reduce import packed_count_true

pytestmark = pytest.mark.skipif(
    jax.device_count() < 2, reason="needs 2 devices: XLA_FLAGS was set after JAX started"
)


@pytest.mark.parametrize(
    "threshold_fn", [None, ire_core.HistogramThreshold()], ids=["sort", "histogram"]
)
def test_flat_threshold_is_global_not_per_shard(threshold_fn):
    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    sharded = NamedSharding(mesh, P("data"))
    # The first half of every tensor (device 0) is flat, the second half
    # (device 1) sharp: a per-shard threshold would mark half of each shard.
    grads = {
        "a": jnp.array([0.1, 0.2, 0.3, 0.4, 10.0, 11.0, 12.0, 13.0], jnp.float32),
        "b": jnp.array([[0.5, 0.6], [0.7, 0.8], [20.0, 21.0], [22.0, 23.0]], jnp.float32),
    }
    params = jax.tree_util.tree_map(lambda g: jnp.ones_like(g), grads)
    tx = ire_jax.ire(
        optax.adam(0.1),
        kappa=1.0,
        flat_fraction=0.5,
        interval=1,
        ema=0.5,
        threshold_fn=threshold_fn,
    )

    placed_params = jax.device_put(params, sharded)
    placed_grads = jax.device_put(grads, sharded)
    state = jax.jit(tx.init)(placed_params)
    updates, state = jax.jit(tx.update)(placed_grads, state, placed_params)

    assert state.mask["a"].sharding.is_equivalent_to(sharded, 1)
    assert state.curvature["b"].sharding.is_equivalent_to(sharded, 2)
    assert updates["a"].sharding.is_equivalent_to(sharded, 1)
    np.testing.assert_array_equal(np.asarray(state.mask["a"]), [True] * 4 + [False] * 4)
    np.testing.assert_array_equal(
        np.asarray(state.mask["b"]), [[True, True]] * 2 + [[False, False]] * 2
    )
    assert int(state.flat_count) == 8 and float(state.threshold) == pytest.approx(0.8**2)

    # The same mask and updates as on one device.
    single_updates, single_state = jax.jit(tx.update)(grads, tx.init(params), params)
    for a, b in zip(
        jax.tree_util.tree_leaves(state.mask), jax.tree_util.tree_leaves(single_state.mask)
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(single_updates)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


@pytest.mark.parametrize("spec", [P("data"), P(None, "data")], ids=["rows", "columns"])
def test_packed_count_of_a_sharded_mask(spec):
    # Words of four bools are grouped along the last axis, sharded or not.
    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    mask = np.random.default_rng(0).random((6, 16)) < 0.4
    placed = jax.device_put(jnp.asarray(mask), NamedSharding(mesh, spec))
    count = jax.jit(lambda m: packed_count_true(m, jnp.int32))(placed)
    assert int(count) == int(mask.sum())
