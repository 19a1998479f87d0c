"""Diagonal curvature estimators by JAX autodiff.

Each returns a pytree shaped like ``params`` with one value per coordinate.
The draws (Hutchinson probes, label uniforms) come from a PRNG key or are
given explicitly, so runs are reproducible and comparable across frameworks.
The arithmetic that turns autodiff products into ĥ is ``ire_core``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

import ire_core

__all__ = [
    "fisher_diagonal",
    "gradient_diagonal",
    "hutchinson_diagonal",
    "hvp",
    "rademacher_like",
    "softmax_cross_entropy",
]


def _leaves_like(tree, leaves):
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), list(leaves))


def hvp(loss_fn: Callable, params, vector):
    """Hessian-vector product H·v of ``loss_fn`` at ``params``, by
    forward-over-reverse differentiation (``jax.jvp`` of ``jax.grad``).

    Example:
      >>> import jax.numpy as jnp
      >>> loss = lambda p: 0.5 * jnp.sum(jnp.array([1.0, 3.0]) * p ** 2)
      >>> hvp(loss, jnp.ones(2), jnp.array([1.0, 1.0])).tolist()
      [1.0, 3.0]
    """
    return jax.jvp(jax.grad(loss_fn), (params,), (vector,))[1]


def rademacher_like(key: jax.Array, params, num_probes: int = 1) -> list:
    """``num_probes`` Rademacher (±1) pytrees shaped and typed like ``params``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> probes = rademacher_like(jax.random.PRNGKey(0), {"w": jnp.zeros(3)}, 2)
      >>> len(probes), sorted(set(probes[0]["w"].tolist())) <= [-1.0, 1.0]
      (2, True)
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, num_probes * max(len(leaves), 1))
    probes = []
    for j in range(num_probes):
        drawn = [
            jax.random.rademacher(keys[j * len(leaves) + i], jnp.shape(p), dtype=jnp.result_type(p))
            for i, p in enumerate(leaves)
        ]
        probes.append(jax.tree_util.tree_unflatten(treedef, drawn))
    return probes


def hutchinson_diagonal(
    loss_fn: Callable,
    params,
    key: jax.Array | None = None,
    *,
    num_probes: int = 1,
    probes: Sequence | None = None,
):
    """Hutchinson's estimate of the Hessian diagonal: mean over probes z of
    z ⊙ (H z), with one Hessian-vector product per probe.

    The result is signed; IRE ranks its magnitude.

    Args:
      loss_fn: ``params -> scalar`` loss, twice differentiable.
      params: where the Hessian is taken.
      key: PRNG key the probes are drawn from (unused when ``probes`` given).
      num_probes: number of probes drawn from ``key``.
      probes: explicit probes, a sequence of pytrees shaped like ``params``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> loss = lambda p: 0.5 * jnp.sum(jnp.array([2.0, 5.0]) * p ** 2)
      >>> hutchinson_diagonal(loss, jnp.ones(2), jax.random.PRNGKey(0)).tolist()
      [2.0, 5.0]
    """
    if probes is None:
        if key is None:
            raise ValueError("hutchinson_diagonal needs a key or explicit probes, got neither")
        probes = rademacher_like(key, params, num_probes)
    probes = [jax.tree_util.tree_map(jnp.asarray, z) for z in probes]
    if not probes:
        raise ValueError("probes must hold at least one probe, got an empty sequence")
    products = [hvp(loss_fn, params, z) for z in probes]
    estimate = ire_core.hutchinson(
        [jax.tree_util.tree_leaves(z) for z in probes],
        [jax.tree_util.tree_leaves(hz) for hz in products],
    )
    return _leaves_like(params, estimate)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of integer ``labels`` under ``logits`` (…, classes).

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(softmax_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)
      1.3863
    """
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)
    return -jnp.mean(picked)


def fisher_diagonal(
    logits_fn: Callable,
    params,
    key: jax.Array | None = None,
    *,
    uniforms: jax.Array | None = None,
):
    """Sampled-label Fisher (Gauss–Newton–Bartlett) diagonal: labels ŷ drawn
    from softmax(logits), ĥ = (∇θ mean CE(logits, ŷ))². One forward and one
    backward pass; no second derivatives.

    Args:
      logits_fn: ``params -> logits`` of shape ``(..., classes)``.
      params: where the estimate is taken.
      key: PRNG key the label uniforms are drawn from (unused when
        ``uniforms`` given).
      uniforms: explicit draws in [0, 1) of shape ``logits.shape[:-1]``;
        labels are ``ire_core.sample_labels(logits, uniforms)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> logits_fn = lambda w: jnp.array([[1.0, 0.0]]) @ w
      >>> h = fisher_diagonal(logits_fn, jnp.zeros((2, 2)), uniforms=jnp.array([0.25]))
      >>> h.tolist()
      [[0.25, 0.25], [0.0, 0.0]]
    """
    logits, vjp = jax.vjp(logits_fn, params)
    if uniforms is None:
        if key is None:
            raise ValueError("fisher_diagonal needs a key or explicit uniforms, got neither")
        uniforms = jax.random.uniform(key, logits.shape[:-1], dtype=jnp.float32)
    uniforms = jnp.asarray(uniforms)
    if jnp.shape(uniforms) != logits.shape[:-1]:
        raise ValueError(
            f"uniforms must have shape {logits.shape[:-1]} (the logits' batch shape), "
            f"got {jnp.shape(uniforms)}"
        )
    labels = jax.lax.stop_gradient(ire_core.sample_labels(jax.lax.stop_gradient(logits), uniforms))
    cotangent = jax.grad(softmax_cross_entropy)(logits, labels)
    (grads,) = vjp(cotangent)
    return _leaves_like(params, ire_core.squared(jax.tree_util.tree_leaves(grads)))


def gradient_diagonal(grads):
    """The ``gradient`` proxy ĥ = g ⊙ g of a gradient pytree.

    Example:
      >>> import jax.numpy as jnp
      >>> gradient_diagonal({"w": jnp.array([-2.0, 3.0])})["w"].tolist()
      [4.0, 9.0]
    """
    return _leaves_like(grads, ire_core.squared(jax.tree_util.tree_leaves(grads)))
