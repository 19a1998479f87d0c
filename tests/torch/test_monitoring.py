"""Mask statistics after each refresh, the Hessian helpers, native draws."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch_cases import batch, classifier, train

from ire_torch import SGDIRE, Draws, hessian_diagonal, hessian_trace, hessian_vector_products


def test_mask_stats_report_the_last_refresh():
    h = [torch.tensor([0.3, 0.1, 4.0, 2.0]), torch.tensor([[0.2, 9.0], [0.05, 7.0]])]
    params = [torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(2, 2))]
    opt = SGDIRE(params, lr=0.01, kappa=1.0, flat_fraction=0.5, interval=2,
                 estimator=lambda p, g: h)
    assert opt.mask_stats() is None
    for _ in range(3):
        sum(0.5 * (c * p * p).sum() for c, p in zip(h, params)).backward()
        opt.step()
        opt.zero_grad()
    report = opt.mask_stats()
    assert report.step == 2
    assert report.threshold == pytest.approx(0.3)  # the 4th smallest of 8
    assert (report.flat_count, report.total, report.flat_fraction) == (4, 8, 0.5)
    assert report.per_tensor == [0.5, 0.5]
    assert report.shapes == [(4,), (2, 2)]
    assert opt.flat_mask(params[0]).tolist() == [True, True, False, False]


def test_mask_stats_on_a_model_follow_the_flat_fraction():
    x, y = batch()
    model = classifier()
    opt = SGDIRE(model.parameters(), lr=0.1, flat_fraction=0.3, interval=1, estimator="fisher")
    train(model, opt, x, y, 2)
    report = opt.mask_stats()
    total = sum(p.numel() for p in model.parameters())
    assert report.total == total
    assert report.flat_count == math.floor(0.3 * total)
    assert len(report.per_tensor) == 4 and all(0 <= f <= 1 for f in report.per_tensor)
    assert math.isfinite(report.threshold)


def test_hessian_helpers_on_a_dense_quadratic():
    torch.manual_seed(0)
    a = torch.randn(5, 5, dtype=torch.float64)
    a = a @ a.T + torch.eye(5, dtype=torch.float64)
    w = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    v = torch.nn.Parameter(torch.randn(2, dtype=torch.float64))

    def loss_fn():
        return 0.5 * w @ a @ w + (v**4).sum()

    diagonal = hessian_diagonal(loss_fn, [w, v])
    torch.testing.assert_close(diagonal[0], torch.diagonal(a))
    torch.testing.assert_close(diagonal[1], 12 * v.detach() ** 2)
    z = [torch.ones(5, dtype=torch.float64), torch.ones(2, dtype=torch.float64)]
    (hz,) = hessian_vector_products(loss_fn, [w, v], [z])
    torch.testing.assert_close(hz[0], a @ z[0])
    generator = torch.Generator().manual_seed(0)
    trace = hessian_trace(loss_fn, [w, v], num_probes=400, generator=generator)
    exact = torch.trace(a) + (12 * v.detach() ** 2).sum()
    assert abs(float(trace) - float(exact)) < 0.1 * float(exact)
    assert w.grad is None  # the helpers never touch .grad


def test_native_draws_follow_the_seed_and_are_saved():
    params = [torch.zeros(3, 4), torch.zeros(7)]
    first, second, other = Draws(seed=1), Draws(seed=1), Draws(seed=2)
    a = first.probes(0, params, 2)
    b = second.probes(0, params, 2)
    c = other.probes(0, params, 2)
    assert all(torch.equal(x, y) for pa, pb in zip(a, b) for x, y in zip(pa, pb))
    assert not all(torch.equal(x, y) for pa, pc in zip(a, c) for x, y in zip(pa, pc))
    saved = first.state_dict()
    next_draw = first.label_uniforms(1, (5,), torch.device("cpu"), torch.float32)
    restored = Draws(seed=0)
    restored.load_state_dict(saved)
    assert torch.equal(restored.label_uniforms(1, (5,), torch.device("cpu"), torch.float32),
                       next_draw)


def test_same_seed_same_masks_different_seed_different_masks():
    x, y = batch()

    def masks(seed):
        model = classifier()
        opt = SGDIRE(model.parameters(), lr=0.1, interval=1, flat_fraction=0.5,
                     estimator="hutchinson", seed=seed)
        train(model, opt, x, y, 1)
        return [opt.flat_mask(p) for p in model.parameters()]

    one, again, two = masks(0), masks(0), masks(1)
    assert all(torch.equal(a, b) for a, b in zip(one, again))
    assert not all(torch.equal(a, b) for a, b in zip(one, two))


def test_sam_explicit_steps_equal_the_closure_step():
    from ire_torch import SAMIRE

    x, y = batch()

    def run(explicit):
        model = classifier()
        opt = SAMIRE(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, rho=0.1,
                     kappa=1.0, interval=2, estimator="fisher", seed=4)
        logits_fn = lambda: model(x)  # noqa: E731
        for _ in range(5):
            if explicit:
                F.cross_entropy(model(x), y).backward()
                opt.first_step(zero_grad=True)
                F.cross_entropy(model(x), y).backward()
                opt.second_step(zero_grad=True, logits_fn=logits_fn)
            else:
                def closure():
                    opt.zero_grad()
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                    return loss

                opt.step(closure, logits_fn=logits_fn)
        return [p.detach() for p in model.parameters()]

    for a, b in zip(run(True), run(False)):
        assert torch.equal(a, b)
