"""ire_torch: IRE (Implicit Regularization Enhancement) as torch.optim optimizers.

IRE keeps the base optimizer's step on sharp directions and multiplies it by
(1 + κ) on the flattest fraction γ of all coordinates, which speeds up the
drift toward flat minima (Wang et al., NeurIPS 2024, arXiv 2405.20763).

Example:
  >>> import torch
  >>> from ire_torch import AdamWIRE
  >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
  >>> opt = AdamWIRE(model.parameters(), lr=1e-3, kappa=2.0, flat_fraction=0.6, interval=10)
  >>> x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
  >>> for _ in range(5):
  ...     loss = torch.nn.functional.cross_entropy(model(x), y)
  ...     loss.backward()
  ...     opt.step()
  ...     opt.zero_grad()
  >>> round(opt.mask_stats().flat_fraction, 2)
  0.6
"""

from .autodiff import hessian_diagonal, hessian_trace, hessian_vector_products
from .bases import SGDIRE, AdamIRE, AdamWIRE
from .draws import Draws
from .monitoring import MaskStats
from .optimizer import IRE, IRE_KEYWORDS
from .sam import SAMIRE

__all__ = [
    "IRE",
    "IRE_KEYWORDS",
    "SAMIRE",
    "SGDIRE",
    "AdamIRE",
    "AdamWIRE",
    "Draws",
    "MaskStats",
    "hessian_diagonal",
    "hessian_trace",
    "hessian_vector_products",
]


def __getattr__(name: str):
    if name == "MaskReport":  # a deprecated alias of MaskStats
        import warnings

        from .monitoring import _MASK_REPORT_DEPRECATED

        warnings.warn(_MASK_REPORT_DEPRECATED, DeprecationWarning, stacklevel=2)
        return MaskStats
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
