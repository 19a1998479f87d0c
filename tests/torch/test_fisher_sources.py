"""Cheaper Fisher refreshes: the training forward's own logits (graph kept on
refresh steps) give the same estimate as a fresh forward; a sub-batch gives
a mask of the right size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_cases import assert_params_equal, batch, classifier, clone_params

from ire_torch import AdamWIRE

STEPS = 7


def _optimizer(model):
    return AdamWIRE(model.parameters(), lr=1e-2, kappa=2.0, flat_fraction=0.5, interval=3,
                    estimator="fisher", seed=4)


def test_reusing_the_training_forward_equals_a_fresh_forward_bit_for_bit():
    x, y = batch(n=32)
    fresh_model, reused_model = classifier(), classifier()
    fresh, reused = _optimizer(fresh_model), _optimizer(reused_model)
    for _ in range(STEPS):
        F.cross_entropy(fresh_model(x), y).backward()
        fresh.step(logits_fn=lambda: fresh_model(x))
        fresh.zero_grad()

        logits = reused_model(x)
        F.cross_entropy(logits, y).backward(retain_graph=reused.refresh_due)
        reused.step(logits_fn=lambda logits=logits: logits)
        reused.zero_grad()
    assert reused.mask_stats().step == fresh.mask_stats().step == 6
    for p, q in zip(fresh_model.parameters(), reused_model.parameters()):
        assert torch.equal(fresh.flat_mask(p), reused.flat_mask(q))
    assert_params_equal(clone_params(fresh_model), clone_params(reused_model))


def test_a_sub_batch_fisher_keeps_the_flat_fraction():
    x, y = batch(n=32)
    model = classifier()
    opt = _optimizer(model)
    for _ in range(4):
        F.cross_entropy(model(x), y).backward()
        opt.step(logits_fn=lambda: model(x[:8]))
        opt.zero_grad()
    stats = opt.mask_stats()
    assert stats.flat_count == int(0.5 * stats.total)
