"""The torch internals of the fused step (``ire_torch._torch_internals``):
each is feature-detected, and where one is missing the step takes the
generic path with the same result."""

from __future__ import annotations

import pytest
import torch

from ire_torch import IRE
from ire_torch import _torch_internals as internals
from ire_torch import fused as fused_module
from ire_torch.fused import fused_step, supports_fused_step


def _params(seed=0, n=6):
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(n, generator=generator, dtype=torch.float64))]


def _grads(params, seed):
    generator = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)


def test_this_torch_has_every_internal_the_fused_step_reads():
    # Fails when an upgrade of torch removes or moves one: the fused step
    # would silently fall back to the generic path.
    assert internals.FOREACH_OPS_AVAILABLE
    assert internals.fused_adam_kernel(True) is torch._fused_adamw_
    assert internals.fused_adam_kernel(False) is torch._fused_adam_
    opt = torch.optim.SGD(_params(), lr=0.1)
    assert not internals.has_step_hooks(opt)
    handle = opt.register_step_pre_hook(lambda *args: None)
    assert internals.has_step_hooks(opt)
    handle.remove()
    assert not internals.has_step_hooks(opt)


@pytest.mark.parametrize(("cls", "settings", "decoupled"), [
    (torch.optim.Adam, {}, False),
    (torch.optim.AdamW, {}, True),
])
def test_decoupled_decay_is_read_from_the_group_or_else_from_the_class(cls, settings, decoupled):
    opt = cls(_params(), lr=0.1, weight_decay=0.1, **settings)
    group = opt.param_groups[0]
    assert internals.decoupled_weight_decay(opt, group) is decoupled
    without = {k: v for k, v in group.items() if k != "decoupled_weight_decay"}
    assert internals.decoupled_weight_decay(opt, without) is decoupled
    assert internals.decoupled_weight_decay(opt, {**without, "decoupled_weight_decay": True})


@pytest.mark.parametrize("foreach", [False, True])
def test_an_adamw_group_without_the_decoupled_flag_takes_the_same_fused_step(foreach):
    # Torch versions where AdamW is not an Adam subclass carry no such key.
    steps = {}
    for keep_key in (True, False):
        params = _params()
        opt = torch.optim.AdamW(params, lr=0.1, weight_decay=0.2, foreach=foreach)
        if not keep_key:
            opt.param_groups[0].pop("decoupled_weight_decay", None)
        mask = torch.tensor([True, False, True, True, False, False])
        for seed in range(3):
            _grads(params, seed)
            assert fused_step(opt, {params[0]: (mask, 2.0)})
        steps[keep_key] = params[0].detach().clone()
    assert torch.equal(steps[True], steps[False])


def test_a_torch_without_an_internal_takes_the_generic_path_with_the_same_result(monkeypatch):
    def run(generic_only):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3).double()
        opt = IRE(torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1,
                                    fused=True), kappa=2.0, flat_fraction=0.5, interval=2)
        calls = []
        original = fused_module.fused_step

        def counted(*args):
            taken = original(*args)
            calls.append(taken)
            return taken

        with monkeypatch.context() as patch:
            patch.setattr("ire_torch.optimizer.fused_step", counted)
            if generic_only:
                patch.setattr(internals, "fused_adam_kernel", lambda decoupled: None)
            x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1)).double()
            for _ in range(4):
                model(x).square().mean().backward()
                opt.step()
                opt.zero_grad()
        return [p.detach().clone() for p in model.parameters()], calls

    fused_params, fused_calls = run(False)
    generic_params, generic_calls = run(True)
    assert fused_calls and all(fused_calls)
    assert generic_calls and not any(generic_calls)
    for a, b in zip(fused_params, generic_params):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("missing", ["foreach", "hooks"])
def test_a_missing_internal_makes_the_fused_step_unsupported(missing, monkeypatch):
    opt = torch.optim.SGD(_params(), lr=0.1, momentum=0.9)
    assert supports_fused_step(opt)
    if missing == "foreach":
        monkeypatch.setattr(internals, "FOREACH_OPS_AVAILABLE", False)
    else:  # a torch that keeps step hooks under other names: cannot tell, so generic
        monkeypatch.delattr(opt, "_optimizer_step_pre_hooks")
    assert not supports_fused_step(opt)
    assert not fused_step(opt, {})
