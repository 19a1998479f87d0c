"""The NumPy reference bases follow torch.optim's definitions step by step."""

import numpy as np
import pytest
import torch

from ire_core.reference import SGD, Adam, AdamW

STEPS = 50

CASES = [
    (SGD, torch.optim.SGD, dict(lr=0.05)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2)),
    (SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    (SGD, torch.optim.SGD, dict(lr=1e-3, momentum=0.5, maximize=True)),
    (AdamW, torch.optim.AdamW, dict(lr=1e-2)),
    (AdamW, torch.optim.AdamW, dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    (AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    (Adam, torch.optim.Adam, dict(lr=1e-2, weight_decay=1e-2)),
    (Adam, torch.optim.Adam, dict(lr=1e-2, amsgrad=True, maximize=True)),
]


def loss_and_grads(params, target):
    """A non-quadratic loss so that gradients change shape along the way."""
    w, b = params
    residual = np.tanh(w @ np.ones(3)) + b - target
    value = 0.5 * np.sum(residual**2) + 0.1 * np.sum(w**4)
    dtanh = 1 - np.tanh(w @ np.ones(3)) ** 2
    grad_w = (residual * dtanh)[:, None] * np.ones((1, 3)) + 0.4 * w**3
    return value, [grad_w, residual.copy()]


@pytest.mark.parametrize(
    "reference_cls, torch_cls, kwargs", CASES, ids=[f"{c[1].__name__}-{c[2]}" for c in CASES]
)
def test_reference_matches_torch_optim_in_float64(reference_cls, torch_cls, kwargs):
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(4, 3)), rng.normal(size=4)]
    target = rng.normal(size=4)

    reference = reference_cls(**kwargs)
    params, state = [p.copy() for p in start], reference.init(start)
    tensors = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in start]
    optimizer = torch_cls(tensors, **kwargs)

    worst = 0.0
    for _ in range(STEPS):
        _, grads = loss_and_grads(params, target)
        params, state = reference.step(params, grads, state)
        _, torch_grads = loss_and_grads([t.detach().numpy() for t in tensors], target)
        for t, g in zip(tensors, torch_grads):
            t.grad = torch.from_numpy(g)
        optimizer.step()
        for p, t in zip(params, tensors):
            worst = max(worst, float(np.max(np.abs(p - t.detach().numpy()))))
    assert worst <= 1e-12
    assert np.abs(params[0] - start[0]).max() > 1e-3  # the optimizer really moved
