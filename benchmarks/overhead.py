"""IRE's cost over its base optimizer: step time, memory, state size.

For each available backend, and for an MLP and a small Llama-style language
model at two sizes each, the program times whole training steps (forward,
backward, optimizer step) of the base optimizer (AdamW) and of IRE around it,
side by side: every round runs each variant for one refresh period
(``interval`` steps, so the amortized refresh is included), the rounds
interleave the variants, the first round is warm-up, and the table shows the
median over rounds. Ratios are therefore measured under the same machine
load, which matters on a shared machine.

Rows (torch):

* ``AdamW``: ``torch.optim.AdamW`` with its defaults (per-tensor on CPU,
  foreach on GPU);
* ``IRE gradient``: ``AdamWIRE`` with the ``gradient`` estimator (fused path);
* ``IRE gradient, generic path``: the same with ``fused_update=False`` (copy,
  base step, rescale, as for any other base optimizer);
* ``IRE fisher`` / ``IRE fisher, forward reused`` / ``IRE fisher, 1/4 batch``:
  the sampled-label Fisher refresh from a fresh forward on the training
  batch, from the training forward's own logits (graph kept on refresh
  steps), or from a fresh forward on a quarter of the batch;
* ``naive copy-step-rescale``: a straightforward implementation kept for
  comparison: float masks, a full copy of the parameters every step, a
  ``kthvalue`` over the concatenated curvature at each refresh;
* ``AdamW fused=True`` and ``IRE gradient, fused=True base``: torch's fused
  AdamW kernel, bare and wrapped; this row's ratio is against the bare
  fused AdamW.

Rows (JAX, Keras): the base (optax / Keras AdamW) and IRE with the
``gradient`` estimator over whole refresh periods, then the IRE step split by
kind: ``…, steps without refresh`` and ``…, refresh steps``.

Columns: median step time of the base and of the row, their ratio, the peak
memory allocated during the optimizer step (torch: tensors the step creates,
counted by a dispatch mode; JAX: XLA's temporary buffers of the compiled
step), and the persistent optimizer state (beyond the base optimizer's, as a
multiple of the parameter bytes).

A second table times the global flat-mask selection over ``--coordinates``
values against one AdamW step over the same number of parameters, for the
exact, sampled and histogram thresholds, with the flat-count deviation of the
approximate ones; each row is interleaved with the AdamW step alone.

Usage::

    python -m benchmarks.overhead [--quick] [--backends torch,jax,keras] [--out DIR]
                                  [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import weakref
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from .backends import require_backend

__all__ = ["Row", "main", "run_overhead"]

INTERVAL = 10
KAPPA, GAMMA = 2.0, 0.6
# Suffix of the JAX rows whose step donates its input buffers.
DONATED = ", donated buffers"


@dataclass
class Row:
    """One line of an overhead table.

    Attributes:
      backend: ``"torch"``, ``"jax"`` or ``"keras"``.
      model: model and size, e.g. ``"lm-large (3.4M)"``.
      variant: what is timed against the base.
      base_ms: median step time of the base optimizer (ms).
      ire_ms: median step time of this variant (ms).
      ratio: ``ire_ms / base_ms`` (medians over the same rounds).
      peak_mib: peak memory of the optimizer step (MiB), ``None`` if unknown.
      extra_state: persistent state beyond the base optimizer's, as a
        multiple of the parameter bytes.
      params: number of parameters.
      refresh_peak_mib: peak memory of a refresh step (MiB), when measured
        apart (torch).
    """

    backend: str
    model: str
    variant: str
    base_ms: float
    ire_ms: float
    ratio: float
    peak_mib: float | None
    extra_state: float
    params: int
    refresh_peak_mib: float | None = None


@dataclass
class Sizes:
    """The problem sizes of one run (``--quick`` shrinks everything)."""

    mlp: dict = field(default_factory=dict)
    lm: dict = field(default_factory=dict)
    batch: int = 128
    lm_batch: int = 4
    rounds: int = 5
    steps: int = INTERVAL
    coordinates: int = 10_000_000
    selection_rounds: int = 30


def sizes(quick: bool) -> Sizes:
    """The full or the quick problem sizes.

    Example:
      >>> sizes(quick=False).mlp["large"], sizes(quick=True).rounds
      ((784, 2048), 1)
    """
    if quick:
        return Sizes(
            mlp={"small": (32, 16), "large": (32, 64)},
            lm={"small": dict(dim=16, layers=1, heads=2, seq_len=8),
                "large": dict(dim=32, layers=1, heads=2, seq_len=8)},
            batch=8, lm_batch=2, rounds=1, steps=2, coordinates=20_000, selection_rounds=1,
        )
    return Sizes(
        mlp={"small": (784, 256), "large": (784, 2048)},
        lm={"small": dict(dim=128, layers=2, heads=4, seq_len=64),
            "large": dict(dim=256, layers=4, heads=8, seq_len=128)},
        lm_batch=4, rounds=5,
    )


def _progress(what: str) -> None:
    print(f"[overhead] {what}", file=sys.stderr, flush=True)


def _median_ms(values) -> float:
    return 1e3 * statistics.median(values)


def _interleaved(steppers: dict, rounds: int, steps: int, sync=None) -> dict:
    """Seconds per step of each stepper, one median per stepper: each round
    runs every stepper for ``steps`` steps in turn; round 0 is warm-up.
    ``sync()``, if given, waits for queued device work before each clock read."""
    sync = sync or (lambda: None)
    times = {name: [] for name in steppers}
    for round_ in range(rounds + 1):
        for name, step in steppers.items():
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            if round_ > 0:
                times[name].append((time.perf_counter() - start) / steps)
    return times


# -- torch -----------------------------------------------------------------------


def _torch_tracker():
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class AllocationTracker(TorchDispatchMode):
        """Bytes of the tensors created inside the mode: current and peak."""

        def __init__(self):
            super().__init__()
            self.current = self.peak = 0
            self.live: set = set()

        def _free(self, key, nbytes):
            self.live.discard(key)
            self.current -= nbytes

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {
                t.untyped_storage().data_ptr()
                for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
            }
            for t in tree_leaves(out):
                if not isinstance(t, torch.Tensor):
                    continue
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key in inputs or key in self.live or storage.nbytes() == 0:
                    continue
                self.live.add(key)
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
                weakref.finalize(t, self._free, key, storage.nbytes())
            return out

    return AllocationTracker


def _state_bytes(state) -> int:
    import torch

    total = 0
    for entry in state.values():
        for value in entry.values():
            if isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
    return total


class NaiveIRE:
    """IRE written the straightforward way, for comparison only.

    Float masks (one float per coordinate, kept), a copy of all parameters
    every step, and at each refresh ``kthvalue`` over the concatenated
    squared gradients.
    """

    def __init__(self, base, kappa: float, flat_fraction: float, interval: int):
        self.base, self.kappa, self.gamma, self.interval = base, kappa, flat_fraction, interval
        self.params = [p for g in base.param_groups for p in g["params"]]
        self.masks: list = []
        self.t = 0

    def zero_grad(self):
        self.base.zero_grad()

    def step(self):
        import torch

        with torch.no_grad():
            if self.t % self.interval == 0:
                curvature = [p.grad.square() for p in self.params]
                flat = torch.cat([c.reshape(-1) for c in curvature])
                k = max(1, int(self.gamma * flat.numel()))
                tau = flat.kthvalue(k).values
                self.masks = [(c <= tau).to(c.dtype) for c in curvature]
            old = [p.detach().clone() for p in self.params]
            self.base.step()
            for p, o, m in zip(self.params, old, self.masks):
                p.copy_(o + (p - o) * (1 + self.kappa * m))
        self.t += 1

    def state_bytes(self) -> int:
        return _state_bytes(self.base.state) + sum(
            m.numel() * m.element_size() for m in self.masks
        )


def _torch_sync(device):
    """Waits for ``device``'s queued kernels (a no-op on the CPU)."""
    import torch

    if torch.device(device).type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return None


