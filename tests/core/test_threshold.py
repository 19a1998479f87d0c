"""Threshold functions: the exact k-th smallest and the histogram selection."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ire_core import HistogramThreshold, exact_threshold, select_flat_mask


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
