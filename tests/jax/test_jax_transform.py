"""Behaviour of ire_jax.ire: invariants, errors, jit, dtypes, state, keys."""

from __future__ import annotations

import functools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ire_jax

H = jnp.array([0.1, 5.0, 0.2, 7.0, 0.3, 9.0], dtype=jnp.float32)


def quadratic(params):
    return 0.5 * jnp.sum(H.astype(params.dtype) * params**2)


def run(tx, steps=5, params=None, **feed):
    params = jnp.ones(6, jnp.float32) if params is None else params
    state = tx.init(params)
    update = jax.jit(lambda grads, state, params: tx.update(grads, state, params, **feed))
    history = []
    for _ in range(steps):
        grads = jax.grad(quadratic)(params)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        history.append(np.asarray(params))
    return np.stack(history), state


def test_kappa_zero_and_flat_fraction_zero_are_bitwise_the_inner_optimizer():
    base, _ = run(optax.adam(0.1), steps=6)
    for kwargs in ({"kappa": 0.0}, {"flat_fraction": 0.0}, {"start_step": 100}):
        got, _ = run(ire_jax.ire(optax.adam(0.1), interval=2, **kwargs), steps=6)
        np.testing.assert_array_equal(got, base)


def test_flat_coordinates_move_with_one_plus_kappa_times_the_lr():
    # Diagonal quadratic, exact curvature, gradient descent: invariant 3.
    lr, kappa = 0.05, 1.5
    tx = ire_jax.ire(optax.sgd(lr), kappa=kappa, flat_fraction=0.5, interval=1, estimator="exact")
    params = jnp.ones(6, jnp.float32)
    state = tx.init(params)
    grads = jax.grad(quadratic)(params)
    updates, state = tx.update(grads, state, params, curvature_fn=lambda p, key: H)
    flat = np.asarray(H) <= 0.3
    np.testing.assert_allclose(
        np.asarray(updates)[flat], -lr * (1 + kappa) * np.asarray(grads)[flat], rtol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(updates)[~flat], -lr * np.asarray(grads)[~flat])
    np.testing.assert_array_equal(np.asarray(state.mask), flat)
    assert int(state.flat_count) == 3 and float(state.threshold) == pytest.approx(0.3)


def test_warm_up_steps_equal_the_inner_step_then_ire_starts():
    base, _ = run(optax.sgd(0.1), steps=5)
    got, state = run(
        ire_jax.ire(optax.sgd(0.1), kappa=1.0, flat_fraction=0.5, start_step=3), steps=5
    )
    np.testing.assert_array_equal(got[:3], base[:3])
    assert not np.array_equal(got[3], base[3])
    assert int(state.refreshes) == 1 and int(state.count) == 5


def test_mask_is_held_between_refreshes():
    tx = ire_jax.ire(optax.sgd(0.1), flat_fraction=0.5, interval=3, estimator="exact")
    params = jnp.ones(6, jnp.float32)
    state = tx.init(params)
    masks, refresh_flags = [], []
    for t in range(7):
        curvature = H if t % 2 == 0 else 1.0 / H  # a different ranking every step
        refresh_flags.append(bool(ire_jax.refresh_due(state)))
        _, state = tx.update(H, state, params, curvature=curvature)
        masks.append(np.asarray(state.mask))
    assert refresh_flags == [True, False, False, True, False, False, True]
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])
    np.testing.assert_array_equal(masks[3], ~masks[0])  # refreshed from 1/H at t = 3
    assert int(state.refreshes) == 3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"kappa": -1.0}, "kappa must be a finite number >= 0, got -1.0"),
        ({"flat_fraction": 1.5}, "flat_fraction must be a number in \\[0, 1\\], got 1.5"),
        ({"interval": 0}, "interval must be an integer >= 1, got 0"),
        ({"ema": 1.0}, "ema must be a number in \\[0, 1\\), got 1.0"),
        ({"start_step": -2}, "start_step must be an integer >= 0, got -2"),
        ({"estimator": "diagonal"}, "estimator must be one of"),
        ({"num_probes": 0}, "num_probes must be an integer >= 1, got 0"),
        ({"kappa_follows_lr": True}, "kappa_follows_lr=True needs peak_lr"),
        (
            {"kappa_follows_lr": True, "peak_lr": -1.0},
            "peak_lr must be a finite number > 0, got -1.0",
        ),
        ({"seed": 1.5}, "seed must be an integer, got 1.5"),
        ({"threshold_fn": "sort"}, "threshold_fn must be a callable"),
    ],
)
def test_bad_hyperparameters_raise_at_construction_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ire_jax.ire(optax.sgd(0.1), **kwargs)