def _torch_models(kind: str, spec, sz: Sizes, device="cpu"):
    """``(make_model, batch, criterion(logits, targets), logits_fn(model, batch, part))``,
    model and batch on ``device``."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
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

        def logits(model, b, part):
            return model(b[0][: max(1, len(b[0]) // part)])

        return make, batch, F.cross_entropy, logits

    from .llama import LlamaConfig, TinyLlama, language_model_loss

    config = LlamaConfig(vocab_size=256, **spec)

    def make():
        torch.manual_seed(0)
        return TinyLlama(config).to(device)

    tokens = torch.randint(0, 256, (sz.lm_batch, config.seq_len + 1),
                           generator=generator).to(device)
    batch = (tokens[:, :-1], tokens[:, 1:])

    def logits(model, b, part):
        return model(b[0][: max(1, len(b[0]) // part)])

    return make, batch, language_model_loss, logits


FUSED_BASE = "AdamW fused=True"


def _torch_variants(make, batch, logits):
    """name -> (model, optimizer) for every row, all from the same weights."""
    import torch

    from ire_torch import IRE, AdamWIRE

    def adamw(model, **kwargs):
        return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, **kwargs)

    def ire(model, **kwargs):
        return AdamWIRE(model.parameters(), lr=1e-3, weight_decay=0.1, kappa=KAPPA,
                        flat_fraction=GAMMA, interval=INTERVAL, **kwargs)

    variants = {}
    model = make()
    variants["AdamW"] = (model, adamw(model))
    model = make()
    variants["IRE gradient"] = (model, ire(model))
    model = make()
    variants["IRE gradient, generic path"] = (model, ire(model, fused_update=False))
    for part, name in [(1, "IRE fisher"), (None, "IRE fisher, forward reused"),
                       (4, "IRE fisher, 1/4 batch")]:
        model = make()
        opt = ire(model, estimator="fisher")
        if part is not None:
            opt.set_curvature_source(
                logits_fn=lambda model=model, part=part: logits(model, batch, part))
        variants[name] = (model, opt)
    model = make()
    variants["naive copy-step-rescale"] = (model, NaiveIRE(adamw(model), KAPPA, GAMMA, INTERVAL))
    model = make()
    variants[FUSED_BASE] = (model, adamw(model, fused=True))
    model = make()
    variants["IRE gradient, fused=True base"] = (
        model, IRE(adamw(model, fused=True), kappa=KAPPA, flat_fraction=GAMMA,
                   interval=INTERVAL))
    return variants


def _base_of(name: str) -> str:
    return FUSED_BASE if "fused=True" in name else "AdamW"


def _torch_rows(sz: Sizes, threads: int, device="cpu") -> tuple[list[Row], list[dict]]:
    import torch

    torch.set_num_threads(threads)
    tracker_class = _torch_tracker()
    rows, agreements = [], []
    cases = [("mlp", name, spec) for name, spec in sz.mlp.items()]
    cases += [("lm", name, spec) for name, spec in sz.lm.items()]
    for kind, size, spec in cases:
        _progress(f"torch {kind}-{size}")
        make, batch, criterion, logits = _torch_models(kind, spec, sz, device)
        variants = _torch_variants(make, batch, logits)

        steppers = {name: _stepper(model, opt, criterion, batch, reuse="forward reused" in name)
                    for name, (model, opt) in variants.items()}
        times = _interleaved(steppers, sz.rounds, sz.steps, _torch_sync(device))
        base_model, base_opt = variants["AdamW"]
        params = sum(p.numel() for p in base_model.parameters())
        param_bytes = sum(p.numel() * p.element_size() for p in base_model.parameters())
        base_state = _state_bytes(base_opt.state)
        label = f"{kind}-{size} ({_count(params)})"
        for name, (model, opt) in variants.items():
            base = _base_of(name)
            peak, refresh_peak = _torch_step_peak(tracker_class, model, opt, criterion, batch,
                                                  sz.steps, reuse="forward reused" in name)
            if isinstance(opt, NaiveIRE):
                state = opt.state_bytes()
            else:
                state = _state_bytes(opt.state) + sum(
                    _state_bytes({p: e}) for p, e in getattr(opt, "_ire_state", {}).items()
                )
            ratio = statistics.median(
                ire / bare for ire, bare in zip(times[name], times[base]))
            rows.append(Row("torch", label, name, _median_ms(times[base]),
                            _median_ms(times[name]), ratio,
                            _mib(peak), (state - base_state) / param_bytes, params,
                            _mib(refresh_peak)))
        if kind == "lm":
            agreements.append(_fisher_agreement(label, make, batch, logits))
    return rows, agreements


def _stepper(model, opt, criterion, batch, reuse: bool = False):
    """One training step: zero_grad, forward, backward, optimizer step."""

    def step():
        opt.zero_grad()
        _train_step(model, opt, criterion, batch, reuse)

    return step


def _train_step(model, opt, criterion, batch, reuse: bool, around_step=None) -> None:
    """Forward, backward, optimizer step (inside the context ``around_step``,
    if given). With ``reuse``, a refresh step keeps the graph and hands the
    training logits to the Fisher refresh."""
    logits = model(batch[0])
    criterion(logits, batch[1]).backward(retain_graph=reuse and _refresh_due(opt))
    with around_step or contextlib.nullcontext():
        if reuse:
            opt.step(logits_fn=lambda: logits)
        else:
            opt.step()


def _torch_step_peak(tracker_class, model, opt, criterion, batch, steps: int,
                     reuse: bool = False) -> tuple:
    """Peak bytes created during an optimizer step, over ``steps`` consecutive
    steps: ``(largest on steps without a refresh, largest on refresh steps)``
    (``None`` for a kind of step that did not occur)."""
    peaks = {False: [], True: []}
    for _ in range(steps):
        refresh = _refresh_due(opt)
        opt.zero_grad()
        tracker = tracker_class()
        _train_step(model, opt, criterion, batch, reuse, around_step=tracker)
        peaks[refresh].append(tracker.peak)
    return tuple(max(p) if p else None for p in (peaks[False], peaks[True]))


def _mib(nbytes):
    return None if nbytes is None else nbytes / 2**20


def _refresh_due(opt) -> bool:
    if isinstance(opt, NaiveIRE):
        return opt.t % opt.interval == 0
    return bool(getattr(opt, "refresh_due", False))


def _fisher_agreement(label, make, batch, logits) -> dict:
    """How much of the full-batch Fisher mask a quarter-batch Fisher keeps
    (same parameters, same label draws), next to how much a second
    full-batch estimate with other label draws keeps: the sampled labels
    alone already move the mask."""
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
    result = {"model": label}
    for key, other in (("quarter", mask(4, seed=0)), ("redraw", mask(1, seed=1))):
        result[f"{key}_agreement"] = float((full == other).float().mean())
        result[f"{key}_flat_overlap"] = float((full & other).sum()) / flat
    return result


def _selection_rows(sz: Sizes, threads: int, device="cpu") -> list[dict]:
    """Global mask selection over ``sz.coordinates`` values vs one AdamW step.

    Each row is interleaved with the AdamW step alone, round by round: in
    rounds shared by all rows, the rows next to the histogram threshold (and
    its large temporaries) ran up to 40 % slower, and AdamW itself took
    10–17 ms depending on which row ran before it.
    """
    import torch

    import ire_core
    from ire_core.threshold import SampledThreshold

    torch.set_num_threads(threads)
    _progress("mask selection")
    n = sz.coordinates
    shapes = [(n // 10,)] * 10
    generator = torch.Generator().manual_seed(0)
    curvature = [torch.rand(s, generator=generator).square_().to(device) for s in shapes]
    # As ire_torch's gradient and fisher estimators write them: views of one buffer.
    in_one_buffer = list(torch.cat(curvature).split([c.numel() for c in curvature]))
    params = [torch.nn.Parameter(torch.randn(s, generator=generator).to(device))
              for s in shapes]
    for p, h in zip(params, curvature):
        p.grad = h.clone()
    adamw = torch.optim.AdamW(params, lr=1e-3)
    adamw.step()
    # Parameters of its own: stepping the same ones made the next AdamW step 2x slower.
    fused_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, h in zip(fused_params, curvature):
        p.grad = h.clone()
    fused = torch.optim.AdamW(fused_params, lr=1e-3, fused=True)
    fused.step()
    k = ire_core.flat_count(GAMMA, n)
    sampled, histogram = SampledThreshold(), ire_core.HistogramThreshold()
    runs = {
        "AdamW step, fused=True": fused.step,
        "select_flat_mask, exact": lambda: ire_core.select_flat_mask(curvature, GAMMA),
        "select_flat_mask, exact, one buffer": lambda: ire_core.select_flat_mask(
            in_one_buffer, GAMMA),
        "select_flat_mask, sampled": lambda: ire_core.select_flat_mask(
            curvature, GAMMA, threshold_fn=sampled),
        "exact threshold only": lambda: ire_core.exact_threshold(curvature, k),
        "sampled threshold only": lambda: sampled(curvature, k),
        "histogram threshold only": lambda: histogram(curvature, k),
    }
    adamw_times, rows = [], []
    for name, run in runs.items():
        times = _interleaved({"AdamW step": adamw.step, name: run}, sz.selection_rounds, 1,
                             _torch_sync(device))
        adamw_times += times["AdamW step"]
        deviation = None
        if "sampled" in name or "histogram" in name:
            tau = (sampled if "sampled" in name else histogram)(curvature, k)
            deviation = (sum(int((h <= tau).sum()) for h in curvature) - k) / n
        rows.append({
            "what": name, "coordinates": n, "ms": _median_ms(times[name]),
            "ratio_to_adamw": statistics.median(
                v / b for v, b in zip(times[name], times["AdamW step"])),
            "flat_count_deviation": deviation,
        })
    adamw_row = {"what": "AdamW step", "coordinates": n, "ms": _median_ms(adamw_times),
                 "ratio_to_adamw": 1.0, "flat_count_deviation": None}
    return [adamw_row, *rows]


# -- JAX -------------------------------------------------------------------------


def _jax_rows(sz: Sizes) -> list[Row]:
    """Rows ``optax adamw`` and ``ire_jax gradient`` (whole refresh periods),
    the same two with the step's input buffers donated (``jax.jit(...,
    donate_argnums=(0, 1))``, as training loops write it; the IRE row's ratio
    is against the donated base), then ``ire_jax gradient`` split by kind of
    step: ``…, steps without refresh`` and ``…, refresh steps`` (each IRE step
    of the same rounds timed on its own; the ratio is against the base's mean
    step of that round)."""
    import jax
    import optax

    import ire_jax

    base_name, ire_name = "optax adamw", "ire_jax gradient"
    rows = []
    cases = [("mlp", name, spec) for name, spec in sz.mlp.items()]
    cases += [("lm", name, spec) for name, spec in sz.lm.items()]
    for kind, size, spec in cases:
        _progress(f"jax {kind}-{size}")
        params, loss = _jax_problem(kind, spec, sz)
        variants = {}
        for suffix, donate in (("", ()), (DONATED, (0, 1))):
            variants[base_name + suffix] = (optax.adamw(1e-3, weight_decay=0.1), donate)
            variants[ire_name + suffix] = (
                ire_jax.ire(optax.adamw(1e-3, weight_decay=0.1), kappa=KAPPA,
                            flat_fraction=GAMMA, interval=INTERVAL), donate)
        steppers, memory, state_bytes = {}, {}, {}
        record = []  # (refresh step?, seconds) of every IRE step, warm-up round first
        for name, (tx, donate) in variants.items():
            state = tx.init(params)

            @functools.partial(jax.jit, donate_argnums=donate)
            def train_step(p, s, tx=tx, loss=loss):
                grads = jax.grad(loss)(p)
                updates, s = tx.update(grads, s, p)
                return optax.apply_updates(p, updates), s

            compiled = train_step.lower(params, state).compile()
            analysis = compiled.memory_analysis()
            memory[name] = None if analysis is None else analysis.temp_size_in_bytes / 2**20
            state_bytes[name] = sum(x.nbytes for x in jax.tree_util.tree_leaves(state))
            # A donating step consumes its inputs: it starts from copies of its own.
            box = {"p": jax.tree_util.tree_map(lambda x: x.copy(), params), "s": state, "t": 0}

            def step(box=box, compiled=compiled, log=record if name == ire_name else None):
                start = time.perf_counter()
                box["p"], box["s"] = compiled(box["p"], box["s"])
                jax.block_until_ready(box["p"])
                if log is not None:  # the state counts steps from 0; refresh at 0, K, 2K, …
                    log.append((box["t"] % INTERVAL == 0, time.perf_counter() - start))
                box["t"] += 1

            steppers[name] = step
        times = _interleaved(steppers, sz.rounds, sz.steps)
        count = sum(x.size for x in jax.tree_util.tree_leaves(params))
        param_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves(params))
        label = f"{kind}-{size} ({_count(count)})"
        base = times[base_name]
        extra = {name: (state_bytes[name] - state_bytes[base_name]) / param_bytes
                 for name in variants}
        for name in variants:
            bare = times[base_name + (DONATED if name.endswith(DONATED) else "")]
            rows.append(Row(
                "jax", label, name, _median_ms(bare), _median_ms(times[name]),
                statistics.median(v / b for v, b in zip(times[name], bare)), memory[name],
                extra[name], count))
        rows += _split_rows("jax", label, ire_name, record, base, sz, memory[ire_name],
                            extra[ire_name], count)
    return rows


def _split_rows(backend, label, name, record, base, sz: Sizes, peak, extra, count,
                refresh_peak=None) -> list[Row]:
    """The ``…, steps without refresh`` and ``…, refresh steps`` rows from the
    per-step ``record`` of an IRE variant (warm-up round first) and the base's
    per-round step times; a kind of step the rounds did not hold has no row.
    The memory columns are the variant's own."""
    rows = []
    rounds = [record[(r + 1) * sz.steps:(r + 2) * sz.steps] for r in range(len(base))]
    for kind, refresh in (("steps without refresh", False), ("refresh steps", True)):
        mine = [[t for due, t in steps if due == refresh] for steps in rounds]
        pairs = [(statistics.mean(m), b) for m, b in zip(mine, base) if m]
        if pairs:
            rows.append(Row(backend, label, f"{name}, {kind}", _median_ms(base),
                            _median_ms([m for m, _ in pairs]),
                            statistics.median(m / b for m, b in pairs), peak, extra, count,
                            refresh_peak))
    return rows


