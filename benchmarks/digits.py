"""Paper claim 2: SGD/SAM + IRE generalize better and end flatter.

A small CNN on scikit-learn's bundled ``load_digits`` (1,797 images of 8×8
pixels, 10 classes), trained with SGD, SGD-IRE, SAM and SAM-IRE. For an
honest comparison every method gets its own learning rate, chosen from a
small grid by accuracy on a validation split (never on the test split), and
is then run with several seeds. Reported: test accuracy and the Hutchinson
estimate of the trace of the Hessian of the training loss at the end, mean ±
std over the seeds.

SAM is ``ire_torch.SAMIRE`` with κ = 0, which is SAM itself (IRE with κ = 0
is the base method bit for bit). IRE uses the sampled-label Fisher curvature
(the estimator the paper used on CIFAR/ImageNet) and starts after the first
quarter of training.

Run::

    python -m benchmarks.digits [--quick] [--seeds N] [--out DIR]

Example:
  >>> data = load_splits(seed=0)
  >>> data.train[0].shape, data.val[0].shape, data.test[0].shape
  (torch.Size([1000, 1, 8, 8]), torch.Size([300, 1, 8, 8]), torch.Size([497, 1, 8, 8]))
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .metrics import format_mean_std, mean_std
from .plots import plot_curves
from .tables import render_table, write_text

__all__ = [
    "METHODS", "DigitsSetup", "Splits", "grid_table", "load_splits", "main", "train_digits",
]

METHODS = ("SGD", "SGD-IRE", "SAM", "SAM-IRE")


@dataclasses.dataclass(frozen=True)
class Splits:
    """``(images, labels)`` tensors of the three splits."""

    train: tuple
    val: tuple
    test: tuple


def load_splits(seed: int = 0, train: int = 1000, val: int = 300) -> Splits:
    """``load_digits`` scaled to [0, 1], shuffled by ``seed`` and split
    stratified into train / validation / test (the rest)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    index = torch.arange(len(labels)).numpy()
    fit, test = train_test_split(index, train_size=train + val, stratify=digits.target,
                                 random_state=seed)
    tr, va = train_test_split(fit, train_size=train, stratify=digits.target[fit],
                              random_state=seed)
    pick = lambda i: (images[i], labels[i])  # noqa: E731
    return Splits(pick(tr), pick(va), pick(test))


