"""κ = 0, γ = 0 and the warm-up leave the base optimizer's step bit for bit;
coordinates outside the mask always get exactly the base update."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch_cases import assert_params_equal, batch, classifier, clone_params, train

from ire_torch import IRE, SAMIRE

BASES = {
    "sgd": (torch.optim.SGD, dict(lr=0.1)),
    "momentum": (torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adamw": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    "adam": (torch.optim.Adam, dict(lr=1e-2, amsgrad=True)),
}
STEPS = 12


def _bare(base):
    cls, kwargs = BASES[base]
    model = classifier()
    x, y = batch()
    train(model, cls(model.parameters(), **kwargs), x, y, STEPS, with_sources=False)
    return clone_params(model)


@pytest.mark.parametrize("base", list(BASES))
@pytest.mark.parametrize(
    "ire",
    [
        dict(kappa=0.0, flat_fraction=0.6, estimator="fisher"),
        dict(kappa=3.0, flat_fraction=0.0, estimator="hutchinson"),
        dict(kappa=3.0, flat_fraction=0.6, start_step=STEPS, estimator="gradient"),
    ],
    ids=["kappa0", "gamma0", "warm-up"],
)
def test_identity_settings_equal_the_bare_base_bit_for_bit(base, ire):
    cls, kwargs = BASES[base]
    model = classifier()
    x, y = batch()
    opt = IRE(cls(model.parameters(), **kwargs), interval=2, **ire)
    train(model, opt, x, y, STEPS)
    assert_params_equal(clone_params(model), _bare(base))


def test_sam_with_kappa_zero_equals_plain_sam():
    x, y = batch()

    def run(kappa):
        model = classifier()
        opt = SAMIRE(model.parameters(), torch.optim.SGD, lr=0.1, rho=0.05, kappa=kappa,
                     interval=1)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        for _ in range(5):
            opt.step(closure)
        return clone_params(model)

    zero, amplified = run(0.0), run(2.0)
    sam = classifier()
    for _ in range(5):  # SAM by hand
        sam.zero_grad()
        F.cross_entropy(sam(x), y).backward()
        params = list(sam.parameters())
        norm = torch.sqrt(torch.stack([torch.sum(p.grad * p.grad) for p in params]).sum())
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p in params:
                p.add_(0.05 * p.grad / (norm + 1e-12))
        sam.zero_grad()
        F.cross_entropy(sam(x), y).backward()
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
                p.add_(p.grad, alpha=-0.1)
    assert_params_equal(zero, clone_params(sam))
    assert not all(torch.equal(a, b) for a, b in zip(zero, amplified))


@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_only_flat_coordinates_leave_the_base_update(base):
    cls, kwargs = BASES[base]
    x, y = batch()
    model, twin = classifier(), classifier()
    opt = IRE(cls(model.parameters(), **kwargs), kappa=2.0, flat_fraction=0.5, interval=1)
    bare = cls(twin.parameters(), **kwargs)
    for _ in range(3):
        before = clone_params(model)
        for m in (model, twin):
            F.cross_entropy(m(x), y).backward()
        # The twin takes the base step from the same point with the same state.
        opt.step()
        bare.step()
        for p, q, b in zip(model.parameters(), twin.parameters(), before):
            mask = opt.flat_mask(p)
            assert mask.dtype == torch.bool and mask.shape == p.shape
            base_delta = q.detach() - b
            assert torch.equal(p.detach()[~mask], q.detach()[~mask])
            torch.testing.assert_close(p.detach()[mask] - b[mask], 3.0 * base_delta[mask])
        with torch.no_grad():  # re-synchronise the twin on the amplified point
            for p, q in zip(model.parameters(), twin.parameters()):
                q.copy_(p)
        opt.zero_grad()
        bare.zero_grad()