def _jax_problem(kind, spec, sz: Sizes):
    import jax
    import jax.numpy as jnp

    key = jax.random.PRNGKey(0)
    if kind == "mlp":
        inputs, hidden = spec
        keys = jax.random.split(key, 5)
        dims = [(inputs, hidden), (hidden, hidden), (hidden, 10)]
        params = [
            {"w": jax.random.normal(k, d) / math.sqrt(d[0]), "b": jnp.zeros(d[1])}
            for k, d in zip(keys, dims)
        ]
        x = jax.random.normal(keys[3], (sz.batch, inputs))
        y = jax.random.randint(keys[4], (sz.batch,), 0, 10)

        def loss(p):
            h = x
            for layer in p[:-1]:
                h = jax.nn.relu(h @ layer["w"] + layer["b"])
            logits = h @ p[-1]["w"] + p[-1]["b"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

        return params, loss

    from .lm_config import LlamaConfig
    from .lm_jax import forward, init_params, language_model_loss

    config = LlamaConfig(vocab_size=256, **spec)
    params = init_params(config, key)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (sz.lm_batch, config.seq_len + 1), 0, 256)

    def loss(p):
        return language_model_loss(forward(p, tokens[:, :-1], config), tokens[:, 1:])

    return params, loss


# -- Keras -----------------------------------------------------------------------