class SmallCNN(nn.Module):
    """conv 3×3 (16) → ReLU → conv 3×3 (32) → ReLU → max-pool 2 → linear 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.head(F.max_pool2d(x, 2).flatten(1))


@dataclasses.dataclass(frozen=True)
class DigitsSetup:
    """Training settings shared by every method.

    Attributes:
      epochs: passes over the training split.
      batch_size: images per step.
      momentum: heavy-ball momentum of SGD.
      weight_decay: L2 weight decay.
      rho: SAM radius.
      kappa: IRE's κ.
      flat_fraction: IRE's γ.
      interval: mask refresh interval K.
      ire_start: fraction of training before IRE switches on.
      trace_probes: Rademacher probes of the final Hessian-trace estimate.
    """

    epochs: int = 30
    batch_size: int = 50
    momentum: float = 0.9
    weight_decay: float = 5e-4
    rho: float = 0.05
    kappa: float = 2.0
    flat_fraction: float = 0.6
    interval: int = 10
    ire_start: float = 0.25
    trace_probes: int = 20


@dataclasses.dataclass
class DigitsResult:
    """One run: final accuracies, Hessian trace and the loss curve."""

    method: str
    lr: float
    seed: int
    val_accuracy: float
    test_accuracy: float
    hessian_trace: float
    train_losses: list
    seconds: float


def _optimizer(method: str, model: nn.Module, lr: float, setup: DigitsSetup, start: int,
               seed: int):
    from ire_torch import SAMIRE, SGDIRE

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    kappa = setup.kappa if method.endswith("IRE") else 0.0
    ire = dict(kappa=kappa, flat_fraction=setup.flat_fraction, interval=setup.interval,
               start_step=start, estimator="fisher", seed=seed)
    base = dict(lr=lr, momentum=setup.momentum, weight_decay=setup.weight_decay)
    if method.startswith("SAM"):
        return SAMIRE(model.parameters(), torch.optim.SGD, rho=setup.rho, **base, **ire)
    if method == "SGD":
        return torch.optim.SGD(model.parameters(), **base)
    return SGDIRE(model.parameters(), **base, **ire)


@torch.no_grad()
def _accuracy(model, split) -> float:
    images, labels = split
    return (model(images).argmax(1) == labels).float().mean().item()


def train_digits(method: str, lr: float, seed: int, data: Splits,
                 setup: DigitsSetup = DigitsSetup()) -> DigitsResult:
    """Trains a fresh :class:`SmallCNN` with ``method`` and measures it.

    Args:
      method: one of :data:`METHODS`.
      lr: peak learning rate (cosine decay to 0).
      seed: initial weights, batch order and IRE's label draws.
      data: the splits.
      setup: shared settings.
    """
    from ire_torch import hessian_trace

    tick = time.perf_counter()
    torch.manual_seed(seed)
    model = SmallCNN()
    images, labels = data.train
    steps_per_epoch = len(labels) // setup.batch_size
    total = setup.epochs * steps_per_epoch
    optimizer = _optimizer(method, model, lr, setup, int(setup.ire_start * total), seed)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    order = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(setup.epochs):
        perm = torch.randperm(len(labels), generator=order)
        for b in range(steps_per_epoch):
            batch = perm[b * setup.batch_size:(b + 1) * setup.batch_size]
            x, y = images[batch], labels[batch]

            def closure(x=x, y=y):
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                return loss

            if method == "SGD":
                loss = closure()
                optimizer.step()
            else:
                loss = optimizer.step(closure, logits_fn=lambda x=x: model(x))
            losses.append(float(loss.detach()))
            schedule.step()
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    trace = hessian_trace(lambda: F.cross_entropy(model(images), labels),
                          list(model.parameters()), num_probes=setup.trace_probes,
                          generator=generator)
    return DigitsResult(method, lr, seed, _accuracy(model, data.val),
                        _accuracy(model, data.test), float(trace), losses,
                        time.perf_counter() - tick)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.digits",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one learning rate, one seed, 4 epochs")
    parser.add_argument("--seeds", type=int, default=None, help="seeds (default 3, quick 1)")
    parser.add_argument("--lrs", type=float, nargs="+", default=None,
                        help="learning-rate grid (default 0.02 0.05 0.1; quick 0.05)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    return args


def main(argv=None) -> int:
    """Tunes the learning rate per method, reruns over seeds, prints and
    writes the table and a PNG of the training losses."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = DigitsSetup(epochs=4, trace_probes=4) if args.quick else DigitsSetup()
    seeds = args.seeds or (1 if args.quick else 3)
    lrs = args.lrs or ([0.05] if args.quick else [0.02, 0.05, 0.1])
    data = load_splits(seed=0)

    # learning rate: best mean validation accuracy over the seeds, per method
    runs = {}
    for method in METHODS:
        for lr in lrs:
            for seed in range(seeds):
                runs[method, lr, seed] = train_digits(method, lr, seed, data, setup)
                r = runs[method, lr, seed]
                print(f"{method:8s} lr={lr:<5g} seed={seed}: val {r.val_accuracy:.3f}, "
                      f"test {r.test_accuracy:.3f}, tr H {r.hessian_trace:.2f} "
                      f"({r.seconds:.1f} s)", flush=True)
    best = {
        method: max(lrs, key=lambda lr, m=method: mean_std(
            [runs[m, lr, s].val_accuracy for s in range(seeds)])[0])
        for method in METHODS
    }
    rows = []
    for method in METHODS:
        chosen = [runs[method, best[method], s] for s in range(seeds)]
        rows.append([
            method, f"{best[method]:g}",
            format_mean_std([100 * r.val_accuracy for r in chosen], 2),
            format_mean_std([100 * r.test_accuracy for r in chosen], 2),
            format_mean_std([r.hessian_trace for r in chosen], 2),
        ])
    table = render_table(
        ["method", "lr (tuned)", "val accuracy %", "test accuracy %", "tr H (train loss)"], rows
    )
    header = (
        f"load_digits, small CNN, {setup.epochs} epochs of batch {setup.batch_size}, SGD momentum "
        f"{setup.momentum}, cosine lr; SAM ρ = {setup.rho}; IRE κ = {setup.kappa:g}, γ = "
        f"{setup.flat_fraction:g}, K = {setup.interval}, Fisher curvature, from "
        f"{setup.ire_start:.0%} of training. lr tuned per method over {lrs} on validation "
        f"accuracy; mean ± std over {seeds} seed{'s' if seeds > 1 else ''}."
    )
    grid = grid_table(runs, lrs, seeds)
    text = "\n\n".join([header, table, "Every learning rate of the grid:", grid])
    print("\n" + text + "\n")
    out = Path(args.out)
    write_text(out / "digits.md", text)
    window = max(1, len(runs[METHODS[0], lrs[0], 0].train_losses) // 20)
    curves = {}
    for method in METHODS:
        loss = _smooth(runs[method, best[method], 0].train_losses, window)
        curves[f"{method} (lr {best[method]:g})"] = (list(range(len(loss))), loss)
    png = plot_curves(curves, out / "digits_loss.png", title="load_digits: training loss (seed 0)",
                      ylabel="cross-entropy (moving average)", logy=True)
    print(f"Training losses: {png.resolve()}")
    return 0


def grid_table(runs: dict, lrs, seeds: int) -> str:
    """Validation and test accuracy and tr H of every (method, lr), mean ± std
    over the seeds; ``runs`` maps ``(method, lr, seed)`` to a result."""
    rows = []
    for method in METHODS:
        for lr in lrs:
            chosen = [runs[method, lr, s] for s in range(seeds)]
            rows.append([
                method, f"{lr:g}",
                format_mean_std([100 * r.val_accuracy for r in chosen], 2),
                format_mean_std([100 * r.test_accuracy for r in chosen], 2),
                format_mean_std([r.hessian_trace for r in chosen], 2),
            ])
    return render_table(["method", "lr", "val accuracy %", "test accuracy %", "tr H"], rows)


def _smooth(values, window: int) -> list:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


if __name__ == "__main__":
    sys.exit(main())
