"""IRE as an optax gradient transformation.

IRE (Implicit Regularization Enhancement) keeps the inner optimizer's update
Δ on sharp coordinates and multiplies it by (1 + κ) on the flattest fraction γ
of all coordinates of the model:  Δ ← Δ + κ·(P ⊙ Δ). The flat mask P is
chosen from a diagonal curvature estimate every ``interval`` steps and held in
between. Every decision (selection, combination, moving average, schedules,
timing) is ``ire_core``'s; this module wires it into optax.

Reference: Mingze Wang et al., "Improving Generalization and Convergence by
Enhancing Implicit Regularization", NeurIPS 2024 (arXiv 2405.20763).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import ire_core

from . import estimators
from ._hyperparams import Hyperparams, lr_value, resolve
from ._reduce import packed_count_true, reduce_in_chunks
from .selection import exact_threshold, exact_threshold_of_squares, smallest_magnitude
from .state import IREState

__all__ = ["ire"]

_INT = jnp.int32

# The smallest model whose "gradient" refresh searches over g instead of g².
_SQUARES_MIN_SIZE = 1 << 21


def _leaves(tree) -> list:
    return jax.tree_util.tree_leaves(tree)


def _missing(estimator: str, argument: str, what: str) -> ValueError:
    return ValueError(
        f"estimator={estimator!r} needs {argument}= ({what}) in update() on refresh "
        f"steps, got {argument}=None; or pass a ready estimate as curvature="
    )


def _estimate(hp: Hyperparams, updates, params, key, feed: dict) -> list:
    """The raw curvature estimate ĥ (leaves, in ``updates``' leaf order)."""
    return [jnp.asarray(h) for h in _raw_estimate(hp, updates, params, key, feed)]


def _raw_estimate(hp: Hyperparams, updates, params, key, feed: dict) -> list:
    estimator = hp.config.estimator
    if feed["curvature"] is not None:
        return _leaves(feed["curvature"])
    if feed["curvature_fn"] is not None:
        return _leaves(feed["curvature_fn"](params, key))
    if callable(estimator):
        return _leaves(estimator(params, key))
    if estimator == "gradient":
        grads = feed["curvature_grads"]
        return ire_core.squared(_leaves(updates if grads is None else grads))
    if params is None:
        raise ValueError(f"estimator={estimator!r} needs params in update(), got params=None")
    if estimator == "hutchinson":
        if feed["loss_fn"] is None:
            raise _missing(estimator, "loss_fn", "a function params -> scalar loss")
        probes = feed["probes"]
        num_probes = hp.static_probes() if probes is None else 1
        return _leaves(
            estimators.hutchinson_diagonal(
                feed["loss_fn"], params, key, num_probes=num_probes, probes=probes
            )
        )
    if estimator == "fisher":
        if feed["logits_fn"] is None:
            raise _missing(estimator, "logits_fn", "a function params -> logits")
        return _leaves(
            estimators.fisher_diagonal(
                feed["logits_fn"], params, key, uniforms=feed["label_uniforms"]
            )
        )
    raise _missing(estimator, "curvature_fn", "a function (params, key) -> curvature")


def _current_lr(hp: Hyperparams, step, inner_state):
    if hp.learning_rate is not None:
        return lr_value(hp.learning_rate, step)
    lr = optax.tree_utils.tree_get(inner_state, "learning_rate")
    if lr is None:
        raise ValueError(
            "kappa_follows_lr=True needs the current learning rate: pass "
            "learning_rate= (a number or a schedule) to ire(), or build the inner "
            "optimizer with optax.inject_hyperparams so its state holds "
            "'learning_rate'"
        )
    return lr


def _init(hp: Hyperparams, inner: optax.GradientTransformationExtraArgs, params) -> IREState:
    leaves = _leaves(params)
    ranking = jnp.result_type(jnp.float32, *[p.dtype for p in leaves]) if leaves else jnp.float32
    curvature = None
    if hp.keeps_average:
        curvature = jax.tree_util.tree_map(jnp.zeros_like, params)
    return IREState(
        count=jnp.zeros((), _INT),
        inner_state=inner.init(params),
        mask=jax.tree_util.tree_map(lambda p: jnp.zeros_like(p, dtype=jnp.bool_), params),
        curvature=curvature,
        threshold=jnp.asarray(jnp.inf, ranking),
        flat_count=jnp.zeros((), _INT),
        refreshes=jnp.zeros((), _INT),
        key=jax.random.PRNGKey(hp.seed),
        interval=jnp.asarray(hp.interval, _INT),
        start_step=jnp.asarray(hp.start_step, _INT),
    )


def _count_true(mask) -> jax.Array:
    return reduce_in_chunks(
        jnp.reshape(mask, (-1,)), lambda part: packed_count_true(part, _INT), jnp.add
    )


def _check_estimate(estimate: list, mask_leaves: list) -> None:
    if len(estimate) != len(mask_leaves):
        raise ValueError(
            f"the curvature estimate must be shaped like the parameters "
            f"({len(mask_leaves)} tensors), got {len(estimate)} tensors"
        )


def _refresh(hp: Hyperparams, state: IREState, updates, params, key, feed: dict):
    """(mask, curvature, threshold, flat_count, refreshes) after a refresh."""
    estimate = _estimate(hp, updates, params, key, feed)
    mask_leaves, treedef = jax.tree_util.tree_flatten(state.mask)
    _check_estimate(estimate, mask_leaves)
    curvature = None
    if state.curvature is None:
        # No average to keep: the estimate is ranked as it is (select_flat_mask
        # takes |ĥ| and treats non-finite values as +inf itself).
        selection = estimate
    else:
        previous = _leaves(state.curvature)
        beta = jnp.where(state.refreshes > 0, hp.ema, 0.0)
        average, selection = ire_core.blend(previous, estimate, beta)
        curvature = jax.tree_util.tree_unflatten(
            treedef, [a.astype(p.dtype) for a, p in zip(average, previous)]
        )
    gamma = ire_core.flat_fraction_at(hp.config, state.count)
    selected = ire_core.select_flat_mask(
        selection, gamma, previous=mask_leaves, threshold_fn=hp.threshold_fn
    )
    return (
        jax.tree_util.tree_unflatten(treedef, selected.mask),
        curvature,
        jnp.asarray(selected.threshold).astype(state.threshold.dtype),
        # Counted here in slices; ire_core's own count goes unused and jit drops it.
        sum(_count_true(m) for m in selected.mask),
        state.refreshes + 1,
    )


def _ranks_squares(hp: Hyperparams, state: IREState, grads: list, feed: dict) -> bool:
    """Whether this refresh ranks ĥ = g² of a large model's gradients, with
    the exact threshold and no average to keep. Its branch then finds τ by
    searching over g itself (:func:`exact_threshold_of_squares`) and writes
    the mask g² <= τ elementwise: g² is never held in full.

    Below :data:`_SQUARES_MIN_SIZE` coordinates g² is small enough to hold
    and the refresh ranks it as it is: there the search over g saves no
    memory, and its branch would only add to the compiled step that every
    step, refresh or not, runs."""
    return (
        isinstance(hp.config.estimator, str)
        and hp.config.estimator == "gradient"
        and hp.threshold_fn is exact_threshold
        and state.curvature is None
        and feed["curvature"] is None
        and feed["curvature_fn"] is None
        and len({g.dtype for g in grads}) == 1
        and sum(g.size for g in grads) >= _SQUARES_MIN_SIZE
    )


def _next_keys(state: IREState, feed: dict):
    """(the state's next key, the key for this refresh's draws). The state's
    key advances on refresh steps only, where draws are made."""
    if feed["curvature_key"] is not None:
        return state.key, feed["curvature_key"]
    return tuple(jax.random.split(state.key))


def _refreshed(hp: Hyperparams, state: IREState, refresh, updates, params, feed: dict):
    """(mask, curvature, threshold, flat_count, refreshes, key) after this
    step's refresh, if ``refresh``; the state's own otherwise."""
    grads = _leaves(updates if feed["curvature_grads"] is None else feed["curvature_grads"])
    squares = _ranks_squares(hp, state, grads, feed)

    def renew():
        next_key, draw_key = _next_keys(state, feed)
        if squares:
            return (*_refresh_from_squares(hp, state, grads), next_key)
        return (*_refresh(hp, state, updates, params, draw_key, feed), next_key)

    def keep():
        return (
            state.mask, state.curvature, state.threshold, state.flat_count, state.refreshes,
            state.key,
        )

    return jax.lax.cond(refresh, renew, keep)


def _refresh_from_squares(hp: Hyperparams, state: IREState, grads: list):
    """:func:`_refresh` for ĥ = g² (see :func:`_ranks_squares`)."""
    mask_leaves, treedef = jax.tree_util.tree_flatten(state.mask)
    _check_estimate(grads, mask_leaves)
    k = ire_core.flat_count(
        ire_core.flat_fraction_at(hp.config, state.count), sum(m.size for m in mask_leaves)
    )
    tau = exact_threshold_of_squares(grads, k).astype(state.threshold.dtype)
    any_finite = jax.lax.cond(  # τ < +inf is a finite value; else look for one
        tau < jnp.inf,
        lambda: jnp.asarray(True),
        lambda: jnp.min(jnp.stack([smallest_magnitude(g) for g in grads])) < jnp.inf,
    )
    found = ire_core.FlatThreshold(tau, any_finite)
    mask = [ire_core.mask_at_threshold(g * g, found, k, m) for g, m in zip(grads, mask_leaves)]
    return (
        jax.tree_util.tree_unflatten(treedef, mask),
        None,
        tau,
        sum(_count_true(m) for m in mask),
        state.refreshes + 1,
    )


def _update(
    hp: Hyperparams,
    inner: optax.GradientTransformationExtraArgs,
    updates,
    state: IREState,
    params,
    extra_args: dict,
    feed: dict,
):
    step = state.count
    interval = jnp.asarray(hp.interval, _INT)
    start_step = jnp.asarray(hp.start_step, _INT)
    refresh = ire_core.is_refresh_step(step, interval, start_step)
    active = ire_core.is_active(step, start_step)
    mask, curvature, threshold, count, refreshes, next_key = _refreshed(
        hp, state, refresh, updates, params, feed
    )

    inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)

    kappa_kwargs = {}
    if hp.config.kappa_follows_lr:
        kappa_kwargs = {"lr": _current_lr(hp, step, inner_state), "peak_lr": hp.peak_lr}
    kappa = ire_core.kappa_at(hp.config, step, **kappa_kwargs)
    out_leaves, out_def = jax.tree_util.tree_flatten(inner_updates)
    mask_leaves = _leaves(mask)
    if len(mask_leaves) != len(out_leaves):
        raise ValueError(
            f"the inner optimizer's updates must be shaped like the parameters "
            f"({len(mask_leaves)} tensors), got {len(out_leaves)} tensors"
        )
    amplified = [
        ire_core.amplify_update(u, m & active, kappa) for u, m in zip(out_leaves, mask_leaves)
    ]
    new_state = IREState(
        count=optax.safe_int32_increment(step),
        inner_state=inner_state,
        mask=mask,
        curvature=curvature,
        threshold=threshold,
        flat_count=count,
        refreshes=refreshes,
        key=next_key,
        interval=interval,
        start_step=start_step,
    )
    return jax.tree_util.tree_unflatten(out_def, amplified), new_state


