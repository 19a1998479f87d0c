"""Small helpers over the array API namespace of the arrays at hand."""

from __future__ import annotations

import math
import numbers

from array_api_compat import array_namespace, device


def namespace(*arrays):
    """The array API namespace of ``arrays`` (NumPy, torch, JAX, …)."""
    return array_namespace(*arrays)


def is_scalar(value) -> bool:
    """True for Python numbers, False for arrays (possibly traced)."""
    return isinstance(value, numbers.Number)


def ranking_dtype(xp, dtypes):
    """The dtype curvature is ranked in: the common dtype, at least float32.

    Half-precision curvature would tie most coordinates, so bfloat16 and
    float16 estimates are compared in float32.
    """
    return xp.result_type(xp.float32, *dtypes)


def as_dtype_of(xp, value, reference):
    """``value`` as an array of ``reference``'s dtype, or as is if a Python
    number (Python numbers keep the array's dtype under promotion)."""
    if is_scalar(value):
        return value
    return xp.astype(xp.asarray(value), reference.dtype)


def count_dtype(xp, total: int):
    """The integer dtype for counting up to ``total`` coordinates: int32 where
    it suffices (JAX without x64 has no int64)."""
    return xp.int32 if total < 2**31 else xp.int64


def count_true(xp, mask, dtype):
    """The number of True entries of ``mask`` as a 0-d array of ``dtype``,
    without widening the whole mask where the namespace can count directly."""
    if hasattr(xp, "count_nonzero"):
        return xp.astype(xp.count_nonzero(mask), dtype)
    return xp.sum(xp.astype(mask, dtype))


def infinity_like(xp, like):
    """+inf as a 0-d array of ``like``'s dtype, on its device."""
    return xp.asarray(xp.inf, dtype=like.dtype, device=device(like))


def coprime_step(n: int) -> int:
    """A step near n/φ sharing no factor with n: ``(i·step) mod n`` visits
    every index once and spreads any window of them over the whole tensor."""
    step = max(1, round(n * 0.6180339887498949))
    while math.gcd(step, n) != 1:
        step += 1
    return step
