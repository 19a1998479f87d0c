"""Counting and reducing large arrays the way XLA's CPU backend runs well.

XLA's CPU backend does not fuse an elementwise expression into the
reduction that consumes it: ``jnp.sum(x <= pivot)`` first writes the whole
comparison out as int32, ``jnp.max(jnp.where(x <= b, x, 0))`` the whole
``where`` as float32. For the threshold search that is a full extra array per
pass, and a larger block of temporaries for the step (a block above the
allocator's mmap threshold is mapped afresh on every call). Two remedies,
both exact:

* :func:`packed_count_true` counts a bool array four at a time, as uint32
  words whose set bits are counted;
* :func:`reduce_in_chunks` applies a reduction to consecutive cache-sized
  slices of a 1-d array in a loop, so only one slice's temporary exists at
  a time. It is used on the CPU only: elsewhere XLA fuses the reduction, and
  a loop of slices would only serialize it (and, on a sharded array, make
  the slices travel).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["packed_count_true", "reduce_in_chunks"]

_BOOLS_PER_WORD = 4

#: Values per slice in :func:`reduce_in_chunks`: 2^18 values, so a slice's
#: temporary stays in the CPU cache.
CHUNK = 1 << 18


def packed_count_true(mask, dtype):
    """The number of True entries of a JAX bool array, counted four at a time.

    The mask is read as uint32 words of four bools and each word's set bits
    are counted, so a pass writes one int32 per four values where
    ``jnp.sum`` on the CPU writes one per value. The grouping runs along the
    last axis (sharded leading axes stay as they are); a mask whose last axis
    is not a multiple of four is summed plainly.

    Example:
      >>> import jax.numpy as jnp
      >>> int(packed_count_true(jnp.arange(10) % 3 == 0, jnp.int32))
      4
    """
    shape = mask.shape
    if not shape or shape[-1] % _BOOLS_PER_WORD:
        return jnp.sum(mask, dtype=dtype)
    grouped = jnp.reshape(mask.astype(jnp.uint8), (*shape[:-1], -1, _BOOLS_PER_WORD))
    words = lax.bitcast_convert_type(grouped, jnp.uint32)
    return jnp.sum(lax.population_count(words), dtype=dtype)


def reduce_in_chunks(flat, reduce: Callable, combine: Callable, chunk: int | None = None):
    """``reduce`` over the 1-d array ``flat``, one slice of ``chunk`` values at a time.

    Args:
      flat: a 1-d array.
      reduce: maps a 1-d slice to a 0-d result.
      combine: ``(a, b) -> a ∘ b``, associative (e.g. ``jnp.add``,
        ``jnp.maximum``): how the slices' results add up.
      chunk: values per slice; ``None`` is :data:`CHUNK`.

    Returns:
      ``reduce(flat)`` computed slice by slice on the CPU backend, and in one
      piece elsewhere or when ``flat`` is no longer than two slices.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.arange(10.0)
      >>> int(reduce_in_chunks(x, lambda s: jnp.sum(s > 4.5), jnp.add, chunk=3))
      5
    """
    chunk = CHUNK if chunk is None else chunk
    n = flat.shape[0]
    whole = n // chunk
    if whole < 2 or jax.default_backend() != "cpu":
        return reduce(flat)

    def step(i, total):
        return combine(total, reduce(lax.dynamic_slice(flat, (i * chunk,), (chunk,))))

    total = lax.fori_loop(1, whole, step, reduce(flat[:chunk]))
    if whole * chunk < n:
        total = combine(total, reduce(flat[whole * chunk:]))
    return total
