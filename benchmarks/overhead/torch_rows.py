"""The torch rows: whole training steps of AdamW and of IRE around it.

A step is ``zero_grad``, forward, backward and the optimizer step. Rows, each
timed against the base in parentheses:

* ``AdamW``: ``torch.optim.AdamW`` with its defaults (per-tensor on the
  CPU, foreach on a GPU) (itself);
* ``IRE gradient``: ``AdamWIRE`` with the ``gradient`` estimator, which
  amplifies inside AdamW's update (``AdamW``);
* ``IRE gradient, generic path``: the same with ``fused_update=False``:
  copy the parameters, take the base step, rescale the displacement, as for
  any other base optimizer (``AdamW``);
* ``IRE fisher`` / ``IRE fisher, forward reused`` / ``IRE fisher, 1/4
  batch``: the sampled-label Fisher refresh from a fresh forward on the
  training batch, from the training forward's own logits (graph kept on
  refresh steps), or from a fresh forward on a quarter of the batch
  (``AdamW``);
* ``AdamW fused=True`` (itself) and ``IRE gradient, fused=True base``:
  ``ire_torch.IRE`` around torch's fused AdamW kernel (``AdamW fused=True``).

Memory columns:

* step and refresh peaks: on CUDA, the most memory the allocator held during
  ``optimizer.step`` beyond what it held when the step began
  (``torch.cuda.reset_peak_memory_stats``, ``max_memory_allocated``), the
  largest over a refresh period's steps without and with a refresh. On the
  CPU both read ``None`` ("n/a"): PyTorch's CPU allocator keeps no public
  statistics, and the profiler's memory records (``profile_memory=True``)
  charge each free to the operator around it, which gives no timeline to
  read a peak from.
* extra state: the bytes of the ``state_dict()`` tensors that hold one value
  per coordinate (as many elements as one parameter, or as all of them)
  beyond the base's, over the parameter bytes. Scalars (step counts,
  thresholds) and the fixed-size random generator state do not grow with
  the model and are not counted.

Example:
  >>> import torch
  >>> model = torch.nn.Linear(3, 2)
  >>> adamw = torch.optim.AdamW(model.parameters())
  >>> model(torch.ones(1, 3)).sum().backward()
  >>> adamw.step()
  >>> per_coordinate_bytes(adamw, model.parameters())  # exp_avg, exp_avg_sq
  64
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

from .harness import (
    GAMMA,
    INTERVAL,
    KAPPA,
    Row,
    Sizes,
    cases,
    interleaved,
    is_refresh_step,
    label,
    median_ms,
    median_ratio,
    mib,
    progress,
)

__all__ = ["FUSED_BASE", "per_coordinate_bytes", "torch_rows"]

FUSED_BASE = "AdamW fused=True"


def torch_rows(sz: Sizes, threads: int, device: str = "cpu") -> tuple[list[Row], list[dict]]:
    """Every torch row of every model, and the Fisher mask agreement of the
    language models (see :func:`fisher_agreement`)."""
    import torch

    torch.set_num_threads(threads)
    rows, agreements = [], []
    for kind, size, spec in cases(sz):
        progress(f"torch {kind}-{size}")
        make, batch, criterion, logits = _problem(kind, spec, sz, device)
        variants = _variants(make, batch, logits)
        steppers = {name: functools.partial(v.train_step, criterion, batch)
                    for name, v in variants.items()}
        times = interleaved(steppers, sz.rounds, sz.steps, sync(device))
        parameters = list(variants["AdamW"].model.parameters())
        params = sum(p.numel() for p in parameters)
        param_bytes = sum(p.numel() * p.element_size() for p in parameters)
        model = label(kind, size, params)
        states = {name: per_coordinate_bytes(v.opt, v.model.parameters())
                  for name, v in variants.items()}
        for name, v in variants.items():
            peak, refresh_peak = _step_peaks(v, criterion, batch, device)
            rows.append(Row(
                "torch", model, name, median_ms(times[v.base]), median_ms(times[name]),
                median_ratio(times[name], times[v.base]), mib(peak),
                (states[name] - states[v.base]) / param_bytes, params, mib(refresh_peak)))
        if kind == "lm":
            agreements.append(fisher_agreement(model, make, batch, logits))
    return rows, agreements


def sync(device):
    """A function that waits for ``device``'s queued kernels; ``None`` on the CPU."""
    import torch

    if torch.device(device).type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


