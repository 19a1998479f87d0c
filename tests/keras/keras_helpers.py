"""Shared pieces of the Keras tests: tiny problems and NumPy bases that
follow Keras's own optimizer definitions."""

from __future__ import annotations

import keras
import numpy as np


def regression_data(n=16, features=4, outputs=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = x @ rng.normal(size=(features, outputs)) + 0.1 * rng.normal(size=(n, outputs))
    return x, y


def dense_model(features=4, outputs=3, seed=0):
    """A single Dense layer with deterministic weights (in floatx)."""
    model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(outputs)])
    rng = np.random.default_rng(seed + 100)
    model.set_weights([rng.normal(size=(features, outputs)), rng.normal(size=(outputs,))])
    return model


def mse_grads(params, x, y):
    """Gradient of Keras's ``"mse"`` (mean over all entries) of x W + b."""
    w, b = params
    residual = x @ w + b - y
    scale = 2.0 / residual.size
    return [scale * x.T @ residual, scale * residual.sum(axis=0)]


def mse_loss(params, x, y):
    w, b = params
    return float(np.mean((x @ w + b - y) ** 2))


class KerasSGD:
    """keras.optimizers.SGD in NumPy: m ← μm − ηg; θ ← θ + m
    (Nesterov: θ ← θ + μm − ηg)."""

    def __init__(self, lr, momentum=0.0, nesterov=False):
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov

    def init(self, params):
        return [np.zeros_like(p) for p in params]

    def step(self, params, grads, state, lr=None):
        lr = self.lr if lr is None else lr
        if self.momentum == 0:
            return [p - lr * g for p, g in zip(params, grads)], state
        new_params, new_state = [], []
        for p, g, m in zip(params, grads, state):
            m = self.momentum * m - lr * g
            new_params.append(p + (self.momentum * m - lr * g if self.nesterov else m))
            new_state.append(m)
        return new_params, new_state


class KerasAdamW:
    """keras.optimizers.AdamW in NumPy: decay θ ← θ − θ·λη first, then Adam
    with ε outside the bias-corrected square root (Keras's placement).

    Keras raises β to the step after ``ops.cast(β, dtype)``, which passes
    through float32: the bias corrections use float32-rounded β even for
    float64 weights, and so does this base."""

    def __init__(self, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.004):
        self.lr, self.beta_1, self.beta_2 = lr, beta_1, beta_2
        self.epsilon, self.weight_decay = epsilon, weight_decay

    def init(self, params):
        return {"t": 0, "m": [np.zeros_like(p) for p in params],
                "v": [np.zeros_like(p) for p in params]}

    def step(self, params, grads, state, lr=None):
        lr = self.lr if lr is None else lr
        t = state["t"] + 1
        beta_1_power = float(np.float32(self.beta_1)) ** t
        beta_2_power = float(np.float32(self.beta_2)) ** t
        alpha = lr * np.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        out = {"t": t, "m": [], "v": []}
        new_params = []
        for p, g, m, v in zip(params, grads, state["m"], state["v"]):
            p = p - p * self.weight_decay * lr
            m = m + (g - m) * (1 - self.beta_1)
            v = v + (g * g - v) * (1 - self.beta_2)
            new_params.append(p - alpha * m / (np.sqrt(v) + self.epsilon))
            out["m"].append(m)
            out["v"].append(v)
        return new_params, out
