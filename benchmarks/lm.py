"""Training a :class:`~benchmarks.llama.TinyLlama` with AdamW or AdamW + IRE.

Both runs of a comparison share everything but the optimizer: the same
initial weights (``seed``), the same batches in the same order, the same
warm-up + cosine learning-rate schedule. IRE is switched on when warm-up ends
(``start_step = warmup``), as in the paper's Llama runs.

Example:
  >>> setup = LMSetup(model=LlamaConfig(dim=16, layers=1, heads=2, seq_len=8),
  ...                 steps=4, batch_size=2, warmup=2, eval_every=2, eval_windows=2)
  >>> result = train_language_model(setup, load_corpus(), progress=False)
  >>> result.label, result.eval_steps
  ('AdamW', [0, 2, 4])
"""

from __future__ import annotations

import dataclasses
import time

import torch

from .llama import LlamaConfig, TinyLlama, language_model_loss
from .schedules import warmup_cosine
from .text import Corpus, WindowSampler, evaluation_windows, load_corpus

__all__ = [
    "IRESettings",
    "LMSetup",
    "RunResult",
    "evaluate",
    "make_optimizer",
    "train_language_model",
]


@dataclasses.dataclass(frozen=True)
class LMSetup:
    """Everything of a language-model run except the optimizer.

    Attributes:
      model: the transformer's size.
      steps: optimizer steps.
      batch_size: sequences per batch (each ``model.seq_len`` bytes).
      peak_lr: AdamW's learning rate after warm-up.
      warmup: linear warm-up steps; IRE starts after them.
      lr_floor: final learning rate as a fraction of ``peak_lr``.
      weight_decay: AdamW's decoupled weight decay.
      eval_every: steps between validation evaluations.
      eval_windows: fixed validation windows (``model.seq_len`` bytes each).
      seed: initial weights and batch order.
    """

    model: LlamaConfig = LlamaConfig(dim=128, layers=2, heads=4, seq_len=64)
    steps: int = 600
    batch_size: int = 16
    peak_lr: float = 3e-3
    warmup: int = 60
    lr_floor: float = 0.1
    weight_decay: float = 0.1
    eval_every: int = 25
    eval_windows: int = 64
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "eval_windows"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.warmup <= self.steps:
            raise ValueError(f"warmup must be in [0, steps={self.steps}], got {self.warmup!r}")


@dataclasses.dataclass(frozen=True)
class IRESettings:
    """The IRE hyperparameters of a run (see ``ire_torch.AdamWIRE``).

    Attributes:
      kappa: amplification κ on flat coordinates.
      flat_fraction: fraction γ of all coordinates marked flat.
      interval: steps between mask refreshes (K).
      estimator: curvature estimator, ``"gradient"`` (g², free) or ``"fisher"``
        (squared gradient of the loss on labels sampled from the model: one
        more forward and backward pass per refresh).
      kappa_follows_lr: κ_t = κ · lr_t / lr_peak.
    """

    kappa: float = 2.0
    flat_fraction: float = 0.6
    interval: int = 10
    estimator: str = "gradient"
    kappa_follows_lr: bool = False

    @property
    def label(self) -> str:
        schedule = ", κ∝lr" if self.kappa_follows_lr else ""
        return f"AdamW+IRE (κ={self.kappa:g}, γ={self.flat_fraction:g}{schedule})"


@dataclasses.dataclass
class RunResult:
    """The record of one run.

    Attributes:
      label: name of the optimizer.
      eval_steps: steps at which the validation loss was measured.
      val_losses: validation loss (nats per byte) at ``eval_steps``.
      train_losses: training loss of every step.
      wall_time: seconds of the whole run, evaluations included.
      step_time: mean seconds per optimizer step (forward, backward, update).
    """

    label: str
    eval_steps: list
    val_losses: list
    train_losses: list
    wall_time: float
    step_time: float

    @property
    def final_val(self) -> float:
        return self.val_losses[-1]


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
    sampler = WindowSampler(corpus.train, setup.model.seq_len, setup.batch_size, setup.seed)
    val_x, val_y = evaluation_windows(corpus.val, setup.model.seq_len, setup.eval_windows)

    start = time.perf_counter()
    eval_steps, val_losses = [0], [evaluate(model, val_x, val_y)]
    train_losses, step_seconds = [], 0.0
    bar = _progress_bar(setup.steps, label, progress, position)
    for step in range(setup.steps):
        inputs, targets = sampler.next()
        tick = time.perf_counter()
        loss = language_model_loss(model(inputs), targets)
        loss.backward()
        if ire is None:
            optimizer.step()
        else:  # the model's logits feed the ``fisher`` estimator on refresh steps
            optimizer.step(logits_fn=lambda: model(inputs))
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step_seconds += time.perf_counter() - tick
        train_losses.append(loss.item())
        if (step + 1) % setup.eval_every == 0 or step + 1 == setup.steps:
            eval_steps.append(step + 1)
            val_losses.append(evaluate(model, val_x, val_y))
            if bar is not None:
                bar.set_postfix(val=f"{val_losses[-1]:.3f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return RunResult(
        label=label,
        eval_steps=eval_steps,
        val_losses=val_losses,
        train_losses=train_losses,
        wall_time=time.perf_counter() - start,
        step_time=step_seconds / setup.steps,
    )


def _progress_bar(total: int, label: str, enabled: bool, position: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, position=position, unit="step", leave=True)
