"""The fused steps for SGD, Adam and AdamW against the generic path.

The generic path (copy, base step, rescale) is the obviously-correct one; the
fused path must walk the same trajectory to float64 rounding, leave
non-flat coordinates bit for bit at the base update, share the base
optimizer's state format, and never copy the parameters.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_cases import assert_params_equal, clone_params

from ire_torch import IRE, SAMIRE
from ire_torch import _fused_slices as slices
from ire_torch import optimizer as ire_optimizer
from ire_torch.fused import fused_step, supports_fused_step

STEPS = 100
TOLERANCE = 1e-12

CONFIGS = {
    "sgd": (torch.optim.SGD, dict(lr=0.05)),
    "sgd-momentum-wd": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1,
                                              weight_decay=0.01)),
    "sgd-nesterov": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True,
                                           weight_decay=0.01, foreach=True)),
    "adam": (torch.optim.Adam, dict(lr=1e-2)),
    "adam-l2-amsgrad": (torch.optim.Adam, dict(lr=1e-2, weight_decay=0.05, amsgrad=True)),
    "adamw": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    "adamw-foreach-amsgrad": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1, amsgrad=True,
                                                      foreach=True)),
    "adamw-fused-kernel": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1, fused=True)),
    "adam-fused-kernel-amsgrad": (torch.optim.Adam, dict(lr=1e-2, amsgrad=True, fused=True)),
}


class _Net(torch.nn.Module):
    """Two layers, and a parameter that never gets a gradient."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = torch.nn.Linear(5, 7)
        self.second = torch.nn.Linear(7, 3)
        self.unused = torch.nn.Parameter(torch.randn(4))

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


def _data(dtype=torch.float64):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(24, 5, generator=generator, dtype=dtype)
    return x, torch.randint(0, 3, (24,), generator=generator)


def _groups(model, kwargs):
    lr = kwargs["lr"]
    return [
        {"params": [model.first.weight, model.unused], "lr": lr, "ire_kappa": 3.0},
        {"params": [model.first.bias], "lr": 0.5 * lr, "ire_enabled": False},
        {"params": [model.second.weight, model.second.bias], "lr": 2 * lr,
         "weight_decay": 0.02},
    ]


def _make(name, fused, dtype=torch.float64, **ire):
    cls, kwargs = CONFIGS[name]
    model = _Net().to(dtype)
    base = cls(_groups(model, kwargs), **kwargs)
    settings = dict(kappa=2.0, flat_fraction=0.5, interval=3, start_step=4)
    settings.update(ire)
    return model, IRE(base, fused_update=fused, **settings)


def _run(model, opt, steps, x, y):
    for _ in range(steps):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()


def _forbid_copies(monkeypatch):
    def refuse(params):
        raise AssertionError("the fused path copied the parameters")

    monkeypatch.setattr(ire_optimizer, "snapshot", refuse)


def _assert_close(a, b, tolerance=TOLERANCE):
    for x, y in zip(a, b):
        assert (x - y).abs().max() <= tolerance, (x - y).abs().max()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fused_path_matches_the_generic_path_in_float64(name, monkeypatch):
    x, y = _data()
    generic_model, generic = _make(name, fused=False)
    _run(generic_model, generic, STEPS, x, y)
    model, opt = _make(name, fused=True)
    _forbid_copies(monkeypatch)
    _run(model, opt, STEPS, x, y)
    _assert_close(clone_params(model), clone_params(generic_model))
    for p, q in zip(model.parameters(), generic_model.parameters()):
        assert opt.state[p].keys() == generic.state[q].keys()
        for key, value in opt.state[p].items():
            _assert_close([value], [generic.state[q][key]], 1e-9)
    assert model.unused.grad is None and len(opt.state[model.unused]) == 0
    assert opt.mask_stats().flat_count > 0


@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("name", ["sgd-momentum-wd", "sgd-nesterov", "adamw", "adam-l2-amsgrad",
                                  "adamw-foreach-amsgrad", "adamw-fused-kernel",
                                  "adam-fused-kernel-amsgrad"])
def test_coordinates_outside_the_mask_get_the_base_update_bit_for_bit(name, chunk, monkeypatch):
    if chunk is not None:  # per-tensor steps then run slice by slice
        monkeypatch.setattr(slices, "CHUNK", chunk)
    x, y = _data(torch.float32)
    model, opt = _make(name, fused=True, dtype=torch.float32, start_step=0, interval=1)
    _run(model, opt, 3, x, y)
    bare_model, bare_ire = copy.deepcopy((model, opt))
    bare = bare_ire.base_optimizer
    before = clone_params(model)
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(bare_model(x), y).backward()
    opt.step()
    bare.step()
    amplified = 0
    for p, q, old in zip(model.parameters(), bare_model.parameters(), before):
        mask = opt.flat_mask(p)
        if mask is None or p is model.first.bias:
            assert torch.equal(p, q)
            continue
        assert torch.equal(p[~mask], q[~mask])
        moved = (q - old)[mask]
        amplified += int((moved != 0).sum())
        kappa = 3.0 if p is model.first.weight else 2.0
        torch.testing.assert_close((p - old)[mask], (1 + kappa) * moved, rtol=1e-3, atol=1e-6)
    assert amplified > 0


