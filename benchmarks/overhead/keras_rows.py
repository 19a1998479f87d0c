"""The Keras rows: ``model.train_on_batch`` with Keras's AdamW and with
``ire_keras.IRE`` around it.

Rows, each timed against the base in parentheses:

* ``keras AdamW`` (itself) and ``ire_keras gradient`` (``keras AdamW``),
  over whole refresh periods;
* the same two compiled with ``jit_compile=True`` (XLA): ``…,
  jit_compile=True``, the IRE row against the XLA base;
* ``ire_keras gradient, steps without refresh`` and ``…, refresh steps``:
  the IRE variant's steps of the same rounds split by kind (see
  :func:`benchmarks.overhead.harness.split_rows`).

Memory columns: on the TensorFlow backend, the most memory TensorFlow's CPU
allocator held during one ``optimizer.apply`` beyond what it held before
(``tf.config.experimental.reset_memory_stats`` / ``get_memory_info``,
public), the largest over two refresh periods of steps without and with a
refresh. The allocator keeps these statistics only as a BFC allocator
(``TF_CPU_ALLOCATOR_USE_BFC=true``, or with oneDNN on); without them, and on
other Keras backends, the columns read ``None``. The extra state counts
every optimizer variable beyond the base's.

A model an adapter cannot run is reported in ``failed``, not raised.
"""

from __future__ import annotations

import re
import time

from .harness import (
    GAMMA,
    INTERVAL,
    KAPPA,
    Row,
    Sizes,
    cases,
    interleaved,
    is_refresh_step,
    label,
    median_ms,
    median_ratio,
    mib,
    progress,
    split_rows,
)

__all__ = ["keras_rows"]

BASE, IRE_NAME, XLA = "keras AdamW", "ire_keras gradient", ", jit_compile=True"


def keras_rows(sz: Sizes, failed: dict) -> list[Row]:
    """Every Keras row of every model; a model that raises is recorded in
    ``failed`` as ``{"keras <model>": "<error type>: <message>"}``."""
    rows = []
    for kind, size, spec in cases(sz):
        progress(f"keras {kind}-{size}")
        try:
            rows += _case(kind, size, spec, sz)
        except Exception as error:  # an adapter that cannot run this model: reported
            message = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split())
            failed[f"keras {kind}-{size}"] = f"{type(error).__name__}: {message[:300]}"
    return rows


def _optimizer(name: str):
    import keras

    import ire_keras

    base = keras.optimizers.AdamW(1e-3, weight_decay=0.1)
    if name.startswith(BASE):
        return base
    return ire_keras.IRE(base, kappa=KAPPA, flat_fraction=GAMMA, interval=INTERVAL)


def _case(kind: str, size: str, spec, sz: Sizes) -> list[Row]:
    """The rows of one model."""
    import keras
    import numpy as np

    bases = {BASE: BASE, IRE_NAME: BASE, BASE + XLA: BASE + XLA, IRE_NAME + XLA: BASE + XLA}
    make, x, y = _problem(kind, spec, sz)
    peaks = {name: _step_peaks(make, name, x, y) for name in bases}
    models = {}
    for name in bases:
        keras.utils.set_random_seed(0)
        model = make()
        model.compile(optimizer=_optimizer(name), jit_compile=name.endswith(XLA),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.train_on_batch(x, y)
        models[name] = model
    record = []  # (refresh step?, seconds) of every IRE step, warm-up round first
    taken = [int(keras.ops.convert_to_numpy(models[IRE_NAME].optimizer.iterations))]

    def ire_step(model=models[IRE_NAME]):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        record.append((is_refresh_step(taken[0]), time.perf_counter() - start))
        taken[0] += 1

    steppers = {name: (lambda m=model: m.train_on_batch(x, y)) for name, model in models.items()}
    steppers[IRE_NAME] = ire_step
    times = interleaved(steppers, sz.rounds, sz.steps)
    count = int(sum(np.prod(w.shape) for w in models[BASE].trainable_weights))
    param_bytes = 4 * count
    states = {
        name: sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                  for v in m.optimizer.variables)
        for name, m in models.items()
    }
    model = label(kind, size, count)
    rows = []
    for name, base_name in bases.items():
        rows.append(Row(
            "keras", model, name, median_ms(times[base_name]), median_ms(times[name]),
            median_ratio(times[name], times[base_name]), peaks[name][0],
            (states[name] - states[base_name]) / param_bytes, count, peaks[name][1]))
    extra = (states[IRE_NAME] - states[BASE]) / param_bytes
    rows += split_rows("keras", model, IRE_NAME, record, times[BASE], sz.steps,
                       peaks[IRE_NAME][0], extra, count, peaks[IRE_NAME][1])
    return rows


def _step_peaks(make, name: str, x, y) -> tuple:
    """``(step, refresh)`` peaks in MiB of row ``name``'s ``optimizer.apply``
    on one batch's gradients, over two refresh periods (``None`` for a kind of
    step not seen, and for both off TensorFlow or without allocator
    statistics)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None, None
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = make()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        value = loss(y, model(x))
    weights = model.trainable_variables
    grads = tape.gradient(value, weights)
    optimizer = _optimizer(name)
    optimizer.build(weights)
    step = tf.function(lambda: optimizer.apply(grads, weights), jit_compile=name.endswith(XLA))
    ire = not name.startswith(BASE)
    step()
    taken = 1
    peaks = {False: [], True: []}
    try:
        for _ in range(2 * INTERVAL):
            refresh = ire and is_refresh_step(taken)
            tf.config.experimental.reset_memory_stats("CPU:0")
            before = tf.config.experimental.get_memory_info("CPU:0")["current"]
            step()
            taken += 1
            peaks[refresh].append(tf.config.experimental.get_memory_info("CPU:0")["peak"] - before)
    except (ValueError, AttributeError, tf.errors.OpError):
        return None, None
    return tuple(mib(max(p)) if p else None for p in (peaks[False], peaks[True]))


def _problem(kind: str, spec, sz: Sizes):
    """``(make_model, inputs, targets)``: an MLP on a random batch, or a
    small causal transformer on random tokens."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    if kind == "mlp":
        inputs, hidden = spec

        def make():
            return keras.Sequential([
                keras.Input((inputs,)), keras.layers.Dense(hidden, activation="relu"),
                keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(10)])

        return (make, rng.normal(size=(sz.batch, inputs)).astype("float32"),
                rng.integers(0, 10, sz.batch))

    dim, layers, heads, seq = spec["dim"], spec["layers"], spec["heads"], spec["seq_len"]

    def make():
        tokens = keras.Input((seq,), dtype="int32")
        h = keras.layers.Embedding(256, dim)(tokens)
        for _ in range(layers):
            a = keras.layers.LayerNormalization()(h)
            a = keras.layers.MultiHeadAttention(heads, dim // heads)(a, a, use_causal_mask=True)
            h = h + a
            f = keras.layers.LayerNormalization()(h)
            f = keras.layers.Dense(4 * dim, activation="gelu")(f)
            h = h + keras.layers.Dense(dim)(f)
        return keras.Model(tokens, keras.layers.Dense(256)(h))

    data = rng.integers(0, 256, (sz.lm_batch, seq + 1)).astype("int32")
    return make, data[:, :-1], data[:, 1:]