@dataclass
class _Variant:
    """One row's model and optimizer, and the steps it has taken.

    Attributes:
      model, opt: the row's model and optimizer.
      base: the name of the row this one is timed against.
      ire: whether ``opt`` is an IRE optimizer (refreshes on its schedule).
      reuse: whether the Fisher refresh reads the training forward's logits.
      taken: optimizer steps taken.
    """

    model: object
    opt: object
    base: str
    ire: bool
    reuse: bool = False
    taken: int = 0

    def refresh_next(self) -> bool:
        """Whether the next step refreshes the mask."""
        return self.ire and is_refresh_step(self.taken)

    def train_step(self, criterion, batch, around_step=None) -> None:
        """``zero_grad``, forward, backward, optimizer step (the last inside
        the context ``around_step``, if given). With ``reuse``, a refresh step
        keeps the graph and hands the training logits to the Fisher refresh."""
        refresh = self.refresh_next()
        self.opt.zero_grad()
        logits = self.model(batch[0])
        criterion(logits, batch[1]).backward(retain_graph=self.reuse and refresh)
        with around_step or contextlib.nullcontext():
            if self.reuse:
                self.opt.step(logits_fn=lambda: logits)
            else:
                self.opt.step()
        self.taken += 1


def _variants(make, batch, logits) -> dict:
    """``{row name: _Variant}`` for every row, all from the same weights."""
    import torch

    from ire_torch import IRE, AdamWIRE

    def adamw(model, **kwargs):
        return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, **kwargs)

    def ire(model, **kwargs):
        return AdamWIRE(model.parameters(), lr=1e-3, weight_decay=0.1, kappa=KAPPA,
                        flat_fraction=GAMMA, interval=INTERVAL, **kwargs)

    variants = {}
    model = make()
    variants["AdamW"] = _Variant(model, adamw(model), "AdamW", ire=False)
    model = make()
    variants["IRE gradient"] = _Variant(model, ire(model), "AdamW", ire=True)
    model = make()
    variants["IRE gradient, generic path"] = _Variant(
        model, ire(model, fused_update=False), "AdamW", ire=True)
    for part, name in [(1, "IRE fisher"), (None, "IRE fisher, forward reused"),
                       (4, "IRE fisher, 1/4 batch")]:
        model = make()
        opt = ire(model, estimator="fisher")
        if part is not None:
            opt.set_curvature_source(
                logits_fn=lambda model=model, part=part: logits(model, batch, part))
        variants[name] = _Variant(model, opt, "AdamW", ire=True, reuse=part is None)
    model = make()
    variants[FUSED_BASE] = _Variant(model, adamw(model, fused=True), FUSED_BASE, ire=False)
    model = make()
    variants["IRE gradient, fused=True base"] = _Variant(
        model, IRE(adamw(model, fused=True), kappa=KAPPA, flat_fraction=GAMMA,
                   interval=INTERVAL), FUSED_BASE, ire=True)
    return variants