_FEED = (
    "curvature",
    "curvature_fn",
    "curvature_grads",
    "loss_fn",
    "logits_fn",
    "probes",
    "label_uniforms",
    "curvature_key",
)


def _split_feed(extra_args: dict) -> dict:
    return {name: extra_args.get(name) for name in _FEED}


def ire(
    inner: optax.GradientTransformation,
    kappa: float | Callable = 2.0,
    flat_fraction: float | Callable = 0.6,
    interval: int = 10,
    ema: float = 0.0,
    start_step: int = 0,
    estimator: str | Callable = "gradient",
    num_probes: int = 1,
    kappa_follows_lr: bool = False,
    peak_lr: float | None = None,
    learning_rate: Any = None,
    seed: int = 0,
    threshold_fn: Callable | None = None,
) -> optax.GradientTransformationExtraArgs:
    """IRE around an optax optimizer: Δ ← Δ + κ·(P ⊙ Δ) on the flat mask P.

    The inner optimizer's state is untouched; only its update is rescaled on
    the flattest fraction γ of all coordinates (a global selection over every
    tensor). Before ``start_step`` the update is exactly the inner one.

    The mask is refreshed on steps ``start_step + k·interval`` from a
    curvature estimate chosen by ``estimator``; the estimate is computed under
    ``jax.lax.cond`` so expensive estimators only run on refresh steps. What
    ``update`` needs besides ``(updates, state, params)``, as keyword
    arguments (optax "extra args", passed through ``optax.chain``):

    * ``"gradient"``: nothing; ĥ = g² of ``updates`` (or of
      ``curvature_grads=`` when given, e.g. the gradient at θ under SAM).
    * ``"hutchinson"``: ``loss_fn=`` ``params -> scalar`` (the batch closed
      over); probes are drawn from the state's key, or given as ``probes=``
      (a sequence of pytrees shaped like ``params``).
    * ``"fisher"``: ``logits_fn=`` ``params -> logits``; label draws from the
      state's key, or given as ``label_uniforms=`` (shape ``logits.shape[:-1]``).
    * ``"exact"``: ``curvature_fn=`` ``(params, key) -> ĥ``.
    * a callable ``(params, key) -> ĥ``: called as it is.

    For any estimator, ``curvature=`` (a ready estimate) or ``curvature_fn=``
    override the above; ``curvature_key=`` replaces the state's key for the
    draws of this step.

    Args:
      inner: the base optimizer (any optax transformation, e.g. ``optax.adamw``).
      kappa: κ >= 0, or a schedule ``step -> κ`` (traceable).
      flat_fraction: γ in [0, 1], or a schedule ``step -> γ`` (traceable).
      interval: refresh period K (steps).
      ema: decay β in [0, 1) of a curvature moving average (0: none).
      start_step: IRE is inactive (the update is the inner one) before it.
      estimator: ``"gradient"``, ``"hutchinson"``, ``"fisher"``, ``"exact"``
        or a callable ``(params, key) -> ĥ``.
      num_probes: Hutchinson probes drawn per refresh.
      kappa_follows_lr: scale κ by ``lr_t / peak_lr`` (the authors' "prog
        decay").
      peak_lr: lr_peak for ``kappa_follows_lr``.
      learning_rate: the inner optimizer's learning rate (number or schedule)
        for ``kappa_follows_lr``; ``None`` reads ``learning_rate`` from the
        inner state (an ``optax.inject_hyperparams`` optimizer).
      seed: seed of the PRNG key kept in the state for estimator draws.
      threshold_fn: ``(values, k) -> τ`` finding the k-th smallest curvature
        over the model; ``None`` is :func:`ire_jax.exact_threshold` (exact,
        by bisection over bit patterns). ``ire_core.HistogramThreshold()``
        and ``ire_core.threshold.SampledThreshold()`` are the streaming and
        sampled alternatives.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is an
      :class:`ire_jax.IREState`.

    Raises:
      ValueError: a hyperparameter out of range, naming it.

    Example:
      >>> import jax, jax.numpy as jnp, optax, ire_jax
      >>> tx = ire_jax.ire(optax.sgd(0.1), kappa=1.0, flat_fraction=0.5)
      >>> params = jnp.array([1.0, 1.0])
      >>> state = tx.init(params)
      >>> grads = jnp.array([0.1, 1.0])      # L = ½(0.1·a² + b²) at (1, 1)
      >>> updates, state = tx.update(grads, state, params)
      >>> [round(u, 6) for u in updates.tolist()]   # the flat coordinate moves twice as far
      [-0.02, -0.1]
    """
    hp = resolve(
        kappa=kappa,
        flat_fraction=flat_fraction,
        interval=interval,
        ema=ema,
        start_step=start_step,
        estimator=estimator,
        num_probes=num_probes,
        kappa_follows_lr=kappa_follows_lr,
        peak_lr=peak_lr,
        learning_rate=learning_rate,
        seed=seed,
        threshold_fn=threshold_fn,
    )
    return _transformation(hp, inner)


def _transformation(hp: Hyperparams, inner, prepare=None) -> optax.GradientTransformationExtraArgs:
    """The transformation for resolved hyperparameters. ``prepare``, if given,
    maps ``(updates, params, extra_args)`` to the updates for the inner
    optimizer and the extra arguments (used by SAM-IRE)."""
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(
            f"inner must be an optax.GradientTransformation, got {type(inner).__name__}"
        )
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return _init(hp, inner, params)

    def update_fn(updates, state, params=None, **extra_args):
        if prepare is not None:
            updates, extra_args = prepare(updates, params, extra_args)
        return _update(hp, inner, updates, state, params, extra_args, _split_feed(extra_args))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
