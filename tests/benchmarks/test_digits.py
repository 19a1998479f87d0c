"""load_digits: SGD/SAM ± IRE, accuracy and Hessian trace (quick mode)."""

import re

import pytest
import torch

from benchmarks import digits

QUICK = digits.DigitsSetup(epochs=4, trace_probes=4)


@pytest.fixture(scope="module")
def data():
    return digits.load_splits(seed=0)


@pytest.fixture(scope="module")
def sgd_pair(data):
    torch.set_num_threads(1)
    return (digits.train_digits("SGD", 0.05, 0, data, QUICK),
            digits.train_digits("SGD-IRE", 0.05, 0, data, QUICK))


def test_splits_are_disjoint_stratified_and_scaled(data):
    train, val, test = data.train, data.val, data.test
    assert len(train[1]) == 1000 and len(val[1]) == 300 and len(test[1]) == 497
    assert float(train[0].max()) == 1.0 and float(train[0].min()) == 0.0
    rows = {tuple(x.flatten().tolist()) for x in test[0]}
    overlap = sum(tuple(x.flatten().tolist()) in rows for x in train[0])
    assert overlap < 5  # load_digits holds a few exact duplicate images
    counts = torch.bincount(train[1], minlength=10)
    assert int(counts.min()) >= 95 and int(counts.max()) <= 105


def test_quick_training_learns_and_ire_ends_flatter(sgd_pair):
    sgd, sgd_ire = sgd_pair
    for result in sgd_pair:
        assert result.test_accuracy > 0.85
        assert result.train_losses[-1] < 0.5 * result.train_losses[0]
    assert sgd_ire.hessian_trace < sgd.hessian_trace


def test_ire_changes_nothing_before_it_starts(sgd_pair):
    sgd, sgd_ire = sgd_pair
    start = int(QUICK.ire_start * len(sgd.train_losses))
    assert sgd.train_losses[: start + 1] == sgd_ire.train_losses[: start + 1]
    assert sgd.train_losses[-1] != sgd_ire.train_losses[-1]


def test_unknown_method_is_rejected(data):
    with pytest.raises(ValueError, match="method must be one of"):
        digits.train_digits("Adam", 0.1, 0, data, QUICK)


def test_quick_main_writes_table_and_plot(tmp_path, capsys):
    assert digits.main(["--quick", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "digits.md").read_text()
    for method in digits.METHODS:
        assert re.search(rf"^\| {method} +\| 0.05 +\| \d+\.\d\d ± 0\.00", table, re.MULTILINE)
    assert (tmp_path / "digits_loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "Training losses:" in capsys.readouterr().out
