"""The squared-gradient estimators (``gradient``, ``fisher``) write ĥ = g ⊙ g
into one buffer, which the threshold then ranks as one tensor."""

from __future__ import annotations

import pytest
import torch

import ire_core
from ire_torch.estimators import _squares


def _grads(dtypes):
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (0,), (5,), (2, 3, 2)]
    return [torch.randn(s, generator=generator, dtype=torch.float64).to(d)
            for s, d in zip(shapes, dtypes)]


def test_squares_of_one_dtype_are_views_of_one_buffer():
    grads = _grads([torch.float32] * 4)
    squares = _squares(grads)
    expected = ire_core.squared(grads)
    assert all(torch.equal(s, e) and s.shape == g.shape
               for s, e, g in zip(squares, expected, grads))
    pointers = {s.untyped_storage().data_ptr() for s in squares}
    assert len(pointers) == 1
    assert [s.storage_offset() for s in squares] == [0, 12, 12, 17]


@pytest.mark.parametrize("dtypes", [[torch.bfloat16] * 4,
                                    [torch.float32, torch.float64, torch.float32, torch.float16]])
def test_half_precision_is_squared_in_float32_and_mixed_dtypes_apart(dtypes):
    grads = _grads(dtypes)
    squares = _squares(grads)
    wide = [g.float() if g.dtype in (torch.float16, torch.bfloat16) else g for g in grads]
    assert [s.dtype for s in squares] == [w.dtype for w in wide]
    assert all(torch.equal(s, w * w) for s, w in zip(squares, wide))
    shared = len({s.untyped_storage().data_ptr() for s in squares if s.numel()}) == 1
    assert shared == (len({w.dtype for w in wide}) == 1)
