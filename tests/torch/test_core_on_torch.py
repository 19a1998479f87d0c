"""ire_core on torch tensors: the same answers as on NumPy, dtype and device
kept, and the windowed exact threshold: on large tensors, and with its sizes
shrunk on tiny ones, against ``kthvalue`` over all values."""

import array_api_compat.torch
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
                        lambda xp, v, size: v.sort().values[-max(1, v.numel() // 8):])
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


# -- the windowed exact threshold on tiny inputs --------------------------------------


@pytest.fixture
def tiny_windows(monkeypatch):
    """The windowed search from 32 values on, with samples of a few values, so
    that brackets, words, tails and fallbacks all occur on small tensors."""
    monkeypatch.setattr(threshold_module, "_WINDOW_MIN_SIZE", 32)
    monkeypatch.setattr(threshold_module, "_WINDOW_SAMPLE", 64)
    monkeypatch.setattr(threshold_module, "_WINDOW_SAMPLE_RATIO", 4)
    monkeypatch.setattr(threshold_module, "_PIECE_MIN_SIZE", 16)


def kth_of_everything(values, k):
    everything = torch.cat([v.reshape(-1) for v in values])
    if k <= 0:
        return float("inf")
    return everything.kthvalue(min(k, everything.numel())).values.item()


def assert_exact(values, ranks):
    originals = [v.clone() for v in values]
    for k in ranks:
        tau = exact_threshold(values, k)
        assert tau.dtype == values[0].dtype
        assert tau.untyped_storage().nbytes() == tau.element_size()  # kept: must hold no more
        assert tau.item() == kth_of_everything(values, k), k
    assert all(torch.equal(v, o) for v, o in zip(values, originals))  # read, never written


def ranks_of(n):
    return sorted({-1, 0, 1, 2, n // 7, n // 3, n // 2, (3 * n) // 5, n - 2, n - 1, n, n + 5})


def curvature_like(generator, n, dtype=torch.float32):
    return (torch.rand(n, generator=generator, dtype=torch.float64) ** 2).to(dtype)


@pytest.mark.parametrize("sizes", [(1000,), (1003, 5, 0, 417), (9,) * 7 + (600,), (7,) * 40])
def test_windowed_threshold_is_exact_for_any_sizes_and_ranks(tiny_windows, sizes):
    generator = torch.Generator().manual_seed(sum(sizes))
    values = [curvature_like(generator, n) for n in sizes]
    assert_exact(values, ranks_of(sum(sizes)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_windowed_threshold_is_exact_in_every_float_dtype(tiny_windows, dtype):
    generator = torch.Generator().manual_seed(5)
    values = [curvature_like(generator, n, dtype) for n in (611, 250, 3)]
    assert_exact(values, ranks_of(864))


def test_windowed_threshold_of_strided_and_multi_dimensional_tensors(tiny_windows):
    generator = torch.Generator().manual_seed(6)
    base = curvature_like(generator, 2 * 501)
    matrix = curvature_like(generator, 40 * 31).reshape(40, 31).T  # not contiguous
    values = [base[::2], matrix]
    assert not values[0].is_contiguous() and not values[1].is_contiguous()
    assert_exact(values, ranks_of(501 + 1240))


@pytest.mark.parametrize("block", [0.0, 0.5, float("inf")])
def test_windowed_threshold_is_exact_on_large_blocks_of_ties(tiny_windows, block):
    generator = torch.Generator().manual_seed(7)
    values = [curvature_like(generator, 700), curvature_like(generator, 301)]
    values[0][:350] = block  # k = n/2 and nearby ranks fall inside the block for 0 and 0.5
    values[1][-100:] = block
    assert_exact(values, ranks_of(1001) + [200, 300, 400, 449, 450, 451])


def test_a_bracket_of_equal_ends_is_counted_not_searched(tiny_windows, monkeypatch):
    # A sample of 500 values, itself ranked by one kthvalue.
    monkeypatch.setattr(threshold_module, "_WINDOW_MIN_SIZE", 600)
    monkeypatch.setattr(threshold_module, "_WINDOW_SAMPLE", 1024)
    monkeypatch.setattr(threshold_module, "_WINDOW_SAMPLE_RATIO", 2)
    values = [torch.zeros(500), torch.ones(501)]
    members = []
    monkeypatch.setattr(threshold_module, "_members",
                        lambda *args: members.append(args) or torch.zeros(0))
    assert exact_threshold(values, 300).item() == 0.0
    assert exact_threshold(values, 800).item() == 1.0
    assert members == []


def test_all_equal_values(tiny_windows):
    values = [torch.full((300,), 2.5), torch.full((5,), 2.5)]
    assert_exact(values, ranks_of(305))


@pytest.mark.parametrize("side", ["largest", "smallest"])
def test_a_bracket_that_misses_on_either_side_falls_back_to_the_exact_answer(
        tiny_windows, monkeypatch, side):
    generator = torch.Generator().manual_seed(8)
    values = [curvature_like(generator, 803), curvature_like(generator, 200)]

    def biased_sample(xp, v, size):
        ordered = v.sort().values
        picked = max(1, v.numel() // 8)
        return ordered[-picked:] if side == "largest" else ordered[:picked]

    monkeypatch.setattr(threshold_module, "_spread_sample", biased_sample)
    assert_exact(values, [100, 501, 900])


def test_a_wide_bracket_still_selects_exactly(tiny_windows, monkeypatch):
    monkeypatch.setattr(threshold_module, "_WINDOW_SIGMAS", 50.0)
    generator = torch.Generator().manual_seed(9)
    values = [curvature_like(generator, 1001), curvature_like(generator, 96)]
    assert_exact(values, ranks_of(1097))


@pytest.fixture
def pieces_seen(monkeypatch):
    """The number of pieces each bracket of the windowed search was drawn from."""
    seen = []
    bracket = threshold_module._bracket

    def spied_bracket(xp, pieces, total, k):
        seen.append(len(pieces))
        return bracket(xp, pieces, total, k)

    monkeypatch.setattr(threshold_module, "_bracket", spied_bracket)
    return seen


def test_many_tiny_tensors_beside_a_large_one_are_ranked_as_one_piece(tiny_windows, pieces_seen):
    generator = torch.Generator().manual_seed(10)
    values = [curvature_like(generator, n) for n in [3, 1, 0, 2, 5, 4] * 30]
    values.append(curvature_like(generator, 900))
    assert_exact(values, ranks_of(900 + 30 * 15))
    assert pieces_seen and pieces_seen[0] == 2


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 64, 70])
@pytest.mark.parametrize("bounds", [(0.3, 0.6), (None, 0.4), (0.7, None), (0.5, 0.5), (0.02, 0.98)])
def test_window_members_are_found_word_by_word_with_a_tail(n, bounds):
    generator = torch.Generator().manual_seed(n)
    base = torch.rand(2 * n, generator=generator)
    base[::5] = 0.5
    for v in (base[:n], base[::2]):  # contiguous and strided
        lower, upper = (None if b is None else torch.tensor(b) for b in bounds)
        under = v < lower if lower is not None else None
        at_most = v <= upper if upper is not None else None
        members = threshold_module._members(array_api_compat.torch, v, under, at_most)
        inside = torch.ones_like(v, dtype=torch.bool)
        if lower is not None:
            inside &= v >= lower
        if upper is not None:
            inside &= v <= upper
        assert torch.equal(members.sort().values, v[inside].sort().values)


def test_window_members_across_words_come_in_the_order_of_the_tensor():
    v = torch.arange(8 * 1000 + 3, dtype=torch.float32).flip(0)
    lower, upper = torch.tensor(3998.0), torch.tensor(4009.0)
    members = threshold_module._members(array_api_compat.torch, v, v < lower, v <= upper)
    assert members.tolist() == [float(x) for x in range(4009, 3997, -1)]


@pytest.mark.parametrize("layout", ["end to end", "with a gap", "out of order", "other storage"])
def test_views_lying_end_to_end_in_one_buffer_are_ranked_as_one_tensor(tiny_windows, layout,
                                                                       pieces_seen):
    generator = torch.Generator().manual_seed(12)
    sizes = [300, 0, 41, 500, 7]
    buffer = curvature_like(generator, sum(sizes) + 9)
    values, offset = [], 0
    for n in sizes:
        values.append(buffer[offset : offset + n])
        offset += n + (3 if layout == "with a gap" and n else 0)
    if layout == "out of order":
        values = values[::-1]
    if layout == "other storage":
        values[-1] = values[-1].clone()
    assert_exact([v.reshape(-1) for v in values], ranks_of(sum(sizes)))
    assert (pieces_seen[0] == 1) == (layout == "end to end")