def _problem(kind: str, spec, sz: Sizes, device="cpu"):
    """``(make_model, batch, criterion(logits, targets), logits_fn(model, batch, part))``,
    model and batch on ``device``; ``logits_fn`` runs the model on the first
    ``1/part`` of the batch."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)

    def logits(model, b, part):
        return model(b[0][: max(1, len(b[0]) // part)])

    if kind == "mlp":
        inputs, hidden = spec

        def make():
            torch.manual_seed(0)
            return torch.nn.Sequential(
                torch.nn.Linear(inputs, hidden), torch.nn.ReLU(),
                torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                torch.nn.Linear(hidden, 10),
            ).to(device)

        batch = (torch.randn(sz.batch, inputs, generator=generator).to(device),
                 torch.randint(0, 10, (sz.batch,), generator=generator).to(device))
        return make, batch, F.cross_entropy, logits

    from ..llama import LlamaConfig, TinyLlama, language_model_loss

    config = LlamaConfig(vocab_size=256, **spec)

    def make():
        torch.manual_seed(0)
        return TinyLlama(config).to(device)

    tokens = torch.randint(0, 256, (sz.lm_batch, config.seq_len + 1),
                           generator=generator).to(device)
    return make, (tokens[:, :-1], tokens[:, 1:]), language_model_loss, logits


def per_coordinate_bytes(opt, parameters) -> int:
    """Bytes of the tensors in ``opt.state_dict()`` with as many elements as
    one of ``parameters`` or as all of them together: the optimizer state
    that grows with the model."""
    import torch

    numels = [p.numel() for p in parameters]
    sizes = {*numels, sum(numels)}
    total, pending = 0, [opt.state_dict()]
    while pending:
        value = pending.pop()
        if isinstance(value, torch.Tensor):
            if value.numel() in sizes:
                total += value.numel() * value.element_size()
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, (list, tuple)):
            pending.extend(value)
    return total


@contextlib.contextmanager
def _cuda_peak(device, peaks: list):
    """Appends to ``peaks`` the most bytes the CUDA allocator held inside the
    context beyond what it held on entry."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    yield
    torch.cuda.synchronize(device)
    peaks.append(torch.cuda.max_memory_allocated(device) - before)


def _step_peaks(variant: _Variant, criterion, batch, device) -> tuple:
    """``(largest peak on steps without a refresh, largest on refresh steps)``
    of ``optimizer.step`` in bytes, over one more refresh period of training
    steps (``None`` for a kind of step that did not occur, as the refresh
    steps of a base optimizer, and both ``None`` off CUDA, where torch keeps
    no public allocator statistics)."""
    import torch

    if torch.device(device).type != "cuda":
        return None, None
    peaks = {False: [], True: []}
    for _ in range(INTERVAL):
        refresh = variant.refresh_next()
        variant.train_step(criterion, batch, around_step=_cuda_peak(device, peaks[refresh]))
    return tuple(max(p) if p else None for p in (peaks[False], peaks[True]))


def fisher_agreement(model_label: str, make, batch, logits) -> dict:
    """How much of the full-batch Fisher mask a quarter-batch Fisher keeps
    (same parameters, same label draws), next to how much a second
    full-batch estimate with other label draws keeps.

    Returns:
      ``{"model", "quarter_agreement", "quarter_flat_overlap",
      "redraw_agreement", "redraw_flat_overlap"}``: the fraction of
      coordinates with the same mask bit, and the fraction of the full-batch
      flat set that the other mask also marks flat.
    """
    import torch

    from ire_torch import AdamWIRE

    def mask(part, seed):
        model = make()
        opt = AdamWIRE(model.parameters(), lr=1e-3, kappa=KAPPA, flat_fraction=GAMMA,
                       interval=INTERVAL, estimator="fisher", seed=seed)
        model(batch[0]).sum().backward()
        opt.step(logits_fn=lambda: logits(model, batch, part))
        return torch.cat([opt.flat_mask(p).reshape(-1) for p in model.parameters()])

    full = mask(1, seed=0)
    flat = max(int(full.sum()), 1)
    result = {"model": model_label}
    for key, other in (("quarter", mask(4, seed=0)), ("redraw", mask(1, seed=1))):
        result[f"{key}_agreement"] = float((full == other).float().mean())
        result[f"{key}_flat_overlap"] = float((full & other).sum()) / flat
    return result
