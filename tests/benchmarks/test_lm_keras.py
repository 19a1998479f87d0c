"""The Keras trainer of the demo (``--backend keras``), on Keras's configured backend."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("keras", reason="the Keras backend needs keras (pip install 'ire-optim[keras]')")
pytest.importorskip("ire_keras", reason="the Keras backend needs ire_keras")

import numpy as np  # noqa: E402

from benchmarks import lm_keras  # noqa: E402
from benchmarks.lm_config import IRESettings, LlamaConfig, LMSetup  # noqa: E402
from benchmarks.text import load_corpus  # noqa: E402

TINY = LlamaConfig(dim=16, layers=1, heads=2, seq_len=16)


def test_keras_model_is_causal():
    model = lm_keras.KerasLlama(TINY)
    tokens = np.random.default_rng(0).integers(0, 256, (2, 16))
    changed = tokens.copy()
    changed[:, 10:] = (changed[:, 10:] + 1) % 256
    a = np.asarray(model(tokens)).reshape(2, 16, 256)
    b = np.asarray(model(changed)).reshape(2, 16, 256)
    np.testing.assert_allclose(a[:, :10], b[:, :10], atol=1e-5)
    assert not np.allclose(a[:, 10:], b[:, 10:])


def test_keras_runs_share_warmup_and_learn():
    setup = LMSetup(model=TINY, steps=24, batch_size=8, warmup=8, eval_every=8, eval_windows=8,
                   peak_lr=3e-3)
    corpus = load_corpus()
    base = lm_keras.train_language_model(setup, corpus, progress=False)
    settings = IRESettings(interval=4, estimator="fisher")
    ire = lm_keras.train_language_model(setup, corpus, settings, progress=False)
    assert base.train_losses[:9] == pytest.approx(ire.train_losses[:9], abs=1e-5)
    assert base.val_losses[-1] != ire.val_losses[-1]
    for run in (base, ire):
        assert run.val_losses[-1] < run.val_losses[0] - 0.5
