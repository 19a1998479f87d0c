"""ire_torch on a CUDA device (skipped where torch sees none).

The same optimizers as on the CPU, checked where only a GPU can tell: the
fused kernels against the generic path on the device, the device trajectory
against the CPU one, state that stays on the device, steps without a refresh
that never wait for the device, and checkpoints that cross devices.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ire_torch import IRE, selection

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
BASES = {
    "sgd-momentum": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    "adam": (torch.optim.Adam, dict(lr=1e-2, weight_decay=0.05)),
    "adamw-foreach": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1, foreach=True)),
    "adamw-single": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1, foreach=False)),
    "adamw-fused-kernel": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1, fused=True)),
}
IRE_SETTINGS = dict(kappa=2.0, flat_fraction=0.5, interval=3)


def _model(device, dtype=torch.float64):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    return model.to(device=device, dtype=dtype)


def _data(device, dtype=torch.float64):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(40, 6, generator=generator, dtype=dtype)
    y = torch.randint(0, 4, (40,), generator=generator)
    return x.to(device), y.to(device)


def _optimizer(model, base, **settings):
    cls, kwargs = BASES[base]
    return IRE(cls(model.parameters(), **kwargs), **{**IRE_SETTINGS, **settings})


def _train(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step(logits_fn=lambda: model(x), loss_fn=lambda: F.cross_entropy(model(x), y))
    return [p.detach() for p in model.parameters()]


def _close(a, b, rtol, atol):
    for x, y in zip(a, b):
        torch.testing.assert_close(x.to(y.device), y, rtol=rtol, atol=atol)


@pytest.mark.parametrize("base", BASES)
def test_fused_update_matches_the_generic_path_on_the_device(base):
    x, y = _data(CUDA)
    runs = {}
    for fused in (True, False):
        model = _model(CUDA)
        runs[fused] = _train(model, _optimizer(model, base, fused_update=fused), x, y, 20)
    _close(runs[True], runs[False], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("base", ["sgd-momentum", "adamw-foreach", "adamw-fused-kernel"])
def test_device_trajectory_matches_the_cpu_one(base):
    results = []
    for device in ("cpu", CUDA):
        model = _model(device)
        x, y = _data(device)
        results.append(_train(model, _optimizer(model, base), x, y, 20))
    _close(results[1], results[0], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("estimator", ["gradient", "fisher", "hutchinson", "exact"])
def test_masks_and_curvature_stay_on_the_device(estimator):
    model = _model(CUDA, torch.float32)
    x, y = _data(CUDA, torch.float32)
    opt = _optimizer(model, "adamw-foreach", estimator=estimator, ema=0.5)
    _train(model, opt, x, y, 4)
    for p in model.parameters():
        entry = opt._ire_state[p]
        assert entry["mask"].device == p.device and entry["mask"].dtype == torch.bool
        assert entry["curvature"].device == p.device
    report = opt.mask_stats()
    assert report.flat_count == int(0.5 * report.total)


@pytest.mark.parametrize("estimator", ["fisher", "hutchinson"])
def test_device_draws_are_reproducible_and_survive_a_checkpoint(estimator):
    x, y = _data(CUDA, torch.float32)
    straight_model = _model(CUDA, torch.float32)
    straight = _optimizer(straight_model, "adamw-foreach", estimator=estimator, seed=7)
    expected = _train(straight_model, straight, x, y, 9)

    model = _model(CUDA, torch.float32)
    opt = _optimizer(model, "adamw-foreach", estimator=estimator, seed=7)
    _train(model, opt, x, y, 5)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    resumed_model = _model(CUDA, torch.float32)
    resumed_model.load_state_dict(saved["model"])
    resumed = _optimizer(resumed_model, "adamw-foreach", estimator=estimator, seed=0)
    resumed.load_state_dict(saved["opt"])
    got = _train(resumed_model, resumed, x, y, 4)
    _close(got, expected, rtol=0, atol=0)


def test_a_cpu_checkpoint_resumes_on_the_device():
    x, y = _data("cpu")
    model = _model("cpu")
    opt = _optimizer(model, "adamw-foreach")
    _train(model, opt, x, y, 4)
    expected = _train(model, opt, x, y, 5)

    model = _model("cpu")
    opt = _optimizer(model, "adamw-foreach")
    _train(model, opt, x, y, 4)
    saved = opt.state_dict()
    moved = _model(CUDA)
    moved.load_state_dict(model.state_dict())
    resumed = _optimizer(moved, "adamw-foreach")
    resumed.load_state_dict(saved)
    assert all(resumed._ire_state[p]["mask"].device == p.device for p in moved.parameters())
    got = _train(moved, resumed, *_data(CUDA), 5)
    _close(got, expected, rtol=1e-9, atol=1e-11)


def _backward(model, opt, x, y) -> None:
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()


def _synchronizations(action) -> int:
    """How many synchronizing CUDA calls ``action`` makes."""
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            action()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchronizing" in str(w.message) for w in caught)


@pytest.mark.parametrize("base", ["sgd-momentum", "adam", "adamw-foreach",
                                  "adamw-fused-kernel"])
@pytest.mark.parametrize("fused", [True, False])
def test_steps_without_refresh_synchronize_no_more_than_the_base(base, fused):
    x, y = _data(CUDA, torch.float32)
    counts = {}
    for name in ("base", "ire"):
        model = _model(CUDA, torch.float32)
        cls, kwargs = BASES[base]
        opt = cls(model.parameters(), **kwargs)
        if name == "ire":
            opt = IRE(opt, fused_update=fused, **{**IRE_SETTINGS, "interval": 100})
        for _ in range(2):  # the refresh at step 0 and the state's creation come first
            _backward(model, opt, x, y)
            opt.step()
        _backward(model, opt, x, y)
        counts[name] = _synchronizations(opt.step)
    assert counts["ire"] <= counts["base"], counts


@pytest.mark.parametrize("sizes", [(5, 300), (70_000,), (150_000, 40_000, 3)])
@pytest.mark.parametrize("ties", [False, True])
def test_exact_threshold_on_the_device_is_the_kth_smallest(sizes, ties):
    generator = torch.Generator().manual_seed(sum(sizes))
    values = [torch.rand(n, generator=generator, dtype=torch.float32) for n in sizes]
    if ties:
        values = [v.mul(8).floor() for v in values]
    ordered = np.sort(np.concatenate([v.numpy() for v in values]))
    on_device = [v.to(CUDA) for v in values]
    for k in sorted({1, 2, len(ordered) // 3, len(ordered) - 1, len(ordered)}):
        tau = selection.exact_threshold(on_device, k)
        assert tau.device.type == "cuda"
        assert tau.untyped_storage().nbytes() == tau.element_size()  # not a view of the sort
        assert float(tau) == ordered[k - 1], k


def test_a_refresh_waits_for_the_device_only_a_few_times():
    x, y = _data(CUDA, torch.float32)
    model = _model(CUDA, torch.float32)
    opt = _optimizer(model, "adamw-foreach", interval=2)
    _backward(model, opt, x, y)
    opt.step()  # the first refresh, and the state's creation
    _backward(model, opt, x, y)
    opt.step()
    _backward(model, opt, x, y)
    assert opt.refresh_due
    assert _synchronizations(opt.step) <= 4
