"""Small models and loops shared by the ire_torch tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classifier(seed: int = 0, dtype=torch.float32, features: int = 6, hidden: int = 8,
               classes: int = 3) -> torch.nn.Module:
    """A two-layer tanh classifier with deterministic initial weights."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, classes)
    )
    return model.to(dtype)


def batch(seed: int = 0, n: int = 16, dtype=torch.float32, features: int = 6, classes: int = 3):
    """Inputs and integer labels."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator, dtype=dtype)
    y = torch.randint(0, classes, (n,), generator=generator)
    return x, y


def train(model, opt, x, y, steps: int, with_sources: bool = True) -> list:
    """The ordinary loop; passes ``loss_fn`` and ``logits_fn`` to ``step``."""
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if with_sources:
            opt.step(loss_fn=lambda: F.cross_entropy(model(x), y), logits_fn=lambda: model(x))
        else:
            opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return losses


def clone_params(model) -> list:
    return [p.detach().clone() for p in model.parameters()]


def assert_params_equal(a, b) -> None:
    for x, y in zip(a, b):
        assert torch.equal(x, y), (x - y).abs().max()


def large_values(seed: int, n: int) -> list:
    """n float64 curvature-like values in two tensors, with a block of 1000
    ties and a block of 100 +inf."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(n, generator=generator, dtype=torch.float64) ** 4
    values[:1000] = 0.25  # a block of ties
    values[1000:1100] = float("inf")
    return [values[: n // 4], values[n // 4 :]]