def test_bad_sam_radius_and_inner_raise():
    with pytest.raises(ValueError, match="rho must be a finite number >= 0, got -0.1"):
        ire_jax.sam_ire(optax.sgd(0.1), rho=-0.1)
    with pytest.raises(TypeError, match="inner must be an optax.GradientTransformation, got str"):
        ire_jax.ire("adam")


@pytest.mark.parametrize(
    "estimator,missing",
    [("hutchinson", "loss_fn"), ("fisher", "logits_fn"), ("exact", "curvature_fn")],
)
def test_missing_estimator_input_is_named(estimator, missing):
    tx = ire_jax.ire(optax.sgd(0.1), estimator=estimator)
    params = jnp.ones(6)
    with pytest.raises(ValueError, match=f"estimator='{estimator}' needs {missing}="):
        tx.update(params, tx.init(params), params)


def test_sam_ire_needs_loss_fn():
    tx = ire_jax.sam_ire(optax.sgd(0.1))
    params = jnp.ones(6)
    with pytest.raises(ValueError, match="sam_ire needs loss_fn="):
        tx.update(params, tx.init(params), params)


def test_no_recompilation_after_the_first_call():
    traces = []
    tx = ire_jax.ire(optax.adamw(1e-2), interval=2, estimator="hutchinson", num_probes=2)

    @jax.jit
    def step(params, state):
        traces.append(1)
        grads = jax.grad(quadratic)(params)
        updates, state = tx.update(grads, state, params, loss_fn=quadratic)
        return optax.apply_updates(params, updates), state

    params = jnp.ones(6, jnp.float32)
    state = tx.init(params)
    for _ in range(5):  # refresh and hold steps alike
        params, state = step(params, state)
    assert len(traces) == 1
    assert int(state.refreshes) == 3


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtype_is_preserved(dtype):
    tx = ire_jax.ire(optax.adam(1e-2), flat_fraction=0.5, interval=1, ema=0.5)
    params = {"a": jnp.ones(4, dtype), "b": jnp.ones((2, 3), dtype)}
    state = tx.init(params)
    grads = jax.tree_util.tree_map(
        lambda p: jnp.linspace(0.1, 1.0, p.size, dtype=dtype).reshape(p.shape), params
    )
    updates, state = jax.jit(tx.update)(grads, state, params)
    for tree in (updates, state.curvature):
        assert all(leaf.dtype == dtype for leaf in jax.tree_util.tree_leaves(tree))
    assert all(m.dtype == jnp.bool_ for m in jax.tree_util.tree_leaves(state.mask))
    assert int(state.flat_count) == 5  # ⌊0.5 · 10⌋
    assert state.threshold.dtype == jnp.float32


def test_init_on_abstract_parameters():
    tx = ire_jax.ire(optax.adamw(1e-3), ema=0.9)
    abstract = {
        "w": jax.ShapeDtypeStruct((3, 2), jnp.bfloat16),
        "b": jax.ShapeDtypeStruct((2,), jnp.float32),
    }
    shapes = jax.eval_shape(tx.init, abstract)
    concrete = tx.init(jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), abstract))
    same = jax.tree_util.tree_map(
        lambda s, c: s.shape == c.shape and s.dtype == c.dtype, shapes, concrete
    )
    assert all(jax.tree_util.tree_leaves(same))
    assert shapes.mask["w"].dtype == jnp.bool_ and shapes.curvature["w"].dtype == jnp.bfloat16
    direct = tx.init(abstract)  # zeros_like accepts ShapeDtypeStruct
    assert direct.mask["w"].shape == (3, 2)


def test_state_round_trips_through_pickled_numpy_leaves():
    tx = ire_jax.ire(
        optax.adamw(1e-2), flat_fraction=0.5, interval=2, ema=0.5, estimator="hutchinson"
    )
    params = jnp.ones(6, jnp.float32)
    update = jax.jit(functools.partial(tx.update, loss_fn=quadratic))
    state = tx.init(params)
    for _ in range(3):
        _, state = update(jax.grad(quadratic)(params), state, params)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    blob = pickle.dumps([np.asarray(leaf) for leaf in leaves])
    restored = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in pickle.loads(blob)])
    for a, b in zip(jax.tree_util.tree_leaves(restored), leaves):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    grads = jax.grad(quadratic)(params)
    out_a, next_a = update(grads, state, params)
    out_b, next_b = update(grads, restored, params)
    np.testing.assert_array_equal(np.asarray(out_a), np.asarray(out_b))
    np.testing.assert_array_equal(np.asarray(next_a.key), np.asarray(next_b.key))