@pytest.mark.parametrize("name", ["sgd-nesterov", "adamw"])
def test_checkpoints_move_between_the_fused_and_the_generic_path(name):
    x, y = _data()
    reference_model, reference = _make(name, fused=True)
    _run(reference_model, reference, 40, x, y)
    for first, second in [(True, True), (True, False), (False, True)]:
        model, opt = _make(name, fused=first)
        _run(model, opt, 20, x, y)
        saved = copy.deepcopy(opt.state_dict())
        resumed_model, resumed = _make(name, fused=second)
        resumed_model.load_state_dict(model.state_dict())
        resumed.load_state_dict(saved)
        _run(resumed_model, resumed, 20, x, y)
        if first and second:
            assert_params_equal(clone_params(resumed_model), clone_params(reference_model))
        else:
            _assert_close(clone_params(resumed_model), clone_params(reference_model))


@pytest.mark.parametrize(
    "base",
    [
        lambda params: torch.optim.AdamW(params, lr=1e-2, maximize=True),
        lambda params: torch.optim.Adam(params, lr=torch.tensor(1e-2)),
        lambda params: torch.optim.RMSprop(params, lr=1e-2),
    ],
    ids=["maximize", "tensor-lr", "rmsprop"],
)
def test_unsupported_bases_take_the_generic_path(base, monkeypatch):
    x, y = _data()
    results = []
    for fused in (True, False):
        model = _Net().double()
        opt = IRE(base(model.parameters()), fused_update=fused, interval=2)
        _run(model, opt, 6, x, y)
        results.append(clone_params(model))
    assert not supports_fused_step(opt.base_optimizer)
    assert_params_equal(*results)


def test_hooks_on_the_base_optimizer_keep_it_in_charge():
    model = _Net().double()
    base = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    base.register_step_post_hook(lambda *args: calls.append(1))
    opt = IRE(base, interval=2)
    x, y = _data()
    _run(model, opt, 4, x, y)
    assert len(calls) == 4
    assert not supports_fused_step(base)


def test_fused_step_refuses_group_kappas_it_cannot_apply():
    p = torch.nn.Parameter(torch.ones(2))
    q = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p, q], lr=0.1)
    p.grad, q.grad = torch.ones(2), torch.ones(2)
    mask = torch.tensor([True, False])
    assert not fused_step(opt, {p: (mask, 1.0), q: (mask, 2.0)})
    assert not fused_step(opt, {p: (mask, torch.tensor(1.0))})
    assert not fused_step(opt, {p: (mask, True)})
    assert torch.equal(p.detach(), torch.ones(2)) and torch.equal(q.detach(), torch.ones(2))
    assert fused_step(opt, {p: (mask, 1.0), q: (mask, np.float64(1.0))})
    assert p.tolist() == pytest.approx([0.8, 0.9])


def test_bfloat16_parameters_stay_bfloat16_and_follow_the_generic_path():
    x, y = _data(torch.bfloat16)
    model, opt = _make("adamw", fused=True, dtype=torch.bfloat16, start_step=0, interval=100)
    _run(model, opt, 4, x, y)
    generic_model, generic = copy.deepcopy((model, opt))
    generic.fused_update = False
    _run(model, opt, 1, x, y)
    _run(generic_model, generic, 1, x, y)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(s["exp_avg"].dtype == torch.bfloat16 for s in opt.state.values() if s)
    for a, b in zip(model.parameters(), generic_model.parameters()):
        # The generic path rounds θ' − θ in bfloat16: a few units in the last place.
        torch.testing.assert_close(a, b, rtol=2e-2, atol=1e-2)


def test_sam_takes_the_fused_step(monkeypatch):
    x, y = _data()
    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = _Net().double()
        opt = SAMIRE(model.parameters(), torch.optim.AdamW, lr=1e-2, rho=0.05, interval=2,
                     fused_update=fused)

        def closure(opt=opt, model=model):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        for _ in range(8):
            opt.step(closure)
        results.append(clone_params(model))
    _assert_close(*results)


