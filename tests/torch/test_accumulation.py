"""Gradient accumulation: refreshes and amplification count optimizer
steps, not micro-batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_cases import batch, classifier, clone_params

from ire_torch import AdamWIRE


def test_accumulated_micro_batches_equal_one_full_batch_step():
    x, y = batch(n=16)
    micro = 4
    model, twin = classifier(), classifier()
    opt = AdamWIRE(model.parameters(), lr=1e-2, kappa=2.0, interval=3, estimator="fisher",
                   label_uniforms_fn=lambda step: torch.linspace(0.01, 0.99, 16))
    full = AdamWIRE(twin.parameters(), lr=1e-2, kappa=2.0, interval=3, estimator="fisher",
                    label_uniforms_fn=lambda step: torch.linspace(0.01, 0.99, 16))
    refreshed = []
    for _ in range(7):
        for chunk_x, chunk_y in zip(x.chunk(micro), y.chunk(micro)):
            (F.cross_entropy(model(chunk_x), chunk_y) / micro).backward()
        refreshed.append(opt.refresh_due)
        opt.step(logits_fn=lambda: model(x))
        opt.zero_grad()
        F.cross_entropy(twin(x), y).backward()
        full.step(logits_fn=lambda: twin(x))
        full.zero_grad()
    assert opt.ire_step == 7
    assert refreshed == [True, False, False, True, False, False, True]
    assert opt.mask_stats().step == 6
    for p, q in zip(clone_params(model), clone_params(twin)):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(opt.flat_mask(p), full.flat_mask(q))
