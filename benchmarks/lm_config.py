"""What a language-model run is, independent of the framework that runs it.

The model's size (:class:`LlamaConfig`), the data and schedule
(:class:`LMSetup`), IRE's settings (:class:`IRESettings`), the training loop
(:func:`run_training`) and the record of a finished run (:class:`RunResult`)
are shared by the torch, JAX and Keras trainers.

Example:
  >>> LMSetup(steps=100, warmup=10).model.dim
  128
  >>> IRESettings(kappa=3.0, flat_fraction=0.5, kappa_follows_lr=True).label
  'AdamW+IRE (κ=3, γ=0.5, κ∝lr)'
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

from .text import WindowSampler

__all__ = ["IRESettings", "LMSetup", "LlamaConfig", "RunResult", "progress_bar", "run_training"]


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Size of a :class:`TinyLlama`.

    Attributes:
      vocab_size: number of token ids.
      dim: width of the residual stream.
      layers: number of transformer blocks.
      heads: attention heads (``dim`` must be a multiple, with an even head size).
      seq_len: longest sequence (length of the rotary tables).
      hidden: width of the SwiGLU layer (default: ``8/3·dim`` rounded up to 16).
      tie_embeddings: share the token embedding with the output layer.
      norm_eps: epsilon of RMSNorm.
    """

    vocab_size: int = 256
    dim: int = 128
    layers: int = 2
    heads: int = 4
    seq_len: int = 128
    hidden: int | None = None
    tie_embeddings: bool = True
    norm_eps: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "dim", "layers", "heads", "seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise ValueError(
                f"dim must be a multiple of heads with an even head size, got "
                f"dim={self.dim!r}, heads={self.heads!r}"
            )

    @property
    def ffn_hidden(self) -> int:
        if self.hidden is not None:
            return self.hidden
        return 16 * math.ceil(8 * self.dim / 3 / 16)


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
    peak_lr: float = 1.5e-3
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
    def description(self) -> str:
        """``"κ=2, γ=0.6"`` (with ``", κ∝lr"`` when κ follows the learning rate)."""
        schedule = ", κ∝lr" if self.kappa_follows_lr else ""
        return f"κ={self.kappa:g}, γ={self.flat_fraction:g}{schedule}"

    @property
    def label(self) -> str:
        """The run's name in tables and plots."""
        return f"AdamW+IRE ({self.description})"


@dataclasses.dataclass
class RunResult:
    """The record of one run.

    Attributes:
      label: name of the optimizer.
      eval_steps: steps at which the validation loss was measured.
      val_losses: validation loss (nats per byte) at ``eval_steps``.
      train_losses: training loss of every step.
      wall_time: seconds of the whole run, evaluations included.
      step_time: mean CPU seconds per optimizer step (forward, backward,
        update), in process time, so that other load on the machine does not
        distort the comparison of two runs.
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


def progress_bar(total: int, label: str, enabled: bool, position: int = 0):
    """A ``tqdm`` bar of ``total`` steps, or ``None`` when not ``enabled``."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, position=position, unit="step", leave=True)


def run_training(
    setup: LMSetup,
    train: Sequence,
    label: str,
    train_step: Callable,
    evaluate: Callable,
    *,
    convert: Callable = lambda batch: batch,
    untimed_first_step: bool = False,
    progress: bool = True,
    position: int = 0,
) -> RunResult:
    """The training loop of every trainer: batches, timing, evaluations.

    Args:
      setup: the steps, batch size, evaluation period and seed.
      train: the training bytes the batches are drawn from.
      label: the run's name.
      train_step: ``(inputs, targets) -> loss`` (a float), one optimizer step.
      evaluate: ``() -> validation loss`` (a float) at the current parameters.
      convert: turns a NumPy batch array into the framework's array, before
        the step's clock starts.
      untimed_first_step: leave step 0 out of the mean step time (it
        compiles).
      progress: show a ``tqdm`` progress bar.
      position: the bar's line (for several bars).

    Returns:
      A :class:`RunResult`.

    Example:
      >>> import numpy as np
      >>> setup = LMSetup(steps=4, warmup=0, eval_every=2, batch_size=2)
      >>> data = np.arange(1000, dtype=np.uint8)
      >>> run = run_training(setup, data, "toy", lambda x, y: 1.0, lambda: 2.0, progress=False)
      >>> run.eval_steps, run.val_losses, run.train_losses
      ([0, 2, 4], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0])
    """
    sampler = WindowSampler(train, setup.model.seq_len, setup.batch_size, setup.seed)
    start = time.perf_counter()
    eval_steps, val_losses = [0], [evaluate()]
    train_losses, step_seconds = [], 0.0
    bar = progress_bar(setup.steps, label, progress, position)
    for step in range(setup.steps):
        inputs, targets = (convert(a) for a in sampler.next())
        tick = time.process_time()
        loss = train_step(inputs, targets)
        if step > 0 or not untimed_first_step:
            step_seconds += time.process_time() - tick
        train_losses.append(loss)
        if (step + 1) % setup.eval_every == 0 or step + 1 == setup.steps:
            eval_steps.append(step + 1)
            val_losses.append(evaluate())
            if bar is not None:
                bar.set_postfix(val=f"{val_losses[-1]:.3f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    timed_steps = setup.steps - 1 if untimed_first_step else setup.steps
    return RunResult(label, eval_steps, val_losses, train_losses,
                     time.perf_counter() - start, step_seconds / max(1, timed_steps))