def _keras_rows(sz: Sizes, failures: dict) -> list[Row]:
    rows = []
    cases = [("mlp", name, spec) for name, spec in sz.mlp.items()]
    cases += [("lm", name, spec) for name, spec in sz.lm.items()]
    for kind, size, spec in cases:
        _progress(f"keras {kind}-{size}")
        try:
            rows += _keras_case(kind, size, spec, sz)
        except Exception as error:  # an adapter that cannot run this model: reported
            message = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split())
            failures[f"keras {kind}-{size}"] = f"{type(error).__name__}: {message[:300]}"
    return rows


def _keras_case(kind, size, spec, sz: Sizes) -> list[Row]:
    """Rows ``keras AdamW`` and ``ire_keras gradient`` (whole refresh periods
    of ``model.train_on_batch``), the same two compiled with
    ``jit_compile=True`` (XLA; each IRE row against its own base), then
    ``ire_keras gradient`` split by kind of step as in :func:`_jax_rows`."""
    import keras
    import numpy as np

    import ire_keras

    ire_name, xla = "ire_keras gradient", ", jit_compile=True"
    bases = {"keras AdamW": "keras AdamW", ire_name: "keras AdamW",
             "keras AdamW" + xla: "keras AdamW" + xla, ire_name + xla: "keras AdamW" + xla}
    rows = []
    make, x, y = _keras_problem(kind, spec, sz)

    def optimizer_for(name):
        base = keras.optimizers.AdamW(1e-3, weight_decay=0.1)
        return base if name.startswith("keras AdamW") else ire_keras.IRE(
            base, kappa=KAPPA, flat_fraction=GAMMA, interval=INTERVAL)

    peaks = {name: _keras_step_peaks(make, optimizer_for(name), x, y, name.endswith(xla))
             for name in bases}
    models = {}
    for name in bases:
        keras.utils.set_random_seed(0)
        model = make()
        model.compile(optimizer=optimizer_for(name), jit_compile=name.endswith(xla),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.train_on_batch(x, y)
        models[name] = model
    record = []  # (refresh step?, seconds) of every IRE step, warm-up round first
    taken = [int(keras.ops.convert_to_numpy(models[ire_name].optimizer.iterations))]

    def ire_step(model=models[ire_name]):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        record.append((taken[0] % INTERVAL == 0, time.perf_counter() - start))
        taken[0] += 1

    steppers = {name: (lambda m=model: m.train_on_batch(x, y)) for name, model in models.items()}
    steppers[ire_name] = ire_step
    times = _interleaved(steppers, sz.rounds, sz.steps)
    base_model = models["keras AdamW"]
    count = int(sum(np.prod(w.shape) for w in base_model.trainable_weights))
    param_bytes = 4 * count
    states = {
        name: sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                  for v in m.optimizer.variables)
        for name, m in models.items()
    }
    label = f"{kind}-{size} ({_count(count)})"
    for name, base_name in bases.items():
        base = times[base_name]
        rows.append(Row(
            "keras", label, name, _median_ms(base), _median_ms(times[name]),
            statistics.median(v / b for v, b in zip(times[name], base)), peaks[name][0],
            (states[name] - states[base_name]) / param_bytes, count, peaks[name][1]))
    extra = (states[ire_name] - states["keras AdamW"]) / param_bytes
    rows += _split_rows("keras", label, ire_name, record, times["keras AdamW"], sz,
                        peaks[ire_name][0], extra, count, peaks[ire_name][1])
    return rows


