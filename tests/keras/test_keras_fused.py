"""The step inside the inner optimizer's writes (``ire_keras.fused``, the
TensorFlow fast path) against the generic copy-and-rescale step."""

import keras
import numpy as np
import pytest
from conftest import BACKEND
from keras_helpers import dense_model, regression_data

import ire_keras
from ire_keras import fused

on_tensorflow = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="the fused path is TensorFlow's; elsewhere it is off"
)

BASES = {
    "sgd": lambda: keras.optimizers.SGD(0.05),
    "sgd-momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    "sgd-nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: keras.optimizers.Adam(0.01),
    "adam-amsgrad": lambda: keras.optimizers.Adam(0.01, amsgrad=True),
    "adamw": lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1),
    "adamax": lambda: keras.optimizers.Adamax(0.01),
    "nadam": lambda: keras.optimizers.Nadam(0.01),
    "lion": lambda: keras.optimizers.Lion(0.001, weight_decay=0.1),
    "rmsprop-centered": lambda: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    "adagrad": lambda: keras.optimizers.Adagrad(0.1),
    "sgd-accumulated": lambda: keras.optimizers.SGD(0.05, momentum=0.9,
                                                    gradient_accumulation_steps=2),
}


@pytest.fixture(params=["graph", "compiled"])
def write_path(request, monkeypatch):
    """Amplified writes by graph kernels, or by one XLA-compiled call per
    weight however small (``fused.COMPILED_MIN_SIZE``)."""
    monkeypatch.setattr(fused, "COMPILED_MIN_SIZE", 1 if request.param == "compiled" else 2**62)
    return request.param