def _hutchinson_run(seed, curvature_key=None):
    tx = ire_jax.ire(
        optax.sgd(0.05), flat_fraction=0.5, interval=2, estimator="hutchinson", seed=seed
    )
    feed = {"loss_fn": lambda p: jnp.sum(jnp.sin(p) * H * p**2)}
    if curvature_key is not None:
        feed["curvature_key"] = curvature_key
    return run(tx, steps=4, **feed)


def test_same_key_same_trajectory_and_keys_matter():
    a, state_a = _hutchinson_run(seed=0)
    b, state_b = _hutchinson_run(seed=0)
    _, state_c = _hutchinson_run(seed=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(state_a.key), np.asarray(state_b.key))
    assert not np.array_equal(np.asarray(state_a.key), np.asarray(state_c.key))
    # An explicit key replaces the state's for the draws, and the state's key stays put.
    d, state_d = _hutchinson_run(seed=0, curvature_key=jax.random.PRNGKey(7))
    e, _ = _hutchinson_run(seed=1, curvature_key=jax.random.PRNGKey(7))
    np.testing.assert_array_equal(d, e)
    np.testing.assert_array_equal(np.asarray(state_d.key), np.asarray(jax.random.PRNGKey(0)))


def test_non_finite_curvature_is_never_flat_and_all_nan_keeps_the_mask():
    tx = ire_jax.ire(optax.sgd(0.1), flat_fraction=0.5, interval=1, estimator="exact")
    params = jnp.ones(6, jnp.float32)
    state = tx.init(params)
    h = H.at[0].set(jnp.nan).at[2].set(-jnp.inf)
    _, state = tx.update(H, state, params, curvature=h)
    mask = np.asarray(state.mask)
    assert not mask[0] and not mask[2] and mask.sum() == 3
    _, state = tx.update(H, state, params, curvature=jnp.full(6, jnp.nan))
    np.testing.assert_array_equal(np.asarray(state.mask), mask)


def test_callable_estimator_and_ready_curvature():
    tx = ire_jax.ire(
        optax.sgd(0.1), flat_fraction=0.5, interval=1, estimator=lambda params, key: -H
    )
    params = jnp.ones(6, jnp.float32)
    _, state = tx.update(H, tx.init(params), params)
    np.testing.assert_array_equal(np.asarray(state.mask), np.asarray(H) <= 0.3)  # |−H| ranked
    _, state = tx.update(H, state, params, curvature=1.0 / H)  # overrides
    np.testing.assert_array_equal(np.asarray(state.mask), np.asarray(H) > 0.3)


def test_mask_stats_read_from_state():
    tx = ire_jax.ire(optax.sgd(0.1), flat_fraction=0.5, interval=1)
    params = {"a": jnp.ones(2), "b": jnp.ones(4)}
    grads = {"a": jnp.array([0.1, 0.2]), "b": jnp.array([0.3, 5.0, 6.0, 7.0])}
    _, state = tx.update(grads, tx.init(params), params)
    stats = ire_jax.mask_stats(state)
    assert int(stats.flat_count) == 3 and stats.total == 6
    assert [float(f) for f in stats.per_tensor] == [1.0, 0.25]


def test_kappa_and_flat_fraction_schedules_are_traced():
    kappa = lambda step: jnp.where(step >= 2, 3.0, 1.0)  # noqa: E731
    tx = ire_jax.ire(optax.sgd(1.0), kappa=kappa, flat_fraction=lambda step: 0.5, interval=1)
    params = jnp.ones(2)
    grads = jnp.array([0.1, 1.0])
    update = jax.jit(tx.update)
    state = tx.init(params)
    outs = []
    for _ in range(3):
        u, state = update(grads, state, params)
        outs.append(float(u[0]))
    assert outs == pytest.approx([-0.2, -0.2, -0.4])


def test_kappa_follows_a_learning_rate_schedule():
    schedule = optax.linear_schedule(1.0, 0.0, 4)
    tx = ire_jax.ire(
        optax.sgd(schedule),
        kappa=2.0,
        flat_fraction=0.5,
        interval=1,
        kappa_follows_lr=True,
        peak_lr=1.0,
        learning_rate=schedule,
    )
    params = jnp.ones(2)
    grads = jnp.array([0.1, 1.0])
    state = tx.init(params)
    flat = []
    for t in range(3):
        u, state = tx.update(grads, state, params)
        lr = float(schedule(t))
        flat.append(float(u[0]) / (-lr * 0.1))  # 1 + κ·lr/peak
    assert flat == pytest.approx([3.0, 2.5, 2.0])


