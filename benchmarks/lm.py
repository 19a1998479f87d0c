"""Training a :class:`~benchmarks.llama.TinyLlama` with AdamW or AdamW + IRE.

Both runs of a comparison share everything but the optimizer: the same
initial weights (``seed``), the same batches in the same order, the same
warm-up + cosine learning-rate schedule. IRE is switched on when warm-up ends
(``start_step = warmup``), as in the paper's Llama runs.

Example:
  >>> from benchmarks.lm_config import LlamaConfig
  >>> setup = LMSetup(model=LlamaConfig(dim=16, layers=1, heads=2, seq_len=8),
  ...                 steps=4, batch_size=2, warmup=2, eval_every=2, eval_windows=2)
  >>> result = train_language_model(setup, load_corpus(), progress=False)
  >>> result.label, result.eval_steps
  ('AdamW', [0, 2, 4])
"""

from __future__ import annotations

import torch

from .llama import TinyLlama, language_model_loss
from .lm_config import IRESettings, LMSetup, RunResult, run_training
from .schedules import warmup_cosine
from .text import Corpus, evaluation_windows, load_corpus

__all__ = ["evaluate", "make_optimizer", "train_language_model"]


def make_optimizer(model: torch.nn.Module, setup: LMSetup, ire: IRESettings | None):
    """AdamW, or ``ire_torch.AdamWIRE`` starting after warm-up."""
    if ire is None:
        return torch.optim.AdamW(
            model.parameters(), lr=setup.peak_lr, weight_decay=setup.weight_decay
        )
    from ire_torch import AdamWIRE

    return AdamWIRE(
        model.parameters(),
        lr=setup.peak_lr,
        weight_decay=setup.weight_decay,
        kappa=ire.kappa,
        flat_fraction=ire.flat_fraction,
        interval=ire.interval,
        start_step=setup.warmup,
        estimator=ire.estimator,
        kappa_follows_lr=ire.kappa_follows_lr,
        peak_lr=setup.peak_lr,
        seed=setup.seed,
    )


@torch.no_grad()
def evaluate(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cross-entropy of ``model`` on fixed windows, in eval mode."""
    model.eval()
    loss = language_model_loss(model(inputs), targets).item()
    model.train()
    return loss


def train_language_model(
    setup: LMSetup,
    corpus: Corpus | None = None,
    ire: IRESettings | None = None,
    *,
    progress: bool = True,
    position: int = 0,
) -> RunResult:
    """Trains a fresh model with AdamW (``ire=None``) or AdamW + IRE.

    Args:
      setup: model, data and schedule.
      corpus: the text (default: :func:`~benchmarks.text.load_corpus`).
      ire: the IRE settings, or ``None`` for plain AdamW.
      progress: show a ``tqdm`` progress bar.
      position: the bar's line (for several bars).

    Returns:
      A :class:`RunResult`.
    """
    corpus = load_corpus() if corpus is None else corpus
    label = "AdamW" if ire is None else ire.label
    torch.manual_seed(setup.seed)
    model = TinyLlama(setup.model)
    optimizer = make_optimizer(model, setup, ire)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: warmup_cosine(t, setup.steps, setup.warmup, setup.lr_floor)
    )
    val_x, val_y = (torch.from_numpy(a) for a in
                    evaluation_windows(corpus.val, setup.model.seq_len, setup.eval_windows))

    def train_step(inputs, targets) -> float:
        loss = language_model_loss(model(inputs), targets)
        loss.backward()
        if ire is None:
            optimizer.step()
        else:  # the model's logits feed the ``fisher`` estimator on refresh steps
            optimizer.step(logits_fn=lambda: model(inputs))
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        return loss.item()

    return run_training(setup, corpus.train, label, train_step,
                        lambda: evaluate(model, val_x, val_y), convert=torch.from_numpy,
                        progress=progress, position=position)
