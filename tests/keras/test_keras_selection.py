"""ire_keras.selection's exact threshold equals a sort on the active backend: small
models (sorted outright) and larger ones (the search over bit patterns), on
distributions that make the search work hard, with k a number or a tensor,
eagerly and compiled; and the flat mask it selects through ire_core equals
NumPy's."""

import keras
import numpy as np
import pytest
from conftest import BACKEND, numpy

import ire_core
from ire_keras import _xp, exact_threshold, selection
from ire_keras.selection import SAMPLE_SIZE, exact_threshold_of_squares

# A small model past the sorting size: a matrix, a vector, an empty tensor
# and a matrix whose size is not a multiple of anything convenient.
SHAPES = [(61, 83), (7,), (0, 3), (97, 101)]
N = sum(int(np.prod(s)) for s in SHAPES)


def _distribution(kind: str, rng, n: int) -> np.ndarray:
    if kind == "mixed":  # zeros, +inf, ties and a heavy tail
        values = np.abs(rng.standard_cauchy(n)) ** 3
        values[rng.random(n) < 0.1] = 0.0
        values[rng.random(n) < 0.05] = np.inf
        values[rng.random(n) < 0.2] = 1.5
        return values
    if kind == "few distinct":
        return rng.choice(rng.random(7), n)
    if kind == "mostly infinite":
        return np.where(rng.random(n) < 0.97, np.inf, rng.random(n))
    if kind == "wide":
        return rng.lognormal(0.0, 8.0, n)
    return rng.random(n) ** 2  # smooth


def _tensors(values, shapes):
    tensors, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        tensors.append(keras.ops.convert_to_tensor(values[start : start + size].reshape(shape)))
        start += size
    return tensors


def _compiled(fn):
    """``fn`` as the backend compiles a training step."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn)
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    return fn


@pytest.mark.parametrize("kind", ["mixed", "few distinct", "mostly infinite", "wide", "smooth"])
def test_search_equals_a_sort(kind):
    assert N > SAMPLE_SIZE  # the search, not the sort
    rng = np.random.default_rng(len(kind))
    values = _distribution(kind, rng, N).astype("float32")
    tensors = _tensors(values, SHAPES)
    ordered = np.sort(values)
    threshold = _compiled(lambda h, k: exact_threshold(h, k))
    ranks = [1, 2, int(0.6 * N), N - 1, N, int(rng.integers(1, N + 1))]
    for k in ranks:
        got = threshold(tensors, keras.ops.convert_to_tensor(k, "int32"))
        assert float(numpy(got)) == ordered[k - 1], (kind, k)
    assert float(numpy(exact_threshold(tensors, ranks[2]))) == ordered[ranks[2] - 1]
    assert float(numpy(exact_threshold(tensors, 0))) == np.inf
    assert float(numpy(threshold(tensors, keras.ops.convert_to_tensor(0, "int32")))) == np.inf


def _searching(fn):
    """``fn`` compiled where the threshold is searched: XLA on TensorFlow."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return _compiled(fn)


@pytest.mark.parametrize("kind", ["mixed", "mostly infinite", "wide", "smooth"])
def test_threshold_of_squares_is_the_threshold_of_the_squares(kind):
    # τ of ĥ = g² searched over |g| and squared, against a sort of the
    # rule's values of g * g (NaN as +inf), with signs, NaN and overflow.
    rng = np.random.default_rng(len(kind) + 7)
    grads = (_distribution(kind, rng, N) * rng.choice([-1, 1], N)).astype("float32")
    grads[rng.random(N) < 0.01] = np.nan
    with np.errstate(over="ignore", invalid="ignore"):
        squares = grads * grads
    ordered = np.sort(np.where(np.isnan(squares), np.inf, squares))
    tensors = _tensors(grads, SHAPES)
    searched = []

    def squared_threshold(g, k):
        searched.append(selection.is_searched(N))
        return exact_threshold_of_squares(g, k)

    compiled = _searching(squared_threshold)
    for k in [1, int(0.6 * N), N - 1, N]:
        got = compiled(tensors, keras.ops.convert_to_tensor(k, "int32"))
        assert float(numpy(got)) == ordered[k - 1], (kind, k)
        assert float(numpy(exact_threshold_of_squares(tensors, k))) == ordered[k - 1]
    assert searched and all(searched)
    assert float(numpy(exact_threshold_of_squares(tensors, 0))) == np.inf


def test_threshold_of_squares_needs_one_dtype():
    grads = [keras.ops.ones((2,), "float32"), keras.ops.ones((2,), "float16")]
    with pytest.raises(ValueError, match="one dtype"):
        exact_threshold_of_squares(grads, 1)


