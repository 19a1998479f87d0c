"""The README's Keras example runs as written on the session's Keras backend
and really trains with IRE."""

import keras
from readme import run_block

import ire_keras


def test_keras_example_runs_as_written():
    keras.utils.set_random_seed(0)
    namespace = run_block("Keras 3")
    model = namespace["model"]
    optimizer = model.optimizer
    assert isinstance(optimizer, ire_keras.IRE)
    history = model.history.history
    assert history["loss"][-1] < history["loss"][0]
    assert int(optimizer.refresh_count.numpy()) >= 1
    assert 0.55 <= float(optimizer.mask_flat_fraction.numpy()) <= 0.65
