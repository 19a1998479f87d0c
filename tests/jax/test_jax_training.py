"""An MLP trains with ire_jax: the loss falls, with every estimator."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
import pytest

import ire_jax


def init_mlp(key, sizes=(4, 16, 3)):
    params = []
    for fan_in, fan_out, k in zip(sizes[:-1], sizes[1:], jax.random.split(key, len(sizes) - 1)):
        params.append(
            {
                "w": jax.random.normal(k, (fan_in, fan_out), jnp.float32) / jnp.sqrt(fan_in),
                "b": jnp.zeros((fan_out,), jnp.float32),
            }
        )
    return params


def mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss(params, x, y):
    return ire_jax.softmax_cross_entropy(mlp(params, x), y)


def data(key, n=64):
    kx, kw = jax.random.split(key)
    x = jax.random.normal(kx, (n, 4), jnp.float32)
    y = jnp.argmax(x @ jax.random.normal(kw, (4, 3), jnp.float32), axis=-1)
    return x, y


@pytest.mark.parametrize(
    "make,estimator",
    [
        (lambda **kw: ire_jax.ire(optax.adamw(1e-2, weight_decay=0.01), **kw), "fisher"),
        (lambda **kw: ire_jax.ire(optax.sgd(0.3, momentum=0.9), **kw), "hutchinson"),
        (lambda **kw: ire_jax.sam_ire(optax.sgd(0.5), rho=0.05, **kw), "gradient"),
    ],
)
def test_mlp_loss_falls(make, estimator):
    x, y = data(jax.random.PRNGKey(0))
    tx = make(kappa=2.0, flat_fraction=0.6, interval=5, estimator=estimator, seed=1)
    params = init_mlp(jax.random.PRNGKey(2))
    state = tx.init(params)

    @jax.jit
    def train_step(params, state):
        loss_fn = functools.partial(loss, x=x, y=y)
        value, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = tx.update(
            grads, state, params, loss_fn=loss_fn, logits_fn=functools.partial(mlp, x=x)
        )
        return optax.apply_updates(params, updates), state, value

    losses = []
    for _ in range(60):
        params, state, value = train_step(params, state)
        losses.append(float(value))
    assert losses[-1] < 0.5 * losses[0]
    assert int(state.refreshes) == 12
    stats = ire_jax.mask_stats(state)
    assert float(stats.flat_fraction) == pytest.approx(0.6, abs=0.02)