@pytest.mark.parametrize("n", [1, 5, 300, 3 * SAMPLE_SIZE + 5])
def test_float64_equals_a_sort(n, float64):
    # float64 where the backend has it (JAX runs these tests with x64): sorted
    # up to SAMPLE_SIZE values, searched (or, eagerly on TensorFlow, read
    # from histograms) past it
    values = _distribution("mixed", np.random.default_rng(n), n)
    values = values.astype(keras.backend.standardize_dtype(keras.ops.convert_to_tensor(values).dtype))
    tensors = _tensors(values, [(n // 2,), (n - n // 2,)])
    ordered = np.sort(values)
    for k in sorted({1, (n + 1) // 2, n}):
        got = exact_threshold(tensors, k)
        assert keras.backend.standardize_dtype(got.dtype) == values.dtype
        assert float(numpy(got)) == ordered[k - 1]


@pytest.mark.skipif(BACKEND != "jax", reason="the sort on one accelerator is the JAX backend's")
@pytest.mark.parametrize("backend, devices, sorts", [
    ("cpu", 1, False), ("gpu", 1, True), ("gpu", 2, False)])
def test_jax_on_a_single_accelerator_sorts(backend, devices, sorts, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(jax, "device_count", lambda: devices)
    values = _distribution("mixed", np.random.default_rng(3), N).astype(np.float32)
    tensors = _tensors(values, SHAPES)
    k = keras.ops.convert_to_tensor(int(0.6 * N), "int32")
    threshold = lambda v, k: exact_threshold(v, k)  # noqa: E731 (a fresh trace: no cached one)
    program = str(jax.make_jaxpr(threshold)(tensors, k))
    assert ("sort[" in program and "while[" not in program) == sorts
    assert ("while[" in program) == (not sorts)
    assert float(numpy(jax.jit(threshold)(tensors, k))) == np.sort(values)[int(0.6 * N) - 1]


@pytest.mark.parametrize("gamma", [0.05, 0.6, 1.0])
def test_selected_mask_matches_numpy(gamma):
    values = _distribution("mixed", np.random.default_rng(1), N)
    values[::97] *= -1.0  # signed estimates: |·| is taken
    values[5] = np.nan
    h = [values[: N // 3].astype("float32"), values[N // 3 :].astype("float32")]
    expected = ire_core.select_flat_mask(h, gamma)
    views = _xp.to_core([keras.ops.convert_to_tensor(x) for x in h])
    got = ire_core.select_flat_mask(views, gamma, threshold_fn=exact_threshold)
    assert float(numpy(_xp.from_core(got.threshold))) == float(expected.threshold)
    assert int(numpy(_xp.from_core(got.flat_count))) == int(expected.flat_count)
    for mine, theirs in zip(got.mask, expected.mask):
        np.testing.assert_array_equal(numpy(_xp.from_core(mine)), theirs)


def _signed_zeros_and_subnormals(rng, n: int) -> np.ndarray:
    values = _distribution("mixed", rng, n)
    values[rng.random(n) < 0.05] = -0.0
    values[rng.random(n) < 0.05] = 1e-40  # subnormal in float32, 0 in float16
    return values


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the histograms are TensorFlow's path")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("counter", ["int32", "int64"])
def test_histograms_equal_a_sort(dtype, counter):
    import tensorflow as tf

    rng = np.random.default_rng(len(dtype))
    for kind in ["signed zeros and subnormals", "few distinct", "mostly infinite", "wide"]:
        if kind == "signed zeros and subnormals":
            values = _signed_zeros_and_subnormals(rng, N)
        else:
            values = _distribution(kind, rng, N)
        tensors = [tf.cast(t, dtype) for t in _tensors(values, [(1,), (61, 83), (N - 1 - 61 * 83,)])]
        ordered = np.sort(np.concatenate([t.numpy().astype(np.float64).ravel() for t in tensors]))
        kth = tf.function(selection._kth_by_histograms)
        for k in [1, 2, int(0.6 * N), N - 1, N, int(rng.integers(1, N + 1))]:
            got = kth(tensors, tf.constant(k, counter))
            assert got.dtype == tensors[0].dtype
            assert float(got.numpy()) == ordered[k - 1], (kind, k)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow picks its path by XLA")
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("piece_min_size", [None, 5000])
def test_tensorflow_counts_by_histograms_outside_xla(jit_compile, piece_min_size, monkeypatch):
    import tensorflow as tf

    if piece_min_size is not None:  # the (97, 101) weight stays a piece of its own
        monkeypatch.setattr(selection, "_HISTOGRAM_PIECE_MIN_SIZE", piece_min_size)
    values = _signed_zeros_and_subnormals(np.random.default_rng(7), N).astype("float32")
    tensors = _tensors(values, SHAPES)
    k = tf.constant(int(0.6 * N))
    threshold = tf.function(lambda v, k: exact_threshold(v, k), jit_compile=jit_compile)
    graph = threshold.get_concrete_function(tensors, k).graph.as_graph_def()
    kinds = {node.op for node in graph.node}
    assert ("DenseBincount" in kinds) == (not jit_compile)
    assert ("While" in kinds or "StatelessWhile" in kinds) == jit_compile
    assert float(threshold(tensors, k).numpy()) == np.sort(values)[int(0.6 * N) - 1]


def test_the_old_module_path_warns_and_re_exports():
    import importlib
    import sys

    sys.modules.pop("ire_keras.threshold", None)
    with pytest.warns(DeprecationWarning, match="ire_keras.selection"):
        old = importlib.import_module("ire_keras.threshold")
    for name in ["exact_threshold", "exact_threshold_of_squares", "is_searched", "magnitude"]:
        assert getattr(old, name) is getattr(selection, name)
    assert old.SAMPLE_SIZE == selection.SAMPLE_SIZE
