"""The language-model comparison in Keras 3: the same Llama as Keras layers,
``keras.optimizers.AdamW`` and ``ire_keras.IRE``.

Runs on whichever backend Keras was started with (``KERAS_BACKEND``:
tensorflow, jax or torch). The model mirrors
:class:`benchmarks.llama.TinyLlama` (RMSNorm, rotary positions, SwiGLU, tied
embeddings) with ``keras.ops`` only; :class:`ire_keras.IRETrainStep` supplies
the Fisher curvature on refresh steps. One ``train_on_batch`` per step keeps
the batches in the same order as the other backends, and the learning rate
follows the same warm-up + cosine multipliers.

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

import keras
import numpy as np
from keras import ops

from .lm_config import IRESettings, LlamaConfig, LMSetup, RunResult, run_training
from .schedules import warmup_cosine
from .text import Corpus, evaluation_windows, load_corpus

__all__ = ["KerasLlama", "TableSchedule", "train_language_model"]


class RMSNorm(keras.layers.Layer):
    """x / rms(x) · g, with a learned gain g."""

    def __init__(self, eps: float, **kwargs):
        super().__init__(**kwargs)
        self.eps = eps

    def build(self, input_shape):
        self.weight = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="weight")

    def call(self, x):
        return x * ops.rsqrt(ops.mean(x * x, axis=-1, keepdims=True) + self.eps) * self.weight


def _dense(units: int, std: float, name: str):
    return keras.layers.Dense(units, use_bias=False, name=name,
                              kernel_initializer=keras.initializers.RandomNormal(stddev=std))


def _rotate(x, cos, sin):
    even, odd = x[..., 0::2], x[..., 1::2]
    return ops.reshape(ops.stack((even * cos - odd * sin, even * sin + odd * cos), axis=-1),
                       ops.shape(x))


class Block(keras.layers.Layer):
    """Pre-norm residual block: rotary causal attention, then SwiGLU."""

    def __init__(self, config: LlamaConfig, **kwargs):
        super().__init__(**kwargs)
        d, residual = config.dim, 0.02 / math.sqrt(2 * config.layers)
        self.config = config
        self.attention_norm = RMSNorm(config.norm_eps, name="attention_norm")
        self.qkv = _dense(3 * d, 0.02, "qkv")
        self.out = _dense(d, residual, "out")
        self.ffn_norm = RMSNorm(config.norm_eps, name="ffn_norm")
        self.gate = _dense(config.ffn_hidden, 0.02, "gate")
        self.up = _dense(config.ffn_hidden, 0.02, "up")
        self.down = _dense(d, residual, "down")

    def call(self, x, cos, sin):
        config = self.config
        seq, heads, head_dim = x.shape[1], config.heads, config.dim // config.heads
        qkv = ops.reshape(self.qkv(self.attention_norm(x)), (-1, seq, 3, heads, head_dim))
        q, k, v = (ops.transpose(qkv[:, :, i], (0, 2, 1, 3)) for i in range(3))
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(head_dim)
        causal = ops.tril(ops.ones((seq, seq), dtype="bool"))
        weights = ops.softmax(ops.where(causal, scores, -1e9), axis=-1)
        y = ops.reshape(ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3)), (-1, seq, config.dim))
        x = x + self.out(y)
        h = self.ffn_norm(x)
        return x + self.down(ops.silu(self.gate(h)) * self.up(h))


def _ire_train_step_base():
    import ire_keras

    return ire_keras.IRETrainStep


class KerasLlama(_ire_train_step_base(), keras.Model):
    """The tied-embedding Llama; ``model(tokens) -> logits`` with one row per
    token, shape ``(batch · seq, vocab)``: the classification layout that
    Keras losses and ``ire_keras``'s Fisher estimator (one label draw per
    row) expect. Targets are flattened to match."""

    def __init__(self, config: LlamaConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.embed = keras.layers.Embedding(
            config.vocab_size, config.dim, name="embed",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02))
        self.blocks = [Block(config, name=f"block_{i}") for i in range(config.layers)]
        self.norm = RMSNorm(config.norm_eps, name="norm")
        head_dim = config.dim // config.heads
        inv_freq = 1.0 / 10000.0 ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim)
        angles = np.outer(np.arange(config.seq_len, dtype=np.float32), inv_freq)
        self.cos_table, self.sin_table = np.cos(angles), np.sin(angles)

    def call(self, tokens, training=None):
        seq = tokens.shape[1]
        cos = ops.convert_to_tensor(self.cos_table[:seq])
        sin = ops.convert_to_tensor(self.sin_table[:seq])
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = ops.matmul(self.norm(x), ops.transpose(self.embed.embeddings))
        return ops.reshape(logits, (-1, self.config.vocab_size))


class TableSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """A learning rate read from a precomputed table, one value per step."""

    def __init__(self, values):
        self.values = [float(v) for v in values]

    def __call__(self, step):
        table = ops.convert_to_tensor(np.asarray(self.values, np.float32))
        index = ops.minimum(ops.cast(step, "int32"), len(self.values) - 1)
        return ops.take(table, index)

    def get_config(self):
        return {"values": self.values}


def _optimizer(setup: LMSetup, ire: IRESettings | None):
    schedule = TableSchedule([setup.peak_lr * warmup_cosine(t, setup.steps, setup.warmup,
                                                            setup.lr_floor)
                              for t in range(setup.steps)])
    adamw = keras.optimizers.AdamW(schedule, weight_decay=setup.weight_decay, beta_1=0.9,
                                   beta_2=0.999, epsilon=1e-8)
    if ire is None:
        return adamw
    import ire_keras

    return ire_keras.IRE(
        adamw, kappa=ire.kappa, flat_fraction=ire.flat_fraction, interval=ire.interval,
        start_step=setup.warmup, estimator=ire.estimator,
        kappa_follows_lr=ire.kappa_follows_lr, peak_learning_rate=setup.peak_lr,
        seed=setup.seed,
    )


def _cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=-1))
    picked = np.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]
    return float((log_norm - picked).mean())


def train_language_model(
    setup: LMSetup,
    corpus: Corpus | None = None,
    ire: IRESettings | None = None,
    *,
    progress: bool = True,
    position: int = 0,
) -> RunResult:
    """Trains a fresh model in Keras; see :func:`benchmarks.lm.train_language_model`."""
    corpus = load_corpus() if corpus is None else corpus
    config = setup.model
    label = "AdamW" if ire is None else ire.label
    keras.utils.set_random_seed(setup.seed)
    model = KerasLlama(config)
    model.compile(optimizer=_optimizer(setup, ire),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    val_x, val_y = evaluation_windows(corpus.val, config.seq_len, setup.eval_windows)

    def evaluate() -> float:
        return _cross_entropy(np.asarray(model.predict_on_batch(val_x)), val_y.reshape(-1))

    return run_training(setup, corpus.train, label,
                        lambda x, y: float(model.train_on_batch(x, y.reshape(-1))), evaluate,
                        untimed_first_step=True,  # step 0 traces and compiles
                        progress=progress, position=position)
