"""LR schedulers drive the shared param_groups without warnings, and
``kappa_follows_lr`` scales κ by lr / lr_peak."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch_cases import batch, classifier, train

from ire_torch import SGDIRE, AdamWIRE


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_schedulers_run_without_warnings(scheduler):
    x, y = batch()
    model = classifier()
    opt = AdamWIRE(model.parameters(), lr=1e-2, kappa=2.0, interval=2, kappa_follows_lr=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)
        else:
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=6)
        lrs = []
        for _ in range(6):
            train(model, opt, x, y, 1)
            lrs.append(opt.base_optimizer.param_groups[0]["lr"])
            sched.step()
    assert len(set(lrs)) == 6
    assert opt.ire_step == 6
    if scheduler == "onecycle":  # the peak follows the warm-up to max_lr
        assert opt.param_groups[0]["ire_peak_lr"] == max(lrs) > 1e-2
        assert "betas" in opt.defaults


def _diag_problem():
    h = torch.tensor([0.1, 0.2, 5.0, 6.0])
    theta = torch.nn.Parameter(torch.ones(4))
    return h, theta


def test_kappa_follows_the_learning_rate():
    h, theta = _diag_problem()
    exact = lambda params, grads: [h]  # noqa: E731 - the exact diagonal
    opt = SGDIRE([theta], lr=0.1, kappa=2.0, flat_fraction=0.5, interval=1,
                 estimator=exact, kappa_follows_lr=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + t))
    for t in range(4):
        lr = opt.param_groups[0]["lr"]
        before = theta.detach().clone()
        (0.5 * (h * theta * theta).sum()).backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        base = -lr * h * before
        kappa = 2.0 * lr / 0.1
        torch.testing.assert_close(theta.detach() - before,
                                   base * torch.tensor([1 + kappa, 1 + kappa, 1.0, 1.0]))
        assert kappa == pytest.approx(2.0 / (1 + t))


def test_kappa_schedule_function_of_the_step():
    h, theta = _diag_problem()
    opt = SGDIRE([theta], lr=0.1, kappa=lambda t: float(t), flat_fraction=0.25, interval=1,
                 estimator=lambda params, grads: [h])
    for t in range(3):
        before = theta.detach().clone()
        (0.5 * (h * theta * theta).sum()).backward()
        opt.step()
        opt.zero_grad()
        ratio = (theta.detach() - before) / (-0.1 * h * before)
        torch.testing.assert_close(ratio, torch.tensor([1.0 + t, 1.0, 1.0, 1.0]))


def test_kappa_follows_a_warm_up_from_zero():
    h, theta = _diag_problem()
    opt = SGDIRE([theta], lr=0.1, kappa=2.0, flat_fraction=0.5, interval=1,
                 estimator=lambda params, grads: [h], kappa_follows_lr=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, t / 2))
    for t in range(4):
        before = theta.detach().clone()
        (0.5 * (h * theta * theta).sum()).backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        if t == 0:
            assert torch.equal(theta.detach(), before)  # lr 0: no step at all
    assert opt.param_groups[0]["ire_peak_lr"] == pytest.approx(0.1)
