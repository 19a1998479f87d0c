"""The corpus, the tiny Llama and the training loop."""

import pytest
import torch

from benchmarks.llama import TinyLlama, language_model_loss
from benchmarks.lm import train_language_model
from benchmarks.lm_config import IRESettings, LlamaConfig, LMSetup
from benchmarks.text import WindowSampler, corpus_bytes, evaluation_windows, load_corpus

TINY = LlamaConfig(dim=16, layers=1, heads=2, seq_len=16)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


def test_corpus_is_the_pydoc_topics_split_90_10(corpus):
    data = corpus_bytes()
    assert b"The \"if\" statement" in data or b"if_stmt" in data
    assert len(corpus.train) + len(corpus.val) == len(data)
    assert abs(len(corpus.train) / len(data) - 0.9) < 1e-4
    assert corpus.val[:50].tobytes() == data[len(corpus.train):][:50]
    with pytest.raises(ValueError, match="train_fraction"):
        load_corpus(1.0)


def test_sampler_is_a_function_of_its_seed(corpus):
    a = WindowSampler(corpus.train, 8, 4, seed=3)
    b = WindowSampler(corpus.train, 8, 4, seed=3)
    c = WindowSampler(corpus.train, 8, 4, seed=4)
    xa, ya = a.next()
    xb, _ = b.next()
    xc, _ = c.next()
    assert (xa == xb).all() and not (xa == xc).all()
    assert (xa[:, 1:] == ya[:, :-1]).all() and xa.dtype == "int64"
    with pytest.raises(ValueError, match="seq_len"):
        WindowSampler(corpus.train[:5], 8, 4, seed=0)


def test_evaluation_windows_are_fixed(corpus):
    x1, _ = evaluation_windows(corpus.val, 16, 5)
    x2, _ = evaluation_windows(corpus.val, 16, 5)
    assert (x1 == x2).all() and x1.shape == (5, 16)


def test_model_is_causal_and_ties_embeddings():
    torch.manual_seed(0)
    model = TinyLlama(TINY)
    assert model.head.weight is model.embed.weight
    tokens = torch.randint(0, 256, (2, 16))
    changed = tokens.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 256
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_rotary_positions_make_attention_order_aware():
    torch.manual_seed(0)
    model = TinyLlama(TINY)
    tokens = torch.tensor([[5, 7, 9, 11]])
    with torch.no_grad():
        forward = model(tokens)[0, -1]
        reordered = model(tokens[:, [2, 1, 0, 3]])[0, -1]
    assert not torch.allclose(forward, reordered)


def test_model_config_errors_name_the_parameter():
    with pytest.raises(ValueError, match="heads"):
        LlamaConfig(dim=30, heads=4)
    with pytest.raises(ValueError, match="layers must be a positive integer"):
        LlamaConfig(layers=0)


def test_initial_loss_is_near_uniform():
    torch.manual_seed(0)
    model = TinyLlama(TINY)
    tokens, targets = torch.randint(0, 256, (2, 4, 16))
    loss = language_model_loss(model(tokens), targets)
    assert abs(loss.item() - torch.log(torch.tensor(256.0)).item()) < 0.2


def test_ire_run_shares_data_and_schedule_and_differs_only_after_warmup(corpus):
    setup = LMSetup(model=TINY, steps=12, batch_size=4, warmup=6, eval_every=6, eval_windows=4)
    base = train_language_model(setup, corpus, progress=False)
    ire = train_language_model(setup, corpus, IRESettings(kappa=2.0, interval=3), progress=False)
    # identical through warm-up (IRE starts at step 6), different afterwards
    assert base.train_losses[:7] == ire.train_losses[:7]
    assert base.val_losses[:2] == ire.val_losses[:2]
    assert base.val_losses[-1] != ire.val_losses[-1]
    assert base.eval_steps == ire.eval_steps == [0, 6, 12]


def test_training_lowers_the_validation_loss(corpus):
    setup = LMSetup(model=TINY, steps=30, batch_size=8, warmup=5, eval_every=10, eval_windows=8,
                    peak_lr=3e-3)
    result = train_language_model(setup, corpus, IRESettings(estimator="fisher"), progress=False)
    assert result.val_losses[-1] < result.val_losses[0] - 1.0
    assert result.step_time > 0 and result.wall_time > result.step_time