def test_persistent_ire_state_is_one_bool_per_coordinate_without_ema():
    x, y = _data(torch.float32)
    for ema, keys in [(0.0, {"mask"}), (0.5, {"mask", "curvature"})]:
        model, opt = _make("adamw", fused=True, dtype=torch.float32, ema=ema, start_step=0)
        _run(model, opt, 4, x, y)
        for p in model.parameters():
            entry = opt._ire_state.get(p)
            if entry is not None:
                assert set(entry) == keys
                assert entry["mask"].dtype == torch.bool and entry["mask"].shape == p.shape


def test_a_sampled_threshold_selects_about_the_flat_fraction():
    from ire_core.threshold import SampledThreshold

    torch.manual_seed(0)
    model = torch.nn.Linear(300, 200)
    opt = IRE(torch.optim.AdamW(model.parameters(), lr=1e-3), flat_fraction=0.6,
              threshold_fn=SampledThreshold(sample=4096))
    model(torch.randn(16, 300)).square().mean().backward()
    opt.step()
    report = opt.mask_stats()
    assert abs(report.flat_count - 0.6 * report.total) < 0.03 * report.total
    with pytest.raises(TypeError, match="threshold_fn must be a callable"):
        IRE(torch.optim.SGD(model.parameters(), lr=0.1), threshold_fn="sampled")


def test_docstring_examples_of_the_fused_module():
    import doctest

    import ire_torch.fused

    result = doctest.testmod(ire_torch.fused, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted >= 2


@pytest.mark.parametrize("cls", [torch.optim.Adam, torch.optim.AdamW])
def test_the_fused_kernel_sliced_on_the_cpu_rounds_like_the_whole_tensor(cls, monkeypatch):
    monkeypatch.setattr(slices, "CHUNK", 7)  # kernel slices: 4096 coordinates
    generator = torch.Generator().manual_seed(5)
    start = torch.randn(3 * 4096 + 5, generator=generator)
    p, q = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    settings = dict(lr=1e-2, weight_decay=0.1, amsgrad=True, fused=True)
    amplified, bare = cls([p], **settings), cls([q], **settings)
    mask = torch.rand(start.shape, generator=generator) < 0.5
    for _ in range(3):
        grad = torch.randn(start.shape, generator=generator)
        p.grad, q.grad = grad.clone(), grad.clone()
        before = q.detach().clone()
        assert fused_step(amplified, {p: (mask, 2.0)})
        bare.step()
        assert torch.equal(p[~mask], q[~mask])
        torch.testing.assert_close((p - before)[mask], 3 * (q - before)[mask])
        with torch.no_grad():
            p.copy_(q)


def test_a_fused_kernel_asked_to_unscale_is_left_to_torch():
    params = [torch.nn.Parameter(torch.zeros(3))]
    base = torch.optim.AdamW(params, lr=1e-3, fused=True)
    assert supports_fused_step(base)
    base.grad_scale = torch.tensor(2.0)
    assert not supports_fused_step(base)


def test_masks_through_a_float_scratch_add_exactly_the_same(monkeypatch):
    monkeypatch.setattr(slices, "DEVICE_SCRATCH", 7)  # groups, and slices of (16,)
    generator = torch.Generator().manual_seed(4)
    shapes = [(3, 5), (7,), (2,), (16,), (4, 6)]
    targets = [torch.randn(s, generator=generator) for s in shapes]
    targets.append(torch.randn(6, 4, generator=generator).t())  # not contiguous: whole
    factors = [torch.randn(t.shape, generator=generator) for t in targets]
    flats = [(torch.rand(t.shape, generator=generator) < 0.5).view(torch.uint8)
             for t in targets]
    expected = [t.clone() for t in targets]
    for t, f, m in zip(expected, factors, flats):
        t.addcmul_(f, m, value=-0.3)
    slices.addcmul_flat_(targets, factors, flats, -0.3, through_scratch=True)
    assert all(torch.equal(t, e) for t, e in zip(targets, expected))


@pytest.mark.parametrize("name", ["sgd-nesterov", "adamw-foreach-amsgrad", "adamw-fused-kernel"])
def test_the_float_scratch_of_accelerators_walks_the_same_trajectory(name, monkeypatch):
    x, y = _data()
    model, opt = _make(name, fused=True)
    _run(model, opt, 20, x, y)
    direct = clone_params(model)
    scratch = slices.addcmul_flat_
    monkeypatch.setattr(slices, "DEVICE_SCRATCH", 7)  # small groups, sliced tensors
    monkeypatch.setattr(slices, "addcmul_flat_",
                        lambda *args: scratch(*args, through_scratch=True))
    model, opt = _make(name, fused=True)
    _run(model, opt, 20, x, y)
    assert_params_equal(clone_params(model), direct)
