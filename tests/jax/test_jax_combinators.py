"""ire_jax inside optax's combinators: chain, inject_hyperparams, MultiSteps,
apply_if_finite."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ire_jax

H = jnp.array([0.1, 5.0, 0.2, 7.0], dtype=jnp.float32)
GRADS = jnp.array([0.1, 1.0, 0.2, 2.0], dtype=jnp.float32)


def test_chain_passes_extra_args_and_nests_state():
    tx = optax.chain(
        optax.clip_by_global_norm(10.0),
        ire_jax.ire(optax.sgd(0.1), kappa=1.0, flat_fraction=0.5, interval=1, estimator="exact"),
    )
    params = jnp.ones(4, jnp.float32)
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(GRADS, state, params, curvature=H)
    np.testing.assert_allclose(np.asarray(updates), [-0.02, -0.1, -0.04, -0.2], rtol=1e-6)
    assert isinstance(state[1], ire_jax.IREState)


def test_inject_hyperparams_changes_kappa_and_flat_fraction_without_recompiling():
    tx = optax.inject_hyperparams(ire_jax.ire, static_args=ire_jax.STATIC_ARGS)(
        optax.sgd(1.0), kappa=1.0, flat_fraction=0.5, interval=1
    )
    traces = []

    @jax.jit
    def step(state):
        traces.append(1)
        return tx.update(GRADS, state, jnp.ones(4, jnp.float32))

    state = tx.init(jnp.ones(4, jnp.float32))
    updates, state = step(state)
    np.testing.assert_allclose(np.asarray(updates), [-0.2, -1.0, -0.4, -2.0], rtol=1e-6)
    state.hyperparams["kappa"] = jnp.asarray(3.0, jnp.float32)
    state.hyperparams["flat_fraction"] = jnp.asarray(0.25, jnp.float32)
    updates, state = step(state)
    np.testing.assert_allclose(np.asarray(updates), [-0.4, -1.0, -0.2, -2.0], rtol=1e-6)
    assert int(state.inner_state.flat_count) == 1
    assert len(traces) == 1


def test_inject_hyperparams_interval_and_start_step_are_injectable():
    tx = optax.inject_hyperparams(ire_jax.ire, static_args=ire_jax.STATIC_ARGS)(
        optax.sgd(1.0), interval=2, start_step=1
    )
    params = jnp.ones(4, jnp.float32)
    state = tx.init(params)
    update = jax.jit(lambda s: tx.update(GRADS, s, params))
    flags = []
    for t in range(6):
        if t == 3:
            state.hyperparams["interval"] = jnp.asarray(1)
        _, state = update(state)
        flags.append(int(state.inner_state.refreshes))
    assert flags == [0, 1, 1, 2, 3, 4]


def test_inner_learning_rate_is_injectable_and_kappa_can_follow_it():
    inner = optax.inject_hyperparams(optax.sgd)(learning_rate=1.0)
    tx = ire_jax.ire(
        inner, kappa=2.0, flat_fraction=0.5, interval=1, kappa_follows_lr=True, peak_lr=1.0
    )
    params = jnp.ones(4, jnp.float32)
    state = tx.init(params)
    update = jax.jit(lambda s: tx.update(GRADS, s, params))
    updates, state = update(state)
    np.testing.assert_allclose(np.asarray(updates), [-0.3, -1.0, -0.6, -2.0], rtol=1e-6)
    state.inner_state.hyperparams["learning_rate"] = jnp.asarray(0.5, jnp.float32)
    updates, state = update(state)
    # lr halves and κ follows it: flat coordinates move by 0.5·(1 + 2·0.5) = 1.0·g.
    np.testing.assert_allclose(np.asarray(updates), [-0.1, -0.5, -0.2, -1.0], rtol=1e-6)
    assert update._cache_size() == 1


def test_kappa_follows_lr_without_a_learning_rate_says_what_is_missing():
    tx = ire_jax.ire(optax.sgd(1.0), kappa_follows_lr=True, peak_lr=1.0)
    with pytest.raises(ValueError, match="kappa_follows_lr=True needs the current learning rate"):
        tx.update(GRADS, tx.init(jnp.ones(4, jnp.float32)), jnp.ones(4, jnp.float32))


def test_multisteps_refresh_counts_real_updates():
    ire = ire_jax.ire(optax.sgd(0.1), flat_fraction=0.5, interval=2)
    tx = optax.MultiSteps(ire, every_k_schedule=3)
    params = jnp.ones(4, jnp.float32)
    state = tx.init(params)
    update = jax.jit(tx.update)
    emitted = []
    for micro in range(12):
        grads = GRADS * (1.0 + micro)
        updates, state = update(grads, state, params)
        emitted.append(bool(np.any(np.asarray(updates) != 0)))
    inner = state.inner_opt_state
    assert emitted == [False, False, True] * 4
    assert int(inner.count) == 4  # four real updates
    assert int(inner.refreshes) == 2  # refreshes at real steps 0 and 2
    # The mask comes from the accumulated (mean) gradient, not a micro-batch.
    np.testing.assert_array_equal(np.asarray(inner.mask), np.asarray(GRADS) <= 0.2)


def test_apply_if_finite_skipped_steps_leave_curvature_untouched():
    ire = ire_jax.ire(optax.sgd(0.1), flat_fraction=0.5, interval=1, ema=0.5)
    tx = optax.apply_if_finite(ire, max_consecutive_errors=5)
    params = jnp.ones(4, jnp.float32)
    state = tx.init(params)
    update = jax.jit(tx.update)
    _, state = update(GRADS, state, params)
    before = state.inner_state
    bad = GRADS.at[1].set(jnp.nan)
    updates, state = update(bad, state, params)
    after = state.inner_state
    assert not bool(state.last_finite)
    np.testing.assert_array_equal(np.asarray(updates), np.zeros(4))
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(after.count) == 1 and int(after.refreshes) == 1
    _, state = update(GRADS * 2, state, params)
    assert int(state.inner_state.refreshes) == 2
    np.testing.assert_allclose(
        np.asarray(state.inner_state.curvature), 2.5 * np.asarray(GRADS) ** 2, rtol=1e-6
    )


def test_inject_hyperparams_without_static_args():
    tx = optax.inject_hyperparams(ire_jax.ire)(
        optax.sgd(1.0), kappa=1.0, flat_fraction=0.5, interval=1
    )
    params = jnp.ones(4, jnp.float32)
    updates, state = jax.jit(tx.update)(GRADS, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates), [-0.2, -1.0, -0.4, -2.0], rtol=1e-6)
    # Drawing Hutchinson probes needs a static count: the error says how.
    tx = optax.inject_hyperparams(ire_jax.ire)(optax.sgd(1.0), estimator="hutchinson")
    state = tx.init(params)
    with pytest.raises(TypeError, match="list 'num_probes' in static_args"):
        jax.jit(lambda s: tx.update(GRADS, s, params, loss_fn=lambda p: jnp.sum(p**4)))(state)
    with pytest.raises(TypeError, match="list 'ema' in static_args"):
        jax.jit(tx.init)(params)


def test_frozen_parameters_via_multi_transform_take_no_mask_slots():
    params = {"a": jnp.ones(4, jnp.float32), "frozen": jnp.ones(3, jnp.float32)}
    tx = optax.multi_transform(
        {
            "train": ire_jax.ire(optax.sgd(0.1), kappa=1.0, flat_fraction=0.5, interval=1),
            "freeze": optax.set_to_zero(),
        },
        {"a": "train", "frozen": "freeze"},
    )
    grads = {"a": GRADS, "frozen": jnp.zeros(3, jnp.float32)}  # g² = 0 would rank flattest
    updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
    ire_state = state.inner_states["train"].inner_state
    assert int(ire_state.flat_count) == 2  # ⌊0.5 · 4⌋, not of 7
    np.testing.assert_allclose(np.asarray(updates["a"]), [-0.02, -0.1, -0.04, -0.2], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(updates["frozen"]), np.zeros(3))
