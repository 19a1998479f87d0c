"""The JAX rows: one ``jax.jit`` training step (gradient, ``tx.update``,
``apply_updates``) of optax's AdamW and of ``ire_jax.ire`` around it.

Rows, each timed against the base in parentheses:

* ``optax adamw`` (itself) and ``ire_jax gradient`` (``optax adamw``), over
  whole refresh periods;
* the same two with the step's input buffers donated (``jax.jit(...,
  donate_argnums=(0, 1))``, as training loops write it): ``…, donated
  buffers``, the IRE row against the donated base;
* ``ire_jax gradient, steps without refresh`` and ``…, refresh steps``: the
  undonated IRE variant's steps of the same rounds split by kind (see
  :func:`benchmarks.overhead.harness.split_rows`).

Memory columns: the step peak is XLA's temporary buffers of the compiled
step (``compiled.memory_analysis().temp_size_in_bytes``, public); one
program holds both kinds of step, so there is no separate refresh peak. The
extra state counts every leaf of the optimizer state beyond the base's.
"""

from __future__ import annotations

import functools
import math
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

__all__ = ["DONATED", "jax_rows"]

DONATED = ", donated buffers"
"""Suffix of the rows whose step donates its input buffers."""


def jax_rows(sz: Sizes) -> list[Row]:
    """Every JAX row of every model."""
    import jax
    import optax

    import ire_jax

    base_name, ire_name = "optax adamw", "ire_jax gradient"
    rows = []
    for kind, size, spec in cases(sz):
        progress(f"jax {kind}-{size}")
        params, loss = _problem(kind, spec, sz)
        variants = {}
        for suffix, donate in (("", ()), (DONATED, (0, 1))):
            variants[base_name + suffix] = (optax.adamw(1e-3, weight_decay=0.1), donate)
            variants[ire_name + suffix] = (
                ire_jax.ire(optax.adamw(1e-3, weight_decay=0.1), kappa=KAPPA,
                            flat_fraction=GAMMA, interval=INTERVAL), donate)
        steppers, memory, state_bytes = {}, {}, {}
        record = []  # (refresh step?, seconds) of every IRE step, warm-up round first
        for name, (tx, donate) in variants.items():
            state = tx.init(params)
            compiled = _compile(tx, loss, donate, params, state)
            analysis = compiled.memory_analysis()
            memory[name] = None if analysis is None else mib(analysis.temp_size_in_bytes)
            state_bytes[name] = sum(x.nbytes for x in jax.tree_util.tree_leaves(state))
            steppers[name] = _stepper(compiled, params, state,
                                      record if name == ire_name else None)
        times = interleaved(steppers, sz.rounds, sz.steps)
        leaves = jax.tree_util.tree_leaves(params)
        count = sum(x.size for x in leaves)
        param_bytes = sum(x.nbytes for x in leaves)
        model = label(kind, size, count)
        extra = {name: (state_bytes[name] - state_bytes[base_name]) / param_bytes
                 for name in variants}
        for name in variants:
            bare = times[base_name + (DONATED if name.endswith(DONATED) else "")]
            rows.append(Row("jax", model, name, median_ms(bare), median_ms(times[name]),
                            median_ratio(times[name], bare), memory[name], extra[name], count))
        rows += split_rows("jax", model, ire_name, record, times[base_name], sz.steps,
                           memory[ire_name], extra[ire_name], count)
    return rows


def _compile(tx, loss, donate, params, state):
    """The compiled training step ``(params, state) -> (params, state)``."""
    import jax
    import optax

    @functools.partial(jax.jit, donate_argnums=donate)
    def train_step(p, s):
        grads = jax.grad(loss)(p)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    return train_step.lower(params, state).compile()


def _stepper(compiled, params, state, record: list | None):
    """A step function over a copy of ``params`` (a donating step consumes
    its inputs); appends ``(refresh step?, seconds)`` to ``record`` if given."""
    import jax

    box = {"p": jax.tree_util.tree_map(lambda x: x.copy(), params), "s": state, "t": 0}

    def step():
        start = time.perf_counter()
        box["p"], box["s"] = compiled(box["p"], box["s"])
        jax.block_until_ready(box["p"])
        if record is not None:
            record.append((is_refresh_step(box["t"]), time.perf_counter() - start))
        box["t"] += 1

    return step


def _problem(kind: str, spec, sz: Sizes):
    """``(params, loss(params))`` of an MLP on a random batch or of the
    language model of :mod:`benchmarks.lm_jax` on random tokens."""
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    if kind == "mlp":
        inputs, hidden = spec
        keys = jax.random.split(key, 5)
        dims = [(inputs, hidden), (hidden, hidden), (hidden, 10)]
        params = [
            {"w": jax.random.normal(k, d) / math.sqrt(d[0]), "b": jnp.zeros(d[1])}
            for k, d in zip(keys, dims)
        ]
        x = jax.random.normal(keys[3], (sz.batch, inputs))
        y = jax.random.randint(keys[4], (sz.batch,), 0, 10)

        def loss(p):
            h = x
            for layer in p[:-1]:
                h = jax.nn.relu(h @ layer["w"] + layer["b"])
            logits = h @ p[-1]["w"] + p[-1]["b"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

        return params, loss

    from ..lm_config import LlamaConfig
    from ..lm_jax import forward, init_params, language_model_loss

    config = LlamaConfig(vocab_size=256, **spec)
    params = init_params(config, key)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (sz.lm_batch, config.seq_len + 1), 0, 256)

    def loss(p):
        return language_model_loss(forward(p, tokens[:, :-1], config), tokens[:, 1:])

    return params, loss
