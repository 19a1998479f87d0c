"""param_groups and state are the base optimizer's; per-group IRE switches;
frozen parameters are skipped."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_cases import batch, classifier, clone_params

from ire_torch import IRE, SGDIRE


def _step(model, opt, x, y):
    F.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad()


def test_groups_and_state_are_shared_with_the_base():
    model = classifier()
    base = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    opt = IRE(base, kappa=1.0)
    assert opt.param_groups is base.param_groups
    assert opt.state is base.state
    assert opt.defaults["betas"] == (0.8, 0.9) and "ire_kappa" in opt.defaults
    opt.param_groups[0]["lr"] = 0.5
    assert base.param_groups[0]["lr"] == 0.5
    _step(model, opt, *batch())
    assert "exp_avg" in opt.state[model[0].weight]


def test_add_param_group_reaches_the_base_and_gets_ire_keys():
    model = classifier()
    extra = torch.nn.Parameter(torch.ones(4))
    opt = SGDIRE(model.parameters(), lr=0.1, kappa=1.0)
    opt.add_param_group({"params": [extra], "lr": 0.01, "ire_kappa": 3.0})
    assert len(opt.base_optimizer.param_groups) == 2
    group = opt.param_groups[1]
    assert group["ire_kappa"] == 3.0 and group["ire_enabled"] is True
    assert group["momentum"] == 0 and group["ire_peak_lr"] is None
    with pytest.raises(ValueError, match="param group 'ire_kappa' must be a finite number >= 0"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "ire_kappa": -1.0})


def test_disabled_group_gets_the_bare_step_and_no_mask():
    x, y = batch()
    model, twin = classifier(), classifier()
    head, twin_head = model[2], twin[2]
    groups = [
        {"params": model[0].parameters()},
        {"params": head.parameters(), "ire_enabled": False},
    ]
    opt = SGDIRE(groups, lr=0.1, kappa=2.0, flat_fraction=0.5, interval=1)
    bare = torch.optim.SGD(twin.parameters(), lr=0.1)
    for _ in range(3):
        with torch.no_grad():
            for p, q in zip(twin.parameters(), model.parameters()):
                p.copy_(q)
        _step(model, opt, x, y)
        _step(twin, bare, x, y)
        assert torch.equal(head.weight, twin_head.weight)
        assert opt.flat_mask(head.weight) is None
    report = opt.mask_stats()
    assert report.total == model[0].weight.numel() + model[0].bias.numel()
    assert report.flat_count == report.total // 2


def test_per_group_kappa_scales_that_group_only():
    x, y = batch()
    model = classifier()
    groups = [{"params": model[0].parameters(), "ire_kappa": 0.0},
              {"params": model[2].parameters()}]
    opt = SGDIRE(groups, lr=0.1, kappa=2.0, flat_fraction=1.0, interval=1)
    twin = classifier()
    bare = torch.optim.SGD(twin.parameters(), lr=0.1)
    before = clone_params(model)
    _step(model, opt, x, y)
    _step(twin, bare, x, y)
    first = list(model[0].parameters())
    for p, q in zip(first, twin[0].parameters()):
        assert torch.equal(p, q)  # ire_kappa = 0: the bare step
    for p, q, b in zip(model[2].parameters(), twin[2].parameters(), before[2:]):
        torch.testing.assert_close(p.detach() - b, 3.0 * (q.detach() - b))


def test_parameters_without_grad_are_skipped():
    x, y = batch()
    model = classifier()
    frozen = torch.nn.Parameter(torch.ones(5))
    model[0].weight.requires_grad_(False)
    opt = SGDIRE([*model.parameters(), frozen], lr=0.1, kappa=1.0, interval=1,
                 estimator="hutchinson")
    weight = model[0].weight.detach().clone()
    params = [p for p in model.parameters() if p.requires_grad]
    for _ in range(2):
        F.cross_entropy(model(x), y).backward()
        opt.step(loss_fn=lambda: F.cross_entropy(model(x), y))
        opt.zero_grad()
    assert torch.equal(model[0].weight, weight)
    assert torch.equal(frozen, torch.ones(5))
    assert opt.flat_mask(frozen) is None and opt.flat_mask(model[0].weight) is None
    assert opt.mask_stats().total == sum(p.numel() for p in params)


def test_grads_are_never_modified():
    x, y = batch()
    model = classifier()
    opt = SGDIRE(model.parameters(), lr=0.1, kappa=2.0, interval=1, estimator="fisher")
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step(logits_fn=lambda: model(x))
    for p, g in zip(model.parameters(), grads):
        assert torch.equal(p.grad, g)


def test_deepcopy_keeps_the_base_and_the_ire_state():
    import copy

    x, y = batch()
    model = classifier()
    opt = SGDIRE(model.parameters(), lr=0.1, momentum=0.9, kappa=1.0, interval=1,
                 estimator="hutchinson")
    F.cross_entropy(model(x), y).backward()
    opt.step(loss_fn=lambda: F.cross_entropy(model(x), y))
    twin = copy.deepcopy(opt)
    assert twin.param_groups is twin.base_optimizer.param_groups
    assert twin.state is twin.base_optimizer.state
    assert twin.ire_step == 1 and twin.mask_stats().flat_count == opt.mask_stats().flat_count


def test_step_runs_the_closure_with_gradients_enabled():
    x, y = batch()
    model, twin = classifier(), classifier()
    opt = SGDIRE(model.parameters(), lr=0.1, kappa=1.0, interval=1)
    twin_opt = SGDIRE(twin.parameters(), lr=0.1, kappa=1.0, interval=1)
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    with torch.no_grad():  # as some trainers call it
        loss = opt.step(closure)
    assert calls == [True] and loss.ndim == 0
    F.cross_entropy(twin(x), y).backward()
    twin_opt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
