"""The names ire_jax shares with ire_torch and ire_keras, and the deprecated
aliases kept for one release."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest

import ire_core
import ire_jax


def _tx():
    return ire_jax.ire(optax.sgd(0.1), flat_fraction=0.5, interval=2, start_step=1)


def test_refresh_due_follows_the_core_timing_and_traces():
    tx = _tx()
    params = {"w": jnp.ones(4)}
    state = tx.init(params)
    update = jax.jit(tx.update)
    due, traced = [], []
    for t in range(6):
        due.append(bool(ire_jax.refresh_due(state)))
        traced.append(bool(jax.jit(ire_jax.refresh_due)(state)))
        _, state = update({"w": jnp.arange(4.0) + t}, state, params)
    expected = [bool(ire_core.is_refresh_step(t, 2, 1)) for t in range(6)]
    assert due == traced == expected == [False, True, False, True, False, True]


def test_mask_stats_returns_the_core_type_with_threshold_and_shapes():
    tx = _tx()
    params = {"a": jnp.ones((2, 3)), "b": jnp.ones(2)}
    state = tx.init(params)
    grads = {"a": jnp.arange(6.0).reshape(2, 3), "b": jnp.array([0.5, 9.0])}
    for _ in range(2):
        _, state = tx.update(grads, state, params)
    stats = ire_jax.mask_stats(state)
    assert type(stats) is ire_core.MaskStats
    assert int(stats.flat_count) == 4 and stats.total == 8 and float(stats.flat_fraction) == 0.5
    assert float(stats.threshold) == float(state.threshold) == 2.0**2
    assert stats.shapes == [(2, 3), (2,)] and stats.step is None


def test_mask_stats_of_an_empty_model():
    state = _tx().init({})
    stats = ire_jax.mask_stats(state)
    assert type(stats) is ire_core.MaskStats
    assert stats.total == 0 and stats.shapes == [] and stats.per_tensor == []


def test_needs_refresh_is_a_deprecated_alias_of_refresh_due():
    tx = _tx()
    state = tx.init({"w": jnp.ones(2)})
    _, state = tx.update({"w": jnp.ones(2)}, state, {"w": jnp.ones(2)})
    with pytest.warns(DeprecationWarning, match="refresh_due"):
        old = ire_jax.needs_refresh(state)
    assert bool(old) == bool(ire_jax.refresh_due(state)) is True
    assert "refresh_due" in ire_jax.__all__ and "needs_refresh" not in ire_jax.__all__