def _train(make_base, generic, monkeypatch, steps=6, model=None, data=None, jit_compile=False):
    """Weights of a model trained by IRE around ``make_base()``; ``generic``
    turns the fused path off. Returns the weights and how many steps went
    through the fused path."""
    taken = []
    original = fused.amplified_writes

    def counted(*args):
        taken.append(1)
        return original(*args)

    with monkeypatch.context() as patch:
        patch.setattr(fused, "amplified_writes", counted)
        if generic:
            patch.setattr(fused, "supports_fused_step", lambda inner, variables: False)
        model = model or dense_model()
        x, y = data or regression_data()
        model.compile(optimizer=ire_keras.IRE(make_base(), kappa=1.5, flat_fraction=0.5,
                                              interval=2, seed=0), loss="mse",
                      jit_compile=jit_compile)
        model.fit(x, y, batch_size=4, epochs=steps * 4 // len(x), shuffle=False, verbose=0)
    return model.get_weights(), len(taken)


@on_tensorflow
@pytest.mark.parametrize("base", sorted(BASES))
def test_fused_step_matches_the_generic_step(base, write_path, monkeypatch, float64):
    fused_weights, fused_steps = _train(BASES[base], False, monkeypatch)
    generic_weights, generic_steps = _train(BASES[base], True, monkeypatch)
    assert fused_steps > 0 and generic_steps == 0
    for a, b in zip(fused_weights, generic_weights):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


@on_tensorflow
@pytest.mark.parametrize("base", ["sgd-momentum", "adamw"])
def test_fused_step_compiles_with_xla(base, monkeypatch, float64):
    fused_weights, fused_steps = _train(BASES[base], False, monkeypatch, jit_compile=True)
    generic_weights, _ = _train(BASES[base], True, monkeypatch, jit_compile=True)
    assert fused_steps > 0
    for a, b in zip(fused_weights, generic_weights):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@on_tensorflow
@pytest.mark.parametrize("base", ["sgd-momentum", "adamw"])
def test_fused_step_moves_flat_weights_further_and_the_others_exactly_as_the_base(
        base, write_path):
    x, y = regression_data()
    plain, wrapped = dense_model(), dense_model()
    start = [w.copy() for w in plain.get_weights()]
    plain.compile(optimizer=BASES[base](), loss="mse")
    wrapped.compile(optimizer=ire_keras.IRE(BASES[base](), kappa=2.0, flat_fraction=0.4),
                    loss="mse")
    plain.train_on_batch(x, y)
    wrapped.train_on_batch(x, y)
    for p0, p, q, mask in zip(start, plain.get_weights(), wrapped.get_weights(),
                              wrapped.optimizer.flat_masks):
        mask = keras.ops.convert_to_numpy(mask)
        np.testing.assert_allclose((q - p0)[mask], 3.0 * (p - p0)[mask], rtol=1e-5)
        np.testing.assert_array_equal(q[~mask], p[~mask])


@on_tensorflow
def test_fused_step_densifies_sparse_embedding_updates(write_path, monkeypatch):
    # SGD writes an Embedding's gradient rows (tf.IndexedSlices) directly.
    def model():
        keras.utils.set_random_seed(0)
        return keras.Sequential([keras.Input((3,), dtype="int32"), keras.layers.Embedding(7, 2),
                                 keras.layers.Flatten(), keras.layers.Dense(1)])

    rng = np.random.default_rng(0)
    data = (rng.integers(0, 7, (8, 3)), rng.normal(size=(8, 1)))
    fused_weights, fused_steps = _train(BASES["sgd"], False, monkeypatch, model=model(), data=data)
    generic_weights, _ = _train(BASES["sgd"], True, monkeypatch, model=model(), data=data)
    assert fused_steps > 0
    for a, b in zip(fused_weights, generic_weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


class _OwnAdam(keras.optimizers.Adam):
    """A subclass may write its weights in ways the fused path cannot see."""


@pytest.mark.parametrize("case", ["subclass", "weight ema", "constraint", "supported"])
def test_fused_path_only_where_it_sees_every_write(case):
    variables = [keras.layers.Dense(2, kernel_constraint=keras.constraints.NonNeg()
                                    if case == "constraint" else None)]
    variables[0].build((3,))
    variables = variables[0].trainable_weights
    inner = {"subclass": _OwnAdam(), "weight ema": keras.optimizers.Adam(use_ema=True)}.get(
        case, keras.optimizers.Adam())
    expected = case == "supported" and BACKEND == "tensorflow"
    assert fused.supports_fused_step(inner, variables) is expected


@on_tensorflow
def test_inner_optimizer_methods_are_restored_even_when_a_step_fails():
    inner = keras.optimizers.SGD(0.1)
    weight = keras.Variable(np.ones(2))
    inner.build([weight])
    mask = keras.ops.convert_to_tensor([True, False])
    with pytest.raises(RuntimeError, match="stop"):
        with fused.amplified_writes(inner, [weight], [mask], keras.ops.convert_to_tensor(1.0)):
            inner.apply([keras.ops.ones(2)], [weight])
            np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), [0.8, 0.9])
            raise RuntimeError("stop")
    for name in ("assign_add", "assign_sub", "_apply_weight_decay"):
        assert name not in vars(inner)
    inner.apply([keras.ops.ones(2)], [weight])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), [0.7, 0.8])


