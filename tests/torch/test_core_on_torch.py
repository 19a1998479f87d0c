"""ire_core on torch tensors: the same answers as on NumPy, dtype and device
kept, and the windowed exact threshold on large tensors."""

import numpy as np
import pytest
import torch

from ire_core import HistogramThreshold, exact_threshold, mask_statistics, select_flat_mask
from ire_core import threshold as threshold_module


def large_values(seed, n):
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(n, generator=generator, dtype=torch.float64) ** 4
    values[:1000] = 0.25  # a block of ties
    values[1000:1100] = float("inf")
    return [values[: n // 4], values[n // 4 :]]


@pytest.mark.parametrize("fraction", [1e-5, 0.3, 0.6, 0.99999])
def test_windowed_exact_threshold_matches_a_full_sort(fraction):
    values = large_values(0, 3 << 18)
    everything = torch.cat(values)
    k = int(fraction * everything.numel())
    assert exact_threshold(values, k).item() == everything.sort().values[k - 1].item()


def test_a_window_that_misses_the_kth_value_falls_back_to_the_exact_answer(monkeypatch):
    values = large_values(3, 1 << 18)
    everything = torch.cat(values)
    k = int(0.4 * everything.numel())
    # A sample of the largest values only: its bracket lies far above the k-th value.
    monkeypatch.setattr(threshold_module, "_spread_sample",
                        lambda xp, v, total: v.sort().values[-max(1, v.numel() // 8):])
    assert exact_threshold(values, k).item() == everything.sort().values[k - 1].item()


def test_mask_on_torch_matches_mask_on_numpy():
    values = large_values(1, 1 << 12)
    on_torch = select_flat_mask(values, 0.45)
    on_numpy = select_flat_mask([v.numpy() for v in values], 0.45)
    for a, b in zip(on_torch.mask, on_numpy.mask):
        assert a.dtype == torch.bool
        np.testing.assert_array_equal(a.numpy(), b)
    assert on_torch.threshold.item() == float(on_numpy.threshold)
    assert int(on_torch.flat_count) == int(on_numpy.flat_count)


def test_histogram_threshold_on_torch_selects_the_exact_count():
    values = large_values(2, 1 << 16)
    k = int(0.6 * (1 << 16))
    tau = HistogramThreshold()(values, k)
    assert tau.item() == exact_threshold(values, k).item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_curvature_is_ranked_in_float32_and_masks_are_bool(dtype):
    values = [torch.tensor([3.0, 1.0, float("nan")], dtype=dtype), torch.tensor([2.0], dtype=dtype)]
    result = select_flat_mask(values, 0.5)
    assert [m.tolist() for m in result.mask] == [[False, True, False], [True]]
    assert result.threshold.dtype == torch.float32
    assert float(mask_statistics(result.mask).flat_fraction) == 0.5


def test_selection_never_writes_to_the_curvature_passed_in():
    clean = torch.tensor([0.3, 0.0, 2.0, float("inf")])
    signed = torch.tensor([[float("nan"), -1.0], [0.5, -float("inf")]])
    originals = [clean.clone(), signed.clone()]
    mask = select_flat_mask([clean, signed], 0.5).mask
    assert [m.tolist() for m in mask] == [[True, True, False, False], [[False, True], [True, False]]]
    for given, original in zip([clean, signed], originals):
        assert torch.equal(given.nan_to_num(), original.nan_to_num())
        assert torch.equal(given.isnan(), original.isnan())