def test_flat_count_of_a_refresh_counted_in_chunks(monkeypatch):
    # On the CPU the refresh counts its mask in slices (here of 16 values,
    # with tails); the count is the mask's own.
    monkeypatch.setattr(ire_jax._reduce, "CHUNK", 16)
    rng = np.random.default_rng(3)
    params = {"a": jnp.ones((9, 13)), "b": jnp.ones((37,))}
    grads = jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params)
    tx = ire_jax.ire(optax.sgd(0.1), flat_fraction=0.3)
    _, state = jax.jit(tx.update)(grads, tx.init(params), params)
    counted = sum(int(np.sum(np.asarray(m))) for m in jax.tree_util.tree_leaves(state.mask))
    assert int(state.flat_count) == counted == int(0.3 * (9 * 13 + 37))


def test_large_model_refresh_over_gradients_equals_the_refresh_over_squares(monkeypatch):
    # From _SQUARES_MIN_SIZE coordinates the "gradient" refresh finds τ by a
    # search over g itself; mask, τ, count and updates are the generic refresh's.
    rng = np.random.default_rng(5)
    params = {"w": jnp.ones((70, 90), jnp.float32), "b": jnp.ones((13,), jnp.float32)}
    steps = []
    for t in range(6):
        g = {name: rng.standard_t(2, size=p.shape).astype(np.float32) for name, p in params.items()}
        g["w"][rng.random(g["w"].shape) < 0.02] = np.nan
        g["w"][0, :5] = [np.inf, -np.inf, 1e30, -1e-30, 0.0]
        if t == 4:  # nothing finite: the mask in force is kept
            g = {name: np.full_like(v, np.nan) for name, v in g.items()}
        steps.append(jax.tree_util.tree_map(jnp.asarray, g))
    searches = []
    of_squares = ire_jax.transform.exact_threshold_of_squares

    def spy(grads, k):
        searches.append(k)
        return of_squares(grads, k)

    monkeypatch.setattr(ire_jax.transform, "exact_threshold_of_squares", spy)

    def trajectory(min_size):
        monkeypatch.setattr(ire_jax.transform, "_SQUARES_MIN_SIZE", min_size)
        tx = ire_jax.ire(optax.adam(0.1), flat_fraction=0.4, interval=2)
        update = jax.jit(tx.update)
        state, out = tx.init(params), []
        for grads in steps:
            updates, state = update(grads, state, params)
            out.append((updates, state))
        return out

    generic = trajectory(min_size=1 << 62)
    assert not searches
    over_gradients = trajectory(min_size=0)
    assert searches  # traced once
    for (u_a, s_a), (u_b, s_b) in zip(generic, over_gradients):
        for a, b in zip(jax.tree_util.tree_leaves((u_a, s_a)), jax.tree_util.tree_leaves((u_b, s_b))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    masks = [np.concatenate([np.ravel(m) for m in jax.tree_util.tree_leaves(s.mask)])
             for _, s in generic]
    assert int(generic[2][1].flat_count) == masks[2].sum() > 0
    np.testing.assert_array_equal(masks[4], masks[3])  # the all-NaN refresh kept the mask


def test_sampled_threshold_ranks_its_sample_by_the_search(monkeypatch):
    import ire_core
    from ire_core.threshold import SampledThreshold
    from ire_jax import _hyperparams

    ranked = []
    search = _hyperparams.exact_threshold
    monkeypatch.setattr(_hyperparams, "exact_threshold",
                        lambda values, k: ranked.append([v.size for v in values]) or search(values, k))

    shapes = [(70, 60), (900,), (7,)]
    keys = jax.random.split(jax.random.PRNGKey(3), len(shapes))
    grads = [jax.random.normal(key, shape) * jnp.exp(jax.random.normal(key, shape))
             for key, shape in zip(keys, shapes)]
    params = [jnp.zeros(shape) for shape in shapes]
    tx = ire_jax.ire(optax.sgd(0.1), flat_fraction=0.3, threshold_fn=SampledThreshold(sample=512))
    _, state = jax.jit(tx.update)(grads, tx.init(params), params)
    assert ranked == [[512]]  # not XLA's sort
    squares = [np.asarray(g, np.float64) ** 2 for g in grads]
    expected = ire_core.select_flat_mask(squares, 0.3, threshold_fn=SampledThreshold(sample=512))
    assert float(state.threshold) == pytest.approx(float(expected.threshold), rel=1e-6)
    for got, want in zip(state.mask, expected.mask):
        np.testing.assert_array_equal(np.asarray(got), want)
