"""ire_core on torch tensors, by its own array-API rule and by ire_torch's
selection: the same answers as on NumPy, dtype and device kept, and the
curvature passed in never written to."""

import numpy as np
import pytest
import torch
from torch_cases import large_values

import ire_core
from ire_core import HistogramThreshold, mask_statistics
from ire_torch import selection

SELECTIONS = {"ire_core": ire_core.select_flat_mask, "ire_torch": selection.select_flat_mask}
THRESHOLDS = {"ire_core": ire_core.exact_threshold, "ire_torch": selection.exact_threshold}


@pytest.mark.parametrize("select", SELECTIONS.values(), ids=SELECTIONS.keys())
def test_mask_on_torch_matches_mask_on_numpy(select):
    values = large_values(1, 1 << 12)
    on_torch = select(values, 0.45)
    on_numpy = ire_core.select_flat_mask([v.numpy() for v in values], 0.45)
    for a, b in zip(on_torch.mask, on_numpy.mask):
        assert a.dtype == torch.bool
        np.testing.assert_array_equal(a.numpy(), b)
    assert on_torch.threshold.item() == float(on_numpy.threshold)
    assert int(on_torch.flat_count) == int(on_numpy.flat_count)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.999, 1.0])
def test_the_core_and_the_torch_selection_agree(fraction):
    values = large_values(3, 1 << 17)
    values[0][7] = float("nan")
    values[1][5] = -0.5
    previous = [torch.zeros(v.shape, dtype=torch.bool) for v in values]
    core = ire_core.select_flat_mask(values, fraction, previous=previous)
    fast = selection.select_flat_mask(values, fraction, previous=previous)
    assert all(torch.equal(a, b) for a, b in zip(core.mask, fast.mask))
    assert core.threshold.item() == fast.threshold.item()
    assert int(core.flat_count) == int(fast.flat_count)


def test_histogram_threshold_on_torch_selects_the_exact_count():
    values = large_values(2, 1 << 16)
    k = int(0.6 * (1 << 16))
    tau = HistogramThreshold()(values, k)
    for exact_threshold in THRESHOLDS.values():
        assert tau.item() == exact_threshold(values, k).item()


@pytest.mark.parametrize("select", SELECTIONS.values(), ids=SELECTIONS.keys())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_curvature_is_ranked_in_float32_and_masks_are_bool(dtype, select):
    values = [torch.tensor([3.0, 1.0, float("nan")], dtype=dtype), torch.tensor([2.0], dtype=dtype)]
    result = select(values, 0.5)
    assert [m.tolist() for m in result.mask] == [[False, True, False], [True]]
    assert result.threshold.dtype == torch.float32
    assert float(mask_statistics(result.mask).flat_fraction) == 0.5


@pytest.mark.parametrize("select", SELECTIONS.values(), ids=SELECTIONS.keys())
def test_selection_never_writes_to_the_curvature_passed_in(select):
    clean = torch.tensor([0.3, 0.0, 2.0, float("inf")])
    signed = torch.tensor([[float("nan"), -1.0], [0.5, -float("inf")]])
    originals = [clean.clone(), signed.clone()]
    mask = select([clean, signed], 0.5).mask
    assert [m.tolist() for m in mask] == [[True, True, False, False], [[False, True], [True, False]]]
    for passed, original in zip([clean, signed], originals):
        assert torch.equal(passed.nan_to_num(), original.nan_to_num())
        assert torch.equal(passed.isnan(), original.isnan())
