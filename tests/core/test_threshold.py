"""Threshold functions: the exact k-th smallest and the histogram selection."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ire_core import HistogramThreshold, exact_threshold, select_flat_mask
from ire_core.threshold import SampledThreshold


def heavy_tailed(seed, n, zeros=0.05, infinities=0.01):
    rng = np.random.default_rng(seed)
    values = np.abs(rng.standard_cauchy(n)) ** 3
    values[rng.random(n) < zeros] = 0.0
    values[rng.random(n) < infinities] = np.inf
    return [values[: n // 3], values[n // 3 :]]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 3000), fraction=st.floats(0, 1))
def test_exact_threshold_is_the_kth_smallest(seed, n, fraction):
    values = heavy_tailed(seed, n)
    k = int(fraction * n)
    expected = np.sort(np.concatenate(values))[k - 1] if k > 0 else np.inf
    assert float(exact_threshold(values, k)) == expected
    assert float(exact_threshold(values, np.asarray(k))) == expected


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 3000), fraction=st.floats(0, 1))
def test_histogram_selects_the_exact_count_up_to_ties(seed, n, fraction):
    values = heavy_tailed(seed, n)
    everything = np.concatenate(values)
    k = int(fraction * n)
    tau = float(HistogramThreshold()(values, k))
    if k == 0:
        assert tau == np.inf
        return
    exact = np.sort(everything)[k - 1]
    selected = int((everything <= tau).sum())
    # At least k are selected; any more are ties with the exact threshold.
    assert selected >= k
    assert selected == int((everything <= exact).sum()) or tau == exact


def test_histogram_merged_across_processes_matches_a_single_process():
    values = heavy_tailed(1, 10_000)
    shards = [[v[: v.size // 2] for v in values], [v[v.size // 2 :] for v in values]]
    combine = {"sum": np.add, "min": np.minimum, "max": np.maximum}
    barrier = threading.Barrier(2)
    mailbox = [None, None]

    def reducer(rank):
        def reduce(value, op):
            mailbox[rank] = value
            barrier.wait()
            merged = combine[op](mailbox[0], mailbox[1])
            barrier.wait()
            return merged

        return reduce

    results = [None, None]

    def work(rank):
        results[rank] = float(HistogramThreshold(reduce=reducer(rank))(shards[rank], 6000))

    threads = [threading.Thread(target=work, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    single = float(HistogramThreshold()(values, 6000))
    assert results == [single, single]
    assert single == float(exact_threshold(values, 6000))


def test_histogram_threshold_plugs_into_mask_selection():
    values = heavy_tailed(2, 5000)
    exact = select_flat_mask(values, 0.6)
    approx = select_flat_mask(values, 0.6, threshold_fn=HistogramThreshold())
    assert int(approx.flat_count) == int(exact.flat_count)


@pytest.mark.parametrize("bins, rounds, name", [(1, 3, "bins"), (16, 0, "rounds")])
def test_histogram_arguments_are_validated(bins, rounds, name):
    with pytest.raises(ValueError, match=name):
        HistogramThreshold(bins=bins, rounds=rounds)


# -- SampledThreshold ----------------------------------------------------------


def test_sampled_threshold_is_exact_when_the_model_fits_in_the_sample():
    values = heavy_tailed(3, 2000)
    for k in (0, 1, 700, 2000):
        expected = exact_threshold(values, k)
        assert float(SampledThreshold(sample=4096)(values, k)) == float(expected)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("fraction", [0.1, 0.6, 0.9])
def test_sampled_threshold_flat_count_is_within_the_sampling_error(seed, fraction):
    rng = np.random.default_rng(seed)
    # Rows of very different scale: a sample that lined up with them would be biased.
    values = [rng.lognormal(size=(300, 250)) * np.logspace(-3, 3, 250)[None, :],
              rng.exponential(size=40_000), np.zeros(5_000)]
    total = sum(v.size for v in values)
    k = int(fraction * total)
    sample = 8192
    tau = SampledThreshold(sample=sample)(values, k)
    count = sum(int((v <= tau).sum()) for v in values)
    sigma = np.sqrt(fraction * (1 - fraction) / sample) * total
    assert abs(count - k) <= 5 * sigma + total / sample


def test_sampled_threshold_in_select_flat_mask_with_an_array_fraction():
    values = [np.random.default_rng(5).lognormal(size=(400, 300))]
    threshold = SampledThreshold(sample=2048)
    eager = select_flat_mask(values, 0.3, threshold_fn=threshold)
    traced = select_flat_mask(values, np.asarray(0.3, dtype=np.float32), threshold_fn=threshold)
    assert int(traced.flat_count) == int(eager.flat_count)
    assert abs(int(eager.flat_count) - 36_000) < 2_000
    assert float(threshold(values, 0)) == np.inf


def test_sampled_threshold_ignores_non_finite_values_and_is_deterministic():
    values = heavy_tailed(11, 60_000)
    threshold = SampledThreshold(sample=1024)
    first, second = threshold(values, 20_000), threshold(values, 20_000)
    assert np.isfinite(first) and first == second


@pytest.mark.parametrize("sample", [0, -3, 2.5, True])
def test_sampled_threshold_rejects_bad_sample_sizes(sample):
    with pytest.raises(ValueError, match="sample must be an integer >= 1"):
        SampledThreshold(sample=sample)


def test_sampled_threshold_ranks_its_sample_with_rank_fn():
    values = heavy_tailed(13, 60_000)
    ranked = []

    def rank_fn(sample, k):
        ranked.append((sum(s.size for s in sample), k))
        return exact_threshold(sample, k)

    for k in (1, 20_000, np.asarray(20_000)):
        assert float(SampledThreshold(1024, rank_fn=rank_fn)(values, k)) == float(
            SampledThreshold(1024)(values, k))
    assert [size for size, _ in ranked] == [1024, 1024, 1024]
    SampledThreshold(1 << 20, rank_fn=rank_fn)(values, 5)  # the whole model fits
    assert ranked[-1] == (sum(v.size for v in values), 5)


def test_sampled_threshold_rejects_a_rank_fn_that_is_not_callable():
    with pytest.raises(ValueError, match="rank_fn must be a callable .* got 'sort'"):
        SampledThreshold(rank_fn="sort")
