"""Slices, batches and 0/1 masks: the parts the fused SGD and Adam steps share.

The fused steps (:mod:`ire_torch._fused_sgd`, :mod:`ire_torch._fused_adam`)
walk the base optimizer's tensors as ``torch.optim`` does: per device and
dtype for foreach steps, per tensor otherwise. This module holds how they
cut that work up and how a boolean mask enters an update:

* :func:`chunks` cuts a large contiguous CPU tensor into cache-sized slices
  (or any tensor into slices of a given size). Every operation of a step is
  elementwise, so a step taken slice by slice equals the whole-tensor step
  bit for bit.
* :func:`groups` packs consecutive slices into groups of a bounded total.
* :func:`addcmul_flat_` adds ``value · factor ⊙ P`` for masks ``P`` read as
  0/1 bytes, through a float scratch buffer off the CPU.

The step modules read the sizes and :func:`addcmul_flat_` through this
module (``slices.DEVICE_SCRATCH``, not a copy of the value), so a test that
sets them here reaches every step.

Example:
  >>> import torch
  >>> [len(part) for part, in chunks(torch.zeros(10), size=4)]
  [4, 4, 2]
  >>> groups([3, 3, 5, 1], 6)
  [[0, 1], [2, 3]]
  >>> target, flat = torch.zeros(3), as_bytes(torch.tensor([True, False, True]))
  >>> addcmul_flat_([target], [torch.ones(3)], [flat], 2.0)
  >>> target.tolist()
  [2.0, 0.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ._views import views_like

# Devices where torch.optim defaults to foreach kernels (foreach=None).
FOREACH_DEVICES = ("cuda", "xpu")
# Coordinates per slice of a per-tensor step on the CPU: 2^18 values, so a
# slice of every operand of a step stays in the CPU cache between passes.
CHUNK = 1 << 18
# torch's CPU fused Adam kernel works in cache-line units with vector loops;
# slices of a multiple of 4096 coordinates start and end on unit boundaries,
# so the kernel rounds every coordinate as it would on the whole tensor.
KERNEL_ALIGN = 1 << 12
# Off the CPU, masks are turned into floats in a scratch buffer of at most
# this many coordinates at a time: a bounded buffer, few launches.
DEVICE_SCRATCH = 1 << 22


def uses_foreach(params: Sequence[torch.Tensor], foreach) -> bool:
    """The group's ``foreach`` setting, resolved as torch.optim resolves it."""
    if foreach is None:
        return all(p.device.type in FOREACH_DEVICES for p in params)
    return bool(foreach)


def device_batches(params: Sequence[torch.Tensor]) -> list[list[int]]:
    """Indices of ``params`` per device and dtype (one foreach call each)."""
    batches: dict = {}
    for i, p in enumerate(params):
        batches.setdefault((p.device, p.dtype), []).append(i)
    return list(batches.values())


def masks_of(group_params, amplify: Mapping, kappa) -> list:
    """Each parameter's mask from ``amplify``; ``None`` where it has none, and
    for every parameter when ``kappa`` is 0 (nothing amplified)."""
    if not kappa:
        return [None] * len(group_params)
    return [amplify[p][0] if p in amplify else None for p in group_params]


def as_bytes(mask: torch.Tensor) -> torch.Tensor:
    """The boolean mask read as 0/1 bytes (no copy: a view): for ``addcmul``
    a uint8 operand is the cheaper one to read as a number than a bool."""
    return mask.view(torch.uint8)


def flat_parts(masks, *tensor_lists):
    """The entries of each of ``tensor_lists`` whose mask is not ``None``, and
    those masks as 0/1 bytes."""
    chosen = [i for i, m in enumerate(masks) if m is not None]
    parts = [[tensors[i] for i in chosen] for tensors in tensor_lists]
    return (*parts, [as_bytes(masks[i]) for i in chosen])


def addcmul_flat_(targets, factors, flats, value, through_scratch: bool | None = None) -> None:
    """``targets += value · factors ⊙ flats`` over lists of tensors, the flat
    masks as 0/1 bytes.

    A foreach kernel takes one launch per list only when every tensor has
    the same dtype; with byte masks it falls back to a kernel per tensor. On
    the CPU that fallback is what foreach does anyway. Elsewhere the masks
    are first copied into a float scratch buffer (``_foreach_copy_`` converts
    in one launch), at most ``DEVICE_SCRATCH`` coordinates at a time, a
    larger contiguous tensor in slices of that size; 0.0 and 1.0 multiply
    exactly as the bytes do. ``through_scratch`` overrides the choice.
    """
    if not targets:
        return
    if through_scratch is None:
        through_scratch = targets[0].device.type != "cpu"
    if not through_scratch:
        torch._foreach_addcmul_(targets, factors, flats, value=value)
        return
    pieces = [piece for triple in zip(targets, factors, flats)
              for piece in chunks(*triple, size=DEVICE_SCRATCH)]
    for group in groups([piece[0].numel() for piece in pieces], DEVICE_SCRATCH):
        masks = [pieces[j][2] for j in group]
        scratch = torch.empty(sum(m.numel() for m in masks),
                              dtype=targets[0].dtype, device=targets[0].device)
        floats = views_like(scratch, masks)
        torch._foreach_copy_(floats, masks)
        torch._foreach_addcmul_([pieces[j][0] for j in group], [pieces[j][1] for j in group],
                                floats, value=value)


def slice_size(align: int = 1) -> int:
    """The coordinates per CPU slice: ``CHUNK`` rounded down to a multiple of
    ``align`` (at least ``align``)."""
    return max(align, CHUNK // align * align)


def chunks(*tensors, align: int = 1, size: int | None = None):
    """Matching flat slices of ``tensors`` (``None`` entries stay ``None``),
    ``CHUNK`` coordinates at a time; the tensors themselves when they are
    small, not all contiguous, or not on the CPU. With ``size``, slices of
    ``size`` coordinates on any device.

    A per-tensor step makes several passes over each operand; over a slice
    that fits in the CPU cache, every pass after the first reads from the
    cache. Every operation is elementwise, so the result is the same bit for
    bit. (On an accelerator, slices would only add kernel launches.) With
    ``align``, slices hold a multiple of ``align`` coordinates.
    """
    present = [t for t in tensors if t is not None]
    n = present[0].numel()
    anywhere = size is not None
    size = size if anywhere else slice_size(align)
    if (n <= size or not (anywhere or present[0].device.type == "cpu")
            or not all(t.is_contiguous() for t in present)):
        yield tensors
        return
    flat = [None if t is None else t.view(-1) for t in tensors]
    for start in range(0, n, size):
        yield tuple(None if t is None else t[start : start + size] for t in flat)


def groups(sizes: Sequence[int], limit: int) -> list[list[int]]:
    """Consecutive indices packed into groups of at most ``limit`` in total
    (a larger entry forms a group of its own)."""
    packed, current, total = [], [], 0
    for j, n in enumerate(sizes):
        if current and total + n > limit:
            packed.append(current)
            current, total = [], 0
        current.append(j)
        total += n
    if current:
        packed.append(current)
    return packed
