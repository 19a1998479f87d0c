"""Mixed precision: bf16 autocast, low-precision parameters, and the fp16
GradScaler recipe in which a non-finite step changes nothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_cases import batch, classifier, clone_params

from ire_torch import SGDIRE, AdamWIRE


@pytest.mark.parametrize("estimator", ["fisher", "hutchinson", "gradient"])
def test_bf16_autocast_training(estimator):
    x, y = batch()
    model = classifier()
    opt = AdamWIRE(model.parameters(), lr=1e-2, kappa=2.0, flat_fraction=0.5, interval=2,
                   estimator=estimator)

    def loss_fn():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.cross_entropy(model(x), y)

    def logits_fn():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    first = None
    for _ in range(8):
        loss = loss_fn()
        assert loss.dtype == torch.float32  # cross_entropy autocasts to float32
        loss.backward()
        opt.step(loss_fn=loss_fn, logits_fn=logits_fn)
        opt.zero_grad()
        first = loss.item() if first is None else first
    assert loss_fn().item() < first
    for p in model.parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all()
    report = opt.mask_stats()
    assert report.flat_fraction == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_parameters_keep_their_dtype(dtype):
    x, y = batch(dtype=dtype)
    model = classifier(dtype=dtype)
    opt = SGDIRE(model.parameters(), lr=0.1, kappa=1.0, flat_fraction=0.5, interval=1,
                 estimator="hutchinson")
    for _ in range(3):
        F.cross_entropy(model(x).float(), y).backward()
        opt.step(loss_fn=lambda: F.cross_entropy(model(x).float(), y))
        opt.zero_grad()
    for p in model.parameters():
        assert p.dtype == dtype and torch.isfinite(p).all()
        assert opt.flat_mask(p).dtype == torch.bool
    assert opt.mask_stats().flat_fraction == pytest.approx(0.5, abs=0.02)


def test_grad_scaler_skips_non_finite_steps_entirely():
    """The documented fp16 recipe: scale, backward, ``scaler.step(opt, ...)``,
    ``scaler.update()``. A step with an inf gradient makes no update, no
    curvature update and does not count as a step."""
    x, y = batch()
    model = classifier()
    opt = AdamWIRE(model.parameters(), lr=1e-2, kappa=2.0, interval=2, ema=0.5,
                   estimator="fisher")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)

    def scaled_step(poison):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if poison:
            model[0].weight.grad[0, 0] = float("inf")
        scaler.step(opt, logits_fn=lambda: model(x))
        scaler.update()
        opt.zero_grad()

    for _ in range(2):
        scaled_step(poison=False)
    params = clone_params(model)
    state = opt.state_dict()
    masks = {i: m.clone() for i, m in state["ire"]["masks"].items()}
    curvature = {i: c.clone() for i, c in state["ire"]["curvature"].items()}
    exp_avg = opt.state[model[0].weight]["exp_avg"].clone()
    assert opt.refresh_due  # the skipped step would have refreshed

    scaled_step(poison=True)
    assert opt.ire_step == 2
    for p, q in zip(model.parameters(), params):
        assert torch.equal(p, q)
    after = opt.state_dict()["ire"]
    assert after["refreshes"] == 1
    for i in masks:
        assert torch.equal(after["masks"][i], masks[i])
        assert torch.equal(after["curvature"][i], curvature[i])
    assert torch.equal(opt.state[model[0].weight]["exp_avg"], exp_avg)

    scaled_step(poison=False)  # the next finite step takes the refresh
    assert opt.ire_step == 3 and opt.mask_stats().step == 2
    assert not torch.equal(model[0].weight, params[0])