def _keras_step_peaks(make, optimizer, x, y, jit_compile: bool):
    """``(step, refresh)``: the most memory (MiB) that TensorFlow's CPU
    allocator held during one ``optimizer.apply`` beyond what it held before,
    over two refresh periods of steps on one batch's gradients, on steps
    without and with a refresh (``None`` for a kind of step not seen, and for
    both off TensorFlow or where the allocator keeps no statistics: with
    ``TF_ENABLE_ONEDNN_OPTS=0``, unless ``TF_CPU_ALLOCATOR_USE_BFC=true``)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None, None
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = make()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        value = loss(y, model(x))
    weights = model.trainable_variables
    grads = tape.gradient(value, weights)
    optimizer.build(weights)
    step = tf.function(lambda: optimizer.apply(grads, weights), jit_compile=jit_compile)
    refresh_due = getattr(optimizer, "is_refresh_step", lambda: False)
    step()
    peaks = {False: [], True: []}
    try:
        for _ in range(2 * INTERVAL):
            refresh = bool(refresh_due())
            tf.config.experimental.reset_memory_stats("CPU:0")
            before = tf.config.experimental.get_memory_info("CPU:0")["current"]
            step()
            peaks[refresh].append(tf.config.experimental.get_memory_info("CPU:0")["peak"] - before)
    except (ValueError, AttributeError, tf.errors.OpError):
        return None, None
    return tuple(_mib(max(p)) if p else None for p in (peaks[False], peaks[True]))


def _keras_problem(kind, spec, sz: Sizes):
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    if kind == "mlp":
        inputs, hidden = spec

        def make():
            return keras.Sequential([
                keras.Input((inputs,)), keras.layers.Dense(hidden, activation="relu"),
                keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(10)])

        return make, rng.normal(size=(sz.batch, inputs)).astype("float32"), \
            rng.integers(0, 10, sz.batch)

    dim, layers, heads, seq = spec["dim"], spec["layers"], spec["heads"], spec["seq_len"]

    def make():
        tokens = keras.Input((seq,), dtype="int32")
        h = keras.layers.Embedding(256, dim)(tokens)
        for _ in range(layers):
            a = keras.layers.LayerNormalization()(h)
            a = keras.layers.MultiHeadAttention(heads, dim // heads)(a, a, use_causal_mask=True)
            h = h + a
            f = keras.layers.LayerNormalization()(h)
            f = keras.layers.Dense(4 * dim, activation="gelu")(f)
            h = h + keras.layers.Dense(dim)(f)
        return keras.Model(tokens, keras.layers.Dense(256)(h))

    data = rng.integers(0, 256, (sz.lm_batch, seq + 1)).astype("int32")
    return make, data[:, :-1], data[:, 1:]


# -- reporting ---------------------------------------------------------------------


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def format_rows(rows: list[Row]) -> str:
    """A Markdown table of overhead rows.

    Example:
      >>> row = Row("torch", "mlp-small (0.3M)", "IRE gradient", 10.0, 10.3, 1.03, 4.4, 0.25,
      ...           300_000)
      >>> print(format_rows([row]).splitlines()[-1])
      | mlp-small (0.3M) | IRE gradient | 10.00 | 10.30 | 1.030 | 4.4 | n/a | 0.250 |
    """
    lines = [
        "| model | variant | base ms | IRE ms | ratio | step peak MiB | refresh peak MiB "
        "| extra state × params |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = "n/a" if r.peak_mib is None else f"{r.peak_mib:.1f}"
        refresh = "n/a" if r.refresh_peak_mib is None else f"{r.refresh_peak_mib:.1f}"
        lines.append(f"| {r.model} | {r.variant} | {r.base_ms:.2f} | {r.ire_ms:.2f} | "
                     f"{r.ratio:.3f} | {peak} | {refresh} | {r.extra_state:.3f} |")
    return "\n".join(lines)


def format_selection(rows: list[dict]) -> str:
    """A Markdown table of the mask-selection timings."""
    lines = ["| what | coordinates | ms | × AdamW step | flat-count deviation |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        deviation = "" if r["flat_count_deviation"] is None else \
            f"{100 * r['flat_count_deviation']:+.3f} % of N"
        lines.append(f"| {r['what']} | {r['coordinates']:,} | {r['ms']:.1f} | "
                     f"{r['ratio_to_adamw']:.2f} | {deviation} |")
    return "\n".join(lines)


def format_agreement(rows: list[dict]) -> str:
    """A Markdown table of the Fisher mask agreements: a quarter batch, and
    the full batch with other sampled labels, against the full batch."""
    lines = ["| model | Fisher estimate | coordinates with the same mask bit "
             "| full-batch flat set kept |",
             "|---|---|---:|---:|"]
    for r in rows:
        for key, what in (("quarter", "1/4 batch, same labels"),
                          ("redraw", "full batch, other labels")):
            lines.append(f"| {r['model']} | {what} | {100 * r[f'{key}_agreement']:.1f} % | "
                         f"{100 * r[f'{key}_flat_overlap']:.1f} % |")
    return "\n".join(lines)


def machine_facts(threads: int, device: str = "cpu") -> dict:
    """What the numbers depend on."""
    facts = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "torch_device": device,
    }
    if device != "cpu":
        import torch

        facts["torch_device_name"] = torch.cuda.get_device_name(device)
    try:
        facts["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    for package in ("torch", "jax", "optax", "keras", "tensorflow"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return facts


def run_overhead(quick: bool = False, backends=("torch", "jax", "keras"),
                 threads: int = 2, device: str = "cpu") -> dict:
    """Runs the benchmark; returns the rows, the selection timings, the
    Fisher agreement and the machine facts. ``device`` is torch's (JAX and
    Keras run on their default device)."""
    sz = sizes(quick)
    result = {"rows": [], "selection": [], "fisher_agreement": [], "skipped": {},
              "failed": {}}
    for backend in backends:
        missing = require_backend(backend)
        if missing:
            result["skipped"][backend] = missing
            continue
        if backend == "torch":
            rows, agreement = _torch_rows(sz, threads, device)
            result["rows"] += rows
            result["fisher_agreement"] = agreement
            result["selection"] = _selection_rows(sz, threads, device)
        elif backend == "jax":
            result["rows"] += _jax_rows(sz)
        else:
            result["rows"] += _keras_rows(sz, result["failed"])
    result["machine"] = machine_facts(threads, device)
    return result


def report(result: dict) -> str:
    """The whole result as Markdown."""
    parts = []
    for backend in ("torch", "jax", "keras"):
        rows = [r for r in result["rows"] if r.backend == backend]
        if rows:
            parts.append(f"### {backend}\n\n{format_rows(rows)}")
        elif backend in result["skipped"]:
            parts.append(f"### {backend}\n\nnot run: {result['skipped'][backend]}")
    for what, error in result["failed"].items():
        parts.append(f"{what}: failed: {error}")
    if result["selection"]:
        parts.append(f"### Flat-mask selection\n\n{format_selection(result['selection'])}")
    if result["fisher_agreement"]:
        parts.append("### Fisher masks against the full-batch Fisher mask\n\n"
                     + format_agreement(result["fisher_agreement"]))
    facts = ", ".join(f"{k}={v}" for k, v in result["machine"].items())
    parts.append(f"Machine: {facts}")
    return "\n\n".join(parts) + "\n"


def _check_torch_device(parser, device: str) -> None:
    import torch

    try:
        kind = torch.empty(0, device=device).device.type
    except (RuntimeError, AssertionError) as error:
        parser.error(f"--device {device!r} is not usable by torch: {error}")
    if kind not in ("cpu", "cuda"):  # the timing waits for CUDA queues only
        parser.error(f"--device must be cpu or a CUDA device, got {device!r}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overhead",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--backends", default="torch,jax,keras",
                        help="comma-separated subset of torch,jax,keras")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for overhead.md and overhead.json")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu",
                        help="torch device of the torch rows: cpu (default) or cuda[:N]")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for backend in backends:
        require_backend(backend)  # raises on unknown names
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if "torch" in backends and args.device != "cpu":
        _check_torch_device(parser, args.device)
    result = run_overhead(args.quick, backends, args.threads, args.device)
    text = report(result)
    print(text, end="")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "overhead.md").write_text(text)
        serial = {**result, "rows": [asdict(r) for r in result["rows"]]}
        (args.out / "overhead.json").write_text(json.dumps(serial, indent=2))
    return result


if __name__ == "__main__":
    main()
