"""The flat-mask selection table: a global selection against one AdamW step.

Over ``Sizes.coordinates`` curvature values in ten torch tensors (on the
torch device of the run), the rows time:

* ``AdamW step`` and ``AdamW step, fused=True``: one step of AdamW over as
  many parameters, the unit of the ratio column;
* ``select_flat_mask, exact`` / ``…, exact, one buffer`` / ``…, sampled``:
  ``ire_torch.selection.select_flat_mask``, the selection ire_torch runs at
  a refresh, with its exact threshold, on separate tensors or on views of
  one buffer (as ire_torch's estimators write the curvature), and with
  ``ire_core.SampledThreshold`` ranking its sample as ire_torch does
  (``ire_core.threshold.with_exact_rank``);
* ``exact threshold only`` / ``sampled threshold only`` / ``histogram
  threshold only``: the threshold alone
  (``ire_torch.selection.exact_threshold``, ``ire_core.SampledThreshold``,
  ``ire_core.HistogramThreshold``), without building the masks.

Each row is interleaved round by round with the AdamW step alone, so that
one row's large temporaries do not slow another row's clock; the ``AdamW
step`` row is the median over all of them. The approximate thresholds also
report their flat-count deviation: (values at or under the threshold − the
flat count ``k``) / N.
"""

from __future__ import annotations

from .harness import GAMMA, Sizes, interleaved, median_ms, median_ratio, progress
from .torch_rows import sync

__all__ = ["selection_rows"]


def selection_rows(sz: Sizes, threads: int, device: str = "cpu") -> list[dict]:
    """The selection table's rows: ``{"what", "coordinates", "ms",
    "ratio_to_adamw", "flat_count_deviation"}`` (the deviation is ``None``
    for exact rows), the ``AdamW step`` row first."""
    import torch

    import ire_core
    from ire_core.threshold import with_exact_rank
    from ire_torch.selection import exact_threshold, select_flat_mask

    torch.set_num_threads(threads)
    progress("mask selection")
    n = sz.coordinates
    shapes = [(n // 10,)] * 10
    generator = torch.Generator().manual_seed(0)
    curvature = [torch.rand(s, generator=generator).square_().to(device) for s in shapes]
    in_one_buffer = list(torch.cat(curvature).split([c.numel() for c in curvature]))
    adamw = _adamw(curvature, generator, device)
    # Parameters of its own: the two optimizers never step the same tensors.
    fused = _adamw(curvature, generator, device, fused=True)
    k = ire_core.flat_count(GAMMA, n)
    sampled = with_exact_rank(ire_core.SampledThreshold(), exact_threshold)
    histogram = ire_core.HistogramThreshold()
    runs = {
        "AdamW step, fused=True": fused.step,
        "select_flat_mask, exact": lambda: select_flat_mask(curvature, GAMMA),
        "select_flat_mask, exact, one buffer": lambda: select_flat_mask(in_one_buffer, GAMMA),
        "select_flat_mask, sampled": lambda: select_flat_mask(
            curvature, GAMMA, threshold_fn=sampled),
        "exact threshold only": lambda: exact_threshold(curvature, k),
        "sampled threshold only": lambda: sampled(curvature, k),
        "histogram threshold only": lambda: histogram(curvature, k),
    }
    adamw_times, rows = [], []
    for name, run in runs.items():
        times = interleaved({"AdamW step": adamw.step, name: run}, sz.selection_rounds, 1,
                            sync(device))
        adamw_times += times["AdamW step"]
        deviation = None
        if "sampled" in name or "histogram" in name:
            tau = (sampled if "sampled" in name else histogram)(curvature, k)
            deviation = (sum(int((h <= tau).sum()) for h in curvature) - k) / n
        rows.append({
            "what": name, "coordinates": n, "ms": median_ms(times[name]),
            "ratio_to_adamw": median_ratio(times[name], times["AdamW step"]),
            "flat_count_deviation": deviation,
        })
    adamw_row = {"what": "AdamW step", "coordinates": n, "ms": median_ms(adamw_times),
                 "ratio_to_adamw": 1.0, "flat_count_deviation": None}
    return [adamw_row, *rows]


def _adamw(curvature, generator, device, **kwargs):
    """AdamW over parameters shaped like ``curvature``, with the curvature
    as gradients, after one step (its state exists)."""
    import torch

    params = [torch.nn.Parameter(torch.randn(c.shape, generator=generator).to(device))
              for c in curvature]
    for p, h in zip(params, curvature):
        p.grad = h.clone()
    optimizer = torch.optim.AdamW(params, lr=1e-3, **kwargs)
    optimizer.step()
    return optimizer
