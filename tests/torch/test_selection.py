"""ire_torch.selection: the exact threshold's two searches, the windowed one
and the histograms of bit patterns, and the mask its search writes: on large
tensors, and with their sizes shrunk on tiny ones, against ``kthvalue`` over
all values."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_cases import large_values

import ire_core
from ire_core.threshold import SampledThreshold
from ire_torch import AdamWIRE, _bit_histograms, selection
from ire_torch._bit_histograms import kth_smallest, member_positions


@pytest.mark.parametrize("fraction", [1e-5, 0.3, 0.6, 0.99999])
def test_windowed_exact_threshold_matches_a_full_sort(fraction):
    values = large_values(0, 3 << 18)
    everything = torch.cat(values)
    k = int(fraction * everything.numel())
    assert selection.exact_threshold(values, k).item() == everything.sort().values[k - 1].item()


@pytest.mark.parametrize("fraction", [1e-5, 0.6, 0.999])
def test_the_mask_written_by_the_search_marks_every_value_up_to_the_kth(fraction):
    values = large_values(4, 3 << 18)
    values[1] = values[1].reshape(-1, 8)
    result = selection.select_flat_mask(values, fraction)
    k = int(fraction * (3 << 18))
    tau = torch.cat([v.reshape(-1) for v in values]).sort().values[k - 1]
    assert result.threshold.item() == tau.item()
    for m, v in zip(result.mask, values):
        assert m.shape == v.shape and torch.equal(m, v <= tau)
    assert int(result.flat_count) == sum(int((v <= tau).sum()) for v in values)


def test_a_window_that_misses_the_kth_value_falls_back_to_the_exact_answer(monkeypatch):
    values = large_values(3, 1 << 18)
    everything = torch.cat(values)
    k = int(0.4 * everything.numel())
    # A sample of the largest values only: its bracket lies far above the k-th value.
    monkeypatch.setattr(selection, "_spread_sample",
                        lambda v, size: v.sort().values[-max(1, v.numel() // 8):])
    assert selection.exact_threshold(values, k).item() == everything.sort().values[k - 1].item()


def test_masks_written_through_float_slices_match_a_plain_comparison(monkeypatch):
    monkeypatch.setattr(selection, "_PASS_SIZE", 16)
    generator = torch.Generator().manual_seed(13)
    values = [torch.rand(10, 10, generator=generator).T, torch.rand(7, generator=generator),
              torch.zeros(0), torch.rand(33, generator=generator, dtype=torch.float64)]
    for tau in (torch.tensor(0.3), 0.55, torch.tensor(0.0), torch.tensor(float("inf"))):
        mask, count = selection._mask_at_most(values, tau)
        for m, v in zip(mask, values):
            assert m.dtype == torch.bool and torch.equal(m, v <= tau)
        assert count == sum(int((v <= tau).sum()) for v in values)
    result = selection.select_flat_mask(values, 0.4, threshold_fn=SampledThreshold(sample=64))
    assert all(torch.equal(m, v <= result.threshold) for m, v in zip(result.mask, values))
    assert int(result.flat_count) == sum(int(m.sum()) for m in result.mask)


# -- the windowed exact threshold on tiny inputs --------------------------------------


@pytest.fixture
def tiny_windows(monkeypatch):
    """The windowed search from 32 values on, with samples of a few values and
    passes over slices of 40 values, so that brackets, slices, words, tails
    and fallbacks all occur on small tensors (no histograms)."""
    monkeypatch.setattr(selection, "_WINDOW_MIN_SIZE", 32)
    monkeypatch.setattr(selection, "_HISTOGRAM_MAX_SIZE", 0)
    monkeypatch.setattr(selection, "_PASS_SIZE", 40)
    monkeypatch.setattr(selection, "_WINDOW_SAMPLE", 64)
    monkeypatch.setattr(selection, "_WINDOW_SAMPLE_RATIO", 4)
    monkeypatch.setattr(selection, "_PIECE_MIN_SIZE", 16)


@pytest.fixture(params=["window", "histograms"])
def tiny_searches(request, monkeypatch):
    """Either search from 32 values on: the windowed one as in
    :func:`tiny_windows`, or the histograms (float32 values), with the mask
    written over slices of 40 values."""
    request.getfixturevalue("tiny_windows")
    if request.param == "histograms":
        monkeypatch.setattr(selection, "_HISTOGRAM_MAX_SIZE", 1 << 21)
        monkeypatch.setattr(selection, "_HISTOGRAM_PASS_SIZE", 40)
    return request.param


def kth_of_everything(values, k):
    everything = torch.cat([v.reshape(-1) for v in values])
    if k <= 0:
        return float("inf")
    return everything.kthvalue(min(k, everything.numel())).values.item()


def assert_exact(values, ranks):
    """``exact_threshold`` and ``_flat_mask`` against ``kthvalue`` over
    everything, for each rank."""
    originals = [v.clone() for v in values]
    for k in ranks:
        expected = kth_of_everything(values, k)
        tau = selection.exact_threshold(values, k)
        assert tau.dtype == values[0].dtype
        assert tau.untyped_storage().nbytes() == tau.element_size()  # kept: must hold no more
        assert tau.item() == expected, k
        if k >= 1:
            mask, tau, count = selection._flat_mask(values, k)
            assert tau.item() == expected, k
            for m, v in zip(mask, values):
                assert m.dtype == torch.bool and m.shape == v.shape
                assert torch.equal(m, v <= tau), k
            assert count is None or count == sum(int(m.sum()) for m in mask), k
    assert all(torch.equal(v, o) for v, o in zip(values, originals))  # read, never written


def ranks_of(n):
    return sorted({-1, 0, 1, 2, n // 7, n // 3, n // 2, (3 * n) // 5, n - 2, n - 1, n, n + 5})


def curvature_like(generator, n, dtype=torch.float32):
    return (torch.rand(n, generator=generator, dtype=torch.float64) ** 2).to(dtype)


@pytest.mark.parametrize("sizes", [(1000,), (1003, 5, 0, 417), (9,) * 7 + (600,), (7,) * 40])
def test_searched_threshold_is_exact_for_any_sizes_and_ranks(tiny_searches, sizes):
    generator = torch.Generator().manual_seed(sum(sizes))
    values = [curvature_like(generator, n) for n in sizes]
    assert_exact(values, ranks_of(sum(sizes)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_searched_threshold_is_exact_in_every_float_dtype(tiny_searches, dtype):
    generator = torch.Generator().manual_seed(5)
    values = [curvature_like(generator, n, dtype) for n in (611, 250, 3)]
    assert_exact(values, ranks_of(864))


def test_searched_threshold_of_strided_and_multi_dimensional_tensors(tiny_searches):
    generator = torch.Generator().manual_seed(6)
    base = curvature_like(generator, 2 * 501)
    matrix = curvature_like(generator, 40 * 31).reshape(40, 31).T  # not contiguous
    values = [base[::2], matrix]
    assert not values[0].is_contiguous() and not values[1].is_contiguous()
    assert_exact(values, ranks_of(501 + 1240))


@pytest.mark.parametrize("block", [0.0, 0.5, float("inf")])
def test_searched_threshold_is_exact_on_large_blocks_of_ties(tiny_searches, block):
    generator = torch.Generator().manual_seed(7)
    values = [curvature_like(generator, 700), curvature_like(generator, 301)]
    values[0][:350] = block  # k = n/2 and nearby ranks fall inside the block for 0 and 0.5
    values[1][-100:] = block
    assert_exact(values, ranks_of(1001) + [200, 300, 400, 449, 450, 451])


def test_a_bracket_of_equal_ends_is_counted_not_searched(tiny_windows, monkeypatch):
    # A sample of 500 values, itself ranked by one kthvalue.
    monkeypatch.setattr(selection, "_WINDOW_MIN_SIZE", 600)
    monkeypatch.setattr(selection, "_WINDOW_SAMPLE", 1024)
    monkeypatch.setattr(selection, "_WINDOW_SAMPLE_RATIO", 2)
    values = [torch.zeros(500), torch.ones(501)]
    searched = []
    monkeypatch.setattr(_bit_histograms, "member_positions",
                        lambda *args: searched.append(args) or torch.zeros(0, dtype=torch.int64))
    assert selection.exact_threshold(values, 300).item() == 0.0
    assert selection.exact_threshold(values, 800).item() == 1.0
    mask, tau, count = selection._flat_mask(values, 300)
    assert tau.item() == 0.0 and count == 500 and torch.equal(mask[0], torch.ones(500, dtype=torch.bool))
    assert not mask[1].any()
    assert searched == []


def numpy_selection(values, fraction):
    result = ire_core.select_flat_mask([v.numpy() for v in values], fraction)
    return [torch.from_numpy(np.asarray(m)) for m in result.mask], float(result.threshold)


@pytest.mark.parametrize("position", [0, 5, 77, 130, 299, 511, 600])
@pytest.mark.parametrize("bad", [float("nan"), -0.5, -float("inf")])
def test_a_value_that_is_not_a_magnitude_anywhere_is_ranked_by_its_magnitude(
        tiny_searches, position, bad):
    generator = torch.Generator().manual_seed(position)
    values = [curvature_like(generator, 300), curvature_like(generator, 301).reshape(7, 43)]
    target, at = (values[0], position) if position < 300 else (values[1], position - 300)
    target.view(-1)[at] = bad
    for fraction in (0.1, 0.5, 0.9):
        expected, tau = numpy_selection(values, fraction)
        result = selection.select_flat_mask(values, fraction)
        assert result.threshold.item() == tau
        for m, e in zip(result.mask, expected):
            assert torch.equal(m, e)
        assert int(result.flat_count) == sum(int(e.sum()) for e in expected)


def test_searched_magnitudes_are_checked_without_a_pass_of_their_own(tiny_searches, monkeypatch):
    passes = []
    magnitudes = selection.host_magnitudes
    monkeypatch.setattr(selection, "host_magnitudes",
                        lambda xp, curvatures: passes.append(1) or magnitudes(xp, curvatures))
    generator = torch.Generator().manual_seed(14)
    clean = [curvature_like(generator, 500), curvature_like(generator, 90)]
    selection.select_flat_mask(clean, 0.4)
    assert passes == []
    signed = [v - 0.5 for v in clean]  # negative values in any sample
    result = selection.select_flat_mask(signed, 0.4)
    assert passes == [1]
    expected, _ = numpy_selection(signed, 0.4)
    assert all(torch.equal(m, e) for m, e in zip(result.mask, expected))


def test_values_none_of_them_finite_keep_the_previous_mask(tiny_searches):
    values = [torch.full((200,), float("inf")), torch.full((50,), float("nan"))]
    previous = [torch.rand(200) < 0.5, torch.rand(50) < 0.5]
    result = selection.select_flat_mask(values, 0.5, previous=previous)
    assert all(m is p for m, p in zip(result.mask, previous))
    assert result.threshold.item() == float("inf")


def test_all_equal_values(tiny_searches):
    values = [torch.full((300,), 2.5), torch.full((5,), 2.5)]
    assert_exact(values, ranks_of(305))


@pytest.mark.parametrize("side", ["largest", "smallest"])
def test_a_bracket_that_misses_on_either_side_falls_back_to_the_exact_answer(
        tiny_windows, monkeypatch, side):
    generator = torch.Generator().manual_seed(8)
    values = [curvature_like(generator, 803), curvature_like(generator, 200)]

    def biased_sample(v, size):
        ordered = v.sort().values
        picked = max(1, v.numel() // 8)
        return ordered[-picked:] if side == "largest" else ordered[:picked]

    monkeypatch.setattr(selection, "_spread_sample", biased_sample)
    assert_exact(values, [100, 501, 900])


def test_a_bracket_that_misses_once_is_drawn_again_twice_as_wide(tiny_windows, monkeypatch):
    generator = torch.Generator().manual_seed(15)
    values = [curvature_like(generator, 700), curvature_like(generator, 301)]
    bracket, sigmas = selection._bracket, []

    def missing_first(sample, total, k, wide):
        sigmas.append(wide)
        if len(sigmas) == 1:  # the largest sampled value twice: far above rank k
            return sample.max(), sample.max()
        return bracket(sample, total, k, wide)

    monkeypatch.setattr(selection, "_bracket", missing_first)
    monkeypatch.setattr(selection, "_by_kthvalue", None)  # must not be reached
    mask, tau, count = selection._flat_mask(values, 400)
    assert tau.item() == kth_of_everything(values, 400)
    assert all(torch.equal(m, v <= tau) for m, v in zip(mask, values))
    assert count == 400
    assert sigmas[:2] == [selection._WINDOW_SIGMAS, 2 * selection._WINDOW_SIGMAS]


def test_a_wide_bracket_still_selects_exactly(tiny_windows, monkeypatch):
    monkeypatch.setattr(selection, "_WINDOW_SIGMAS", 50.0)
    generator = torch.Generator().manual_seed(9)
    values = [curvature_like(generator, 1001), curvature_like(generator, 96)]
    assert_exact(values, ranks_of(1097))


@pytest.fixture
def pieces_seen(monkeypatch):
    """The number of pieces each sample of the windowed search was drawn from."""
    seen = []
    sample = selection._sample

    def spied_sample(pieces, total):
        seen.append(len(pieces))
        return sample(pieces, total)

    monkeypatch.setattr(selection, "_sample", spied_sample)
    return seen


def test_many_tiny_tensors_beside_a_large_one_are_ranked_as_one_piece(tiny_windows, pieces_seen):
    generator = torch.Generator().manual_seed(10)
    values = [curvature_like(generator, n) for n in [3, 1, 0, 2, 5, 4] * 30]
    values.append(curvature_like(generator, 900))
    assert_exact(values, ranks_of(900 + 30 * 15))
    assert pieces_seen and pieces_seen[0] == 2


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 64, 70])
@pytest.mark.parametrize("density", [0.0, 0.03, 0.3, 0.9, 1.0])
def test_window_members_are_found_word_by_word_with_a_tail(n, density):
    generator = torch.Generator().manual_seed(n)
    window = torch.rand(n, generator=generator) < density
    window[::7] = density > 0.5  # runs of equal words among the random ones
    positions = member_positions(window)
    assert positions.dtype == torch.int64
    assert positions.tolist() == torch.nonzero(window)[:, 0].tolist()  # in increasing order


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


# -- the k-th smallest from histograms of the bit patterns ---------------------------


def float32_patterns(generator, n):
    """Non-negative float32 values drawn uniformly over their bit patterns
    (subnormals, every binade, +inf), with -0.0, +0.0 and ties mixed in."""
    patterns = torch.randint(0, 0x7F800001, (n,), generator=generator, dtype=torch.int32)
    values = patterns.view(torch.float32).clone()
    values[::11] = -0.0
    values[::13] = 0.0
    values[::17] = values[n // 2]
    return values


@pytest.fixture(params=["kthvalue", "histogram"])
def bucket_ranking(request, monkeypatch):
    """How the histograms rank the k-th value's bucket: by ``kthvalue`` (a
    bucket of a few values), or by a second histogram (every bucket)."""
    if request.param == "histogram":
        monkeypatch.setattr(selection, "_BUCKET_KTHVALUE_MAX_SIZE", 0)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the same for every example
@given(seed=st.integers(0, 2**16), sizes=st.lists(st.integers(1, 700), min_size=1, max_size=4),
       fraction=st.floats(0, 1))
def test_histograms_give_the_kth_smallest_of_any_float32_patterns(bucket_ranking, seed, sizes,
                                                                 fraction):
    generator = torch.Generator().manual_seed(seed)
    pieces = [float32_patterns(generator, n) for n in sizes]
    everything = torch.cat(pieces)
    k = max(1, round(fraction * everything.numel()))
    tau = kth_smallest(pieces, k, selection._BUCKET_KTHVALUE_MAX_SIZE)
    assert tau.dtype == torch.float32 and tau.shape == ()
    assert tau.item() == everything.kthvalue(k).values.item()


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_histograms_split_ties_and_neighbours_across_both_digits(bucket_ranking, k):
    one = torch.tensor(1.0).view(torch.int32).item()
    patterns = [one, one, one + 1, one + (1 << 16), 0, 0x7F800000]  # a tie, a low and an upper step
    values = torch.tensor(patterns, dtype=torch.int32).view(torch.float32)
    strided = torch.stack([values, torch.full_like(values, 9.0)], 1)[:, 0]  # not contiguous
    expected = values.sort().values[k - 1].item()
    assert kth_smallest([strided], k, selection._BUCKET_KTHVALUE_MAX_SIZE).item() == expected


def test_float32_values_on_the_cpu_are_ranked_by_histograms_up_to_their_limit(monkeypatch):
    ranked, windows = [], []
    kth_smallest, window_search = _bit_histograms.kth_smallest, selection._window_search
    monkeypatch.setattr(_bit_histograms, "kth_smallest",
                        lambda pieces, k, *args: ranked.append(k) or kth_smallest(pieces, k, *args))
    monkeypatch.setattr(selection, "_window_search",
                        lambda pieces, n, *args, **kwargs: windows.append(n)
                        or window_search(pieces, n, *args, **kwargs))
    generator = torch.Generator().manual_seed(16)
    values = [curvature_like(generator, 1 << 16), curvature_like(generator, 300)]
    n = (1 << 16) + 300
    assert_exact(values, [1, 40000, n])
    assert ranked == [1, 1, 40000, 40000, n, n] and windows == []  # threshold, then mask
    ranked.clear()
    assert_exact([v.double() for v in values], [40000])
    assert ranked == [] and windows == [n, n]
    monkeypatch.setattr(selection, "_HISTOGRAM_MAX_SIZE", 1 << 16)
    windows.clear()
    assert_exact(values, [40000])
    assert windows == [n, n]


@pytest.mark.parametrize("bad", [-0.5, float("nan")])
def test_values_that_are_not_magnitudes_are_ranked_by_comparisons(bad, monkeypatch):
    monkeypatch.setattr(_bit_histograms, "kth_smallest", None)  # must not be reached
    generator = torch.Generator().manual_seed(17)
    values = [curvature_like(generator, 1 << 16)]
    values[0][123] = bad
    finite = values[0][~values[0].isnan()]
    for k in (1, 2, 40000):
        assert selection.exact_threshold(values, k).item() == finite.kthvalue(k).values.item()


# -- the contract of ire_core.select_flat_mask, and the optimizer's default -----------


def test_an_array_fraction_takes_the_cores_rule():
    values = large_values(5, 1 << 12)
    gamma = torch.tensor(0.45, dtype=torch.float64)
    got = selection.select_flat_mask(values, gamma)
    expected = ire_core.select_flat_mask(values, gamma)
    assert all(torch.equal(a, b) for a, b in zip(got.mask, expected.mask))
    assert got.threshold.item() == expected.threshold.item()
    assert got.flat_count.dtype == expected.flat_count.dtype
    assert int(got.flat_count) == int(expected.flat_count) == int(0.45 * (1 << 12))
    third = torch.cat(values).sort().values[2].item()
    assert selection.exact_threshold(values, torch.tensor(3)).item() == third


def test_no_curvature_is_refused_as_by_the_core():
    with pytest.raises(ValueError, match="at least one tensor"):
        selection.select_flat_mask([], 0.5)


def test_the_cores_exact_threshold_is_searched_as_the_torch_one(monkeypatch):
    searched = []
    flat_mask = selection._flat_mask
    monkeypatch.setattr(selection, "_flat_mask",
                        lambda *args, **kwargs: searched.append(1) or flat_mask(*args, **kwargs))
    values = large_values(6, 1 << 17)
    got = selection.select_flat_mask(values, 0.3, threshold_fn=ire_core.exact_threshold)
    expected = selection.select_flat_mask(values, 0.3)
    assert searched == [1, 1]
    assert all(torch.equal(a, b) for a, b in zip(got.mask, expected.mask))
    assert got.flat_count.dtype == expected.flat_count.dtype
    assert int(got.flat_count) == int(expected.flat_count)


def test_the_optimizer_selects_with_the_torch_selection(monkeypatch):
    from ire_torch import IRE
    from ire_torch import optimizer as optimizer_module

    calls = []
    select = selection.select_flat_mask
    monkeypatch.setattr(optimizer_module, "select_flat_mask",
                        lambda *args, **kwargs: calls.append(kwargs) or select(*args, **kwargs))
    model = torch.nn.Linear(4, 3)
    opt = IRE(torch.optim.SGD(model.parameters(), lr=0.1), kappa=1.0, flat_fraction=0.5)
    model(torch.randn(8, 4)).square().mean().backward()
    opt.step()
    assert [c["threshold_fn"] for c in calls] == [selection.exact_threshold]
    assert opt.mask_stats().flat_count == int(0.5 * 15)


def test_a_sampled_threshold_ranks_its_sample_with_the_torch_search(monkeypatch):
    calls = []
    search = selection._kth_smallest
    monkeypatch.setattr(selection, "_kth_smallest",
                        lambda values, k: calls.append(k) or search(values, k))
    param = torch.nn.Parameter(torch.ones(1000))
    opt = AdamWIRE([param], lr=0.1, flat_fraction=0.5,
                   threshold_fn=SampledThreshold(sample=64))
    param.grad = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    opt.step()
    assert calls == [32]  # the sample's rank ⌈k·m/N⌉, ranked by ire_torch's search
    assert abs(opt.mask_stats().flat_count - 500) < 200
