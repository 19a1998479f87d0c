"""The JAX trainer of the demo (``--backend jax``)."""

import pytest

pytest.importorskip("jax", reason="the JAX backend needs jax (pip install 'ire-optim[jax]')")
pytest.importorskip("ire_jax", reason="the JAX backend needs ire_jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import lm_jax  # noqa: E402
from benchmarks.lm_config import IRESettings, LlamaConfig, LMSetup  # noqa: E402
from benchmarks.text import load_corpus  # noqa: E402

TINY = LlamaConfig(dim=16, layers=1, heads=2, seq_len=16)


def test_jax_model_is_causal():
    params = lm_jax.init_params(TINY, jax.random.PRNGKey(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 16)))
    changed = tokens.at[:, 10:].set((tokens[:, 10:] + 1) % 256)
    a, b = lm_jax.forward(params, tokens, TINY), lm_jax.forward(params, changed, TINY)
    np.testing.assert_allclose(a[:, :10], b[:, :10], atol=1e-5)
    assert not np.allclose(a[:, 10:], b[:, 10:])


def test_jax_runs_share_warmup_and_learn():
    setup = LMSetup(model=TINY, steps=24, batch_size=8, warmup=8, eval_every=8, eval_windows=8,
                   peak_lr=3e-3)
    corpus = load_corpus()
    base = lm_jax.train_language_model(setup, corpus, progress=False)
    settings = IRESettings(interval=4, estimator="fisher")
    ire = lm_jax.train_language_model(setup, corpus, settings, progress=False)
    assert base.train_losses[:9] == pytest.approx(ire.train_losses[:9], abs=1e-6)
    assert base.val_losses[-1] != ire.val_losses[-1]
    for run in (base, ire):
        assert run.val_losses[-1] < run.val_losses[0] - 0.5
