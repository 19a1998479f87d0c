"""Base optimizers with ``torch.optim``'s exact definitions, in NumPy.

Each has ``init(params) -> state`` and
``step(params, grads, state, lr=None) -> (new_params, new_state)``.
"""

from __future__ import annotations

import numpy as np

from ..config import check_bool, check_non_negative


def _copy(arrays):
    return [np.array(a, copy=True) for a in arrays]


class SGD:
    """``torch.optim.SGD``: momentum, dampening, Nesterov, weight decay.

    Example:
      >>> import numpy as np
      >>> sgd = SGD(lr=0.1, momentum=0.9)
      >>> params, state = sgd.step([np.ones(1)], [np.ones(1)], sgd.init([np.ones(1)]))
      >>> params[0].tolist()
      [0.9]
    """

    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, maximize=False):
        check_non_negative(lr, "lr")
        check_non_negative(momentum, "momentum")
        check_non_negative(weight_decay, "weight_decay")
        check_bool(nesterov, "nesterov")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum!r}, dampening={dampening!r}"
            )
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.nesterov, self.weight_decay, self.maximize = nesterov, weight_decay, maximize

    def init(self, params):
        return {"momentum_buffer": [None] * len(params)}

    def step(self, params, grads, state, lr=None):
        lr = self.lr if lr is None else lr
        new_params, buffers = [], []
        for p, g, buf in zip(params, grads, state["momentum_buffer"]):
            d_p = -g if self.maximize else g
            if self.weight_decay != 0:
                d_p = d_p + self.weight_decay * p
            if self.momentum != 0:
                if buf is None:
                    buf = np.array(d_p, copy=True)
                else:
                    buf = buf * self.momentum + (1 - self.dampening) * d_p
                d_p = d_p + self.momentum * buf if self.nesterov else buf
            new_params.append(p + (-lr) * d_p)
            buffers.append(buf)
        return new_params, {"momentum_buffer": buffers}


class Adam:
    """``torch.optim.Adam`` (L2 weight decay added to the gradient), with
    optional AMSGrad. ``decoupled_weight_decay=True`` gives AdamW.

    Example:
      >>> import numpy as np
      >>> adam = Adam(lr=0.1)
      >>> params, state = adam.step([np.ones(1)], [np.ones(1)], adam.init([np.ones(1)]))
      >>> round(float(params[0][0]), 6)
      0.9
    """

    decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False, decoupled_weight_decay=None):
        check_non_negative(lr, "lr")
        check_non_negative(eps, "eps")
        check_non_negative(weight_decay, "weight_decay")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {beta!r}")
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.weight_decay, self.amsgrad, self.maximize = weight_decay, amsgrad, maximize
        if decoupled_weight_decay is not None:
            self.decoupled = decoupled_weight_decay

    def init(self, params):
        zeros = [np.zeros_like(p) for p in params]
        return {
            "step": 0,
            "exp_avg": zeros,
            "exp_avg_sq": _copy(zeros),
            "max_exp_avg_sq": _copy(zeros),
        }

    def step(self, params, grads, state, lr=None):
        lr = self.lr if lr is None else lr
        beta1, beta2 = self.betas
        step = state["step"] + 1
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        step_size = lr / bias_correction1
        out = {"step": step, "exp_avg": [], "exp_avg_sq": [], "max_exp_avg_sq": []}
        new_params = []
        for i, (p, g) in enumerate(zip(params, grads)):
            g = -g if self.maximize else g
            if self.weight_decay != 0:
                if self.decoupled:
                    p = p * (1 - lr * self.weight_decay)
                else:
                    g = g + self.weight_decay * p
            m = state["exp_avg"][i]
            m = m + (1 - beta1) * (g - m)
            v = state["exp_avg_sq"][i] * beta2 + (1 - beta2) * (g * g)
            v_max = state["max_exp_avg_sq"][i]
            if self.amsgrad:
                v_max = np.maximum(v_max, v)
                denom = np.sqrt(v_max) / bias_correction2_sqrt + self.eps
            else:
                denom = np.sqrt(v) / bias_correction2_sqrt + self.eps
            new_params.append(p + (-step_size) * (m / denom))
            out["exp_avg"].append(m)
            out["exp_avg_sq"].append(v)
            out["max_exp_avg_sq"].append(v_max)
        return new_params, out


class AdamW(Adam):
    """``torch.optim.AdamW``: Adam with decoupled weight decay (default 0.01).

    Example:
      >>> AdamW(lr=1e-3).weight_decay
      0.01
    """

    decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad, maximize)
