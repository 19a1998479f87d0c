"""Averaging curvature ingredients across data-parallel ranks.

Under DDP every rank sees its own slice of the batch. The linear ingredients
of the curvature estimate (the sampled-label gradient of ``fisher``, the
Hessian-vector products of ``hutchinson``, the values of ``exact`` and of a
user estimator) are averaged with one ``all_reduce`` per dtype, so every rank
ranks the same values and holds the same mask, and the estimate equals the one
a single process would make on the combined batch (for equal per-rank batch
sizes). The ``gradient`` estimator needs no communication: DDP has already
averaged the gradients.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from ._views import views_like

__all__ = ["CurvatureSync"]


class CurvatureSync:
    """Averages lists of tensors over the ranks of a process group.

    Args:
      enabled: ``True`` to average, ``False`` never to, ``None`` (default) to
        average exactly when ``torch.distributed`` is initialized with more
        than one rank.
      process_group: the group to average over (default: the world).

    Example:
      >>> import torch
      >>> sync = CurvatureSync()          # no process group: nothing to average
      >>> sync.average([torch.ones(2)])[0].tolist()
      [1.0, 1.0]
    """

    def __init__(self, enabled: bool | None = None, process_group=None):
        if enabled is not None and not isinstance(enabled, bool):
            raise TypeError(f"sync_curvature must be True, False or None, got {enabled!r}")
        self.enabled = enabled
        self.process_group = process_group

    def world_size(self) -> int:
        """The number of ranks averaged over (1 when not distributed)."""
        if self.enabled is False or not (dist.is_available() and dist.is_initialized()):
            if self.enabled:
                raise RuntimeError(
                    "sync_curvature=True needs an initialized torch.distributed process group"
                )
            return 1
        return dist.get_world_size(self.process_group)

    def average(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The element-wise mean of ``tensors`` over the ranks (new tensors)."""
        tensors = list(tensors)
        world = self.world_size()
        if world == 1 or not tensors:
            return tensors
        out: list = [None] * len(tensors)
        by_dtype: dict = {}
        for i, t in enumerate(tensors):
            by_dtype.setdefault((t.dtype, t.device), []).append(i)
        for indices in by_dtype.values():
            flat = torch.cat([tensors[i].reshape(-1) for i in indices])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.process_group)
            flat.div_(world)
            for i, view in zip(indices, views_like(flat, [tensors[i] for i in indices])):
                out[i] = view
        return out
