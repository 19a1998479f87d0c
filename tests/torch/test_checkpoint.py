"""state_dict / load_state_dict carry the base state, the curvature moving
average, the masks, the counters and the generator: a resumed run continues
bit-identically to an uninterrupted one."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch_cases import assert_params_equal, batch, classifier, clone_params, train

from ire_torch import IRE, SAMIRE, SGDIRE, AdamWIRE, Draws

TOTAL, SPLIT = 10, 4  # the split falls between two refreshes (interval 3)


def _adamw(model):
    return AdamWIRE(model.parameters(), lr=1e-2, kappa=2.0, flat_fraction=0.6, interval=3,
                    ema=0.5, estimator="hutchinson", num_probes=2, seed=7)


def _sgd(model):
    return SGDIRE(model.parameters(), lr=0.1, momentum=0.9, kappa=1.0, interval=3,
                  estimator="fisher", seed=11)


def _adam(model):
    return IRE(torch.optim.Adam(model.parameters(), lr=1e-2), kappa=1.0, interval=3,
               start_step=2)


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # the default, safe weights_only loader


@pytest.mark.parametrize("make", [_adamw, _sgd, _adam], ids=["adamw-hutchinson-ema",
                                                              "momentum-fisher", "adam-warmup"])
def test_resume_continues_bit_identically(make):
    x, y = batch()
    model = classifier()
    opt = make(model)
    train(model, opt, x, y, TOTAL)
    uninterrupted = clone_params(model)

    model = classifier()
    opt = make(model)
    train(model, opt, x, y, SPLIT)
    checkpoint = _roundtrip({"model": model.state_dict(), "opt": opt.state_dict()})

    resumed_model = classifier(seed=123)  # different weights, overwritten by the load
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = make(resumed_model)
    resumed.load_state_dict(checkpoint["opt"])
    assert resumed.ire_step == SPLIT
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(opt.flat_mask(p), resumed.flat_mask(q))
    train(resumed_model, resumed, x, y, TOTAL - SPLIT)
    assert_params_equal(clone_params(resumed_model), uninterrupted)


def test_sam_resume_continues_bit_identically():
    x, y = batch()

    def make(model):
        return SAMIRE(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, rho=0.05,
                      kappa=1.0, interval=3, estimator="hutchinson", seed=5)

    def run(model, opt, steps):
        for _ in range(steps):
            def closure():
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss

            opt.step(closure, loss_fn=lambda: F.cross_entropy(model(x), y))

    model = classifier()
    opt = make(model)
    run(model, opt, TOTAL)
    uninterrupted = clone_params(model)
    model = classifier()
    opt = make(model)
    run(model, opt, SPLIT)
    state = _roundtrip(opt.state_dict())
    opt = make(model)
    opt.load_state_dict(state)
    run(model, opt, TOTAL - SPLIT)
    assert_params_equal(clone_params(model), uninterrupted)


def test_state_dict_holds_the_base_state_and_the_ire_state():
    x, y = batch()
    model = classifier()
    opt = _adamw(model)
    train(model, opt, x, y, 2)
    state = opt.state_dict()
    assert set(state) == {"state", "param_groups", "ire"}
    assert {"exp_avg", "exp_avg_sq", "step"} <= set(state["state"][0])
    assert state["param_groups"][0]["ire_enabled"] is True
    ire = state["ire"]
    assert ire["step"] == 2 and ire["refreshes"] == 1
    assert sorted(ire["masks"]) == [0, 1, 2, 3]
    assert all(m.dtype == torch.bool for m in ire["masks"].values())
    assert sorted(ire["curvature"]) == [0, 1, 2, 3]
    assert ire["draws"]["generator"] is not None


def test_loading_relinks_param_groups_for_schedulers():
    x, y = batch()
    model = classifier()
    opt = _sgd(model)
    train(model, opt, x, y, 2)
    state = opt.state_dict()
    fresh = _sgd(model)
    scheduler = torch.optim.lr_scheduler.StepLR(fresh, step_size=1, gamma=0.5)
    fresh.load_state_dict(state)
    assert fresh.param_groups is fresh.base_optimizer.param_groups
    assert fresh.state is fresh.base_optimizer.state
    train(model, fresh, x, y, 1)
    scheduler.step()
    assert fresh.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_a_bare_base_state_dict_loads_with_fresh_ire_state():
    x, y = batch()
    model = classifier()
    base = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, base, x, y, 3, with_sources=False)
    opt = AdamWIRE(model.parameters(), lr=1e-2, kappa=1.0)
    opt.load_state_dict(base.state_dict())
    assert opt.ire_step == 0 and opt.mask_stats() is None
    assert opt.param_groups[0]["ire_kappa"] is None
    assert int(opt.state[next(model.parameters())]["step"]) == 3
    train(model, opt, x, y, 1)
    assert opt.mask_stats().step == 0


def test_draws_saved_on_a_device_missing_here_restart_from_the_seed():
    x, y = batch()
    model = classifier()
    opt = AdamWIRE(model.parameters(), lr=1e-2, estimator="fisher", interval=1, seed=3)
    train(model, opt, x, y, 2)
    state = opt.state_dict()
    # A CUDA checkpoint on a machine without CUDA; "meta" has no generator anywhere.
    state["ire"]["draws"]["device"] = "meta" if torch.cuda.is_available() else "cuda:0"
    fresh = AdamWIRE(model.parameters(), lr=1e-2, estimator="fisher", interval=1, seed=0)
    with pytest.warns(RuntimeWarning, match="restart from seed=3 on the parameters' device"):
        fresh.load_state_dict(state)
    assert fresh.ire_step == 2 and fresh.mask_stats() is not None
    expected = Draws(seed=3).label_uniforms(0, (5,), torch.device("cpu"), torch.float32)
    got = fresh._draws.label_uniforms(2, (5,), torch.device("cpu"), torch.float32)
    assert torch.equal(got, expected)
    train(model, fresh, x, y, 1)
    assert fresh.mask_stats().step == 2