def _ancestors(op) -> set:
    """The ops ``op`` waits for, through data and control edges."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


@on_tensorflow
@pytest.mark.parametrize("base", ["adamw", "sgd-momentum"])
def test_each_factor_waits_for_the_value_it_scales(base):
    # TensorFlow runs an op as soon as its inputs exist: a factor made from
    # its mask alone could run at the start of the step and stay alive, with
    # every other weight's, until its weight's step is written.
    import tensorflow as tf

    model = dense_model()
    x, y = regression_data()
    weights = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = keras.ops.mean((model(x) - y) ** 2)
    grads = tape.gradient(loss, weights)
    optimizer = ire_keras.IRE(BASES[base](), kappa=2.0, interval=3)
    optimizer.build(weights)
    graph = tf.function(lambda: optimizer.apply(grads, weights)).get_concrete_function().graph
    factors = [op for op in graph.get_operations()
               if op.type == "SelectV2" and op.inputs[0].dtype == tf.bool
               and op.outputs[0].shape.rank > 0]
    assert sorted(tuple(op.outputs[0].shape) for op in factors) == sorted(
        tuple(w.shape) for w in weights)
    for factor in factors:
        products = factor.outputs[0].consumers()
        # AdamW scales its decay and its step by one factor, made after the step.
        assert len(products) == (2 if base == "adamw" else 1)
        waits_for = _ancestors(factor)
        values = [t.op for product in products for t in product.inputs if t.op is not factor]
        assert any(v in waits_for for v in values), (
            f"{factor.name} can run before its weight's step exists")


@on_tensorflow
def test_a_decay_without_a_step_write_is_still_written_amplified():
    # The decay of an amplified weight waits for the weight's step write; a
    # weight that gets none is decayed when the step ends.
    inner = keras.optimizers.AdamW(0.5, weight_decay=0.25)
    weight = keras.Variable(np.full(2, 8.0))
    inner.build([weight])
    mask = keras.ops.convert_to_tensor([True, False])
    with fused.amplified_writes(inner, [weight], [mask], keras.ops.convert_to_tensor(1.0)):
        inner._apply_weight_decay([weight])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), [8.0, 8.0])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), [6.0, 7.0])


def _compiled_calls(graph) -> list:
    """The calls of XLA-compiled functions in a traced graph."""
    return [op for op in graph.get_operations()
            if op.type in ("StatefulPartitionedCall", "PartitionedCall")
            and op.node_def.attr["_XlaMustCompile"].b]


@on_tensorflow
def test_a_large_weight_is_written_by_one_compiled_call_exactly_as_the_base_off_the_mask():
    # A 256 x 256 kernel reaches COMPILED_MIN_SIZE, its bias does not.
    import tensorflow as tf

    features = int(np.sqrt(fused.COMPILED_MIN_SIZE))
    x, y = regression_data(n=8, features=features, outputs=features)
    plain, wrapped = dense_model(features, features), dense_model(features, features)
    start = [w.copy() for w in plain.get_weights()]
    optimizer = ire_keras.IRE(BASES["adamw"](), kappa=2.0, flat_fraction=0.4)
    plain.compile(optimizer=BASES["adamw"](), loss="mse")
    wrapped.compile(optimizer=optimizer, loss="mse")
    plain.train_on_batch(x, y)
    wrapped.train_on_batch(x, y)
    for p0, p, q, mask in zip(start, plain.get_weights(), wrapped.get_weights(),
                              optimizer.flat_masks):
        mask = keras.ops.convert_to_numpy(mask)
        assert 0 < mask.sum() < mask.size
        np.testing.assert_allclose((q - p0)[mask], 3.0 * (p - p0)[mask], rtol=1e-4)
        np.testing.assert_array_equal(q[~mask], p[~mask])

    weights = wrapped.trainable_variables
    grads = [keras.ops.zeros_like(w) for w in weights]
    graph = tf.function(lambda: optimizer.apply(grads, weights)).get_concrete_function().graph
    assert len(_compiled_calls(graph)) == 1
    jitted = tf.function(lambda: optimizer.apply(grads, weights), jit_compile=True)
    assert _compiled_calls(jitted.get_concrete_function().graph) == []  # XLA compiles it all


@on_tensorflow
def test_compiled_writes_are_traced_once_when_the_step_runs_eagerly(monkeypatch, float64):
    monkeypatch.setattr(fused, "COMPILED_MIN_SIZE", 1)
    x, y = regression_data()
    weights = {}
    for eager in (False, True):
        model = dense_model()
        inner = BASES["adamw"]()
        model.compile(optimizer=ire_keras.IRE(inner, kappa=1.5, flat_fraction=0.5, interval=2),
                      loss="mse", run_eagerly=eager)
        for _ in range(4):
            model.train_on_batch(x, y)
        weights[eager] = model.get_weights()
    writes = fused._compiled_writes[inner]
    assert len(writes) == 2
    assert all(write.experimental_get_tracing_count() == 1 for write in writes.values())
    for a, b in zip(weights[False], weights[True]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
