"""The language-model comparison in JAX: the same Llama, optax AdamW and
``ire_jax.ire``.

The model mirrors :class:`benchmarks.llama.TinyLlama` (RMSNorm, rotary
positions, SwiGLU, tied embeddings) as a pure function of a parameter
pytree; batches come from the same :class:`~benchmarks.text.WindowSampler`,
and the learning rate follows the same warm-up + cosine multipliers. The
training step is one ``jax.jit`` function; IRE's Fisher estimate runs inside
it (under ``lax.cond``, only on refresh steps).

Example:
  >>> from benchmarks.lm_config import LlamaConfig, LMSetup
  >>> from benchmarks.text import load_corpus
  >>> setup = LMSetup(model=LlamaConfig(dim=16, layers=1, heads=2, seq_len=8),
  ...                 steps=4, batch_size=2, warmup=2, eval_every=2, eval_windows=2)
  >>> train_language_model(setup, load_corpus(), progress=False).eval_steps
  [0, 2, 4]
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from .lm_config import IRESettings, LlamaConfig, LMSetup, RunResult, run_training
from .schedules import warmup_cosine
from .text import Corpus, evaluation_windows, load_corpus

__all__ = ["forward", "init_params", "language_model_loss", "train_language_model"]


def init_params(config: LlamaConfig, key) -> dict:
    """Parameters with the initialization of :class:`~benchmarks.llama.TinyLlama`."""
    d, hidden = config.dim, config.ffn_hidden
    keys = iter(jax.random.split(key, 1 + 5 * config.layers))
    residual = 0.02 / math.sqrt(2 * config.layers)

    def normal(shape, std=0.02):
        return std * jax.random.normal(next(keys), shape, jnp.float32)

    blocks = [
        {
            "attention_norm": jnp.ones(d), "qkv": normal((d, 3 * d)),
            "out": normal((d, d), residual), "ffn_norm": jnp.ones(d),
            "gate": normal((d, hidden)), "up": normal((d, hidden)),
            "down": normal((hidden, d), residual),
        }
        for _ in range(config.layers)
    ]
    return {"embed": normal((config.vocab_size, d)), "blocks": blocks, "norm": jnp.ones(d)}


def _rms_norm(x, weight, eps):
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _rotate(x, cos, sin):
    even, odd = x[..., 0::2], x[..., 1::2]
    return jnp.stack((even * cos - odd * sin, even * sin + odd * cos), axis=-1).reshape(x.shape)


def _attention(block, x, config: LlamaConfig, cos, sin):
    batch, seq, d = x.shape
    heads = config.heads
    qkv = (x @ block["qkv"]).reshape(batch, seq, 3, heads, d // heads)
    q, k, v = (jnp.swapaxes(qkv[:, :, i], 1, 2) for i in range(3))
    q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    scores = q @ jnp.swapaxes(k, -1, -2) / math.sqrt(d // heads)
    causal = jnp.tril(jnp.ones((seq, seq), dtype=bool))
    weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
    y = jnp.swapaxes(weights @ v, 1, 2).reshape(batch, seq, d)
    return y @ block["out"]


def forward(params: dict, tokens, config: LlamaConfig):
    """Logits ``(batch, seq, vocab)`` of the tied-embedding Llama."""
    seq = tokens.shape[1]
    head_dim = config.dim // config.heads
    inv_freq = 1.0 / 10000.0 ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = jnp.outer(jnp.arange(seq, dtype=jnp.float32), inv_freq)
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x = params["embed"][tokens]
    for block in params["blocks"]:
        x = x + _attention(block, _rms_norm(x, block["attention_norm"], config.norm_eps),
                           config, cos, sin)
        h = _rms_norm(x, block["ffn_norm"], config.norm_eps)
        x = x + (jax.nn.silu(h @ block["gate"]) * (h @ block["up"])) @ block["down"]
    return _rms_norm(x, params["norm"], config.norm_eps) @ params["embed"].T


def language_model_loss(logits, targets):
    """Mean next-token cross-entropy (nats per token)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def _optimizer(setup: LMSetup, ire: IRESettings | None):
    table = jnp.asarray([setup.peak_lr * warmup_cosine(t, setup.steps, setup.warmup,
                                                       setup.lr_floor)
                         for t in range(setup.steps)], jnp.float32)

    def schedule(count):
        return table[jnp.minimum(count, setup.steps - 1)]

    # torch.optim.AdamW's definition: decay scaled by the scheduled lr.
    adamw = optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=setup.weight_decay)
    if ire is None:
        return adamw
    import ire_jax

    return ire_jax.ire(
        adamw, kappa=ire.kappa, flat_fraction=ire.flat_fraction, interval=ire.interval,
        start_step=setup.warmup, estimator=ire.estimator,
        kappa_follows_lr=ire.kappa_follows_lr, peak_lr=setup.peak_lr,
        learning_rate=schedule if ire.kappa_follows_lr else None, seed=setup.seed,
    )


def train_language_model(
    setup: LMSetup,
    corpus: Corpus | None = None,
    ire: IRESettings | None = None,
    *,
    progress: bool = True,
    position: int = 0,
) -> RunResult:
    """Trains a fresh model in JAX; see :func:`benchmarks.lm.train_language_model`."""
    corpus = load_corpus() if corpus is None else corpus
    config = setup.model
    label = "AdamW" if ire is None else ire.label
    params = init_params(config, jax.random.PRNGKey(setup.seed))
    tx = _optimizer(setup, ire)
    state = tx.init(params)

    def loss_fn(p, x, y):
        return language_model_loss(forward(p, x, config), y)

    @jax.jit
    def train_step(p, s, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        extra = {} if ire is None else {"logits_fn": lambda q: forward(q, x, config)}
        updates, s = tx.update(grads, s, p, **extra)
        return optax.apply_updates(p, updates), s, loss

    evaluate = jax.jit(loss_fn)
    val_x, val_y = (jnp.asarray(a) for a in
                    evaluation_windows(corpus.val, config.seq_len, setup.eval_windows))
    box = {"params": params, "state": state}

    def step(x, y) -> float:
        box["params"], box["state"], loss = train_step(box["params"], box["state"], x, y)
        return float(loss)  # waits for the step

    return run_training(setup, corpus.train, label, step,
                        lambda: float(evaluate(box["params"], val_x, val_y)),
                        convert=jnp.asarray, untimed_first_step=True,  # step 0 compiles
                        progress=progress, position=position)
