"""The overhead benchmark's harness: sizes, interleaved timing, medians, machine facts.

Every backend's rows are timed the same way: :func:`interleaved` runs each
variant for ``steps`` steps in turn, round after round, and the rows report
medians over rounds, so a base and its IRE variant are compared under the
same machine load.

Example:
  >>> ticks = {"a": lambda: None, "b": lambda: None}
  >>> times = interleaved(ticks, rounds=3, steps=2)
  >>> [len(times[name]) for name in ticks]  # round 0 is warm-up
  [3, 3]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata

__all__ = [
    "GAMMA", "INTERVAL", "KAPPA", "Row", "Sizes", "cases", "interleaved", "is_refresh_step",
    "label", "machine_facts", "median_ms", "median_ratio", "mib", "progress", "sizes",
    "split_rows",
]

INTERVAL = 10
"""Steps per refresh period: each round runs whole periods of every variant."""
KAPPA, GAMMA = 2.0, 0.6
"""The amplification and the flat fraction of every IRE variant."""


@dataclass
class Row:
    """One line of an overhead table.

    Attributes:
      backend: ``"torch"``, ``"jax"`` or ``"keras"``.
      model: model and size, e.g. ``"lm-large (3.4M)"``.
      variant: what is timed against the base.
      base_ms: median step time of the base optimizer (ms).
      ire_ms: median step time of this variant (ms).
      ratio: median over rounds of this variant's time over the base's.
      peak_mib: peak memory of the optimizer step (MiB), ``None`` where the
        backend's public statistics cannot tell it.
      extra_state: persistent state beyond the base optimizer's, as a
        multiple of the parameter bytes.
      params: number of parameters.
      refresh_peak_mib: peak memory of a refresh step (MiB), where measured
        apart from the other steps.
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
    """The problem sizes of one run (``--quick`` shrinks everything).

    Attributes:
      mlp: ``{size name: (inputs, hidden)}`` of the MLPs.
      lm: ``{size name: LlamaConfig keywords}`` of the language models.
      batch: MLP batch size.
      lm_batch: language-model batch size (sequences).
      rounds: timed rounds (after one warm-up round).
      steps: steps of each variant per round.
      coordinates: values of the flat-mask selection table.
      selection_rounds: timed rounds of the selection table.
    """

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


def cases(sz: Sizes) -> list[tuple[str, str, object]]:
    """``(kind, size name, spec)`` of every model, MLPs first.

    Example:
      >>> [(kind, size) for kind, size, _ in cases(sizes(quick=True))]
      [('mlp', 'small'), ('mlp', 'large'), ('lm', 'small'), ('lm', 'large')]
    """
    return ([("mlp", name, spec) for name, spec in sz.mlp.items()]
            + [("lm", name, spec) for name, spec in sz.lm.items()])


def progress(what: str) -> None:
    """Reports progress on stderr (the tables go to stdout)."""
    print(f"[overhead] {what}", file=sys.stderr, flush=True)


def interleaved(steppers: dict, rounds: int, steps: int, sync=None) -> dict:
    """Seconds per step of each stepper, one value per timed round.

    Each of ``rounds + 1`` rounds runs every stepper for ``steps`` steps in
    turn; round 0 is warm-up and is not recorded.

    Args:
      steppers: ``{name: step()}``.
      rounds: timed rounds.
      steps: steps of each stepper per round.
      sync: waits for queued device work; called before each clock read.

    Returns:
      ``{name: [seconds per step of each timed round]}``.
    """
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


def median_ms(seconds) -> float:
    """The median of ``seconds``, in milliseconds.

    Example:
      >>> median_ms([0.001, 0.003, 0.002])
      2.0
    """
    return 1e3 * statistics.median(seconds)


def median_ratio(times, base) -> float:
    """The median over rounds of ``times[i] / base[i]``.

    Example:
      >>> median_ratio([2.0, 3.0, 5.0], [1.0, 2.0, 2.0])
      2.0
    """
    return statistics.median(t / b for t, b in zip(times, base))


def is_refresh_step(taken: int) -> bool:
    """Whether an IRE optimizer that has taken ``taken`` steps refreshes on
    its next one: steps 0, K, 2K, … with ``K = INTERVAL``, the schedule of
    ``ire_core.is_refresh_step`` with IRE active from the first step.

    Example:
      >>> [t for t in range(25) if is_refresh_step(t)]
      [0, 10, 20]
    """
    return taken % INTERVAL == 0


def label(kind: str, size: str, params: int) -> str:
    """The model column: kind, size and parameter count.

    Example:
      >>> label("mlp", "small", 269_322), label("lm", "large", 3_240_000)
      ('mlp-small (0.3M)', 'lm-large (3.2M)')
      >>> label("mlp", "small", 970)
      'mlp-small (1.0k)'
    """
    count = f"{params / 1e6:.1f}M" if params >= 1e5 else f"{params / 1e3:.1f}k"
    return f"{kind}-{size} ({count})"


def mib(nbytes):
    """``nbytes`` in MiB; ``None`` stays ``None``.

    Example:
      >>> mib(3 * 2**19), mib(None)
      (1.5, None)
    """
    return None if nbytes is None else nbytes / 2**20


def split_rows(backend: str, model: str, name: str, record, base, steps: int, peak, extra,
               params: int, refresh_peak=None) -> list[Row]:
    """The ``<name>, steps without refresh`` and ``<name>, refresh steps`` rows.

    Args:
      backend, model, name: the row's backend, model label and the IRE
        variant's name.
      record: ``(refresh step?, seconds)`` of every step of the variant, in
        order, warm-up round first.
      base: the base's seconds per step of each timed round.
      steps: steps per round.
      peak, extra, params, refresh_peak: the variant's own memory columns.

    Returns:
      One row per kind of step the timed rounds held: its median over rounds
      of the round's mean step of that kind, and the median ratio to the
      base's step of the same round.

    Example:
      >>> record = [(True, 9.0), (False, 9.0), (True, 0.004), (False, 0.002)]
      >>> rows = split_rows("jax", "mlp-small (1.0k)", "ire", record, [0.002], 2, None, 0.25,
      ...                   970)
      >>> [(r.variant, r.ratio) for r in rows]
      [('ire, steps without refresh', 1.0), ('ire, refresh steps', 2.0)]
    """
    rows = []
    rounds = [record[(r + 1) * steps:(r + 2) * steps] for r in range(len(base))]
    for kind, refresh in (("steps without refresh", False), ("refresh steps", True)):
        mine = [[t for due, t in taken if due == refresh] for taken in rounds]
        pairs = [(statistics.mean(m), b) for m, b in zip(mine, base) if m]
        if pairs:
            rows.append(Row(backend, model, f"{name}, {kind}", median_ms(base),
                            median_ms([m for m, _ in pairs]),
                            statistics.median(m / b for m, b in pairs), peak, extra, params,
                            refresh_peak))
    return rows


def machine_facts(threads: int, device: str = "cpu") -> dict:
    """What the numbers depend on: interpreter, processor, threads, torch
    device, load average and the frameworks' versions."""
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
