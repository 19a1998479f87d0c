"""The names ire_torch shares with ire_jax and ire_keras, and the deprecated
aliases kept for one release."""

from __future__ import annotations

import pytest
import torch

import ire_core
import ire_torch
from ire_torch import IRE, fused, monitoring


def _trained(steps=3):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    opt = IRE(torch.optim.SGD(model.parameters(), lr=0.1), flat_fraction=0.5, interval=2)
    x = torch.randn(8, 4)
    due = []
    for _ in range(steps):
        due.append(opt.refresh_due)
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    return opt, due


def test_refresh_due_is_a_property_of_the_optimizer():
    opt, due = _trained(steps=5)
    assert due == [True, False, True, False, True]
    assert opt.refresh_due is False


def test_mask_stats_returns_the_core_type_with_every_field():
    opt, _ = _trained()
    stats = opt.mask_stats()
    assert type(stats) is ire_core.MaskStats and ire_torch.MaskStats is ire_core.MaskStats
    assert stats.step == 2 and stats.total == 10 and stats.flat_count == 5
    assert stats.flat_fraction == 0.5 and stats.shapes == [(2, 4), (2,)]
    assert len(stats.per_tensor) == 2 and stats.threshold >= 0


def test_supports_fused_step_is_the_fused_predicate():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert fused.supports_fused_step(torch.optim.SGD(params, lr=0.1))
    assert not fused.supports_fused_step(torch.optim.RMSprop(params))


@pytest.mark.parametrize("module", [ire_torch, monitoring])
def test_mask_report_is_a_deprecated_alias_of_mask_stats(module):
    with pytest.warns(DeprecationWarning, match="MaskReport is deprecated"):
        alias = module.MaskReport
    assert alias is ire_core.MaskStats
    opt, _ = _trained()
    report = opt.mask_stats()
    assert isinstance(report, alias)
    assert report.step == 2 and report.flat_count == 5  # the old fields still read
    with pytest.raises(AttributeError):
        module.NoSuchName  # noqa: B018


def test_mask_report_is_also_importable_by_name():
    with pytest.warns(DeprecationWarning):
        from ire_torch import MaskReport
    assert MaskReport is ire_core.MaskStats
